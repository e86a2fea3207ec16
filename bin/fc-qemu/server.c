/* server.c - the API socket's connections, bounded against hostile clients.
 *
 * How it works. main.c's poll loop asks server_fill() for the fds to watch
 * and server_timeout() for how long it may sleep, then hands the results
 * to server_events(), which accepts, reads, answers (api_handle, in order,
 * pipelining included) and enforces the limits below. Everything runs on
 * the one thread; api_handle may block (InstanceStart), so every deadline
 * is measured against a clock read after the work, never before.
 *
 * Limits, one per way a client can hurt the server (issue 7, items 7, 8):
 *  - Memory. A connection's input is one fixed buffer of a request's
 *    largest size (head + body limit, checked by http.c). While more than
 *    OUT_MAX bytes of its answers are unsent the connection is neither read
 *    nor are its buffered (pipelined) requests answered, so a client that
 *    sends and never reads costs at most CONN_BUF + OUT_MAX + one answer.
 *  - Time. A connection is always in one phase with a deadline: idle (no
 *    bytes of a request yet: closed after IDLE_MS), receiving a request
 *    (REQUEST_MS from its first byte: answered 408 and closed), sending
 *    (SEND_MS without any progress: closed) and closing (its answer sent,
 *    what still arrives read and dropped for LINGER_MS, so a client still
 *    sending reads the answer instead of EPIPE; then closed).
 *  - Slots. MAX_CONNS connections are served at once. Firecracker's server
 *    (micro_http) has 10, no timeouts and no slot kept for its owner: a
 *    newcomer to a full server gets a 503 and is closed, so ten slow
 *    clients lock the owner out for good. Here a newcomer first makes room:
 *    the connection whose phase began longest ago, if at least EVICT_MS ago
 *    (closing ones at once), is closed for it - an idle one silently (a
 *    keep-alive connection may be closed at any time), an unfinished
 *    request with a 503. Only when every connection was active within
 *    EVICT_MS does the newcomer get the 503 {"fault_message": ...}, on one
 *    of MAX_LINGER linger slots (or written once and closed when those are
 *    full too). So no slow or idle client keeps the owner (fc-boot) out for
 *    more than EVICT_MS, and no refused client goes without an answer.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fcq.h"
#include "log.h"
#include "util.h"

#define CONN_BUF	(HTTP_MAX_HEAD + HTTP_MAX_BODY)
#define DRAIN_MAX	(16 * CONN_BUF)	/* bytes dropped while closing, at most */

static const char full_msg[] = "Too many open connections";

void server_init(struct api_server *s, int lfd)
{
	memset(s, 0, sizeof(*s));
	s->lfd = lfd;
	for (size_t i = 0; i < ARRAY_SIZE(s->conns); i++)
		s->conns[i].fd = -1;
}

