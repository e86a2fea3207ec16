/* bridged.c - root mode: a TAP per VM, routed, NAT through nftables.
 *
 * How it works (fc-net up --mode bridged), all under locks/net.lock:
 *   1. choose: a /30 from the pool that no record holds and no host route
 *      overlaps (so two data roots, or other software, never collide); a
 *      TAP name, a MAC and a loopback address 127.x.y.z derived from the
 *      VM id (the next candidate on a collision); host ports checked and
 *      picked (ports_check) - before anything is made;
 *   2. write the record (status "creating"): from here gc can undo it;
 *   3. create the TAP (persistent, owned by --tap-user), address the
 *      gateway .1/30 on it, bring it up; route_localnet on the TAP (DNAT
 *      from 127/8 to the guest needs it, and it dies with the TAP);
 *      ip_forward on (egress);
 *   4. one nftables batch: table "fcvm-<tap>" with nat chains for DNAT of
 *      every published port (output: from this host; prerouting: from
 *      elsewhere), masquerade for the guest's egress and for 127/8
 *      sources towards the guest;
 *   5. record status "up"; print the result.
 * Any failure after 2 runs net_down() on the record: nothing half-made.
 * The VMM's end of the TAP (the guest) is the VMM's, not ours.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netfilter.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "net.h"
#include "nft.h"
#include "nl.h"
#include "paths.h"
#include "util.h"

const char *ip_str(struct in_addr a)
{
	static char buf[4][INET_ADDRSTRLEN];
	static int slot;
	char *b = buf[slot++ & 3];

	inet_ntop(AF_INET, &a, b, INET_ADDRSTRLEN);
	return b;
}

int parse_cidr(const char *s, struct in_addr *addr, int *prefix, struct fc_err *e)
{
	char buf[64];
	char *slash;
	uint64_t p;

	if (strlen(s) >= sizeof(buf))
		return fc_err_set(e, 0, "invalid address range '%.40s'", s);
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (!slash)
		return fc_err_set(e, 0, "invalid address range '%s': expected A.B.C.D/N", s);
	*slash = '\0';
	if (inet_pton(AF_INET, buf, addr) != 1 || parse_u64(slash + 1, 0, 32, "prefix", &p, e) < 0)
		return fc_err_set(e, 0, "invalid address range '%s': expected A.B.C.D/N", s);
	*prefix = (int)p;
	return 0;
}

uint32_t net_mask(int prefix)
{
	return prefix <= 0 ? 0 : ~0u << (32 - prefix);
}

int write_sysctl(const char *path, const char *value, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 || write_full(fd, value, strlen(value)) < 0)
		return fc_err_set(e, errno, "write '%s' to '%s'", value, path);
	return 0;
}

static int read_sysctl_is(const char *path, const char *value)
{
	char buf[16] = { 0 };
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0)
		return 0;
	return strncmp(buf, value, strlen(value)) == 0;
}

int tap_open(const char *name, bool create, bool persist, uid_t uid, struct fc_err *e)
{
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct ifreq ifr;

	if (fd < 0)
		return fc_err_set(e, errno, "open '/dev/net/tun'");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (create ? IFF_TUN_EXCL : 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return fc_err_set(e, errno, "%s tap '%s'", create ? "create" : "open", name);
	if (create && persist && ioctl(fd, TUNSETPERSIST, 1) < 0)
		return fc_err_set(e, errno, "make tap '%s' persistent", name);
	if (create && uid != (uid_t)-1 && ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0)
		return fc_err_set(e, errno, "give tap '%s' to uid %u", name, (unsigned int)uid);
	return steal_fd(&fd);
}

/* FNV-1a of @id and a probe number: the seed of every derived name. */
static uint32_t id_hash(const char *id, unsigned int probe)
{
	uint32_t h = 2166136261u;
	const char *p;

	for (p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (; probe; probe >>= 8)
		h = (h ^ (probe & 0xff)) * 16777619u;
	return h;
}

/* Is @field == @val in any record of @recs (other than @id)? */
static bool records_have(json_t *recs, const char *field, const char *val)
{
	size_t i;
	json_t *r;

	json_array_foreach(recs, i, r) {
		const char *v = json_str(r, field);

		if (v && !strcmp(v, val))
			return true;
	}
	return false;
}

/* ---- ports --------------------------------------------------------- */

static bool ip_overlap(struct in_addr a, struct in_addr b)
{
	return a.s_addr == htonl(INADDR_ANY) || b.s_addr == htonl(INADDR_ANY) || a.s_addr == b.s_addr;
}

/* The record (id) in @records that publishes @m, or NULL. */
static const char *published_by(json_t *records, const struct port_map *m)
{
	size_t i, j;
	json_t *r, *p;

	json_array_foreach(records, i, r) {
		json_array_foreach(json_object_get(r, "ports"), j, p) {
			const char *pr = json_str(p, "proto"), *hip = json_str(p, "host_ip");
			long long hp = 0;
			struct in_addr a;
			struct fc_err e;

			if (!pr || !hip || inet_pton(AF_INET, hip, &a) != 1 ||
			    json_int(p, "host_port", 1, 65535, &hp, &e) != 0)
				continue;
			if (!strcmp(pr, proto_name(m->proto)) && hp == m->host_port &&
			    ip_overlap(a, m->host_ip))
				return json_str(r, "id");
		}
	}
	return NULL;
}

/* Try to bind @m's host address and port (0: any, and *@got receives it). */
static int probe_bind(const struct port_map *m, uint16_t *got, struct fc_err *e)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int one = 1;

	fd = socket(AF_INET, (m->proto == IPPROTO_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fc_err_set(e, errno, "socket");
	/* TIME_WAIT leftovers do not make a port taken; a listener does. */
	if (m->proto == IPPROTO_TCP)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr = m->host_ip;
	sa.sin_port = htons(m->host_port);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EADDRINUSE)
			return fc_err_set(e, 0, "host port %s:%u/%s is already in use",
					  ip_str(m->host_ip), m->host_port, proto_name(m->proto));
		if (errno == EADDRNOTAVAIL)
			return fc_err_set(e, 0, "host address %s is not an address of this host",
					  ip_str(m->host_ip));
		return fc_err_set(e, errno, "check host port %s:%u/%s", ip_str(m->host_ip),
				  m->host_port, proto_name(m->proto));
	}
	if (got) {
		if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
			return fc_err_set(e, errno, "getsockname");
		*got = ntohs(sa.sin_port);
	}
	return 0;
}

