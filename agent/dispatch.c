/* dispatch.c - the run port's first session: HELLO, then the host's first
 * frame decides what the connection is. See agent.h.
 *
 *   PLAN        -> the run session (run.c); "busy" while a run is active
 *   STATUS_REQ  -> one STATUS frame (the health check), then close
 *   EXEC        -> an exec session (exec.c; the exec port's own first
 *                  frame, accepted here too for the one-socket test mode)
 *   CLONE       -> the clone fix-up (clone.c): CLONE_DONE, then close
 *   PREPARE     -> the plan's image made ready, nothing run (run.c):
 *                  PREPARED, then close
 *   other       -> ERROR "expected a plan or a status request", close
 * A host that says nothing for PLAN_WAIT_MS is told so and closed.
 */
#include <stdio.h>

#include "agent.h"
#include "clone.h"
#include "exec.h"
#include "log.h"
#include "mark.h"
#include "run.h"
#include "util.h"

#define PLAN_WAIT_MS 60000

static void dispatch_frame(struct conn *c, void *sess, const struct proto_hdr *h,
			   const uint8_t *payload)
{
	struct agent *a = sess;

	conn_set_deadline(c, 0);
	switch (h->type) {
	case MSG_PLAN:
		run_plan(a->run, c, payload, h->len);
		return;
	case MSG_EXEC:
		exec_take(a, c, payload, h->len);
		return;
	case MSG_CLONE:
		clone_take(a, c, payload, h->len);
		return;
	case MSG_PREPARE:
		run_prepare(a->run, c, payload, h->len);
		return;
	case MSG_STATUS_REQ:
		if (h->len) {
			conn_send_error(c, "a status request has no payload");
		} else {
			log_debug("status request");
			conn_send_json(c, MSG_STATUS, run_status(a->run));
		}
		conn_finish(c);
		return;
	default: {
		_cleanup_free_ char *m = xasprintf("expected a plan or a status request, got a %s frame",
						   proto_type_name(h->type));

		conn_send_error(c, m);
		conn_finish(c);
	}
	}
}

static void dispatch_timeout(struct conn *c, void *sess)
{
	(void)sess;
	conn_send_error(c, "no plan received within 60 s");
	conn_finish(c);
}

static void dispatch_gone(struct conn *c, void *sess, const char *why)
{
	(void)c;
	(void)sess;
	if (why)
		log_debug("host closed the connection before sending a plan: %s", why);
}

const struct conn_ops dispatch_ops = {
	.name = "run port",
	.frame = dispatch_frame,
	.timeout = dispatch_timeout,
	.gone = dispatch_gone,
};

void dispatch_accept(struct agent *a, int fd)
{
	struct conn *c = conn_new(a->loop, fd, &dispatch_ops, a);

	mark(MARK_CONNECTED);

	conn_set_deadline(c, now_ms() + PLAN_WAIT_MS);
}
