/* nl.h - netlink through libmnl: one way to open a socket, one
 * request/response helper, and the few rtnetlink operations fc-net needs.
 *
 * How a request goes (nl_talk):
 *   1. the message gets the next sequence number and NLM_F_ACK;
 *   2. it is sent; replies are read (bounded: NL_TIMEOUT_MS per read);
 *   3. every reply must carry our port id and that sequence number (else
 *      EPROTO: a stray message is a bug, not something to skip silently);
 *   4. data messages go to the caller's callback, which validates every
 *      attribute it uses (mnl_attr_validate) and skips unknown ones;
 *   5. NLMSG_ERROR ends the exchange: 0 is the ack, a negative code is the
 *      failure, normalised to a positive errno in fc_err.errnum, with the
 *      kernel's extended-ack text (NLMSGERR_ATTR_MSG) in the message;
 *      NLMSG_DONE ends a dump (it may carry an error too).
 * Sockets are SOCK_CLOEXEC, have NETLINK_EXT_ACK and NETLINK_CAP_ACK on.
 */
#ifndef FC_NL_H
#define FC_NL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <linux/netlink.h>	/* NETLINK_ROUTE, NETLINK_NETFILTER */

#include "err.h"

struct nlmsghdr;
struct mnl_socket;

#define NL_TIMEOUT_MS 5000

struct nl {
	struct mnl_socket *sk;	/* NULL: closed */
	unsigned int portid;
	uint32_t seq;
};

/* Open and bind a netlink socket of @bus (NETLINK_ROUTE, NETLINK_NETFILTER).
 * 0, or -1 with @e. Close with nl_close (safe on a closed one). */
int nl_open(struct nl *nl, int bus, struct fc_err *e);
void nl_close(struct nl *nl);
#define _cleanup_nl_ __attribute__((cleanup(nl_close)))

/* Next sequence number of @nl (for callers building batches). */
uint32_t nl_next_seq(struct nl *nl);

/* Called for every data message of a reply; returns 0 or -1 with @e. */
typedef int (*nl_data_fn)(const struct nlmsghdr *nlh, void *arg, struct fc_err *e);

/* Send @nlh (its seq and NLM_F_ACK are set here) and read the reply as
 * described above; @cb (may be NULL) sees each data message. 0 or -1. */
int nl_talk(struct nl *nl, struct nlmsghdr *nlh, nl_data_fn cb, void *arg, struct fc_err *e);

/* Send @len bytes of an nfnetlink batch (begin ... end, built with seqs
 * from nl_next_seq) in one sendmsg and read one ack for every message
 * that asked for one (NLM_F_ACK) - the kernel applies the batch whole or
 * not at all, and reports every failing message; the first error (with its
 * extended-ack text) is returned. 0 or -1 with @e. */
int nl_talk_batch(struct nl *nl, const void *buf, size_t len, struct fc_err *e);

/* ---- rtnetlink (NETLINK_ROUTE) ------------------------------------- */

struct nl_link {
	int ifindex;
	char name[16];
	char kind[16];	/* IFLA_INFO_KIND ("tun", "bridge", ...) or "" */
	int master;	/* 0: none */
	bool up;
	char alias[256];	/* IFLA_IFALIAS (IFALIASZ) or "" */
};

/* Dump all links; @fn is called for each (return non-zero to stop, which
 * is then returned). -1 with @e on a netlink error. */
int nl_links(struct nl *nl, int (*fn)(const struct nl_link *l, void *arg), void *arg,
	     struct fc_err *e);

/* The link named @name; 0 and *@out filled, 1 when there is none, -1. */
int nl_link_get(struct nl *nl, const char *name, struct nl_link *out, struct fc_err *e);

/* RTM_NEWLINK of kind "bridge" named @name (NLM_F_EXCL). 0 or -1. */
int nl_bridge_add(struct nl *nl, const char *name, struct fc_err *e);

/* RTM_NEWLINK of a veth pair (NLM_F_EXCL): @name here, its peer @peer in
 * the network namespace @peer_netns_fd (an open /proc/PID/ns/net; -1:
 * here too). Deleting either end removes both. 0 or -1. */
int nl_veth_add(struct nl *nl, const char *name, const char *peer, int peer_netns_fd,
		struct fc_err *e);

/* Change link @ifindex: @mac (6 bytes, NULL: keep), @mtu (0: keep),
 * @master (ifindex, 0: keep), then up when @up. 0 or -1. */
int nl_link_set(struct nl *nl, int ifindex, const uint8_t *mac, unsigned int mtu, int master,
		bool up, struct fc_err *e);

/* Set link @ifindex's alias (ip link set alias) to @alias (< 256 bytes): a
 * tag a later run can read back from a dump. 0 or -1. */
int nl_link_alias(struct nl *nl, int ifindex, const char *alias, struct fc_err *e);

/* Delete link @ifindex. ENODEV is reported as errnum ENODEV. 0 or -1. */
int nl_link_del(struct nl *nl, int ifindex, struct fc_err *e);

/* Add IPv4 @addr/@prefix to @ifindex (with the broadcast of the subnet).
 * 0 or -1. */
int nl_addr_add(struct nl *nl, int ifindex, struct in_addr addr, int prefix,
		struct fc_err *e);

/* Default route via @gw (main table). 0 or -1. */
int nl_route_default(struct nl *nl, struct in_addr gw, struct fc_err *e);

/* Call @fn for each IPv4 route of the main and local tables (destination,
 * prefix length). For overlap checks. */
int nl_routes4(struct nl *nl, int (*fn)(struct in_addr dst, int prefix, void *arg), void *arg,
	       struct fc_err *e);

#endif
