/* nft.c - nftables through libnftnl: see nft.h */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/if.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include "nft.h"
#include "nl.h"
#include "util.h"

/* One page holds every batch fc-net sends (a few hundred rules at most). */
#define NFT_BATCH_MAX (1024 * 1024)
/* Room a single message may take; checked before each append. */
#define NFT_MSG_ROOM 8192

struct nft_batch {
	struct nl nl;
	char *buf;
	size_t len;
	bool overflow;
};

struct nft_batch *nft_batch_new(struct fc_err *e)
{
	struct nft_batch *b = xcalloc(1, sizeof(*b));

	if (nl_open(&b->nl, NETLINK_NETFILTER, e) < 0) {
		free(b);
		return NULL;
	}
	b->buf = xmalloc(NFT_BATCH_MAX);
	nftnl_batch_begin(b->buf, nl_next_seq(&b->nl));
	b->len = ((struct nlmsghdr *)b->buf)->nlmsg_len;
	return b;
}

void nft_batch_free(struct nft_batch *b)
{
	if (!b)
		return;
	nl_close(&b->nl);
	free(b->buf);
	free(b);
}

void cleanup_nft_batchp(struct nft_batch **b)
{
	nft_batch_free(*b);
}

/* Header of the next message, or NULL when the batch is full. */
static struct nlmsghdr *next_hdr(struct nft_batch *b, uint16_t type, int family, uint16_t flags)
{
	if (b->len + NFT_MSG_ROOM > NFT_BATCH_MAX) {
		b->overflow = true;
		return NULL;
	}
	return nftnl_nlmsg_build_hdr(b->buf + b->len, type, (uint16_t)family, flags | NLM_F_ACK,
				     nl_next_seq(&b->nl));
}

static void commit_msg(struct nft_batch *b, struct nlmsghdr *nlh)
{
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

/* Add and delete differ only in the message type and flags. */
static void table_msg(struct nft_batch *b, uint16_t type, uint16_t flags, int family,
		      const char *name)
{
	struct nlmsghdr *nlh = next_hdr(b, type, family, flags);
	struct nftnl_table *t;

	if (!nlh)
		return;
	t = nftnl_table_alloc();
	if (!t)
		abort();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, (uint32_t)family);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	commit_msg(b, nlh);
}

void nft_table_add(struct nft_batch *b, int family, const char *name)
{
	table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, family, name);
}

void nft_table_del(struct nft_batch *b, int family, const char *name)
{
	table_msg(b, NFT_MSG_DELTABLE, 0, family, name);
}

void nft_chain_add(struct nft_batch *b, int family, const char *table, const char *name,
		   const char *type, int hook, int prio)
{
	struct nlmsghdr *nlh = next_hdr(b, NFT_MSG_NEWCHAIN, family, NLM_F_CREATE | NLM_F_EXCL);
	struct nftnl_chain *c;

	if (!nlh)
		return;
	c = nftnl_chain_alloc();
	if (!c)
		abort();
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, (uint32_t)family);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftnl_chain_free(c);
	commit_msg(b, nlh);
}

struct nftnl_rule *nft_rule_new(int family, const char *table, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		abort();
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, (uint32_t)family);
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	return r;
}

void nft_rule_add(struct nft_batch *b, struct nftnl_rule *r)
{
	int family = (int)nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY);
	struct nlmsghdr *nlh = next_hdr(b, NFT_MSG_NEWRULE, family, NLM_F_CREATE | NLM_F_APPEND);

	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		commit_msg(b, nlh);
	}
	nftnl_rule_free(r);
}

static struct nftnl_expr *expr(const char *name)
{
	struct nftnl_expr *x = nftnl_expr_alloc(name);

	if (!x)
		abort();
	return x;
}

static void cmp_eq(struct nftnl_rule *r, int op, const void *data, uint32_t len)
{
	struct nftnl_expr *x = expr("cmp");

	nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_OP, (uint32_t)op);
	nftnl_expr_set(x, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, x);
}

static void meta(struct nftnl_rule *r, int key)
{
	struct nftnl_expr *x = expr("meta");

	nftnl_expr_set_u32(x, NFTNL_EXPR_META_KEY, (uint32_t)key);
	nftnl_expr_set_u32(x, NFTNL_EXPR_META_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, x);
}

static void payload(struct nftnl_rule *r, int base, uint32_t off, uint32_t len)
{
	struct nftnl_expr *x = expr("payload");

	nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_BASE, (uint32_t)base);
	nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, x);
}

void nft_r_ifname(struct nftnl_rule *r, bool out, bool neq, const char *name)
{
	char buf[IFNAMSIZ] = { 0 };

	strncpy(buf, name, sizeof(buf) - 1);
	meta(r, out ? NFT_META_OIFNAME : NFT_META_IIFNAME);
	cmp_eq(r, neq ? NFT_CMP_NEQ : NFT_CMP_EQ, buf, sizeof(buf));
}