static void conn_close(struct api_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static size_t out_pending(const struct api_conn *c)
{
	return c->out_len - c->out_off;
}

static enum conn_phase phase_of(const struct api_conn *c)
{
	if (out_pending(c))
		return PH_SENDING;
	if (c->closing)
		return PH_CLOSING;
	if (c->in_len)
		return PH_REQUEST;
	return PH_IDLE;
}

/* Start the phase's clock when the phase changed (sending: on progress). */
static void conn_update(struct api_conn *c, bool progress)
{
	enum conn_phase p = phase_of(c);

	if (p != c->phase || (p == PH_SENDING && progress)) {
		c->phase = p;
		c->since = now_ms();
	}
}

static uint64_t phase_limit(enum conn_phase p)
{
	switch (p) {
	case PH_IDLE: return FCQ_IDLE_MS;
	case PH_REQUEST: return FCQ_REQUEST_MS;
	case PH_SENDING: return FCQ_SEND_MS;
	case PH_CLOSING: return FCQ_LINGER_MS;
	}
	return FCQ_LINGER_MS;
}

static void conn_queue(struct api_conn *c, const char *buf, size_t len)
{
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	c->out = xrealloc(c->out, c->out_len + len);
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
}

static void conn_respond(struct api_conn *c, int status, const char *json, bool keep_alive)
{
	size_t len;
	_cleanup_free_ char *r = http_format_response(status, json, keep_alive, &len);

	conn_queue(c, r, len);
	if (!keep_alive)
		c->closing = true;
}

/* Answer @status with {"fault_message": @msg} and close after it. */
static void conn_fault(struct api_conn *c, int status, const char *msg)
{
	_cleanup_free_ char *s = api_fault(msg);

	conn_respond(c, status, s, false);
}

/* Send what is queued. Returns -1 when the connection was closed. */
static int conn_flush(struct api_conn *c)
{
	bool progress = false;

	while (out_pending(c)) {
		ssize_t n = send(c->fd, c->out + c->out_off, out_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			conn_close(c);
			return -1;
		}
		c->out_off += n;
		progress = true;
	}
	if (!out_pending(c)) {
		free(c->out);
		c->out = NULL;
		c->out_len = c->out_off = 0;
		/* Half-close and drain instead of closing: a client still
		 * writing (an oversized request) would otherwise get EPIPE
		 * before it reads our answer. */
		if (c->closing)
			shutdown(c->fd, SHUT_WR);
	}
	if (c->closing && !out_pending(c) && c->peer_done) {
		conn_close(c);
		return -1;
	}
	conn_update(c, progress);
	return 0;
}

/* Answer the complete requests in the buffer, in order, while the output
 * queue is within its bound. */
static void conn_process(struct api_server *s, struct api_conn *c)
{
	while (c->in_len && !c->closing && out_pending(c) <= FCQ_OUT_MAX) {
		struct http_request req;
		struct fc_err e = { 0 };
		int status;
		ssize_t n = http_parse_request(c->in, c->in_len, &req, &status, &e);

		if (n < 0) {
			log_debug("malformed request: %s", e.msg);
			conn_fault(c, status, e.msg);
			break;
		}
		if (n == 0) {
			if (req.head_len && req.expect_continue && !c->continued) {
				size_t len;
				_cleanup_free_ char *r = http_format_response(100, NULL, true, &len);

				conn_queue(c, r, len);
				c->continued = true;
			}
			break;
		}
		{
			_cleanup_free_ char *json = NULL;

			status = api_handle(s->q, &req, &json);
			log_debug("%s %s -> %d%s%s", req.method, req.target, status,
				  json && status >= 400 ? " " : "", json && status >= 400 ? json : "");
			conn_respond(c, status, json, req.keep_alive);
		}
		c->continued = false;
		memmove(c->in, c->in + n, c->in_len - n);
		c->in_len -= n;
		/* an answer is queued: the phase is now "sending", and the
		 * next request's clock starts once it is sent */
		conn_update(c, false);
	}
	/* the peer has finished sending: what can never complete is dropped */
	if (c->peer_done && !c->closing && (!c->in_len || out_pending(c) <= FCQ_OUT_MAX)) {
		c->closing = true;
		c->in_len = 0;
	}
}

/* Read what arrived; while closing, read and drop it. Returns -1 when the
 * connection was closed. */
static int conn_read(struct api_server *s, struct api_conn *c)
{
	ssize_t n;

	if (c->closing) {
		char sink[4096];

		n = read(c->fd, sink, sizeof(sink));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0 || (c->drained += n) > DRAIN_MAX) {
			if (n == 0 && out_pending(c)) {
				c->peer_done = true;	/* it may still read our answer */
				return 0;
			}
			conn_close(c);
			return -1;
		}
		return 0;
	}
	n = read(c->fd, c->in + c->in_len, CONN_BUF - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0) {
		conn_close(c);
		return -1;
	}
	if (n == 0)
		c->peer_done = true;
	c->in_len += n;
	conn_update(c, false);
	conn_process(s, c);
	return 0;
}

/* The connection a newcomer may replace, or NULL. */
static struct api_conn *pick_victim(struct api_server *s, uint64_t now)
{
	struct api_conn *v = NULL;

	for (int i = 0; i < FCQ_MAX_CONNS; i++)
		if (s->conns[i].fd < 0)
			return &s->conns[i];
	for (int i = 0; i < FCQ_MAX_CONNS; i++) {
		struct api_conn *c = &s->conns[i];

		if (c->phase == PH_CLOSING)
			return c;
		if (now - c->since < FCQ_EVICT_MS)
			continue;
		if (!v || c->since < v->since)
			v = c;
	}
	return v;
}

