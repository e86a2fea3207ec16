/* nl.c - netlink through libmnl: see nl.h */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "nl.h"
#include "util.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

/* Replies are read into this; big enough for a page of dump messages. */
#define NL_BUF 32768

int nl_open(struct nl *nl, int bus, struct fc_err *e)
{
	int one = 1;

	nl->sk = mnl_socket_open2(bus, SOCK_CLOEXEC);
	if (!nl->sk)
		return fc_err_set(e, errno, "open netlink socket");
	/* Both are best-effort on old kernels: the protocol works without. */
	(void)mnl_socket_setsockopt(nl->sk, NETLINK_EXT_ACK, &one, sizeof(one));
	(void)mnl_socket_setsockopt(nl->sk, NETLINK_CAP_ACK, &one, sizeof(one));
	if (mnl_socket_bind(nl->sk, 0, MNL_SOCKET_AUTOPID) < 0) {
		int err = errno;

		mnl_socket_close(nl->sk);
		nl->sk = NULL;
		return fc_err_set(e, err, "bind netlink socket");
	}
	nl->portid = mnl_socket_get_portid(nl->sk);
	nl->seq = (uint32_t)now_ms();
	return 0;
}

void nl_close(struct nl *nl)
{
	if (nl->sk)
		mnl_socket_close(nl->sk);
	nl->sk = NULL;
}

uint32_t nl_next_seq(struct nl *nl)
{
	return ++nl->seq;
}

/* The extended-ack text of an NLMSG_ERROR / NLMSG_DONE, if any. */
struct extack {
	const char *msg;
};

static int extack_attr(const struct nlattr *a, void *data)
{
	struct extack *x = data;

	if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
		x->msg = mnl_attr_get_str(a);
	return MNL_CB_OK;	/* other TLVs (offset, cookie) are not used */
}

/* Decode NLMSG_ERROR @nlh: 0 for an ack, else -1 with @e. */
static int nl_error(const struct nlmsghdr *nlh, struct fc_err *e)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	struct extack x = { NULL };
	size_t off, plen;
	int code;

	plen = mnl_nlmsg_get_payload_len(nlh);
	if (plen < sizeof(*err))
		return fc_err_set(e, EBADMSG, "netlink: truncated error message");
	if (err->error == 0)
		return 0;
	code = err->error < 0 ? -err->error : err->error;
	if (code > 4095)
		code = EPROTO;
	if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
		off = sizeof(*err);
		if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
			off += err->msg.nlmsg_len >= sizeof(struct nlmsghdr) ?
				       NLMSG_ALIGN(err->msg.nlmsg_len) - sizeof(struct nlmsghdr) : 0;
		if (off < plen)
			mnl_attr_parse_payload((const char *)err + off, plen - off, extack_attr, &x);
	}
	if (x.msg && x.msg[0]) {
		/* Kernel text, but bounded and kept to one printable line. */
		char buf[200];
		size_t i;

		for (i = 0; i < sizeof(buf) - 1 && x.msg[i]; i++)
			buf[i] = (x.msg[i] >= 0x20 && x.msg[i] < 0x7f) ? x.msg[i] : '?';
		buf[i] = '\0';
		return fc_err_set(e, code, "%s", buf);
	}
	errno = code;
	return fc_err_set(e, code, "netlink");
}

/* Read replies of sequence numbers [@first, @last] until @want acks (or
 * errors) have arrived, or - when @want is 0 - until the ack/error/DONE
 * of @first. Returns 0 or -1 with the first error in @e. */