static void addr_match(struct nftnl_rule *r, uint32_t off, struct in_addr a, int prefix)
{
	uint32_t mask = prefix <= 0 ? 0 : htonl(~0u << (32 - (prefix > 32 ? 32 : prefix)));
	uint32_t v = a.s_addr & mask;

	payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, 4);
	if (prefix < 32) {
		struct nftnl_expr *x = expr("bitwise");
		uint32_t zero = 0;

		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_LEN, 4);
		nftnl_expr_set(x, NFTNL_EXPR_BITWISE_MASK, &mask, 4);
		nftnl_expr_set(x, NFTNL_EXPR_BITWISE_XOR, &zero, 4);
		nftnl_rule_add_expr(r, x);
	}
	cmp_eq(r, NFT_CMP_EQ, &v, 4);
}

void nft_r_saddr(struct nftnl_rule *r, struct in_addr a, int prefix)
{
	addr_match(r, 12, a, prefix);
}

void nft_r_daddr(struct nftnl_rule *r, struct in_addr a, int prefix)
{
	addr_match(r, 16, a, prefix);
}

void nft_r_daddr_local(struct nftnl_rule *r)
{
	struct nftnl_expr *x = expr("fib");
	uint32_t local = RTN_LOCAL;

	nftnl_expr_set_u32(x, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	nftnl_expr_set_u32(x, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(x, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, x);
	cmp_eq(r, NFT_CMP_EQ, &local, 4);
}

void nft_r_dport(struct nftnl_rule *r, int proto, uint16_t port)
{
	uint8_t p = (uint8_t)proto;
	uint16_t n = htons(port);

	meta(r, NFT_META_L4PROTO);
	cmp_eq(r, NFT_CMP_EQ, &p, 1);
	payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);	/* tcp and udp: dport at 2 */
	cmp_eq(r, NFT_CMP_EQ, &n, 2);
}

static void immediate(struct nftnl_rule *r, int reg, const void *data, uint32_t len)
{
	struct nftnl_expr *x = expr("immediate");

	nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, (uint32_t)reg);
	nftnl_expr_set(x, NFTNL_EXPR_IMM_DATA, data, len);
	nftnl_rule_add_expr(r, x);
}

void nft_r_dnat(struct nftnl_rule *r, struct in_addr a, uint16_t port)
{
	struct nftnl_expr *x;
	uint16_t n = htons(port);

	immediate(r, NFT_REG_1, &a.s_addr, 4);
	if (port)
		immediate(r, NFT_REG_2, &n, 2);
	x = expr("nat");
	nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
	nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_FAMILY, NFPROTO_IPV4);
	nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
	if (port)
		nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
	nftnl_rule_add_expr(r, x);
}

void nft_r_masq(struct nftnl_rule *r)
{
	nftnl_rule_add_expr(r, expr("masq"));
}

int nft_batch_commit(struct nft_batch *b, struct fc_err *e)
{
	struct nlmsghdr *end;

	if (b->overflow)
		return fc_err_set(e, E2BIG, "nftables: batch larger than %d bytes", NFT_BATCH_MAX);
	end = nftnl_batch_end(b->buf + b->len, nl_next_seq(&b->nl));
	b->len += NLMSG_ALIGN(end->nlmsg_len);
	if (nl_talk_batch(&b->nl, b->buf, b->len, e) < 0)
		return fc_err_wrap(e, "nftables");
	return 0;
}

struct tables_ctx {
	int (*fn)(const char *name, void *arg);
	void *arg;
	int stop;
};

static int table_cb(const struct nlmsghdr *nlh, void *arg, struct fc_err *e)
{
	struct tables_ctx *c = arg;
	struct nftnl_table *t = nftnl_table_alloc();
	const char *name;

	if (!t)
		abort();
	/* nftnl_table_nlmsg_parse validates every attribute it reads. */
	if (nftnl_table_nlmsg_parse(nlh, t) < 0) {
		nftnl_table_free(t);
		return fc_err_set(e, EBADMSG, "nftables: malformed table message");
	}
	name = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
	if (name && !c->stop)
		c->stop = c->fn(name, c->arg);
	nftnl_table_free(t);
	return 0;
}

int nft_tables(int family, int (*fn)(const char *name, void *arg), void *arg, struct fc_err *e)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct tables_ctx c = { fn, arg, 0 };
	struct nlmsghdr *nlh;
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };

	if (nl_open(&nl, NETLINK_NETFILTER, e) < 0)
		return -1;
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, (uint16_t)family, NLM_F_DUMP, 0);
	if (nl_talk(&nl, nlh, table_cb, &c, e) < 0)
		return fc_err_wrap(e, "list nftables tables");
	return c.stop;
}
