/* test_agent_loop - fc-agent's event loop (agent/ev.c) and connections
 * (agent/conn.c): watches unlinked during a round, deadlines, deferred
 * release, children; a connection's frames in and out, backpressure (no
 * room, then writable), finish with linger, protocol errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "ev.h"
#include "proto.h"
#include "util.h"

#include "check.h"

static int calls_a, calls_b, calls_t, deferred;
static struct ev_loop *L;
static struct ev_watch wa, wb, wt;

static void cb_a(struct ev_watch *w, short rev)
{
	char c;

	(void)rev;
	calls_a++;
	if (read(w->fd, &c, 1) < 0)
		perror("read");
	ev_unlink(L, &wb);	/* b is ready too, but must not be called now */
}

static void cb_b(struct ev_watch *w, short rev)
{
	char c;

	(void)rev;
	calls_b++;
	if (read(w->fd, &c, 1) < 0)
		perror("read");
}

static void cb_t(struct ev_watch *w, short rev)
{
	calls_t += rev == 0;
	w->deadline = 0;
}

static void on_defer(void *p)
{
	deferred = *(int *)p;
}

static int child_status = -1;
static void on_child(struct ev_child *c, int status)
{
	(void)c;
	child_status = status;
}

static void test_ev(void)
{
	int pa[2], pb[2], v = 7;
	uint64_t t0;
	struct ev_child ch;
	pid_t pid;

	L = ev_new();
	if (pipe2(pa, O_CLOEXEC) < 0 || pipe2(pb, O_CLOEXEC) < 0)
		abort();
	ev_watch_init(&wa, pa[0], cb_a, NULL);
	ev_watch_init(&wb, pb[0], cb_b, NULL);
	wa.events = wb.events = POLLIN;
	/* Linked b first: the loop calls the most recently linked first (a). */
	ev_link(L, &wb);
	ev_link(L, &wa);
	if (write(pa[1], "x", 1) != 1 || write(pb[1], "y", 1) != 1)
		abort();
	ev_defer(L, on_defer, &v);
	CHECK(ev_run_once(L) == 0 && calls_a == 1 && calls_b == 0,
	      "ev: a watch unlinked by an earlier callback is not called in that round");
	CHECK(deferred == 7, "ev: deferred work runs after the round");
	ev_link(L, &wb);
	ev_unlink(L, &wa);
	ev_run_once(L);
	CHECK(calls_b == 1 && calls_a == 1, "ev: linked again, it is called in the next round");
	ev_unlink(L, &wb);

	ev_watch_init(&wt, -1, cb_t, NULL);
	t0 = now_ms();
	wt.deadline = t0 + 150;
	ev_link(L, &wt);
	while (!calls_t && now_ms() < t0 + 5000)
		ev_run_once(L);
	CHECK(calls_t == 1 && now_ms() >= t0 + 150,
	      "ev: a timer-only watch runs at its deadline, with revents 0");
	ev_unlink(L, &wt);

	pid = fork();
	if (pid == 0)
		_exit(3);
	ch = (struct ev_child){ .pid = pid, .cb = on_child };
	ev_child_add(L, &ch);
	for (int i = 0; i < 500 && child_status < 0; i++) {
		usleep(10000);
		ev_reap(L);
	}
	CHECK(child_status >= 0 && WIFEXITED(child_status) && WEXITSTATUS(child_status) == 3,
	      "ev: a registered child's status reaches its callback");
	for (int i = 0; i < 2; i++) {
		close(pa[i]);
		close(pb[i]);
	}
	ev_free(L);
}

/* ---- connections ---- */

struct sess {
	int frames, writable, gone;
	uint8_t last_type;
	char last[64];
	char why[256];
};

static void s_frame(struct conn *c, void *p, const struct proto_hdr *h, const uint8_t *payload)
{
	struct sess *s = p;

	(void)c;
	s->frames++;
	s->last_type = h->type;
	snprintf(s->last, sizeof(s->last), "%s", (const char *)payload);
}

static void s_writable(struct conn *c, void *p)
{
	(void)c;
	((struct sess *)p)->writable++;
}

static void s_gone(struct conn *c, void *p, const char *why)
{
	struct sess *s = p;

	(void)c;
	s->gone++;
	snprintf(s->why, sizeof(s->why), "%s", why ? why : "(orderly)");
}

static const struct conn_ops s_ops = {
	.name = "test", .frame = s_frame, .writable = s_writable, .gone = s_gone,
};

/* A 10 ms tick keeps every round of the tests bounded. */
static void tick(struct ev_watch *w, short rev)
{
	(void)rev;
	w->deadline = now_ms() + 10;
}

static void spin(struct ev_loop *l, int rounds)
{
	for (int i = 0; i < rounds; i++)
		ev_run_once(l);
}

/* Read frames from the peer end @fd (non-blocking), running the loop
 * meanwhile, until one of @type arrives: 1; EOF: 0; error or 5 s: -1. */
static int peer_read_until(struct ev_loop *l, int fd, uint8_t type, char *payload, size_t max)
{
	static struct proto_rx rx;
	uint64_t deadline = now_ms() + 5000;
	struct fc_err e;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (now_ms() < deadline) {
		switch (proto_rx_read(fd, &rx, &e)) {
		case PROTO_RX_FRAME:
			if (rx.h.type != type)
				break;
			if (payload)
				snprintf(payload, max, "%s", (char *)rx.payload);
			return 1;
		case PROTO_RX_EOF:
			proto_rx_reset(&rx);
			return 0;
		case PROTO_RX_ERROR:
			proto_rx_reset(&rx);
			return -1;
		case PROTO_RX_AGAIN:
			ev_run_once(l);
			break;
		}
	}
	return -1;
}