static int nl_recv(struct nl *nl, uint32_t first, uint32_t last, unsigned int want, nl_data_fn cb,
		   void *arg, struct fc_err *e)
{
	_cleanup_free_ char *buf = xmalloc(NL_BUF);
	int fd = mnl_socket_get_fd(nl->sk);
	unsigned int acks = 0;
	bool failed = false;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		const struct nlmsghdr *nlh;
		ssize_t n;
		int len, r;

		r = poll(&p, 1, NL_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fc_err_set(e, errno, "netlink: poll");
		if (r == 0)
			return fc_err_set(e, ETIMEDOUT, "netlink: no answer within %d ms", NL_TIMEOUT_MS);
		n = mnl_socket_recvfrom(nl->sk, buf, NL_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fc_err_set(e, errno, "netlink: receive");
		len = (int)n;
		for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_pid != nl->portid && nlh->nlmsg_pid != 0)
				return fc_err_set(e, EPROTO, "netlink: reply for port %u, we are %u",
						  nlh->nlmsg_pid, nl->portid);
			if (nlh->nlmsg_seq - first > last - first)
				return fc_err_set(e, EPROTO, "netlink: reply with sequence %u, expected %u..%u",
						  nlh->nlmsg_seq, first, last);
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				struct fc_err e2;

				if (nl_error(nlh, &e2) < 0 && !failed) {
					*e = e2;
					failed = true;
				}
				acks++;
				/* An error on the batch header ends it all. */
				if (!want || nlh->nlmsg_seq == first || acks >= want)
					return failed ? -1 : 0;
				continue;
			}
			if (nlh->nlmsg_type == NLMSG_DONE) {
				if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
					const int *code = mnl_nlmsg_get_payload(nlh);

					if (*code < 0 && !failed) {
						fc_err_set(e, -*code > 4095 ? EPROTO : -*code, "netlink dump");
						failed = true;
					}
				}
				if (!want)
					return failed ? -1 : 0;
				continue;
			}
			if (nlh->nlmsg_type < NLMSG_MIN_TYPE)
				continue;	/* NLMSG_NOOP, NLMSG_OVERRUN */
			if (cb && !failed && cb(nlh, arg, e) < 0)
				failed = true;	/* keep reading to the end of the reply */
		}
		if (len != 0)
			return fc_err_set(e, EBADMSG, "netlink: truncated message");
	}
}

int nl_talk(struct nl *nl, struct nlmsghdr *nlh, nl_data_fn cb, void *arg, struct fc_err *e)
{
	nlh->nlmsg_seq = nl_next_seq(nl);
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	if (mnl_socket_sendto(nl->sk, nlh, nlh->nlmsg_len) < 0)
		return fc_err_set(e, errno, "netlink: send");
	return nl_recv(nl, nlh->nlmsg_seq, nlh->nlmsg_seq, 0, cb, arg, e);
}

int nl_talk_batch(struct nl *nl, const void *buf, size_t len, struct fc_err *e)
{
	const struct nlmsghdr *nlh = buf;
	uint32_t first = 0, last = 0;
	unsigned int want = 0;
	int rest = (int)len;
	bool seen = false;

	for (; mnl_nlmsg_ok(nlh, rest); nlh = mnl_nlmsg_next(nlh, &rest)) {
		if (!seen)
			first = nlh->nlmsg_seq;
		seen = true;
		last = nlh->nlmsg_seq;
		if (nlh->nlmsg_flags & NLM_F_ACK)
			want++;
	}
	if (!seen || rest != 0)
		return fc_err_set(e, EINVAL, "netlink: malformed batch");
	if (mnl_socket_sendto(nl->sk, buf, len) < 0)
		return fc_err_set(e, errno, "netlink: send batch");
	if (!want)
		return 0;
	return nl_recv(nl, first, last, want, NULL, NULL, e);
}

/* ---- rtnetlink --------------------------------------------------------- */

static struct nlmsghdr *rt_msg(char *buf, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	return nlh;
}

static int linkinfo_attr(const struct nlattr *a, void *data)
{
	struct nl_link *l = data;

	if (mnl_attr_get_type(a) == IFLA_INFO_KIND && mnl_attr_validate(a, MNL_TYPE_STRING) == 0) {
		size_t n = mnl_attr_get_payload_len(a);
		const char *s = mnl_attr_get_payload(a);

		n = strnlen(s, n);
		if (n < sizeof(l->kind)) {
			memcpy(l->kind, s, n);
			l->kind[n] = '\0';
		}
	}
	return MNL_CB_OK;
}

struct link_parse {
	struct nl_link *l;
	bool bad;
};

