/* conn.h - one host connection of fc-agent: non-blocking, framed, with a
 * bounded output queue, heartbeats and an orderly finish.
 *
 * A connection carries one session at a time. It starts with the session
 * its listener names (for the run port: the dispatcher that reads the
 * host's first frame and hands the connection to a run or a status
 * session); conn_set_session() hands it on. The session gets every
 * complete frame, is told when the output queue has room again (so a
 * producer that stopped for a slow host can resume), and is told exactly
 * once when the connection is gone, after which it must forget it.
 *
 * Output is never written blocking: frames are queued and written as the
 * socket takes them. Producers of bulk data (container output) must check
 * conn_has_room() first and stop reading their source while it is false:
 * that is the backpressure, per connection, that keeps a stalled host from
 * stalling anything else or growing the agent without bound. Control
 * frames are always queued; a connection whose queue passes CONN_OUTQ_MAX
 * anyway is dropped.
 */
#ifndef FC_AGENT_CONN_H
#define FC_AGENT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ev.h"
#include "proto.h"

#define CONN_OUTQ_HIGH	(256 * 1024)	/* producers pause at this much queued */
#define CONN_OUTQ_MAX	(4 * 1024 * 1024)
#define CONN_HEARTBEAT_MS 2000
#define CONN_LINGER_MS	5000	/* after the last frame: wait for the host to close */
#define CONN_STALL_MS	10000	/* a frame started but not finished */

struct conn;

struct conn_ops {
	const char *name;	/* for logs: "run", "status", ... */
	/* One complete frame; @payload (NUL-terminated, h->len bytes) is
	 * freed after the call. */
	void (*frame)(struct conn *c, void *sess, const struct proto_hdr *h,
		      const uint8_t *payload);
	/* Optional: the output queue dropped below CONN_OUTQ_HIGH. */
	void (*writable)(struct conn *c, void *sess);
	/* Optional: the deadline set with conn_set_deadline() passed. */
	void (*timeout)(struct conn *c, void *sess);
	/* Optional: the connection is gone; @why is NULL after an orderly
	 * finish, else the reason (peer closed, error). Called once; the
	 * session must drop its pointer to @c. */
	void (*gone)(struct conn *c, void *sess, const char *why);
};

/* Make a connection of accepted socket @fd (takes ownership; made
 * non-blocking here) and send the agent's HELLO on it. */
struct conn *conn_new(struct ev_loop *l, int fd, const struct conn_ops *ops, void *sess);

/* Hand @c to another session (heartbeats and deadline are kept). */
void conn_set_session(struct conn *c, const struct conn_ops *ops, void *sess);

/* Queue one frame. Ignored after conn_finish() or once the connection is gone. */
void conn_send(struct conn *c, uint8_t type, const void *buf, size_t len);

/* Queue @j (reference taken) as one frame of JSON text. */
void conn_send_json(struct conn *c, uint8_t type, json_t *j);

/* Queue ERROR {"message": @msg} (through text_clean, newlines kept). */
void conn_send_error(struct conn *c, const char *msg);

/* A JSON string of @s through text_clean() (valid UTF-8, no control
 * characters; '\n' and '\t' kept when @newlines). New reference. */
json_t *conn_json_text(const char *s, bool newlines);

/* May a producer queue another PROTO_DATA_CHUNK of data? */
bool conn_has_room(const struct conn *c);

/* Stop (@pause) or resume reading frames from the host: a consumer of
 * bulk input (a process's stdin) that cannot take more pauses, so the host
 * is held back by the socket instead of the agent buffering without bound.
 * A hang-up is still noticed. */
void conn_pause_input(struct conn *c, bool pause);

/* Send HEARTBEAT every CONN_HEARTBEAT_MS while @on (only when nothing else
 * is waiting to go out: any frame tells the host we are alive). */
void conn_heartbeat(struct conn *c, bool on);

/* Call ops->timeout at now_ms() value @when (0: never). */
void conn_set_deadline(struct conn *c, uint64_t when);

/* No more frames: write what is queued, half-close, wait up to
 * CONN_LINGER_MS for the host to close (so the last frame has left the
 * guest), then close and call ops->gone(NULL). Input is discarded. */
void conn_finish(struct conn *c);

/* Close at once; ops->gone(@why) is called. */
void conn_abort(struct conn *c, const char *why);

/* At exit: close every connection without telling its session (the
memory goes with the loop's deferred releases: ev_free). */
void conn_close_all(void);

/* Connections open now. */
unsigned conn_count(void);

#endif