static void test_conn(void)
{
	struct ev_loop *l = ev_new();
	struct sess s = { 0 };
	struct fc_err e;
	struct conn *c;
	char buf[PROTO_DATA_CHUNK], hello[128] = "";
	int sv[2], sent = 0, r;

	memset(buf, 'z', sizeof(buf));
	ev_watch_init(&wt, -1, tick, NULL);
	wt.deadline = now_ms() + 10;
	ev_link(l, &wt);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	c = conn_new(l, sv[0], &s_ops, &s);
	CHECK(conn_count() == 1, "conn: counted");
	spin(l, 3);
	r = peer_read_until(l, sv[1], MSG_HELLO, hello, sizeof(hello));
	CHECK(r == 1 && strstr(hello, "\"agent\":\"fc-agent\""), "conn: HELLO goes out first");
	proto_send_str(sv[1], MSG_SIGNAL, "{\"signal\":2}", &e);
	for (int i = 0; i < 100 && !s.frames; i++)
		spin(l, 1);
	CHECK(s.frames == 1 && s.last_type == MSG_SIGNAL && !strcmp(s.last, "{\"signal\":2}"),
	      "conn: a frame from the host reaches the session");

	/* Input paused: frames wait in the socket, none reaches the session
	 * (a hang-up would still be seen); resumed: they all arrive, in order. */
	conn_pause_input(c, true);
	proto_send_str(sv[1], MSG_STDIN, "one", &e);
	proto_send_str(sv[1], MSG_STDIN, "two", &e);
	spin(l, 20);
	CHECK(s.frames == 1, "conn: paused input: no frame reaches the session");
	conn_pause_input(c, false);
	for (int i = 0; i < 100 && s.frames < 3; i++)
		spin(l, 1);
	CHECK(s.frames == 3 && s.last_type == MSG_STDIN && !strcmp(s.last, "two"),
	      "conn: resumed: the held frames arrive, in order");

	/* Backpressure: queue data until there is no room; the peer reads
	 * nothing yet. */
	while (conn_has_room(c) && sent < 1000) {
		conn_send(c, MSG_STDOUT, buf, sizeof(buf));
		sent++;
		spin(l, 1);
	}
	CHECK(!conn_has_room(c) && sent < 1000 && !s.writable,
	      "conn: a host that does not read leaves no room after a bounded amount");
	/* The peer reads everything: the session is told. */
	for (int i = 0; i < sent; i++)
		if (peer_read_until(l, sv[1], MSG_STDOUT, NULL, 0) != 1)
			break;
	for (int i = 0; i < 100 && !s.writable; i++)
		spin(l, 1);
	CHECK(s.writable == 1 && conn_has_room(c), "conn: room again once the host read: writable");

	/* Finish: the last frame, a half-close, then gone once the peer closes. */
	conn_send_error(c, "bye\x1b[31m\xc2\x9b");
	conn_finish(c);
	conn_send(c, MSG_STDOUT, "late", 4);
	spin(l, 3);
	r = peer_read_until(l, sv[1], MSG_ERROR, hello, sizeof(hello));
	CHECK(r == 1 && !strcmp(hello, "{\"message\":\"bye?[31m?\"}"),
	      "conn: the error frame, sanitised");
	r = peer_read_until(l, sv[1], MSG_STDOUT, NULL, 0);
	CHECK(r == 0, "conn: nothing after finish, then the agent's half-close (EOF)");
	CHECK(!s.gone, "conn: lingering until the host closes");
	close(sv[1]);
	for (int i = 0; i < 100 && !s.gone; i++)
		spin(l, 1);
	CHECK(s.gone == 1 && !strcmp(s.why, "(orderly)") && conn_count() == 0,
	      "conn: the host closed: gone, orderly");

	/* Garbage from the host ends the connection with the reason. */
	memset(&s, 0, sizeof(s));
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	conn_new(l, sv[0], &s_ops, &s);
	if (write(sv[1], "XXXXXXXXXXXX", 12) != 12)
		abort();
	for (int i = 0; i < 100 && !s.gone; i++)
		spin(l, 1);
	CHECK(s.gone == 1 && strstr(s.why, "magic"), "conn: a bad frame: gone, with the reason");
	close(sv[1]);

	/* A frame started and never finished. */
	memset(&s, 0, sizeof(s));
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	conn_new(l, sv[0], &s_ops, &s);
	{
		uint8_t hdr[PROTO_HDR_LEN];
		uint64_t t0 = now_ms();

		proto_encode_hdr(hdr, MSG_STDIN, 100);
		if (write(sv[1], hdr, sizeof(hdr)) != sizeof(hdr))
			abort();
		while (!s.gone && now_ms() < t0 + CONN_STALL_MS + 5000)
			ev_run_once(l);
		CHECK(s.gone == 1 && strstr(s.why, "middle of a frame") &&
			      now_ms() >= t0 + CONN_STALL_MS,
		      "conn: a host stalled inside a frame is dropped after CONN_STALL_MS");
	}
	close(sv[1]);
	conn_close_all();
	ev_unlink(l, &wt);
	ev_free(l);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_ev();
	test_conn();
	return check_done();
}
