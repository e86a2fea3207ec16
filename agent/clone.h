/* clone.h - the clone fix-up in the guest: a restored snapshot learns that
 * it is a clone (MSG_CLONE, see lib/clonefix.h) and stops being a copy of
 * its source.
 *
 * How it works, in this order, and why:
 *  1. The payload is parsed and validated whole before anything changes.
 *  2. RNG: the host's seed is mixed in and credited (RNDADDENTROPY on
 *     /dev/urandom), then the CRNG is reseeded at once (RNDRESEEDCRNG,
 *     Linux >= 4.17): otherwise every clone would keep drawing the same
 *     stream until the kernel's next scheduled reseed (up to a minute).
 *     First, because it matters most and a later step may fail.
 *  3. Clock: CLOCK_REALTIME := the host's (the guest's stopped with the
 *     snapshot and resumed where it was).
 *  4. Hostname: the guest's, then every other UTS namespace in the guest
 *     (a running container's, found through /proc/<pid>/ns/uts: only
 *     podman makes them here) entered with setns and renamed, and the
 *     agent's own namespace re-entered.
 *  5. Network: each interface that is up with an IPv4 address sends a
 *     gratuitous ARP, so the clone's neighbours (the TAP's side) learn
 *     where the address lives now. This is the hook for the network for
 *     clones: an address kept from the snapshot needs nothing else.
 *  Then CLONE_DONE with what was done, or ERROR naming the step that
 *  failed (the host fails the clone). In test mode (not PID 1, on a host)
 *  nothing is applied: the message is checked and answered as a dry run.
 */
#ifndef FC_AGENT_CLONE_H
#define FC_AGENT_CLONE_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"

/* MSG_CLONE was the first frame on @c: apply it, answer, finish @c. */
void clone_take(struct agent *a, struct conn *c, const uint8_t *payload, size_t len);

#endif