static int link_attr(const struct nlattr *a, void *data)
{
	struct link_parse *p = data;
	struct nl_link *l = p->l;

	switch (mnl_attr_get_type(a)) {
	case IFLA_IFNAME: {
		const char *s;
		size_t n;

		if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0) {
			p->bad = true;
			break;
		}
		s = mnl_attr_get_str(a);
		n = strlen(s);
		if (n == 0 || n >= sizeof(l->name)) {
			p->bad = true;
			break;
		}
		memcpy(l->name, s, n + 1);
		break;
	}
	case IFLA_IFALIAS: {
		/* not NUL_STRING: the kernel sends "" as a zero-length attribute */
		size_t n = mnl_attr_get_payload_len(a);
		const char *s = mnl_attr_get_payload(a);

		n = strnlen(s, n);
		if (n >= sizeof(l->alias)) {
			p->bad = true;
			break;
		}
		memcpy(l->alias, s, n);
		l->alias[n] = '\0';
		break;
	}
	case IFLA_MASTER:
		if (mnl_attr_validate(a, MNL_TYPE_U32) < 0)
			p->bad = true;
		else
			l->master = (int)mnl_attr_get_u32(a);
		break;
	case IFLA_LINKINFO:
		if (mnl_attr_validate(a, MNL_TYPE_NESTED) < 0)
			p->bad = true;
		else
			mnl_attr_parse_nested(a, linkinfo_attr, l);
		break;
	default:
		break;	/* unknown or unused: skipped */
	}
	return MNL_CB_OK;
}

static int parse_link(const struct nlmsghdr *nlh, struct nl_link *l, struct fc_err *e)
{
	const struct ifinfomsg *ifi;
	struct link_parse p = { l, false };

	memset(l, 0, sizeof(*l));
	if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return fc_err_set(e, EBADMSG, "netlink: malformed link message");
	ifi = mnl_nlmsg_get_payload(nlh);
	l->ifindex = ifi->ifi_index;
	l->up = ifi->ifi_flags & IFF_UP;
	if (mnl_attr_parse(nlh, sizeof(*ifi), link_attr, &p) < 0 || p.bad || !l->name[0])
		return fc_err_set(e, EBADMSG, "netlink: malformed attributes of link %d", l->ifindex);
	return 0;
}

struct links_ctx {
	int (*fn)(const struct nl_link *l, void *arg);
	void *arg;
	int stop;
};

static int links_cb(const struct nlmsghdr *nlh, void *arg, struct fc_err *e)
{
	struct links_ctx *c = arg;
	struct nl_link l = { 0 };

	if (parse_link(nlh, &l, e) < 0)
		return -1;
	if (!c->stop)
		c->stop = c->fn(&l, c->arg);
	return 0;
}

int nl_links(struct nl *nl, int (*fn)(const struct nl_link *l, void *arg), void *arg,
	     struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_GETLINK, NLM_F_DUMP);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	struct links_ctx c = { fn, arg, 0 };

	ifi->ifi_family = AF_UNSPEC;
	if (nl_talk(nl, nlh, links_cb, &c, e) < 0)
		return fc_err_wrap(e, "list links");
	return c.stop;
}

struct get_ctx {
	struct nl_link *out;
	bool found;
};

static int get_cb(const struct nlmsghdr *nlh, void *arg, struct fc_err *e)
{
	struct get_ctx *c = arg;

	if (parse_link(nlh, c->out, e) < 0)
		return -1;
	c->found = true;
	return 0;
}

int nl_link_get(struct nl *nl, const char *name, struct nl_link *out, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_GETLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	struct get_ctx c = { out, false };

	if (strlen(name) >= IFNAMSIZ)
		return 1;
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (nl_talk(nl, nlh, get_cb, &c, e) < 0) {
		if (e->errnum == ENODEV)
			return 1;
		return fc_err_wrap(e, "get link '%s'", name);
	}
	return c.found ? 0 : 1;
}

int nl_bridge_add(struct nl *nl, const char *name, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	struct nlattr *info;

	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(nlh, info);
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "create bridge '%s'", name);
	return 0;
}

int nl_veth_add(struct nl *nl, const char *name, const char *peer, int peer_netns_fd,
		struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	struct nlattr *info, *data, *pa;
	struct ifinfomsg *pifi;

	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	/* VETH_INFO_PEER is a whole ifinfomsg followed by the peer's own
	 * attributes (name, namespace). */
	pa = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	pifi = mnl_nlmsg_get_payload_tail(nlh);
	memset(pifi, 0, MNL_ALIGN(sizeof(*pifi)));
	pifi->ifi_family = AF_UNSPEC;
	nlh->nlmsg_len += MNL_ALIGN(sizeof(*pifi));
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	if (peer_netns_fd >= 0)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd);
	mnl_attr_nest_end(nlh, pa);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "create veth pair '%s'/'%s'", name, peer);
	return 0;
}

