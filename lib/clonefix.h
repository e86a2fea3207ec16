/* clonefix.h - the clone fix-up message: what a restored guest must change
 * to stop being a copy of its snapshot's source (MSG_CLONE, answered by
 * MSG_CLONE_DONE or MSG_ERROR).
 *
 * Every clone of one snapshot wakes up with the source's hostname, the
 * source's kernel RNG state (so /dev/urandom and getrandom would give every
 * clone the same bytes) and the clock of the moment the snapshot was taken.
 * The host sends, once the restored agent answers:
 *
 *   {"version":1, "id":"vm-...", "hostname":"NAME",
 *    "seed":"<64-128 hex digits>", "realtime":{"sec":S,"nsec":N}}
 *
 * id: the clone's VM id; hostname: the clone's name (fc_valid_name());
 * seed: 32-64 bytes from the host's getrandom(), credited to the guest's
 * RNG; realtime: the host's CLOCK_REALTIME when the frame was made. No other
 * field is accepted; the payload is at most CLONEFIX_MAX bytes.
 *
 * The agent answers {"version":1, "hostname":"NAME", "containers":N,
 * "reseeded":BOOL, "announced":N}: N container UTS namespaces renamed,
 * whether the CRNG was reseeded at once (RNDRESEEDCRNG), and on how many
 * interfaces the address was re-announced. The same parsers serve both
 * sides (the agent trusts the host, but parses it bounded all the same;
 * the host trusts nothing the guest says).
 */
#ifndef FC_CLONEFIX_H
#define FC_CLONEFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define CLONEFIX_VERSION  1
#define CLONEFIX_SEED_MIN 32
#define CLONEFIX_SEED_MAX 64
#define CLONEFIX_MAX	  1024	/* bytes of either message */
#define CLONEFIX_NAME_MAX 63

struct clonefix {
	char id[CLONEFIX_NAME_MAX + 1];
	char hostname[CLONEFIX_NAME_MAX + 1];
	uint8_t seed[CLONEFIX_SEED_MAX];
	size_t seed_len;
	struct timespec realtime;
};

struct clonefix_done {
	char hostname[CLONEFIX_NAME_MAX + 1];
	long long containers;	/* UTS namespaces renamed besides the guest's */
	bool reseeded;
	long long announced;	/* interfaces whose address was re-announced */
};

/* Fill @f for clone @id named @hostname: a fresh seed of CLONEFIX_SEED_MAX
 * bytes from getrandom() and CLOCK_REALTIME now (call it right before the
 * frame is sent). 0, or -1 with @e (an invalid name, getrandom failing). */
int clonefix_make(struct clonefix *f, const char *id, const char *hostname, struct fc_err *e);

/* The MSG_CLONE payload of @f as JSON text (caller frees). */
char *clonefix_encode(const struct clonefix *f);

/* Parse and validate a MSG_CLONE payload of @len bytes into @f. 0, or -1
 * with @e naming the field and what is wrong with it. */
int clonefix_parse(const char *buf, size_t len, struct clonefix *f, struct fc_err *e);

/* The MSG_CLONE_DONE payload of @d as JSON text (caller frees). */
char *clonefix_done_encode(const struct clonefix_done *d);

/* Parse and validate a MSG_CLONE_DONE payload into @d. 0 or -1 with @e. */
int clonefix_done_parse(const char *buf, size_t len, struct clonefix_done *d,
			struct fc_err *e);

#endif
