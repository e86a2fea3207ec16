/* net.h - fc-net's pieces: published-port parsing, the per-VM record,
 * bridged and rootless set-up, and the guest stand-in used by tests.
 */
#ifndef FC_NET_NET_H
#define FC_NET_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <netinet/in.h>

#include <jansson.h>

#include "err.h"

struct nl;
struct nft_batch;

#define NET_MAX_PORTS 256	/* published ports per VM (ranges expanded) */
#define NET_DEFAULT_POOL "10.213.0.0/16"
#define NET_SUBNET_PREFIX 30	/* per VM: network, gateway .1, guest .2, broadcast */
#define NET_RECORD_MAX (256 * 1024)
/* Held (after the data root's net.lock) while bridged up chooses and
 * makes: host-wide, as the TAPs, routes and addresses are. */
#define NET_HOST_LOCK "/run/fcvm-net.lock"

/* ---- ports.c ---- */

struct port_map {
	int proto;			/* IPPROTO_TCP or IPPROTO_UDP */
	struct in_addr host_ip;		/* INADDR_ANY: every local address */
	bool host_ip_given;		/* false: the VM's loopback address */
	uint16_t host_port;		/* 0: pick a free one */
	uint16_t guest_port;
};

/* Parse one podman-style -p value, [HOSTIP:][HOSTPORT:]GUESTPORT[/tcp|/udp]
 * with ports or equal-length ranges (A-B), appending to @maps (*@n of at
 * most NET_MAX_PORTS). 0, or -1 with @e saying what is wrong with @spec. */
int port_parse(const char *spec, struct port_map *maps, size_t *n, struct fc_err *e);

const char *proto_name(int proto);

/* ---- record.c: $FCVM_ROOT/net/<id>.json ---- */

/* Exclusive lock over every record of this data root (locks/net.lock),
 * held for a whole up/down/gc. Returns the fd or -1. */
int net_lock(struct fc_err *e);

/* Load net/<id>.json. New reference; NULL with @e (errnum ENOENT when
 * there is none). */
json_t *net_record_load(const char *id, struct fc_err *e);
int net_record_save(json_t *rec, struct fc_err *e);
void net_record_remove(const char *id);

/* Every record (valid ones; a malformed file is skipped) as a JSON
 * array, in id order. New reference. */
json_t *net_records(struct fc_err *e);

/* "fc" and 8 lower-case hex digits: the names net_derive makes (TAPs,
 * clone mode's host veth). down and gc act only on such names. */
bool net_valid_tap(const char *name);

/* True while the record's owner process (owner_pid/owner_start) runs, or
 * the VM's state record (state/<id>.json) is live. */
bool net_record_live(json_t *rec);

/* ---- bridged.c ---- */

struct up_opts {
	const char *id;
	const char *mode;		/* "bridged" | "rootless" | "clone" */
	pid_t owner;
	uint64_t owner_start;
	const char *pool;		/* CIDR, NULL: NET_DEFAULT_POOL */
	uid_t tap_uid;			/* (uid_t)-1: none */
	bool host_loopback;		/* guest's gateway:PORT -> host 127.0.0.1:PORT */
	const char *resolv_conf;	/* NULL: /etc/resolv.conf (bridged DNS) */
	struct port_map ports[NET_MAX_PORTS];
	size_t nports;
	/* clone: the source VM's network, from a snapshot's manifest or a
	 * file holding fc-net's result for it (one of the two). */
	const char *from_snapshot, *like;
};

/* Make what the VM needs and its record; on failure nothing is left.
 * *@out receives the result JSON (new reference). 0 or -1 with @e. */
int bridged_up(struct up_opts *o, json_t **out, struct fc_err *e);

/* Remove what @rec says was made (what is already gone is fine), then
 * the record. 0 or -1 with @e (the record is then kept). */
int net_down(json_t *rec, struct fc_err *e);

/* Fail with a clear message when @maps (of this up) collide with each
 * other, with ports other records publish, or with a bound socket; pick
 * free host ports for those that have none. */
