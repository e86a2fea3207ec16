/* conn.c - see conn.h
 *
 * Sending only queues (and asks for POLLOUT); all socket I/O and every
 * error happen in the watch callback. So a session that calls conn_send()
 * never sees its connection vanish under it, and ops->gone is only ever
 * called from the loop or from the session's own conn_abort().
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "text.h"
#include "util.h"

#define FRAMES_PER_ROUND 16	/* then the others get their turn */

struct conn {
	struct conn *next, *prev;	/* every open connection */
	struct ev_loop *loop;
	struct ev_watch w;
	const struct conn_ops *ops;
	void *sess;
	struct proto_rx rx;
	uint8_t *out;
	size_t out_head, out_len, out_cap;	/* queued bytes: out[head .. head+len) */
	bool full;		/* a producer was told there is no room */
	bool hb_on;
	bool finishing;		/* conn_finish() was called */
	bool shut;		/* half-closed after the last byte went out */
	bool closed;
	bool in_paused;		/* conn_pause_input(): the session takes no frames now */
	uint64_t hb_next;
	uint64_t deadline;	/* the session's */
	uint64_t frame_start;	/* a partial frame began then; 0: none */
	uint64_t linger_until;	/* finishing: give up then */
};

static unsigned nconns;
static struct conn *conns;

unsigned conn_count(void)
{
	return nconns;
}

static void conn_release(void *p)
{
	struct conn *c = p;

	free(c->out);
	free(c);
}

static void conn_close(struct conn *c, const char *why)
{
	const struct conn_ops *ops = c->ops;
	void *sess = c->sess;

	if (c->closed)
		return;
	c->closed = true;
	ev_unlink(c->loop, &c->w);
	close(c->w.fd);
	c->w.fd = -1;
	proto_rx_reset(&c->rx);
	nconns--;
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ev_defer(c->loop, conn_release, c);
	if (why)
		log_debug("%s connection closed: %s", ops->name, why);
	if (ops->gone)
		ops->gone(c, sess, why);
}

void conn_abort(struct conn *c, const char *why)
{
	conn_close(c, why ? why : "closed by the agent");
}

static void queue(struct conn *c, const void *buf, size_t len)
{
	if (!len)
		return;
	if (c->out_head + c->out_len + len > c->out_cap) {
		if (c->out_head) {
			memmove(c->out, c->out + c->out_head, c->out_len);
			c->out_head = 0;
		}
		if (c->out_len + len > c->out_cap) {
			c->out_cap = c->out_len + len + 16 * 1024;
			c->out = xrealloc(c->out, c->out_cap);
		}
	}
	memcpy(c->out + c->out_head + c->out_len, buf, len);
	c->out_len += len;
}

/* Recompute what the loop waits for on @c's behalf. */
static void arm(struct conn *c)
{
	uint64_t d = 0;

	if (c->closed)
		return;
	c->w.events = c->shut ? POLLIN : ((c->in_paused ? 0 : POLLIN) | (c->out_len ? POLLOUT : 0));
#define EARLIEST(t) do { if ((t) && (!d || (t) < d)) d = (t); } while (0)
	if (c->hb_on && !c->finishing)
		EARLIEST(c->hb_next);
	if (!c->finishing)
		EARLIEST(c->deadline);
	if (c->frame_start)
		EARLIEST(c->frame_start + CONN_STALL_MS);
	if (c->finishing)
		EARLIEST(c->linger_until);
#undef EARLIEST
	c->w.deadline = d;
}

void conn_send(struct conn *c, uint8_t type, const void *buf, size_t len)
{
	uint8_t hdr[PROTO_HDR_LEN];

	if (c->closed || c->finishing)
		return;
	if (len > PROTO_MAX_PAYLOAD) {
		log_error("%s: %s frame of %zu bytes not sent", c->ops->name,
			  proto_type_name(type), len);
		return;
	}
	proto_encode_hdr(hdr, type, len);
	queue(c, hdr, sizeof(hdr));
	queue(c, buf, len);
	if (c->out_len >= CONN_OUTQ_HIGH)
		c->full = true;
	arm(c);
}

void conn_send_json(struct conn *c, uint8_t type, json_t *j)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (!text)
		abort();	/* jansson only fails to serialise on out of memory */
	conn_send(c, type, text, strlen(text));
}

json_t *conn_json_text(const char *s, bool newlines)
{
	_cleanup_free_ char *clean = text_clean(s, strlen(s), strlen(s), newlines);
	json_t *j = json_string(clean);

	if (!j)
		abort();	/* text_clean's output is valid UTF-8: only out of memory */
	return j;
}

void conn_send_error(struct conn *c, const char *msg)
{
	json_t *text = conn_json_text(msg, true);

	log_warn("error sent to host: %s", json_string_value(text));
	conn_send_json(c, MSG_ERROR, json_pack("{s:o}", "message", text));
}

bool conn_has_room(const struct conn *c)
{
	return !c->closed && !c->finishing && c->out_len < CONN_OUTQ_HIGH;
}

