/* clone.c - clone mode (fc-net up --mode clone, root): the network of a
 * clone of a snapshot, after Firecracker's "network for clones".
 *
 * A clone is restored with its guest's interface already configured: the
 * source's IP, gateway and MAC, behind a TAP of the source's name. Many
 * clones of one snapshot share that identity, so each gets a network
 * namespace of its own that looks to the guest exactly like the source's
 * host did, and NAT at the namespace's edge gives it an address of its own
 * outside:
 *
 *   guest 10.213.0.2 -- TAP fcXXXX (10.213.0.1/30, the source's name and
 *   gateway) [namespace] veth0 10.213.0.6 ==== veth fcYYYY 10.213.0.5 [host]
 *
 * Inside, DNAT maps the clone's address (veth0's) to the guest and
 * masquerade maps the guest to it; on the host, the table of bridged mode
 * (nat_create) publishes ports on the clone's own loopback address
 * 127.x.y.z (DNAT to the clone's address) and masquerades the clone's
 * /30 for egress. DNS and --host-loopback of the source, which the guest
 * reaches at its gateway, are DNATed in the namespace to the host's end of
 * the veth and from there as in bridged mode.
 *
 * How it works, under locks/net.lock (and the host lock, as bridged):
 *   1. the source's network is read (a snapshot's manifest, or fc-net's
 *      result in a file) and validated field by field; the clone's /30
 *      (from the pool, overlapping neither host routes nor the guest's
 *      subnet), host veth name and loopback address (net_derive of the
 *      clone's id) and host ports are chosen - before anything is made;
 *   2. the record is written (status "creating"): from here gc can undo;
 *   3. a holder process is forked: it makes the network namespace and
 *      lives as long as the owner - then, while the clone's state record
 *      is live, as long as its owner. When they are gone it removes the
 *      host's side itself (under the lock, only while the record still
 *      names it) and exits, and with it the namespace and all in it go:
 *      a clone killed with SIGKILL leaves nothing (gc covers a killed
 *      holder). SIGTERM ends it at once (fc-net down / gc then clean up);
 *   4. the veth pair is made on the host with its peer in the namespace;
 *      the host end gets .1/30, route_localnet; ip_forward on;
 *   5. inside (setns there and back): lo, the TAP (persistent, so the VMM
 *      can open it; it dies with the namespace) with the source's gateway,
 *      veth0 with .2/30 and the default route, ip_forward, and one nft
 *      batch for the namespace's NAT;
 *   6. one nft batch on the host (nat_create); status "up".
 * The VMM is started inside the namespace (fc-clone enters the holder's
 * network namespace, lib/netns) and opens the TAP there.
 * Any failure after 2 runs net_down() on the record: nothing half-made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/if.h>
#include <linux/netfilter.h>

#include "json.h"
#include "log.h"
#include "net.h"
#include "nft.h"
#include "nl.h"
#include "paths.h"
#include "proc.h"
#include "snapshot.h"
#include "util.h"

#define NS_VETH "veth0"		/* the clone's end of the veth, inside */
#define NS_TABLE "fcvm-clone"	/* the namespace's own table */

/* What the guest was given on the source's host: what we recreate. */
struct src_net {
	char tap[IFNAMSIZ], mac[18];
	uint8_t gw_mac[6];	/* the source TAP's MAC, when recorded */
	bool have_gw_mac;
	struct in_addr guest, gw, gsub, dns_target;
	int prefix;
	bool host_loopback, dns_dnat;
	json_t *dns;		/* borrowed from the source's JSON, validated */
	const char *source_id;	/* borrowed, may be NULL */
};

static int ip_field(json_t *n, const char *key, struct in_addr *a, struct fc_err *e)
{
	const char *s = json_str(n, key);

	if (!s || inet_pton(AF_INET, s, a) != 1)
		return fc_err_set(e, EINVAL, "'%s' is not an IPv4 address", key);
	return 0;
}

/* The source's network JSON into @s and its published ports appended to
 * @maps (host addresses dropped: the clone publishes on its own). The JSON
 * comes from a snapshot's manifest or a file: trusted no more than that. */
static int source_parse(json_t *n, struct src_net *s, struct port_map *maps, size_t *nmaps,
			struct fc_err *e)
{
	const char *mode = json_str(n, "mode"), *tap = json_str(n, "tap");
	json_t *p, *v;
	long long prefix = 0;
	uint8_t gm[6];
	size_t i;