int nl_link_set(struct nl *nl, int ifindex, const uint8_t *mac, unsigned int mtu, int master,
		bool up, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_NEWLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	if (up) {
		ifi->ifi_flags = IFF_UP;
		ifi->ifi_change = IFF_UP;
	}
	if (mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	if (master)
		mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "configure link %d", ifindex);
	return 0;
}

int nl_link_alias(struct nl *nl, int ifindex, const char *alias, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_NEWLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

	if (strlen(alias) >= sizeof(((struct nl_link *)0)->alias))
		return fc_err_set(e, ENAMETOOLONG, "link alias of %zu bytes (at most 255)",
				  strlen(alias));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	mnl_attr_put_strz(nlh, IFLA_IFALIAS, alias);
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "set the alias of link %d", ifindex);
	return 0;
}

int nl_link_del(struct nl *nl, int ifindex, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_DELLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "delete link %d", ifindex);
	return 0;
}

int nl_addr_add(struct nl *nl, int ifindex, struct in_addr addr, int prefix,
		struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	uint32_t mask = prefix ? htonl(~0u << (32 - prefix)) : 0;
	uint32_t brd = addr.s_addr | ~mask;

	if (prefix < 0 || prefix > 32)
		return fc_err_set(e, EINVAL, "add address: prefix /%d", prefix);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_index = (unsigned int)ifindex;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	mnl_attr_put_u32(nlh, IFA_LOCAL, addr.s_addr);
	mnl_attr_put_u32(nlh, IFA_ADDRESS, addr.s_addr);
	if (prefix < 31)
		mnl_attr_put_u32(nlh, IFA_BROADCAST, brd);
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "add address to link %d", ifindex);
	return 0;
}

int nl_route_default(struct nl *nl, struct in_addr gw, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

	rtm->rtm_family = AF_INET;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_GATEWAY, gw.s_addr);
	if (nl_talk(nl, nlh, NULL, NULL, e) < 0)
		return fc_err_wrap(e, "add default route");
	return 0;
}

struct routes_ctx {
	int (*fn)(struct in_addr dst, int prefix, void *arg);
	void *arg;
	int stop;
};

static int route_attr(const struct nlattr *a, void *data)
{
	struct in_addr *dst = data;

	if (mnl_attr_get_type(a) == RTA_DST && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
		dst->s_addr = mnl_attr_get_u32(a);
	return MNL_CB_OK;
}

static int routes_cb(const struct nlmsghdr *nlh, void *arg, struct fc_err *e)
{
	struct routes_ctx *c = arg;
	const struct rtmsg *rtm;
	struct in_addr dst = { 0 };

	if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(*rtm))
		return fc_err_set(e, EBADMSG, "netlink: malformed route message");
	rtm = mnl_nlmsg_get_payload(nlh);
	if (rtm->rtm_family != AF_INET || rtm->rtm_dst_len > 32)
		return 0;
	if (rtm->rtm_table != RT_TABLE_MAIN && rtm->rtm_table != RT_TABLE_LOCAL)
		return 0;
	if (mnl_attr_parse(nlh, sizeof(*rtm), route_attr, &dst) < 0)
		return fc_err_set(e, EBADMSG, "netlink: malformed route attributes");
	if (!c->stop)
		c->stop = c->fn(dst, rtm->rtm_dst_len, c->arg);
	return 0;
}

int nl_routes4(struct nl *nl, int (*fn)(struct in_addr dst, int prefix, void *arg), void *arg,
	       struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rt_msg(buf, RTM_GETROUTE, NLM_F_DUMP);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	struct routes_ctx c = { fn, arg, 0 };

	rtm->rtm_family = AF_INET;
	if (nl_talk(nl, nlh, routes_cb, &c, e) < 0)
		return fc_err_wrap(e, "list routes");
	return c.stop;
}