/* Close @c for a newcomer: an unfinished request is told why. */
static void evict(struct api_conn *c)
{
	if (c->phase == PH_REQUEST) {
		size_t len;
		_cleanup_free_ char *body = api_fault("Too many open connections: "
						      "the oldest unfinished request was dropped");
		_cleanup_free_ char *r = http_format_response(503, body, false, &len);

		/* best effort, once: the slot is needed now */
		if (send(c->fd, r, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("evicted connection: %s", strerror(errno));
	}
	log_debug("API connections full: closed one %s", c->phase == PH_IDLE ? "idle" :
		  c->phase == PH_REQUEST ? "with an unfinished request" :
		  c->phase == PH_SENDING ? "that does not read" : "that was closing");
	conn_close(c);
}

/* A newcomer for whom there is no room: 503, on a linger slot if free. */
static void refuse(struct api_server *s, int fd)
{
	struct api_conn *c = NULL;

	for (int i = FCQ_MAX_CONNS; i < FCQ_MAX_CONNS + FCQ_MAX_LINGER; i++)
		if (s->conns[i].fd < 0) {
			c = &s->conns[i];
			break;
		}
	if (!s->warned_full) {
		log_warn("API connections full (%d): answering 503", FCQ_MAX_CONNS);
		s->warned_full = true;
	}
	if (!c) {
		size_t len;
		_cleanup_free_ char *body = api_fault(full_msg);
		_cleanup_free_ char *r = http_format_response(503, body, false, &len);

		if (send(fd, r, len, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			shutdown(fd, SHUT_WR);
		close(fd);
		return;
	}
	c->fd = fd;
	conn_fault(c, 503, full_msg);
	conn_flush(c);
}

static void accept_conns(struct api_server *s)
{
	/* a bounded batch: connections already here are served first */
	for (int k = 0; k < FCQ_MAX_CONNS + FCQ_MAX_LINGER; k++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		uint64_t now = now_ms();
		struct api_conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("accept on the API socket: %s", strerror(errno));
			return;
		}
		c = pick_victim(s, now);
		if (!c) {
			refuse(s, fd);
			continue;
		}
		if (c->fd >= 0)
			evict(c);
		else
			s->warned_full = false;
		c->fd = fd;
		c->in = xmalloc(CONN_BUF);
		c->phase = PH_IDLE;
		c->since = now;
	}
}

int server_fill(struct api_server *s, struct pollfd *p)
{
	int n = 0;

	p[n++] = (struct pollfd){ s->lfd, POLLIN, 0 };
	for (size_t i = 0; i < ARRAY_SIZE(s->conns); i++) {
		struct api_conn *c = &s->conns[i];
		short ev = 0;

		/* no POLLIN while its answers back up (or it sent EOF): the
		 * kernel's socket buffer, not our memory, holds what it sends */
		if (!c->peer_done && (c->closing ||
				      (out_pending(c) <= FCQ_OUT_MAX && c->in_len < CONN_BUF)))
			ev |= POLLIN;
		if (out_pending(c))
			ev |= POLLOUT;
		s->polled[i] = c->fd;
		p[n++] = (struct pollfd){ c->fd, ev, 0 };
	}
	return n;
}

int server_timeout(const struct api_server *s)
{
	uint64_t now = now_ms(), next = UINT64_MAX;

	for (size_t i = 0; i < ARRAY_SIZE(s->conns); i++) {
		const struct api_conn *c = &s->conns[i];
		uint64_t d;

		if (c->fd < 0)
			continue;
		d = c->since + phase_limit(c->phase);
		if (d < next)
			next = d;
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

/* Deadlines: a request too slow is answered 408; anything else closed. */
static void expire(struct api_conn *c)
{
	uint64_t now = now_ms();

	if (c->fd < 0 || now - c->since < phase_limit(c->phase))
		return;
	switch (c->phase) {
	case PH_REQUEST: {
		_cleanup_free_ char *msg = xasprintf("request not complete within %d s",
						     FCQ_REQUEST_MS / 1000);

		log_debug("API connection: %s", msg);
		c->in_len = 0;
		conn_fault(c, 408, msg);
		conn_flush(c);
		break;
	}
	case PH_IDLE:
		log_debug("API connection idle for %d s: closed", FCQ_IDLE_MS / 1000);
		conn_close(c);
		break;
	case PH_SENDING:
		log_debug("API client read nothing for %d s: closed", FCQ_SEND_MS / 1000);
		conn_close(c);
		break;
	case PH_CLOSING:
		conn_close(c);
		break;
	}
}

void server_events(struct api_server *s, const struct pollfd *p)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->conns); i++) {
		struct api_conn *c = &s->conns[i];
		short re = p[1 + i].revents;

		if (c->fd < 0 || s->polled[i] != c->fd)
			continue;
		if (re & POLLIN) {
			if (conn_read(s, c) < 0)
				continue;
		} else if (re & (POLLHUP | POLLERR)) {
			conn_close(c);
			continue;
		}
		if (out_pending(c) && (re & (POLLOUT | POLLIN))) {
			bool was_over = out_pending(c) > FCQ_OUT_MAX;

			if (conn_flush(c) < 0)
				continue;
			/* drained below the bound: answer what is buffered */
			if (was_over && out_pending(c) <= FCQ_OUT_MAX) {
				conn_process(s, c);
				if (out_pending(c) && conn_flush(c) < 0)
					continue;
			}
		}
		if (c->peer_done && !out_pending(c)) {
			conn_close(c);
			continue;
		}
		conn_update(c, false);
	}
	for (size_t i = 0; i < ARRAY_SIZE(s->conns); i++)
		expire(&s->conns[i]);
	if (p[0].revents & POLLIN)
		accept_conns(s);
}

int server_count(const struct api_server *s)
{
	int n = 0;

	for (int i = 0; i < FCQ_MAX_CONNS; i++)
		n += s->conns[i].fd >= 0;
	return n;
}

void server_close(struct api_server *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->conns); i++)
		if (s->conns[i].fd >= 0)
			conn_close(&s->conns[i]);
}