	if (!json_is_object(n))
		return fc_err_set(e, EINVAL, "the source VM had no network (snapshot a VM run with a bridged network, or clone without one)");
	if (!mode || (strcmp(mode, "bridged") && strcmp(mode, "clone")))
		return fc_err_set(e, ENOTSUP, "the source VM's network is '%s': clones need a bridged one (or a clone's)",
				  mode ? mode : "unknown");
	if (!tap || !net_valid_tap(tap))
		return fc_err_set(e, EINVAL, "'tap' is not a name fc-net makes");
	snprintf(s->tap, sizeof(s->tap), "%s", tap);
	if (net_parse_mac(json_str(n, "mac"), gm) < 0 || strlen(json_str(n, "mac")) != 17)
		return fc_err_set(e, EINVAL, "'mac' is not a MAC address");
	snprintf(s->mac, sizeof(s->mac), "%s", json_str(n, "mac"));
	if (json_object_get(n, "gateway_mac")) {
		const char *g = json_str(n, "gateway_mac");

		if (net_parse_mac(g, s->gw_mac) < 0 || strlen(g) != 17 || (s->gw_mac[0] & 1))
			return fc_err_set(e, EINVAL, "'gateway_mac' is not a unicast MAC address");
		s->have_gw_mac = true;
	} else {
		log_warn("the source's network has no 'gateway_mac' (made by an older fc-net): the clone's guest reaches its gateway only once its ARP entry expires");
	}
	if (ip_field(n, "guest_ip", &s->guest, e) < 0 || ip_field(n, "gateway", &s->gw, e) < 0)
		return -1;
	if (json_int(n, "prefix", 8, NET_SUBNET_PREFIX, &prefix, e) != 0)
		return fc_err_set(e, EINVAL, "'prefix' must be 8 to %d", NET_SUBNET_PREFIX);
	s->prefix = (int)prefix;
	s->gsub.s_addr = htonl(ntohl(s->guest.s_addr) & net_mask(s->prefix));
	if (s->guest.s_addr == s->gw.s_addr ||
	    (ntohl(s->gw.s_addr) & net_mask(s->prefix)) != ntohl(s->gsub.s_addr))
		return fc_err_set(e, EINVAL, "'gateway' is not another address of the guest's subnet");
	s->dns = json_object_get(n, "dns");
	if (s->dns && (!json_is_array(s->dns) || json_array_size(s->dns) > 3))
		return fc_err_set(e, EINVAL, "'dns' must be an array of at most 3 addresses");
	json_array_foreach(s->dns, i, v) {
		struct in_addr a;

		if (!json_is_string(v) || inet_pton(AF_INET, json_string_value(v), &a) != 1)
			return fc_err_set(e, EINVAL, "'dns' must hold IPv4 addresses");
	}
	v = json_object_get(n, "host_loopback");
	if (v && !json_is_boolean(v))
		return fc_err_set(e, EINVAL, "'host_loopback' must be a boolean");
	s->host_loopback = json_is_true(v);
	if (json_object_get(n, "dns_target")) {
		if (ip_field(n, "dns_target", &s->dns_target, e) < 0)
			return -1;
		if ((ntohl(s->dns_target.s_addr) >> 24) != 127)
			return fc_err_set(e, EINVAL, "'dns_target' must be a loopback address");
		s->dns_dnat = true;
	}
	s->source_id = json_str(n, "id");
	if (s->source_id && !fc_valid_name(s->source_id))
		s->source_id = NULL;
	p = json_object_get(n, "ports");
	if (p && !json_is_array(p))
		return fc_err_set(e, EINVAL, "'ports' must be an array");
	json_array_foreach(p, i, v) {
		const char *pr = json_str(v, "proto");
		long long hp = 0, gp = 0;
		int proto;
		size_t j;

		if (!pr || (strcmp(pr, "tcp") && strcmp(pr, "udp")) ||
		    json_int(v, "host_port", 1, 65535, &hp, e) != 0 ||
		    json_int(v, "guest_port", 1, 65535, &gp, e) != 0)
			return fc_err_set(e, EINVAL, "ports[%zu] is not {proto, host_port, guest_port}", i);
		proto = strcmp(pr, "udp") ? IPPROTO_TCP : IPPROTO_UDP;
		/* Re-created on the clone's loopback address with the same host
		 * port, unless a -p of the clone's takes that very address and
		 * port (it wins). */
		for (j = 0; j < *nmaps; j++)
			if (maps[j].proto == proto && maps[j].host_port == hp && !maps[j].host_ip_given)
				break;
		if (j < *nmaps)
			continue;
		if (*nmaps == NET_MAX_PORTS)
			return fc_err_set(e, E2BIG, "more than %d published ports", NET_MAX_PORTS);
		maps[*nmaps] = (struct port_map){ proto, { htonl(INADDR_ANY) }, false, (uint16_t)hp,
						  (uint16_t)gp };
		(*nmaps)++;
	}
	return 0;
}