int ports_check(struct port_map *maps, size_t n, struct in_addr loopback, json_t *records,
		struct fc_err *e)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		struct port_map *m = &maps[i];
		const char *by;
		int tries;

		if (!m->host_ip_given)
			m->host_ip = loopback;
		if (m->host_port) {
			for (j = 0; j < i; j++)
				if (maps[j].proto == m->proto && maps[j].host_port == m->host_port &&
				    ip_overlap(maps[j].host_ip, m->host_ip))
					return fc_err_set(e, 0, "host port %s:%u/%s is published twice",
							  ip_str(m->host_ip), m->host_port,
							  proto_name(m->proto));
			by = published_by(records, m);
			if (by)
				return fc_err_set(e, 0, "host port %s:%u/%s is already published by VM '%s'",
						  ip_str(m->host_ip), m->host_port,
						  proto_name(m->proto), by);
			if (probe_bind(m, NULL, e) < 0)
				return -1;
			continue;
		}
		/* No host port: the kernel picks a free one; it must not be one
		 * that another VM (or an earlier entry) publishes. */
		for (tries = 0;; tries++) {
			uint16_t got = 0;
			bool clash = false;

			if (tries == 50)
				return fc_err_set(e, 0, "no free host port for guest port %u/%s",
						  m->guest_port, proto_name(m->proto));
			if (probe_bind(m, &got, e) < 0)
				return -1;
			m->host_port = got;
			for (j = 0; j < i; j++)
				if (maps[j].proto == m->proto && maps[j].host_port == got &&
				    ip_overlap(maps[j].host_ip, m->host_ip))
					clash = true;
			if (!clash && !published_by(records, m))
				break;
			m->host_port = 0;
		}
	}
	return 0;
}

json_t *ports_json(const struct port_map *maps, size_t n, struct in_addr loopback)
{
	json_t *a = json_array();
	size_t i;

	(void)loopback;
	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:i}", "proto",
						   proto_name(maps[i].proto), "host_ip",
						   ip_str(maps[i].host_ip), "host_port",
						   (int)maps[i].host_port, "guest_port",
						   (int)maps[i].guest_port));
	return a;
}