int ports_check(struct port_map *maps, size_t n, struct in_addr loopback, json_t *records,
		struct fc_err *e);

/* The result/record representation of a port list. */
json_t *ports_json(const struct port_map *maps, size_t n, struct in_addr loopback);

/* The nftables table of a bridged VM (or, on the host, of a clone): DNAT
 * of the published ports to @guest (the guest, or the clone's address),
 * DNS and --host-loopback DNAT from @tap's side at @gw, masquerade for
 * @subnet (a /NET_SUBNET_PREFIX) leaving elsewhere and for 127/8 sources
 * towards @tap. One batch. 0 or -1 with @e. */
struct nat_plan {
	const char *table, *tap;
	struct in_addr subnet, gw, guest, dns_target;
	bool dns_dnat, host_loopback;
	const struct port_map *ports;
	size_t nports;
};
int nat_create(const struct nat_plan *p, struct fc_err *e);

/* Into @b, a rule of @table's prerouting chain: what arrives on @ifname
 * for @daddr (with @proto non-zero: only @proto port @port) is DNATed to
 * @to, port @to_port (0: unchanged). */
void nat_dnat_in(struct nft_batch *b, const char *table, const char *ifname, struct in_addr daddr,
		 int proto, uint16_t port, struct in_addr to, uint16_t to_port);

/* What the modes' up share. net_up_lock: the data root's lock, then
 * the host's (*@host_lock; NULL: none, for rootless mode, which makes
 * nothing host-wide), and every record (*@records, new reference), none
 * of them @id's. Returns the data root lock's fd, or -1 with @e
 * (*@host_lock and *@records may be set all the same: the caller's
 * cleanup releases them). */
int net_up_lock(const char *id, int *host_lock, json_t **records, struct fc_err *e);
/* The last step of bridged and clone up: the host's NAT (@p), then *@rec
 * saved with status "up" and moved to *@out. 0, or -1 with @e; when the
 * table cannot be made its name leaves *@rec first: one that was there
 * before is not ours to undo. */
int net_up_finish(const struct nat_plan *p, json_t **rec, json_t **out, struct fc_err *e);
/* Undo a failed up through its record (net_down); what cannot be undone
 * is only logged: the error to report is the one that made us undo. */
void net_up_undo(json_t *rec);
/* Remove IPv4 nftables table @table; one already gone is fine. 0 or -1
 * with @e. */
int net_table_remove(const char *table, struct fc_err *e);

/* A bridged TAP's alias: this, then its record's absolute path. */
#define NET_TAP_TAG "fcvm-net "

/* The TAPs (and their fcvm-<tap> tables) whose alias names a record that
 * no longer exists, of any data root: removed (not with @dry), their names
 * appended to @removed. How many, or -1. */
int net_gc_orphans(bool dry, json_t *removed, struct fc_err *e);
/* Remove interface @name, if there - and only if its kind is @kind: one
 * of another kind is not ours. @what names it in messages ("tap"). 0 or
 * -1 with @e. */
int net_link_remove(const char *name, const char *kind, const char *what, struct fc_err *e);

/* A free /NET_SUBNET_PREFIX of @pool (NULL: the default): held by no
 * record, overlapping no route of @nl's namespace nor @avoid/@avoid_prefix
 * (prefix 0: nothing to avoid). 0 or -1 with @e. */
int net_pick_subnet(struct nl *nl, const char *pool, json_t *records, struct in_addr avoid,
		    int avoid_prefix, struct in_addr *subnet, struct fc_err *e);

/* The host's resolvers for the guest (up to 3; a loopback first one is
 * reached at the gateway: *@dns_dnat, *@dns_target); a new JSON array of
 * what the guest is told. */
json_t *net_dns(const char *resolv_conf, struct in_addr gw, bool *dns_dnat,
		struct in_addr *dns_target);

char *net_now_rfc3339(void);	/* caller frees */

/* ---- rootless.c ---- */

int rootless_up(struct up_opts *o, json_t **out, struct fc_err *e);
/* Stop the namespace holder of @rec (and with it slirp4netns). */
int rootless_down(json_t *rec, struct fc_err *e);