/* The source's network: a snapshot's manifest's source.network, or a file
 * with fc-net's result (or a whole manifest). New reference, or NULL. */
static json_t *source_load(const struct up_opts *o, struct fc_err *e)
{
	_cleanup_json_ json_t *j = NULL;
	json_t *n;

	if (o->from_snapshot) {
		j = snapshot_open(o->from_snapshot, e);
		if (!j)
			return NULL;
	} else {
		j = json_load_path(o->like, NET_RECORD_MAX, e);
		if (!j)
			return fc_err_wrap(e, "--like '%s'", o->like), NULL;
		if (!json_object_get(j, "source"))
			return steal_ptr(&j);
	}
	n = json_object_get(json_object_get(j, "source"), "network");
	if (!json_is_object(n))
		return fc_err_set(e, EINVAL, "the snapshot's source VM had no network (nothing to clone: run the clone without one)"),
		       NULL;
	return json_incref(n);
}

/* ---- the holder (child process) ------------------------------------ */

/* The owner and the clone are gone: remove the host's side (while the
 * record still names us as its holder), then go - and the namespace
 * with us. A SIGTERM from here on ends us at once: whoever sent it holds
 * the lock and removes the network itself. */
static noreturn void holder_leave(const char *id, int host_ns)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	_cleanup_json_ json_t *rec = NULL;
	uint64_t start = 0;
	long long hp = 0, hs = 0;
	struct fc_err e;
	sigset_t set;
	int lock;

	sigemptyset(&set);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
		signal(sigs[i], SIG_DFL);
		sigaddset(&set, sigs[i]);
	}
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	if (setns(host_ns, CLONE_NEWNET) < 0)
		_exit(1);
	lock = net_lock(&e);
	if (lock < 0)
		_exit(1);
	rec = net_record_load(id, &e);
	if (rec && json_int(rec, "holder_pid", 1, 1LL << 31, &hp, &e) == 0 &&
	    json_int(rec, "holder_start", 1, 1LL << 62, &hs, &e) == 0 && hp == getpid() &&
	    proc_start_time(getpid(), &start, &e) == 0 && (uint64_t)hs == start &&
	    clone_down(rec, &e) == 0)
		net_record_remove(id);
	_exit(0);
}

