/* test_net - fc-net's -p parser, and lib/nl + lib/nft against the kernel
 * (the kernel part needs root; without it, it is skipped with a note). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/rtnetlink.h>

#include "../../bin/fc-net/net.h"
#include "nft.h"
#include "nl.h"

static int failures;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			failures++;                                       \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
		}                                                         \
	} while (0)

static void ok_port(const char *spec, size_t count, int proto, const char *ip, unsigned int hp,
		    unsigned int gp)
{
	struct port_map m[NET_MAX_PORTS];
	struct fc_err e = { 0, "" };
	size_t n = 0;
	char buf[32];

	if (port_parse(spec, m, &n, &e) < 0) {
		CHECK(0, "'%s' refused: %s", spec, e.msg);
		return;
	}
	CHECK(n == count, "'%s': %zu maps, want %zu", spec, n, count);
	CHECK(m[0].proto == proto, "'%s': proto", spec);
	inet_ntop(AF_INET, &m[0].host_ip, buf, sizeof(buf));
	CHECK(!strcmp(buf, ip), "'%s': host ip %s, want %s", spec, buf, ip);
	CHECK(m[0].host_ip_given == (strchr(spec, '.') != NULL), "'%s': host ip given", spec);
	CHECK(m[0].host_port == hp, "'%s': host port %u, want %u", spec, m[0].host_port, hp);
	CHECK(m[0].guest_port == gp, "'%s': guest port %u, want %u", spec, m[0].guest_port, gp);
	if (count > 1)
		CHECK(m[count - 1].guest_port == gp + count - 1 &&
		      (!hp || m[count - 1].host_port == hp + count - 1), "'%s': range end", spec);
}

static void bad_port(const char *spec, const char *needle)
{
	struct port_map m[NET_MAX_PORTS];
	struct fc_err e = { 0, "" };
	size_t n = 0;

	CHECK(port_parse(spec, m, &n, &e) < 0, "'%s' accepted", spec);
	CHECK(strstr(e.msg, needle) != NULL, "'%s': message '%s' lacks '%s'", spec, e.msg, needle);
	CHECK(strstr(e.msg, "invalid port") == e.msg, "'%s': message '%s'", spec, e.msg);
}

static void test_ports(void)
{
	struct port_map m[NET_MAX_PORTS];
	struct fc_err e;
	size_t n = 0;

	ok_port("8080", 1, IPPROTO_TCP, "0.0.0.0", 0, 8080);
	ok_port("8080:80", 1, IPPROTO_TCP, "0.0.0.0", 8080, 80);
	ok_port("127.0.0.1:8080:80", 1, IPPROTO_TCP, "127.0.0.1", 8080, 80);
	ok_port("127.0.0.1::80/udp", 1, IPPROTO_UDP, "127.0.0.1", 0, 80);
	ok_port("53:53/udp", 1, IPPROTO_UDP, "0.0.0.0", 53, 53);
	ok_port("8000-8002:9000-9002", 3, IPPROTO_TCP, "0.0.0.0", 8000, 9000);
	ok_port("7000-7009", 10, IPPROTO_TCP, "0.0.0.0", 0, 7000);
	bad_port("", "guest port");
	bad_port("x", "guest port");
	bad_port("0", "guest port");
	bad_port("65536", "guest port");
	bad_port("80:", "guest port");
	bad_port("80/sctp", "protocol 'sctp' is not supported");
	bad_port("[::1]:80:80", "IPv6");
	bad_port("1:2:3:4", "expected");
	bad_port("8000-8002:80", "differ in length");
	bad_port("90-80", "ends before it starts");
	bad_port("a.b.c.d:80:80", "not an IPv4 address");
	bad_port("127.0.0.1:80", "host port");
	bad_port("1-300", "more than 256");
	/* The limit counts across -p options. */
	CHECK(port_parse("1000-1199", m, &n, &e) == 0 && n == 200, "200 ports");
	CHECK(port_parse("2000-2056", m, &n, &e) < 0 && n == 200, "257th port refused, none added");
}