/* ---- choices ------------------------------------------------------- */

struct route4 {
	struct in_addr dst;
	int prefix;
};

struct routes {
	struct route4 *v;
	size_t n;
};

static int collect_route(struct in_addr dst, int prefix, void *arg)
{
	struct routes *r = arg;

	if (prefix == 0)
		return 0;	/* a default route overlaps everything: not a conflict */
	r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
	r->v[r->n].dst = dst;
	r->v[r->n].prefix = prefix;
	r->n++;
	return 0;
}

static bool cidr_overlap(uint32_t a, int pa, uint32_t b, int pb)
{
	uint32_t m = net_mask(pa < pb ? pa : pb);

	return (a & m) == (b & m);
}

static int pick_subnet(const char *pool, json_t *records, const struct routes *rt,
		       struct in_addr avoid, int avoid_prefix, struct in_addr *subnet,
		       struct fc_err *e)
{
	struct in_addr base;
	int prefix;
	uint32_t first, count, i;
	size_t k, used = 0;

	if (parse_cidr(pool, &base, &prefix, e) < 0)
		return -1;
	if (prefix < 8 || prefix > NET_SUBNET_PREFIX)
		return fc_err_set(e, 0, "invalid pool '%s': the prefix must be /8 to /%d", pool,
				  NET_SUBNET_PREFIX);
	first = ntohl(base.s_addr) & net_mask(prefix);
	count = 1u << (NET_SUBNET_PREFIX - prefix);
	for (i = 0; i < count; i++) {
		uint32_t s = first + (i << (32 - NET_SUBNET_PREFIX));
		struct in_addr cand = { htonl(s) };
		char cidr[INET_ADDRSTRLEN + 4];

		snprintf(cidr, sizeof(cidr), "%s/%d", ip_str(cand), NET_SUBNET_PREFIX);
		if (records_have(records, "subnet", cidr)) {
			used++;
			continue;
		}
		for (k = 0; k < rt->n; k++)
			if (cidr_overlap(s, NET_SUBNET_PREFIX, ntohl(rt->v[k].dst.s_addr), rt->v[k].prefix))
				break;
		if (k < rt->n)
			continue;
		if (avoid_prefix && cidr_overlap(s, NET_SUBNET_PREFIX, ntohl(avoid.s_addr), avoid_prefix))
			continue;
		*subnet = cand;
		return 0;
	}
	return fc_err_set(e, 0, "address pool %s is exhausted (%zu of %u subnets held by VMs, the rest overlap host routes)",
			  pool, used, count);
}

int net_pick_subnet(struct nl *nl, const char *pool, json_t *records, struct in_addr avoid,
		    int avoid_prefix, struct in_addr *subnet, struct fc_err *e)
{
	struct routes rt = { NULL, 0 };
	int r = nl_routes4(nl, collect_route, &rt, e);

	if (r >= 0)
		r = pick_subnet(pool ? pool : NET_DEFAULT_POOL, records, &rt, avoid, avoid_prefix,
				subnet, e);
	free(rt.v);
	return r;
}

static int link_exists(struct nl *nl, const char *name, bool *exists, struct fc_err *e)
{
	struct nl_link l = { 0 };
	int r = nl_link_get(nl, name, &l, e);

	if (r < 0)
		return -1;
	*exists = r == 0;
	return 0;
}

int net_derive(const char *id, json_t *records, struct nl *nl, char tap[IFNAMSIZ],
	       struct in_addr *loopback, uint8_t mac[6], char mac_s[18], struct fc_err *e)
{
	unsigned int probe;

