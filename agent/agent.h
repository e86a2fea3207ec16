/* agent.h - what fc-agent's sessions share: the loop, the configuration,
 * the one container, and how the agent is to end.
 *
 * Session types (see conn.h for the connection they ride on):
 *   dispatch.c  the run port's first frame: PLAN -> run session,
 *               STATUS_REQ -> status answer, EXEC, CLONE; anything else
 *               is refused
 *   run.c       the run session: plan, podman load, podman run, output,
 *               stdin and a pty when the plan asks, exit code; the
 *               container outlives its host connection
 *   exec.c      exec sessions (the exec port, AGENT_PORT_EXEC): one command
 *               in the container or the guest OS per connection
 *   clone.c     the clone fix-up (CLONE on the run port): a restored
 *               snapshot's new hostname, RNG seed and clock
 * A new session type (a volume channel) is one
 * more file with its own struct conn_ops, and one more line in main.c's
 * listener table: nothing in the others changes.
 */
#ifndef FC_AGENT_AGENT_H
#define FC_AGENT_AGENT_H

#include <stdbool.h>

#include "conn.h"
#include "ev.h"

enum agent_end {
	AGENT_SERVING,		/* keep going */
	AGENT_POWEROFF,		/* a plan asked to power off and its run is over */
	AGENT_TERMINATE,	/* SIGTERM/SIGINT in test mode, and no run left */
};

struct run;

struct agent {
	struct ev_loop *loop;
	const char *runner;	/* "podman" or a test substitute */
	bool pid1;		/* init of the guest (not test mode) */
	bool terminate;		/* asked to stop (test mode): end after the run */
	enum agent_end end;
	struct run *run;	/* the container: one per agent */
	unsigned sessions;	/* sessions with a host attached (run, exec) */
};

/* The run port's first session: waits (at most 60 s) for the host's first
 * frame and hands the connection on. */
extern const struct conn_ops dispatch_ops;

/* Start serving accepted connection @fd (takes ownership) on the run port. */
void dispatch_accept(struct agent *a, int fd);

#endif