static int count_lo(const struct nl_link *l, void *arg)
{
	if (!strcmp(l->name, "lo"))
		(*(int *)arg)++;
	return 0;
}

struct find_table {
	const char *name;
	int found;
};

static int find_table(const char *name, void *arg)
{
	struct find_table *f = arg;

	if (!strcmp(name, f->name))
		f->found = 1;
	return 0;
}

static void test_kernel(void)
{
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	char buf[MNL_SOCKET_BUFFER_SIZE], table[64];
	struct nl_link l = { 0 };
	struct fc_err e = { 0, "" };
	struct find_table f;
	struct nft_batch *b;
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	struct nlattr *info;
	int n = 0;

	CHECK(nl_open(&nl, NETLINK_ROUTE, &e) == 0, "open: %s", e.msg);
	CHECK(nl_link_get(&nl, "lo", &l, &e) == 0 && l.ifindex == 1 && !strcmp(l.name, "lo"),
	      "get lo: %s", e.msg);
	CHECK(nl_link_get(&nl, "fcnonexist0", &l, &e) == 1, "missing link is 1");
	CHECK(nl_links(&nl, count_lo, &n, &e) == 0 && n == 1, "dump sees lo once");
	CHECK(nl_link_del(&nl, 0x7ffffff0, &e) < 0 && e.errnum == ENODEV, "delete missing: %d %s",
	      e.errnum, e.msg);
	/* An unknown link kind: the kernel's extended ack text comes through. */
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, "fcunit0");
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "fcvm-no-such-kind");
	mnl_attr_nest_end(nlh, info);
	CHECK(nl_talk(&nl, nlh, NULL, NULL, &e) < 0 && e.errnum == EOPNOTSUPP &&
	      strstr(e.msg, "Unknown device type"), "extack: %d '%s'", e.errnum, e.msg);

	/* nftables: one batch adds, one deletes; a missing table is ENOENT. */
	snprintf(table, sizeof(table), "fcvm-unit-%d", (int)getpid());
	b = nft_batch_new(&e);
	CHECK(b != NULL, "batch: %s", e.msg);
	if (!b)
		return;
	nft_table_add(b, NFPROTO_IPV4, table);
	nft_chain_add(b, NFPROTO_IPV4, table, "out", "nat", NF_INET_LOCAL_OUT, -100);
	CHECK(nft_batch_commit(b, &e) == 0, "add table: %s", e.msg);
	nft_batch_free(b);
	f.name = table;
	f.found = 0;
	CHECK(nft_tables(NFPROTO_IPV4, find_table, &f, &e) == 0 && f.found, "table listed");
	/* A batch whose second message fails applies nothing. */
	b = nft_batch_new(&e);
	nft_table_del(b, NFPROTO_IPV4, table);
	nft_table_del(b, NFPROTO_IPV4, "fcvm-unit-no-such-table");
	CHECK(nft_batch_commit(b, &e) < 0 && e.errnum == ENOENT, "failing batch: %d %s", e.errnum,
	      e.msg);
	nft_batch_free(b);
	f.found = 0;
	CHECK(nft_tables(NFPROTO_IPV4, find_table, &f, &e) == 0 && f.found,
	      "the failed batch deleted nothing");
	b = nft_batch_new(&e);
	nft_table_del(b, NFPROTO_IPV4, table);
	CHECK(nft_batch_commit(b, &e) == 0, "delete table: %s", e.msg);
	nft_batch_free(b);
	f.found = 0;
	CHECK(nft_tables(NFPROTO_IPV4, find_table, &f, &e) == 0 && !f.found, "table gone");
}

int main(void)
{
	test_ports();
	if (geteuid() == 0)
		test_kernel();
	else
		fprintf(stderr, "test_net: not root: netlink/nftables checks skipped\n");
	if (failures)
		fprintf(stderr, "test_net: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