	for (probe = 0;; probe++) {
		uint32_t h = id_hash(id, probe);
		bool exists = false;

		if (probe == 64)
			return fc_err_set(e, 0, "no free interface name or loopback address for VM '%s'", id);
		snprintf(tap, IFNAMSIZ, "fc%08x", h);
		if (records_have(records, "tap", tap))
			continue;
		if (nl && link_exists(nl, tap, &exists, e) < 0)
			return -1;
		if (exists)
			continue;
		loopback->s_addr = htonl(0x7f000000u | (1 + (h >> 16 & 0xff) % 254) << 16 |
					 (1 + (h >> 8 & 0xff) % 254) << 8 | (1 + (h & 0xff) % 254));
		if (records_have(records, "loopback_ip", ip_str(*loopback)))
			continue;
		mac[0] = 0x0a;	/* locally administered, unicast */
		mac[1] = 0xfc;
		mac[2] = (uint8_t)(h >> 24);
		mac[3] = (uint8_t)(h >> 16);
		mac[4] = (uint8_t)(h >> 8);
		mac[5] = (uint8_t)h;
		snprintf(mac_s, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
			 mac[4], mac[5]);
		return 0;
	}
}

/* Host resolvers from @path (resolv.conf format; IPv4 only, at most 3). */
static size_t host_dns(const char *path, struct in_addr *out, size_t max)
{
	_cleanup_free_ char *buf = NULL;
	struct fc_err e;
	size_t len, n = 0;
	char *line, *save = NULL;

	buf = read_file_max(path, 64 * 1024, &len, &e);
	if (!buf)
		return 0;
	for (line = strtok_r(buf, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
		char addr[64];

		if (sscanf(line, " nameserver %63s", addr) == 1 && inet_pton(AF_INET, addr, &out[n]) == 1)
			n++;
	}
	return n;
}

/* DNS: the host's resolvers; a loopback one (systemd-resolved, a local
 * dnsmasq) first in the list is reached at the gateway. */
json_t *net_dns(const char *resolv_conf, struct in_addr gw, bool *dns_dnat,
		struct in_addr *dns_target)
{
	struct in_addr resolvers[3];
	json_t *dns = json_array();
	size_t nres, i;

	nres = host_dns(resolv_conf ? resolv_conf : "/etc/resolv.conf", resolvers,
			ARRAY_SIZE(resolvers));
	*dns_dnat = false;
	if (nres && (ntohl(resolvers[0].s_addr) >> 24) == 127) {
		*dns_dnat = true;
		*dns_target = resolvers[0];
		json_array_append_new(dns, json_string(ip_str(gw)));
	}
	for (i = 0; i < nres && !*dns_dnat; i++)
		if ((ntohl(resolvers[i].s_addr) >> 24) != 127)
			json_array_append_new(dns, json_string(ip_str(resolvers[i])));
	if (!json_array_size(dns))
		log_warn("no IPv4 resolver in the host's resolv.conf: the guest gets no DNS");
	return dns;
}

char *net_now_rfc3339(void)
{
	char buf[32];
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(buf);
}

/* ---- nftables ------------------------------------------------------ */

static void add_port_rules(struct nft_batch *b, const struct nat_plan *p, const char *chain,
			   bool from_outside)
{
	size_t i;

	for (i = 0; i < p->nports; i++) {
		const struct port_map *m = &p->ports[i];
		struct nftnl_rule *r;
		bool lo = (ntohl(m->host_ip.s_addr) >> 24) == 127;

		if (from_outside && lo)
			continue;	/* 127/8 never arrives from outside */
		r = nft_rule_new(NFPROTO_IPV4, p->table, chain);
		if (m->host_ip.s_addr == htonl(INADDR_ANY))
			nft_r_daddr_local(r);
		else
			nft_r_daddr(r, m->host_ip, 32);
		nft_r_dport(r, m->proto, m->host_port);
		nft_r_dnat(r, p->guest, m->guest_port);
		nft_rule_add(b, r);
	}
}

void nat_dnat_in(struct nft_batch *b, const char *table, const char *ifname, struct in_addr daddr,
		 int proto, uint16_t port, struct in_addr to, uint16_t to_port)
{
	struct nftnl_rule *r = nft_rule_new(NFPROTO_IPV4, table, "prerouting");

	nft_r_ifname(r, false, false, ifname);
	nft_r_daddr(r, daddr, 32);
	if (proto)
		nft_r_dport(r, proto, port);
	nft_r_dnat(r, to, to_port);
	nft_rule_add(b, r);
}

int nat_create(const struct nat_plan *p, struct fc_err *e)
{
	_cleanup_nft_batch_ struct nft_batch *b = nft_batch_new(e);
	struct nftnl_rule *r;
	struct in_addr lo8 = { htonl(0x7f000000) };
	static const int protos[] = { IPPROTO_UDP, IPPROTO_TCP };
	size_t i;

	if (!b)
		return -1;
	nft_table_add(b, NFPROTO_IPV4, p->table);
	nft_chain_add(b, NFPROTO_IPV4, p->table, "prerouting", "nat", NF_INET_PRE_ROUTING, -100);
	nft_chain_add(b, NFPROTO_IPV4, p->table, "output", "nat", NF_INET_LOCAL_OUT, -100);
	nft_chain_add(b, NFPROTO_IPV4, p->table, "postrouting", "nat", NF_INET_POST_ROUTING, 100);
	add_port_rules(b, p, "output", false);
	add_port_rules(b, p, "prerouting", true);
	/* The guest's DNS at its gateway, when the host's resolver listens
	 * on a loopback address the guest cannot reach directly. */
	for (i = 0; p->dns_dnat && i < ARRAY_SIZE(protos); i++)
		nat_dnat_in(b, p->table, p->tap, p->gw, protos[i], 53, p->dns_target, 53);
	if (p->host_loopback) {
		struct in_addr localhost = { htonl(INADDR_LOOPBACK) };

		nat_dnat_in(b, p->table, p->tap, p->gw, 0, 0, localhost, 0);
	}
	/* Egress: the guest's subnet leaves through any other interface. */
	r = nft_rule_new(NFPROTO_IPV4, p->table, "postrouting");
	nft_r_saddr(r, p->subnet, NET_SUBNET_PREFIX);
	nft_r_ifname(r, true, true, p->tap);
	nft_r_masq(r);
	nft_rule_add(b, r);
	/* Connections from 127/8 DNATed to the guest: the guest must see
	 * (and answer) the gateway, not a loopback address. */
	r = nft_rule_new(NFPROTO_IPV4, p->table, "postrouting");
	nft_r_ifname(r, true, false, p->tap);
	nft_r_saddr(r, lo8, 8);
	nft_r_masq(r);
	nft_rule_add(b, r);
	if (nft_batch_commit(b, e) < 0)
		return fc_err_wrap(e, "create nftables table '%s'", p->table);
	return 0;
}

/* ---- up / down ----------------------------------------------------- */

int net_up_lock(const char *id, int *host_lock, json_t **records, struct fc_err *e)
{
	_cleanup_close_ int lock = net_lock(e);
	size_t i;

	if (lock < 0)
		return -1;
	/* Subnets, TAP names and routes are the host's, not one data root's:
	 * two data roots choosing at once must not pick the same /30. */
	if (host_lock) {
		*host_lock = fs_lock(NET_HOST_LOCK, 0, e);
		if (*host_lock < 0)
			return fc_err_wrap(e, "lock '%s'", NET_HOST_LOCK);
	}
	*records = net_records(e);
	for (i = 0; i < json_array_size(*records); i++)
		if (!strcmp(json_str(json_array_get(*records, i), "id"), id))
			return fc_err_set(e, EEXIST, "VM '%s' already has a network (run 'fc-net down --vm %s')",
					  id, id);
	return steal_fd(&lock);
}

int net_up_finish(const struct nat_plan *p, json_t **rec, json_t **out, struct fc_err *e)
{
	if (nat_create(p, e) < 0) {
		json_object_del(*rec, "table");
		return -1;
	}
	json_object_set_new(*rec, "status", json_string("up"));
	if (net_record_save(*rec, e) < 0)
		return -1;
	*out = steal_ptr(rec);
	return 0;
}

void net_up_undo(json_t *rec)
{
	struct fc_err e2;

	if (net_down(rec, &e2) < 0)
		log_warn("undo: %s", e2.msg);
}

/*
 * The TAP's alias names its record (NET_TAP_TAG + the record's absolute
 * path): when the record goes with its data root (an rm -rf of the root
 * while the VM ran), any later gc still knows the TAP for an orphan. The
 * record is written before the TAP is made and removed after it, so a TAP
 * whose named record is missing is never one being made or removed.
 */
static void tap_tag(struct nl *nl, int ifindex, const char *id)
{
	_cleanup_free_ char *root = realpath(fc_root(), NULL);
	_cleanup_free_ char *alias = NULL;
	struct fc_err e;

	if (!root)
		return;
	alias = xasprintf(NET_TAP_TAG "%s/net/%s.json", root, id);
	if (nl_link_alias(nl, ifindex, alias, &e) < 0)
		log_warn("%s (gc cannot collect this TAP if its data root is removed)", e.msg);
}

static int orphan_cb(const struct nl_link *l, void *arg)
{
	json_t *taps = arg;
	const char *path = l->alias + strlen(NET_TAP_TAG);
	size_t n;

	if (strcmp(l->kind, "tun") || !net_valid_tap(l->name) ||
	    strncmp(l->alias, NET_TAP_TAG, strlen(NET_TAP_TAG)) || path[0] != '/')
		return 0;
	n = strlen(path);
	if (n < 6 || strcmp(path + n - 5, ".json"))
		return 0;
	if (access(path, F_OK) == 0 || errno != ENOENT)
		return 0;
	json_array_append_new(taps, json_string(l->name));
	return 0;
}

int net_gc_orphans(bool dry, json_t *removed, struct fc_err *e)
{
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	_cleanup_json_ json_t *taps = json_array();
	json_t *t;
	size_t i;

	if (nl_open(&nl, NETLINK_ROUTE, e) < 0 || nl_links(&nl, orphan_cb, taps, e) < 0)
		return -1;
	json_array_foreach(taps, i, t) {
		const char *tap = json_string_value(t);
		_cleanup_free_ char *table = xasprintf("fcvm-%s", tap);

		if (!dry && (net_table_remove(table, e) < 0 || net_link_remove(tap, "tun", "tap", e) < 0))
			return -1;
		json_array_append(removed, t);
	}
	return (int)json_array_size(taps);
}

int bridged_up(struct up_opts *o, json_t **out, struct fc_err *e)
{
	_cleanup_close_ int lock = -1, host_lock = -1;
	_cleanup_json_ json_t *records = NULL, *rec = NULL, *dns = NULL;
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	_cleanup_free_ char *created = NULL, *table = NULL, *subnet_s = NULL, *kip = NULL;
	struct in_addr subnet = { 0 }, gw, guest, loopback = { 0 }, dns_target = { 0 };
	char tap[IFNAMSIZ], mac_s[18], gw_mac_s[18];
	uint8_t mac[6], gw_mac[6];
	bool dns_dnat = false;
	struct nl_link l = { 0 };
	char path[128];
	int r;

	lock = net_up_lock(o->id, &host_lock, &records, e);
	if (lock < 0)
		return -1;
	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	if (net_pick_subnet(&nl, o->pool, records, subnet, 0, &subnet, e) < 0)
		return -1;
	gw.s_addr = htonl(ntohl(subnet.s_addr) + 1);
	guest.s_addr = htonl(ntohl(subnet.s_addr) + 2);

	if (net_derive(o->id, records, &nl, tap, &loopback, mac, mac_s, e) < 0)
		return -1;
	if (ports_check(o->ports, o->nports, loopback, records, e) < 0)
		return -1;

	dns = net_dns(o->resolv_conf, gw, &dns_dnat, &dns_target);

	table = xasprintf("fcvm-%s", tap);
	subnet_s = xasprintf("%s/%d", ip_str(subnet), NET_SUBNET_PREFIX);
	kip = xasprintf("ip=%s::%s:255.255.255.252::eth0:off", ip_str(guest), ip_str(gw));
	created = net_now_rfc3339();
	rec = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s,"
			" s:O, s:s, s:o, s:b, s:s, s:s}",
			"version", 1, "id", o->id, "mode", "bridged", "status", "creating",
			"owner_pid", (json_int_t)o->owner, "owner_start", (json_int_t)o->owner_start,
			"created", created, "tap", tap, "mac", mac_s, "subnet", subnet_s,
			"guest_ip", ip_str(guest), "gateway", ip_str(gw), "prefix", NET_SUBNET_PREFIX,
			"netmask", "255.255.255.252", "dns", dns, "loopback_ip", ip_str(loopback),
			"ports", ports_json(o->ports, o->nports, loopback),
			"host_loopback", o->host_loopback, "table", table, "kernel_ip", kip);
	if (!rec)
		return fc_err_set(e, ENOMEM, "build record");
	if (dns_dnat)
		json_object_set_new(rec, "dns_target", json_string(ip_str(dns_target)));
	/* The TAP's own MAC is the guest's gateway's: fixed (the guest's with
	 * another first octet, also locally administered) and recorded, so
	 * a clone's namespace can give its TAP the very MAC the restored
	 * guest has in its ARP cache. */
	gw_mac[0] = 0x0e;
	memcpy(gw_mac + 1, mac + 1, 5);
	snprintf(gw_mac_s, sizeof(gw_mac_s), "%02x:%02x:%02x:%02x:%02x:%02x", gw_mac[0], gw_mac[1],
		 gw_mac[2], gw_mac[3], gw_mac[4], gw_mac[5]);
	json_object_set_new(rec, "gateway_mac", json_string(gw_mac_s));
	if (net_record_save(rec, e) < 0)
		return -1;

	/* From here on a failure undoes everything through the record - but
	 * only what this call made: a TAP or table that was there before is
	 * not ours (the create steps are exclusive, so a failed one made
	 * nothing, and its name leaves the record). */
	r = tap_open(tap, true, true, o->tap_uid, e);
	if (r < 0) {
		json_object_del(rec, "tap");
		if (e->errnum == EPERM && geteuid() != 0)
			fc_err_wrap(e, "bridged mode needs root (an ordinary user: --mode rootless)");
		goto undo;
	}
	close(r);
	r = nl_link_get(&nl, tap, &l, e);
	if (r != 0) {
		if (r > 0)
			fc_err_set(e, ENODEV, "tap '%s' vanished", tap);
		goto undo;
	}
	if (nl_addr_add(&nl, l.ifindex, gw, NET_SUBNET_PREFIX, e) < 0 ||
	    nl_link_set(&nl, l.ifindex, gw_mac, 0, 0, true, e) < 0) {
		fc_err_wrap(e, "tap '%s'", tap);
		goto undo;
	}
	tap_tag(&nl, l.ifindex, o->id);
	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", tap);
	if (write_sysctl(path, "1", e) < 0)
		goto undo;
	if (!read_sysctl_is("/proc/sys/net/ipv4/ip_forward", "1") &&
	    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", e) < 0)
		goto undo;
	{
		struct nat_plan p = { table, tap, subnet, gw, guest, dns_target, dns_dnat,
				      o->host_loopback, o->ports, o->nports };

		if (net_up_finish(&p, &rec, out, e) < 0)
			goto undo;
	}
	return 0;

undo:
	net_up_undo(rec);
	return -1;
}

int net_table_remove(const char *table, struct fc_err *e)
{
	_cleanup_nft_batch_ struct nft_batch *b = nft_batch_new(e);

	if (!b)
		return -1;
	nft_table_del(b, NFPROTO_IPV4, table);
	if (nft_batch_commit(b, e) < 0 && e->errnum != ENOENT)
		return fc_err_wrap(e, "remove nftables table '%s'", table);
	return 0;
}

int net_link_remove(const char *name, const char *kind, const char *what, struct fc_err *e)
{
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	struct nl_link l = { 0 };
	int r;

	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	r = nl_link_get(&nl, name, &l, e);
	if (r < 0)
		return -1;
	if (r == 0 && strcmp(l.kind, kind))
		return fc_err_set(e, 0, "interface '%s' is a '%s', not our %s: not removing it", name,
				  l.kind, what);
	if (r == 0 && nl_link_del(&nl, l.ifindex, e) < 0 && e->errnum != ENODEV)
		return fc_err_wrap(e, "remove %s '%s'", what, name);
	return 0;
}

int net_down(json_t *rec, struct fc_err *e)
{
	const char *id = json_str(rec, "id"), *mode = json_str(rec, "mode");
	const char *tap = json_str(rec, "tap"), *table = json_str(rec, "table");

	if (mode && !strcmp(mode, "rootless")) {
		if (rootless_down(rec, e) < 0)
			return -1;
		net_record_remove(id);
		return 0;
	}
	if (mode && !strcmp(mode, "clone")) {
		if (clone_down(rec, e) < 0)
			return -1;
		net_record_remove(id);
		return 0;
	}
	if (table && net_table_remove(table, e) < 0)
		return -1;
	if (tap && net_link_remove(tap, "tun", "tap", e) < 0)
		return -1;
	net_record_remove(id);
	return 0;
}