static noreturn void holder_main(const char *id, int rep, pid_t owner, uint64_t owner_start)
{
	int *keep[] = { &rep };
	int pfd, sfd, host_ns;

	net_holder_start(keep, ARRAY_SIZE(keep), owner, owner_start, &sfd, &pfd);
	/* The host's namespace, to come back to for the clean-up. */
	host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (host_ns < 0 || unshare(CLONE_NEWNET) < 0) {
		net_reply(rep, "error: create a network namespace: %s", strerror(errno));
		_exit(1);
	}
	net_reply(rep, "ok");
	close(rep);
	for (;;) {
		struct pollfd p[2] = { { pfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			_exit(1);
		if (p[1].revents)
			_exit(0);	/* told to stop: the one who told us cleans up */
		if (p[0].revents) {
			/* The owner is gone; a live clone (its state record)
			 * takes over - fc-clone --detach's parent hands it on. */
			close(pfd);
			pfd = net_adopt_vm_owner(id);
			if (pfd < 0)
				holder_leave(id, host_ns);
		}
	}
}

/* ---- the parent (fc-net up) ---------------------------------------- */

struct clone_plan {
	const struct src_net *src;
	struct in_addr subnet, host_ip, clone_ip;
	const char *veth;
};

/* Inside the namespace: lo, the TAP as the source's host had it, veth0,
 * the route out, forwarding and the NAT at the edge. */
static int ns_setup(const struct clone_plan *p, struct fc_err *e)
{
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	_cleanup_nft_batch_ struct nft_batch *b = NULL;
	const struct src_net *s = p->src;
	struct nl_link l = { 0 };
	struct nftnl_rule *r;
	static const int protos[] = { IPPROTO_UDP, IPPROTO_TCP };
	size_t i;
	int fd;

	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	if (nl_link_get(&nl, "lo", &l, e) != 0 || nl_link_set(&nl, l.ifindex, NULL, 0, 0, true, e) < 0)
		return fc_err_wrap(e, "bring up 'lo'");
	fd = tap_open(s->tap, true, true, (uid_t)-1, e);
	if (fd < 0)
		return -1;
	close(fd);
	/* The restored guest's ARP cache holds the source TAP's MAC for its
	 * gateway: ours must be that one, or its frames are not for us. */
	if (nl_link_get(&nl, s->tap, &l, e) != 0 ||
	    nl_addr_add(&nl, l.ifindex, s->gw, s->prefix, e) < 0 ||
	    nl_link_set(&nl, l.ifindex, s->have_gw_mac ? s->gw_mac : NULL, 0, 0, true, e) < 0)
		return fc_err_wrap(e, "tap '%s'", s->tap);
	if (nl_link_get(&nl, NS_VETH, &l, e) != 0 ||
	    nl_addr_add(&nl, l.ifindex, p->clone_ip, NET_SUBNET_PREFIX, e) < 0 ||
	    nl_link_set(&nl, l.ifindex, NULL, 0, 0, true, e) < 0 ||
	    nl_route_default(&nl, p->host_ip, e) < 0)
		return fc_err_wrap(e, "'%s'", NS_VETH);
	if (write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", e) < 0)
		return -1;

	b = nft_batch_new(e);
	if (!b)
		return -1;
	nft_table_add(b, NFPROTO_IPV4, NS_TABLE);
	nft_chain_add(b, NFPROTO_IPV4, NS_TABLE, "prerouting", "nat", NF_INET_PRE_ROUTING, -100);
	nft_chain_add(b, NFPROTO_IPV4, NS_TABLE, "postrouting", "nat", NF_INET_POST_ROUTING, 100);
	/* The clone's address is the guest's, seen from outside. */
	r = nft_rule_new(NFPROTO_IPV4, NS_TABLE, "prerouting");
	nft_r_ifname(r, false, false, NS_VETH);
	nft_r_daddr(r, p->clone_ip, 32);
	nft_r_dnat(r, s->guest, 0);
	nft_rule_add(b, r);
	/* What the guest reaches at its gateway on the host (DNS, host
	 * loopback) is at the host's end of the veth now. */
	for (i = 0; s->dns_dnat && !s->host_loopback && i < ARRAY_SIZE(protos); i++)
		nat_dnat_in(b, NS_TABLE, s->tap, s->gw, protos[i], 53, p->host_ip, 0);
	if (s->host_loopback)
		nat_dnat_in(b, NS_TABLE, s->tap, s->gw, 0, 0, p->host_ip, 0);
	/* And the guest leaves as the clone's address. */
	r = nft_rule_new(NFPROTO_IPV4, NS_TABLE, "postrouting");
	nft_r_saddr(r, s->gsub, s->prefix);
	nft_r_ifname(r, true, false, NS_VETH);
	nft_r_masq(r);
	nft_rule_add(b, r);
	if (nft_batch_commit(b, e) < 0)
		return fc_err_wrap(e, "create nftables table '%s' in the namespace", NS_TABLE);
	return 0;
}

/* ns_setup() in the holder's namespace @ns, then back to @home. */
static int in_namespace(int ns, int home, const struct clone_plan *p, struct fc_err *e)
{
	int r;

	if (setns(ns, CLONE_NEWNET) < 0)
		return fc_err_set(e, errno, "enter the clone's network namespace");
	r = ns_setup(p, e);
	/* Everything after this (the undo too) acts on the host's objects:
	 * going on in the wrong namespace would do harm. */
	if (setns(home, CLONE_NEWNET) < 0)
		diex("return to the host's network namespace");
	return r < 0 ? fc_err_wrap(e, "in the clone's namespace") : 0;
}

int clone_up(struct up_opts *o, json_t **out, struct fc_err *e)
{
	_cleanup_close_ int lock = -1, host_lock = -1, home = -1, ns = -1;
	_cleanup_json_ json_t *srcj = NULL, *records = NULL, *rec = NULL;
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	_cleanup_free_ char *created = NULL, *table = NULL, *subnet_s = NULL, *gsub_s = NULL;
	_cleanup_free_ char *nsnet = NULL;
	struct src_net s = { 0 };
	struct clone_plan plan = { &s, { 0 }, { 0 }, { 0 }, NULL };
	struct in_addr loopback = { 0 }, netmask;
	struct nl_link l = { 0 };
	char veth[IFNAMSIZ], mac_s[18], path[128];
	uint8_t mac[6];
	int rep[2] = { -1, -1 };
	pid_t holder = -1;
	uint64_t holder_start = 0;
	size_t i;
	int r = -1;

	/* Namespaces, veths and host tables: root's, as in bridged mode. */
	if (geteuid() != 0)
		return fc_err_set(e, EPERM, "clone mode needs root (its namespace, veth and NAT are the host's)");
	srcj = source_load(o, e);
	if (!srcj || source_parse(srcj, &s, o->ports, &o->nports, e) < 0)
		return fc_err_wrap(e, "the source's network (%s '%s')",
				   o->from_snapshot ? "snapshot" : "file",
				   o->from_snapshot ? o->from_snapshot : o->like);
	lock = net_up_lock(o->id, &host_lock, &records, e);
	if (lock < 0)
		return -1;
	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	/* Not the guest's subnet either: inside, both are routes of one
	 * namespace. */
	if (net_pick_subnet(&nl, o->pool, records, s.gsub, s.prefix, &plan.subnet, e) < 0)
		return -1;
	plan.host_ip.s_addr = htonl(ntohl(plan.subnet.s_addr) + 1);
	plan.clone_ip.s_addr = htonl(ntohl(plan.subnet.s_addr) + 2);
	if (net_derive(o->id, records, &nl, veth, &loopback, mac, mac_s, e) < 0)
		return -1;
	plan.veth = veth;
	if (ports_check(o->ports, o->nports, loopback, records, e) < 0)
		return -1;

	table = xasprintf("fcvm-%s", veth);
	subnet_s = xasprintf("%s/%d", ip_str(plan.subnet), NET_SUBNET_PREFIX);
	gsub_s = xasprintf("%s/%d", ip_str(s.gsub), s.prefix);
	netmask.s_addr = htonl(net_mask(s.prefix));
	created = net_now_rfc3339();
	/* ip_str() has 4 rotating buffers: one copy per address. */
	char a_guest[INET_ADDRSTRLEN], a_gw[INET_ADDRSTRLEN], a_mask[INET_ADDRSTRLEN];
	char a_host[INET_ADDRSTRLEN], a_clone[INET_ADDRSTRLEN], a_lo[INET_ADDRSTRLEN];
	json_t *ports = ports_json(o->ports, o->nports, loopback);

	snprintf(a_guest, sizeof(a_guest), "%s", ip_str(s.guest));
	snprintf(a_gw, sizeof(a_gw), "%s", ip_str(s.gw));
	snprintf(a_mask, sizeof(a_mask), "%s", ip_str(netmask));
	snprintf(a_host, sizeof(a_host), "%s", ip_str(plan.host_ip));
	snprintf(a_clone, sizeof(a_clone), "%s", ip_str(plan.clone_ip));
	snprintf(a_lo, sizeof(a_lo), "%s", ip_str(loopback));
	rec = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s,"
			" s:s, s:s, s:s, s:s, s:s, s:o, s:b, s:s}",
			"version", 1, "id", o->id, "mode", "clone", "status", "creating",
			"owner_pid", (json_int_t)o->owner, "owner_start", (json_int_t)o->owner_start,
			"created", created, "tap", s.tap, "mac", s.mac, "guest_ip", a_guest,
			"gateway", a_gw, "prefix", s.prefix, "netmask", a_mask,
			"guest_subnet", gsub_s, "veth", veth, "subnet", subnet_s,
			"host_veth_ip", a_host, "clone_ip", a_clone, "loopback_ip", a_lo, "ports", ports,
			"host_loopback", s.host_loopback, "table", table);
	if (!rec)
		return fc_err_set(e, ENOMEM, "build record");
	json_object_set_new(rec, "dns", s.dns ? json_deep_copy(s.dns) : json_array());
	if (s.dns_dnat)
		json_object_set_new(rec, "dns_target", json_string(ip_str(s.dns_target)));
	if (s.source_id)
		json_object_set_new(rec, "source", json_string(s.source_id));
	if (s.have_gw_mac)
		json_object_set_new(rec, "gateway_mac", json_string(json_str(srcj, "gateway_mac")));
	if (o->from_snapshot)
		json_object_set_new(rec, "snapshot", json_string(o->from_snapshot));
	if (net_record_save(rec, e) < 0)
		return -1;

	/* From here on a failure undoes everything through the record. */
	holder = net_holder_fork(rep, e);
	if (holder < 0)
		goto out;
	if (holder == 0)
		holder_main(o->id, rep[1], o->owner, o->owner_start);
	if (proc_start_time(holder, &holder_start, e) < 0)
		goto out;
	nsnet = xasprintf("/proc/%d/ns/net", (int)holder);
	json_object_set_new(rec, "holder_pid", json_integer(holder));
	json_object_set_new(rec, "holder_start", json_integer((json_int_t)holder_start));
	json_object_set_new(rec, "netns", json_pack("{s:s, s:i, s:I}", "net", nsnet, "pid", (int)holder,
						    "pid_start", (json_int_t)holder_start));
	if (net_record_save(rec, e) < 0 || net_expect_ok(rep[0], "the namespace holder", e) < 0)
		goto out;
	home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ns = open(nsnet, O_RDONLY | O_CLOEXEC);
	/* Checked after opening: the fd cannot be a reused pid's. */
	if (home < 0 || ns < 0 || !proc_alive(holder, holder_start)) {
		fc_err_set(e, ESRCH, "the namespace holder (pid %d) is gone", (int)holder);
		goto out;
	}

	if (nl_veth_add(&nl, veth, NS_VETH, ns, e) < 0) {
		/* It made nothing: a veth of that name is not ours. */
		json_object_del(rec, "veth");
		goto out;
	}
	r = nl_link_get(&nl, veth, &l, e);
	if (r != 0) {
		if (r > 0)
			fc_err_set(e, ENODEV, "veth '%s' vanished", veth);
		r = -1;
		goto out;
	}
	r = -1;
	if (nl_addr_add(&nl, l.ifindex, plan.host_ip, NET_SUBNET_PREFIX, e) < 0 ||
	    nl_link_set(&nl, l.ifindex, NULL, 0, 0, true, e) < 0) {
		fc_err_wrap(e, "veth '%s'", veth);
		goto out;
	}
	/* DNAT from 127/8 towards the clone, and from the clone to the host's
	 * loopback (DNS, --host-loopback), both cross this interface. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", veth);
	if (write_sysctl(path, "1", e) < 0 ||
	    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", e) < 0)
		goto out;
	if (in_namespace(ns, home, &plan, e) < 0)
		goto out;
	{
		struct nat_plan p = { table, veth, plan.subnet, plan.host_ip, plan.clone_ip,
				      s.dns_target, s.dns_dnat, s.host_loopback, o->ports, o->nports };

		if (net_up_finish(&p, &rec, out, e) < 0)
			goto out;
	}
	r = 0;
out:
	for (i = 0; i < 2; i++)
		if (rep[i] >= 0)
			close(rep[i]);
	if (r < 0)
		net_up_undo(rec);
	/* The holder is detached (setsid); reap it if it already ended. */
	if (holder > 0)
		waitpid(holder, NULL, WNOHANG);
	return r;
}

int clone_down(json_t *rec, struct fc_err *e)
{
	const char *veth = json_str(rec, "veth"), *table = json_str(rec, "table");
	long long hp = 0, hs = 0;
	struct fc_err ign;

	/* The holder first: its namespace (TAP, veth0, NAT) goes with it
	 * once the clone's VMM is gone too. */
	json_int(rec, "holder_pid", 1, 1LL << 31, &hp, &ign);
	json_int(rec, "holder_start", 0, 1LL << 62, &hs, &ign);
	if (hp != getpid())
		net_stop_process((pid_t)hp, (uint64_t)hs, "fc-net", 3000);
	if (table && net_table_remove(table, e) < 0)
		return -1;
	/* Both ends of the veth go. */
	if (veth && net_link_remove(veth, "veth", "veth", e) < 0)
		return -1;
	return 0;
}