void conn_heartbeat(struct conn *c, bool on)
{
	if (on && !c->hb_on)
		c->hb_next = now_ms() + CONN_HEARTBEAT_MS;
	c->hb_on = on;
	arm(c);
}

void conn_set_deadline(struct conn *c, uint64_t when)
{
	c->deadline = when;
	arm(c);
}

void conn_set_session(struct conn *c, const struct conn_ops *ops, void *sess)
{
	c->ops = ops;
	c->sess = sess;
}

void conn_finish(struct conn *c)
{
	if (c->closed || c->finishing)
		return;
	c->finishing = true;
	c->hb_on = false;
	c->linger_until = now_ms() + CONN_LINGER_MS;
	arm(c);
}

/* Write what the socket takes. 0, or -1 when the connection is closed. */
static int flush(struct conn *c)
{
	while (c->out_len) {
		ssize_t n = send(c->w.fd, c->out + c->out_head, c->out_len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(c, strerror(errno));
			return -1;
		}
		c->out_head += n;
		c->out_len -= n;
		if (c->finishing)	/* progress: a slow host still gets its frames */
			c->linger_until = now_ms() + CONN_LINGER_MS;
	}
	if (!c->out_len)
		c->out_head = 0;
	if (c->finishing && !c->out_len && !c->shut) {
		shutdown(c->w.fd, SHUT_WR);
		c->shut = true;
		c->linger_until = now_ms() + CONN_LINGER_MS;
	}
	return 0;
}

/* Read and dispatch what the host sent. 0, or -1 when the connection is closed. */
static int receive(struct conn *c)
{
	/* (paused: a hang-up is still read, or poll() would report it forever) */
	for (int i = 0; i < FRAMES_PER_ROUND && (!c->in_paused || i == 0); i++) {
		struct fc_err e;
		enum proto_rx_result r = proto_rx_read(c->w.fd, &c->rx, &e);

		switch (r) {
		case PROTO_RX_AGAIN:
			if (proto_rx_partial(&c->rx) && !c->frame_start)
				c->frame_start = now_ms();
			return 0;
		case PROTO_RX_EOF:
			conn_close(c, c->finishing ? NULL : "closed by the host");
			return -1;
		case PROTO_RX_ERROR:
			if (c->finishing && e.errnum != EPROTO) {
				conn_close(c, NULL);
				return -1;
			}
			log_info("%s connection: %s", c->ops->name, e.msg);
			conn_close(c, e.msg);
			return -1;
		case PROTO_RX_FRAME:
			c->frame_start = 0;
			if (c->finishing)
				continue;	/* discarded */
			c->ops->frame(c, c->sess, &c->rx.h, c->rx.payload);
			if (c->closed)
				return -1;
			break;
		}
	}
	return 0;
}

static void conn_event(struct ev_watch *w, short revents)
{
	struct conn *c = w->data;
	uint64_t now;

	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (c->shut && !(revents & POLLIN)) {
			conn_close(c, NULL);
			return;
		}
		if (receive(c) < 0)
			return;
	}
	if (c->out_len && !c->shut && flush(c) < 0)
		return;
	if (c->full && c->out_len < CONN_OUTQ_HIGH) {
		c->full = false;
		if (c->ops->writable)
			c->ops->writable(c, c->sess);
		if (c->closed)
			return;
	}
	now = now_ms();
	if (c->frame_start && now >= c->frame_start + CONN_STALL_MS) {
		conn_close(c, "the host stopped in the middle of a frame");
		return;
	}
	if (c->finishing) {
		if (now >= c->linger_until) {
			conn_close(c, NULL);
			return;
		}
	} else {
		if (c->hb_on && now >= c->hb_next) {
			if (!c->out_len)
				conn_send(c, MSG_HEARTBEAT, NULL, 0);
			c->hb_next = now + CONN_HEARTBEAT_MS;
		}
		if (c->deadline && now >= c->deadline) {
			c->deadline = 0;
			if (c->ops->timeout)
				c->ops->timeout(c, c->sess);
			if (c->closed)
				return;
		}
	}
	if (c->out_len > CONN_OUTQ_MAX) {
		conn_close(c, "the host does not read what the agent sends");
		return;
	}
	arm(c);
}

void conn_pause_input(struct conn *c, bool pause)
{
	c->in_paused = pause;
	arm(c);
}

void conn_close_all(void)
{
	static const struct conn_ops silent = { .name = "exit" };

	while (conns) {
		conns->ops = &silent;
		conn_close(conns, NULL);
	}
}

struct conn *conn_new(struct ev_loop *l, int fd, const struct conn_ops *ops, void *sess)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	c->loop = l;
	c->ops = ops;
	c->sess = sess;
	ev_watch_init(&c->w, fd, conn_event, c);
	ev_link(l, &c->w);
	nconns++;
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	conn_send_json(c, MSG_HELLO, json_pack("{s:i,s:s}", "version", PROTO_VERSION, "agent",
					       "fc-agent"));
	return c;
}
