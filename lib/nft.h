/* nft.h - nftables through libnftnl: one batch per operation, and the few
 * rule shapes fc-net needs (match interface / address / port, DNAT,
 * masquerade).
 *
 * How it works: nft_batch_new() opens a NETLINK_NETFILTER socket and
 * writes the batch header; each nft_*_add/del appends one message (with
 * NLM_F_ACK) to one buffer; nft_batch_commit() writes the batch trailer
 * and sends the whole buffer in one sendmsg (nl_talk_batch). The kernel
 * applies all of it or none of it, so an error leaves no half-made rule
 * set. Build errors (a rule that does not fit) are remembered and
 * reported by commit, which then sends nothing.
 */
#ifndef FC_NFT_H
#define FC_NFT_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include "err.h"

struct nft_batch;
struct nftnl_rule;

/* A new batch (open socket, header written). NULL with @e. */
struct nft_batch *nft_batch_new(struct fc_err *e);
void nft_batch_free(struct nft_batch *b);
void cleanup_nft_batchp(struct nft_batch **b);
#define _cleanup_nft_batch_ __attribute__((cleanup(cleanup_nft_batchp)))

/* Table @name of @family (NFPROTO_IPV4 ...): add (NLM_F_EXCL: an existing
 * table is an error, EEXIST) or delete (with all its chains and rules). */
void nft_table_add(struct nft_batch *b, int family, const char *name);
void nft_table_del(struct nft_batch *b, int family, const char *name);

/* Base chain @name of @type ("nat", "filter") on @hook (NF_INET_*) at
 * @prio, policy accept. */
void nft_chain_add(struct nft_batch *b, int family, const char *table, const char *name,
		   const char *type, int hook, int prio);

/* A new rule for @table/@chain; fill it with nft_r_* and hand it to
 * nft_rule_add, which takes ownership (also on error). */
struct nftnl_rule *nft_rule_new(int family, const char *table, const char *chain);
void nft_rule_add(struct nft_batch *b, struct nftnl_rule *r);

/* Matches, in the order added (all must hold). */
void nft_r_ifname(struct nftnl_rule *r, bool out, bool neq, const char *name);
void nft_r_saddr(struct nftnl_rule *r, struct in_addr a, int prefix);
void nft_r_daddr(struct nftnl_rule *r, struct in_addr a, int prefix);
void nft_r_daddr_local(struct nftnl_rule *r);	/* fib daddr type local */
void nft_r_dport(struct nftnl_rule *r, int proto, uint16_t port);	/* IPPROTO_TCP/UDP */
/* Verdict-like statements (last). */
void nft_r_dnat(struct nftnl_rule *r, struct in_addr a, uint16_t port);	/* port 0: keep */
void nft_r_masq(struct nftnl_rule *r);

/* Send the batch; 0 or -1 with @e (the first failing message's error and
 * the kernel's extended-ack text). The batch cannot be reused. */
int nft_batch_commit(struct nft_batch *b, struct fc_err *e);

/* Call @fn for every table of @family (return non-zero to stop, which is
 * then returned). -1 with @e. */
int nft_tables(int family, int (*fn)(const char *name, void *arg), void *arg, struct fc_err *e);

#endif