/* Shared with clone mode's holder. */
/* Fork a holder with its reply pipe @rep (made here, CLOEXEC): 0 in the
 * child, the child's pid in the parent - each with the end it does not
 * use closed and -1 (the child writes rep[1], the parent reads rep[0]) -
 * or -1 with @e (the caller closes what is still open). */
pid_t net_holder_fork(int rep[2], struct fc_err *e);
/* The start of a holder, the child up forks: only the fds *@keep[0..@n)
 * live on, renumbered 3, 4, ... (the variables updated) - no inherited
 * fd, the pool lock above all, may live on in it - in a session of its
 * own with stdio on /dev/null. *@sfd: a signalfd for SIGTERM, SIGINT and
 * SIGHUP; *@pfd: @owner's pidfd. Exits, with an error on *@keep[0] (the
 * reply pipe), when the owner is not running. */
void net_holder_start(int *const keep[], size_t n, pid_t owner, uint64_t owner_start, int *sfd,
		      int *pfd);
void net_reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Wait (bounded) for the holder's "ok" on @rep; its "error: WHY" as @e. */
int net_expect_ok(int rep, const char *who, struct fc_err *e);
/* A pidfd for the owner of VM @id's live state record, or -1. */
int net_adopt_vm_owner(const char *id);
/* SIGTERM @pid (if it is still the process that started at @start and is
 * named @comm), wait up to @grace_ms for it to go, then SIGKILL. */
void net_stop_process(pid_t pid, uint64_t start, const char *comm, int grace_ms);

/* ---- clone.c ---- */

/* Network for a clone of a snapshot (see clone.c). 0 or -1 with @e;
 * nothing is left on failure. */
int clone_up(struct up_opts *o, json_t **out, struct fc_err *e);
/* Stop the holder (unless it is us), then remove the host's side (nft
 * table, veth). 0 or -1 with @e. */
int clone_down(json_t *rec, struct fc_err *e);

/* ---- attach.c ---- */

/* The guest stand-in: open the VM's TAP like a VMM would (bridged: on the
 * host; rootless and clone: inside the holder's namespaces), make a
 * TAP named eth0 in network namespace @netns (NULL: a new one) configured
 * as the guest (MAC, address, default route), and copy frames both ways.
 * With @cmd, run it in that namespace and end when it ends (*@code: its
 * exit code); without, until SIGTERM/SIGINT. Writes "ready\n" to
 * @ready_fd (if >= 0) once frames flow. 0 or -1 with @e. */
int attach_run(json_t *rec, const char *netns, char **cmd, int ready_fd, int *code,
	       struct fc_err *e);

/* ---- shared helpers (bridged.c) ---- */
/* The VM's TAP name "fcXXXXXXXX", loopback address 127.x.y.z and MAC
 * 0a:fc:..., derived from @id (FNV-1a); on a clash with a record (or,
 * with @nl, an existing host interface) the next candidate. 0 or -1. */
int net_derive(const char *id, json_t *records, struct nl *nl, char tap[16],
	       struct in_addr *loopback, uint8_t mac[6], char mac_s[18], struct fc_err *e);
int write_sysctl(const char *path, const char *value, struct fc_err *e);
/* Open TAP @name (create: a new one, IFF_TUN_EXCL; persist: it outlives
 * the fd; @uid: TUNSETOWNER unless -1). Returns the CLOEXEC fd or -1. */
int tap_open(const char *name, bool create, bool persist, uid_t uid, struct fc_err *e);
int parse_cidr(const char *s, struct in_addr *addr, int *prefix, struct fc_err *e);
uint32_t net_mask(int prefix);	/* host order; 0 for prefix 0 */
/* "xx:xx:xx:xx:xx:xx" into @mac (attach.c). 0 or -1. */
int net_parse_mac(const char *s, uint8_t mac[6]);
const char *ip_str(struct in_addr a);	/* static buffer per call slot (4 rotating) */

#endif
