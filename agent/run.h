/* run.h - the run session: one plan -> podman load (or the image store
 * disk mounted, see plan.h) -> podman run, its output streamed to the host
 * that sent the plan, its exit code.
 *
 * How it works: each step is a child process whose two output pipes are
 * watched by the agent's loop (never read blocking). Load output is
 * captured (podman's verdict is at its end); run output goes out as
 * STDOUT/STDERR frames while the host connection has room, and a pipe is
 * not read while it has none, so a host that stops reading stops only its
 * own container. When the child has exited and its pipes are at EOF (or an
 * orphan kept them open DRAIN_MS after the last byte), the next step
 * starts, or EXIT goes out and the connection finishes (linger).
 *
 * The container is the agent's, not the connection's: if the host goes
 * away the container keeps running to its end with its output discarded
 * (how a detached run keeps going), and the plan's poweroff is honoured
 * when it is over. One run at a time: a plan while one is active is
 * answered "busy".
 */
#ifndef FC_AGENT_RUN_H
#define FC_AGENT_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "agent.h"
#include "conn.h"

struct run *run_new(struct agent *a);
void run_free(struct run *r);

/* A PLAN frame was the first frame on @c: take @c over and start the run,
 * or answer ERROR ("busy: a container is already running", "invalid plan:
 * ...") and finish @c. */
void run_plan(struct run *r, struct conn *c, const uint8_t *payload, size_t len);

/* A PREPARE frame was the first frame on @c: the plan's image made ready
 * as its run would use it (the image store mounted, podman's storage
 * opened once: its files then in the page cache), nothing run, and the
 * agent idle again - what a startup snapshot is taken after, so that a
 * restore starts at the plan. Answers PREPARED, or ERROR (busy, an
 * invalid plan, a plan without an image store, a failed mount, podman
 * not finding the image), and finishes @c. */
void run_prepare(struct run *r, struct conn *c, const uint8_t *payload, size_t len);

/* Is a run in progress (plan accepted, not yet over: its EXIT or ERROR
 * not yet delivered, or its container still running without a host)? */
bool run_active(const struct run *r);

/* SIGTERM (test mode): stop what runs now; the agent ends when it is over.
 * Returns false when nothing was running. */
bool run_stop(struct run *r);

/* The status answer: {"version":1,"state":"idle"|"starting"|"running"|
 * "exited","container":NAME|null,"exit_code":N (exited only),
 * "sessions":N}; new reference. */
json_t *run_status(const struct run *r);

/* For exec sessions: the run's state name ("idle", "starting", "running",
 * "exited") and its container's name (NULL when idle). */
const char *run_state_name(const struct run *r);
const char *run_container_name(const struct run *r);

/* The current container's image store (PLAN_STORE_DIR) when its plan runs
 * from one, else NULL. */
const char *run_image_store(const struct run *r);

/* Has an exec already seen the current container running (so the next
 * one need not ask podman to wait for it)? Reset by every plan. */
bool run_container_seen(const struct run *r);
void run_container_set_seen(struct run *r);

#endif
