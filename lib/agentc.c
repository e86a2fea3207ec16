/* agentc.c - see agentc.h (the order of operations is described there). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agentc.h"
#include "clonefix.h"
#include "hvsock.h"
#include "json.h"
#include "log.h"
#include "proc.h"
#include "proto.h"
#include "seccomp.h"
#include "sock.h"
#include "text.h"
#include "util.h"

#define FRAME_MS_MAX	  30000
#define OUT_CHUNK	  4096	/* what a writable pipe takes without blocking */
#define MESSAGE_MAX	  4096	/* of an agent's error text shown to the user */
#define CONSOLE_TAIL	  4096	/* read from the end of the console log */
#define CONSOLE_LINE_MAX  300
#define OWNER_POLL_MS	  250	/* without a pidfd: how often to look */
#define LOST_GRACE_MS	  2000	/* a lost connection: time for the owner to be seen dying;
				   the owner dead: time to read what the agent had sent */
#define FRAMES_PER_WAKE	  64	/* then signals are looked at again */
#define PROBE_MS	  5000	/* silence after which the agent is sent a heartbeat */

enum phase { PH_HELLO, PH_STATUS, PH_CLONE, PH_PREPARE, PH_RUN };

struct agentc {
	struct agentc_opts o;
	char *where;		/* "vsock port 1024" / "unix socket 'P'" */
	int sock;
	int pidfd;		/* the owner's, or -1 (then polled with proc_alive) */
	int console_fd;
	bool owner_dead;
	uint64_t dead_at;	/* when its death was seen */
	bool hello_ok;		/* the agent answered */
	bool hardened;		/* nothing can be opened any more */
	int sig;		/* the signal that ended the session */
	int forwarded;		/* signals forwarded so far */
	int fwd_sig;		/* the last one */
	uint64_t fwd_at;	/* when the first went */
	uint64_t deadline;	/* of connect + HELLO (+ STATUS) */
	uint64_t next_owner_check;

	/* the frame coming in */
	struct proto_rx rx;
	uint64_t frame_t0;	/* when it was seen begun; 0: none */
	uint64_t last_rx;	/* last whole frame (the watchdog) */
	uint64_t probe_at;	/* last heartbeat we sent after a silence */

	/* frames going out */
	uint8_t *tx;
	size_t txlen, txoff, txcap;
	uint64_t tx_t0;		/* when the queue last became non-empty */
	bool req_queued, req_sent;

	/* output being written: one data frame's payload */
	uint8_t *out;
	size_t outlen, outoff;
	int outfd;
	bool out_broken, err_broken;

	bool in_eof;
	int exit_code;
	bool exited;		/* the agent's EXIT frame arrived */
	char *status;
	struct clonefix_done *done;	/* PH_CLONE: filled by the answer */
	bool winch_pending;	/* a resize before the request went out */
};

struct agentc *agentc_new(const struct agentc_opts *o)
{
	struct agentc *s = xcalloc(1, sizeof(*s));

	s->o = *o;
	if (!s->o.frame_ms) {
		s->o.frame_ms = FRAME_MS_MAX;
		if (s->o.heartbeat_ms && s->o.heartbeat_ms < s->o.frame_ms)
			s->o.frame_ms = s->o.heartbeat_ms;
	}
	s->sock = s->pidfd = s->console_fd = -1;
	s->outfd = -1;
	return s;
}

void agentc_free(struct agentc *s)
{
	if (!s)
		return;
	cleanup_closep(&s->sock);
	cleanup_closep(&s->pidfd);
	cleanup_closep(&s->console_fd);
	cleanup_closep(&s->o.started_fd);
	free(s->where);
	proto_rx_reset(&s->rx);
	free(s->tx);
	free(s->out);
	free(s->status);
	free(s);
}

void cleanup_agentcp(struct agentc **s)
{
	agentc_free(*s);
}

int agentc_signal(const struct agentc *s)
{
	return s->sig;
}

bool agentc_exited(const struct agentc *s)
{
	return s->exited;
}

/* ---- the owner and its console ---- */

/* Open the console log (again, with @fresh: it may have been rotated
 * since), unless hardened; a FIFO or a missing file is no hang. */
static void console_open(struct agentc *s, bool fresh)
{
	int fd;

	if (!s->o.console || s->hardened || (s->console_fd >= 0 && !fresh))
		return;
	fd = open(s->o.console, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return;
	cleanup_closep(&s->console_fd);
	s->console_fd = fd;
}

/* The last @lines non-empty lines of the console log, each cleaned, the
 * oldest first, joined by @sep; NULL if none. */
static char *console_tail(struct agentc *s, int lines, const char *sep)
{
	char buf[CONSOLE_TAIL], *out = NULL;
	struct stat st;
	off_t from;
	ssize_t n;
	size_t end, start;

	console_open(s, true);
	if (s->console_fd < 0 || fstat(s->console_fd, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	from = st.st_size > CONSOLE_TAIL ? st.st_size - CONSOLE_TAIL : 0;
	n = pread(s->console_fd, buf, sizeof(buf), from);
	if (n <= 0)
		return NULL;
	end = n;
	while (lines-- > 0) {
		_cleanup_free_ char *line = NULL;
		char *joined;

		while (end && (buf[end - 1] == '\n' || buf[end - 1] == '\r' || buf[end - 1] == ' '))
			end--;
		start = end;
		while (start && buf[start - 1] != '\n' && buf[start - 1] != '\r')
			start--;
		if (start == end)
			break;
		line = text_clean(buf + start, end - start, CONSOLE_LINE_MAX, false);
		joined = out ? xasprintf("%s%s%s", line, sep, out) : xstrdup(line);
		free(out);
		out = joined;
		end = start;
	}
	return out;
}

static char *console_last_line(struct agentc *s)
{
	return console_tail(s, 1, "");
}

static int owner_died(struct agentc *s, struct fc_err *e)
{
	_cleanup_free_ char *line = console_last_line(s);
	const char *what = s->hello_ok ? "the VM stopped" : "the VM stopped before its agent answered";

	if (line)
		return fc_err_say(e, ESRCH, "%s: %s", what, line);
	return fc_err_say(e, ESRCH, "%s: its owner (pid %d) exited", what, (int)s->o.owner_pid);
}

/* Open the owner's pidfd (a start time that differs means the pid was
 * reused: the owner is gone). 0, or -1 with @e when it is already dead. */
static int owner_watch(struct agentc *s, struct fc_err *e)
{
	pid_t pid = s->o.owner_pid;

	if (pid <= 0 || s->pidfd >= 0)
		return 0;
	console_open(s, false);
	s->pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (s->pidfd < 0 && errno != ENOSYS && errno != EPERM)
		s->owner_dead = true;
	else if (!proc_alive(pid, s->o.owner_start))
		s->owner_dead = true;
	if (s->pidfd >= 0)
		fcntl(s->pidfd, F_SETFD, FD_CLOEXEC);
	return s->owner_dead ? owner_died(s, e) : 0;
}

/* Has the owner died? Non-blocking. */
static bool owner_check(struct agentc *s)
{
	if (s->o.owner_pid <= 0 || s->owner_dead)
		return s->owner_dead;
	if (s->pidfd >= 0) {
		struct pollfd p = { .fd = s->pidfd, .events = POLLIN };

		s->owner_dead = poll(&p, 1, 0) > 0;
	} else if (now_ms() >= s->next_owner_check) {
		s->owner_dead = !proc_alive(s->o.owner_pid, s->o.owner_start);
		s->next_owner_check = now_ms() + OWNER_POLL_MS;
	}
	if (s->owner_dead)
		s->dead_at = now_ms();
	return s->owner_dead;
}

/* ---- signals ---- */

/* The next pending signal on sigfd, or 0. */
static int signal_next(struct agentc *s)
{
	struct signalfd_siginfo si;

	if (s->o.sigfd < 0 || read(s->o.sigfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	return si.ssi_signo;
}

static int end_by_signal(struct agentc *s, int sig, struct fc_err *e)
{
	s->sig = sig;
	return fc_err_say(e, EINTR, "ended by signal %d", sig);
}

/* sock_retry's question between attempts: stop for a signal or a dead owner. */
static int connect_give_up(void *arg, struct fc_err *e)
{
	struct agentc *s = arg;
	int sig = signal_next(s);

	if (sig)
		return end_by_signal(s, sig, e);
	console_open(s, false);
	if (owner_check(s))
		return owner_died(s, e);
	return 0;
}

/* ---- frames out ---- */

static void tx_queue(struct agentc *s, uint8_t type, const void *buf, size_t len)
{
	size_t need = s->txlen + PROTO_HDR_LEN + len;

	if (s->txoff == s->txlen) {
		s->txoff = s->txlen = 0;
		need = PROTO_HDR_LEN + len;
	}
	if (need > s->txcap) {
		s->txcap = need;
		s->tx = xrealloc(s->tx, s->txcap);
	}
	if (!s->txlen)
		s->tx_t0 = now_ms();
	proto_encode_hdr(s->tx + s->txlen, type, len);
	if (len)
		memcpy(s->tx + s->txlen + PROTO_HDR_LEN, buf, len);
	s->txlen += PROTO_HDR_LEN + len;
}

static int lost(struct agentc *s, struct fc_err *e);

/* Write what the socket takes now. 0 or -1. */
static int tx_step(struct agentc *s, struct fc_err *e)
{
	while (s->txoff < s->txlen) {
		ssize_t n = send(s->sock, s->tx + s->txoff, s->txlen - s->txoff, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return lost(s, e);
		if (n < 0)
			return fc_err_set(e, errno, "send to the agent");
		s->txoff += n;
	}
	s->txoff = s->txlen = 0;
	if (s->req_queued)
		s->req_sent = true;
	return 0;
}

/* ---- frames in ---- */

/* Read what has arrived of the current frame. 1: it is whole (s->rx),
 * 0: not yet, -1: error or end of the connection. */
static int rx_step(struct agentc *s, struct fc_err *e)
{
	switch (proto_rx_read(s->sock, &s->rx, e)) {
	case PROTO_RX_FRAME:
		s->frame_t0 = 0;
		s->last_rx = now_ms();
		return 1;
	case PROTO_RX_AGAIN:
		if (proto_rx_partial(&s->rx) && !s->frame_t0)
			s->frame_t0 = now_ms();
		return 0;
	case PROTO_RX_EOF:
		return lost(s, e);
	default:
		if (e->errnum == ECONNRESET)
			return lost(s, e);
		return fc_err_wrap(e, e->errnum == EPROTO ? "agent protocol error" : "from the agent");
	}
}

/* ---- the session's end ---- */

/* The connection ended: if the owner is dying, that is the cause. */
static int lost(struct agentc *s, struct fc_err *e)
{
	uint64_t until = now_ms() + LOST_GRACE_MS;

	if (s->o.owner_pid > 0) {
		while (!owner_check(s) && now_ms() < until) {
			struct pollfd p = { .fd = s->pidfd, .events = POLLIN };

			poll(&p, s->pidfd >= 0, s->pidfd >= 0 ? (int)(until - now_ms()) : 50);
		}
		if (s->owner_dead)
			return owner_died(s, e);
	}
	return fc_err_say(e, ECONNRESET, "connection to the agent lost");
}

static int timed_out(struct agentc *s, enum phase ph, struct fc_err *e)
{
	unsigned secs = (s->o.timeout_ms + 999) / 1000;

	if (ph == PH_STATUS)
		return fc_err_say(e, ETIMEDOUT, "agent did not answer the status request on %s within %u s",
				  s->where, secs);
	if (ph == PH_CLONE)
		return fc_err_say(e, ETIMEDOUT, "agent did not finish the clone fix-up on %s within %u s",
				  s->where, secs);
	if (ph == PH_PREPARE)
		return fc_err_say(e, ETIMEDOUT, "agent did not make the image ready on %s within %u s",
				  s->where, secs);
	return fc_err_say(e, ETIMEDOUT,
			  "agent did not answer on %s within %u s (is the VM booting? see its console log)",
			  s->where, secs);
}

/* The message of an ERROR frame, cleaned (caller frees). */
static char *error_text(const uint8_t *buf, size_t len)
{
	struct fc_err e;
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, &e);
	const char *m = j ? json_str(j, "message") : NULL;

	if (!m)
		return xstrdup("the agent reported an unreadable error");
	return text_clean(m, strlen(m), MESSAGE_MAX, true);
}

static int exit_from(const uint8_t *buf, size_t len, struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, e);
	long long code = -1, sig = -1;
	int r;

	if (!j || !json_is_object(j) || json_object_size(j) != 1)
		return fc_err_say(e, EPROTO, "agent protocol error: bad exit message");
	r = json_int(j, "code", 0, 255, &code, e);
	if (r == 0)
		return code;
	if (r == 1)
		r = json_int(j, "signal", 1, 64, &sig, e);
	if (r == 0)
		return 128 + sig;
	if (r == 1)
		return fc_err_say(e, EPROTO, "agent protocol error: bad exit message");
	return fc_err_wrap(e, "agent protocol error: bad exit message");
}

static int check_hello(const uint8_t *buf, size_t len, struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, e);
	long long version = 0;

	if (!j || !json_is_object(j) || json_int(j, "version", 0, 1000000, &version, e) != 0)
		return fc_err_say(e, EPROTO, "agent protocol error: bad hello message");
	if (version != PROTO_VERSION)
		return fc_err_say(e, EPROTO, "the agent speaks protocol version %lld, this host %d",
				  version, PROTO_VERSION);
	return 0;
}

/* A STATUS answer: an object with a "state" string, re-encoded so that
 * nothing in it can reach a terminal raw. */
static int take_status(struct agentc *s, const uint8_t *buf, size_t len, struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, e);

	if (!j || !json_is_object(j) || !json_str(j, "state"))
		return fc_err_say(e, EPROTO, "agent protocol error: bad status message");
	s->status = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
	if (!s->status)
		abort();
	return 0;
}

/* One whole frame in @ph. 1: the phase is done, 0: go on, -1: error. */
static int on_frame(struct agentc *s, enum phase ph, struct fc_err *e)
{
	uint8_t type = s->rx.h.type;

	if (ph == PH_HELLO) {
		if (type == MSG_HELLO)
			return check_hello(s->rx.payload, s->rx.h.len, e) < 0 ? -1 : 1;
		if (type == MSG_ERROR) {
			_cleanup_free_ char *m = error_text(s->rx.payload, s->rx.h.len);

			return fc_err_say(e, EPROTO, "the agent refused the connection: %s", m);
		}
		return fc_err_say(e, EPROTO, "agent protocol error: expected hello, got a %s frame",
				  proto_type_name(type));
	}
	switch (type) {
	case MSG_HEARTBEAT:
		return 0;
	case MSG_ERROR: {
		_cleanup_free_ char *m = error_text(s->rx.payload, s->rx.h.len);

		return fc_err_say(e, EPROTO, "%s", m);
	}
	case MSG_STATUS:
		if (ph != PH_STATUS)
			break;
		return take_status(s, s->rx.payload, s->rx.h.len, e) < 0 ? -1 : 1;
	case MSG_CLONE_DONE:
		if (ph != PH_CLONE)
			break;
		if (clonefix_done_parse((const char *)s->rx.payload, s->rx.h.len, s->done, e) < 0)
			return fc_err_wrap(e, "agent protocol error");
		return 1;
	case MSG_PREPARED: {
		_cleanup_json_ json_t *j = NULL;

		if (ph != PH_PREPARE)
			break;
		j = json_parse((const char *)s->rx.payload, s->rx.h.len, e);
		if (!j || !json_is_object(j))
			return fc_err_say(e, EPROTO, "agent protocol error: bad prepared message");
		return 1;
	}
	case MSG_STDOUT:
	case MSG_STDERR:
		if (ph != PH_RUN)
			break;
		s->outfd = type == MSG_STDOUT ? s->o.out_fd : s->o.err_fd;
		if (s->outfd < 0 || (type == MSG_STDOUT ? s->out_broken : s->err_broken) ||
		    !s->rx.h.len)
			return 0;
		s->out = steal_ptr(&s->rx.payload);
		s->outlen = s->rx.h.len;
		s->outoff = 0;
		return 0;
	case MSG_STARTED:
		if (ph != PH_RUN)
			break;
		log_debug("container started");
		if (s->o.started_fd >= 0) {
			if (write_full(s->o.started_fd, "started\n", 8) < 0)
				log_warn("started fd: %s", strerror(errno));
			cleanup_closep(&s->o.started_fd);
		}
		return 0;
	case MSG_EXIT:
		if (ph != PH_RUN)
			break;
		s->exit_code = exit_from(s->rx.payload, s->rx.h.len, e);
		s->exited = s->exit_code >= 0;
		return s->exit_code < 0 ? -1 : 1;
	}
	return fc_err_say(e, EPROTO, "agent protocol error: unexpected %s frame",
			  proto_type_name(type));
}

/* Write a piece of the pending output; a closed stdout (| head) only
 * stops that stream. */
static void out_step(struct agentc *s)
{
	size_t n = s->outlen - s->outoff;
	ssize_t w;

	if (n > OUT_CHUNK)
		n = OUT_CHUNK;
	w = write(s->outfd, s->out + s->outoff, n);
	if (w < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (w < 0) {
		if (errno != EPIPE)
			log_warn("write to fd %d: %s; dropping the rest of that stream", s->outfd,
				 strerror(errno));
		if (s->outfd == s->o.out_fd)
			s->out_broken = true;
		if (s->outfd == s->o.err_fd)
			s->err_broken = true;
		w = n = s->outlen - s->outoff;
	}
	s->outoff += w;
	if (s->outoff == s->outlen) {
		free(s->out);
		s->out = NULL;
		s->last_rx = now_ms();	/* time spent on our own output is not the agent's silence */
	}
}

/* Queue WINSIZE with the size of opts.tty_fd (nothing if it has none). */
static void winsize_queue(struct agentc *s)
{
	struct winsize ws;
	char msg[48];

	if (ioctl(s->o.tty_fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col)
		return;
	snprintf(msg, sizeof(msg), "{\"rows\":%u,\"cols\":%u}", ws.ws_row, ws.ws_col);
	tx_queue(s, MSG_WINSIZE, msg, strlen(msg));
}

/* A signal: in a run, the first once the request is out is forwarded;
 * any other ends the session at once. */
static int on_signal(struct agentc *s, enum phase ph, int sig, struct fc_err *e)
{
	char msg[32];

	if (sig == SIGWINCH && s->o.winch) {
		if (ph == PH_RUN && s->req_queued)
			winsize_queue(s);
		else
			s->winch_pending = true;
		return 0;
	}
	if (ph != PH_RUN || !s->req_sent || s->forwarded++)
		return end_by_signal(s, sig, e);
	s->fwd_sig = sig;
	s->fwd_at = now_ms();
	snprintf(msg, sizeof(msg), "{\"signal\":%d}", sig);
	tx_queue(s, MSG_SIGNAL, msg, strlen(msg));
	return 0;
}

/* Forward a piece of stdin. */
static void in_step(struct agentc *s)
{
	uint8_t buf[PROTO_DATA_CHUNK];
	ssize_t n = read(s->o.in_fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		tx_queue(s, MSG_STDIN, buf, n);
		return;
	}
	if (n < 0)
		log_warn("read stdin: %s; sending end of input", strerror(errno));
	tx_queue(s, MSG_STDIN_EOF, NULL, 0);
	s->in_eof = true;
}

static void until(uint64_t *t, uint64_t when)
{
	if (when < *t)
		*t = when;
}

/* Frames that have arrived, while no output waits (a data frame stops
 * the reading) and at most FRAMES_PER_WAKE. 1: the phase is done, -1: an
 * error, 0: go on; *@drained when all that was there has been read. */
static int take_frames(struct agentc *s, enum phase ph, bool *drained, struct fc_err *e)
{
	*drained = false;
	for (int i = 0; i < FRAMES_PER_WAKE && !s->out; i++) {
		int r = rx_step(s, e);

		if (r == 0)
			*drained = true;
		if (r <= 0)
			return r;
		r = on_frame(s, ph, e);
		proto_rx_reset(&s->rx);
		if (r)
			return r;
	}
	return 0;
}

/* The poll loop of every phase, until the phase is done (1) or fails. */
static int pump(struct agentc *s, enum phase ph, struct fc_err *e)
{
	enum { P_SOCK, P_SIG, P_OWNER, P_IN, P_OUT, P_N };

	for (;;) {
		struct pollfd p[P_N];
		uint64_t now = now_ms(), wake = UINT64_MAX;
		bool reading = !s->out, drained;
		int n, r, sig;

		/* deadlines */
		if (ph != PH_RUN && now >= s->deadline)
			return timed_out(s, ph, e);
		if (s->frame_t0 && now >= s->frame_t0 + (uint64_t)s->o.frame_ms)
			return fc_err_say(e, ETIMEDOUT,
					  "the agent stopped in the middle of a frame (not whole within %d s)",
					  s->o.frame_ms / 1000);
		if (s->txlen && now >= s->tx_t0 + (uint64_t)s->o.frame_ms)
			return fc_err_say(e, ETIMEDOUT, "the agent stopped reading (a frame not taken within %d s)",
					  s->o.frame_ms / 1000);
		/* (a frame begun has its own bound) */
		if (ph == PH_RUN && reading && !s->frame_t0 && s->o.heartbeat_ms &&
		    now >= s->last_rx + (uint64_t)s->o.heartbeat_ms) {
			/* What the guest last said is the only clue to why: on
			 * stderr before the error (too long for its message). */
			_cleanup_free_ char *tail = console_tail(s, 8, "\n  console: ");

			if (tail)
				fprintf(stderr, "%s: the VM's console ends with:\n  console: %s\n",
					program_invocation_short_name, tail);
			return fc_err_say(e, ETIMEDOUT, "the agent stopped answering (no heartbeat for %d s)",
					  s->o.heartbeat_ms / 1000);
		}
		/* The forwarded signal's grace is over: the command ignored it,
		 * or the guest is too slow to end it in time. */
		if (ph == PH_RUN && s->fwd_at && s->o.stop_ms) {
			if (now >= s->fwd_at + (uint64_t)s->o.stop_ms) {
				log_warn("no exit %d s after signal %d: ending the session",
					 s->o.stop_ms / 1000, s->fwd_sig);
				return end_by_signal(s, s->fwd_sig, e);
			}
			until(&wake, s->fwd_at + s->o.stop_ms);
		}
		if (ph != PH_RUN)
			until(&wake, s->deadline);
		if (s->frame_t0)
			until(&wake, s->frame_t0 + s->o.frame_ms);
		if (s->txlen)
			until(&wake, s->tx_t0 + s->o.frame_ms);
		if (ph == PH_RUN && reading && !s->frame_t0 && s->o.heartbeat_ms)
			until(&wake, s->last_rx + s->o.heartbeat_ms);
		/* The agent beats every 2 s: a longer silence is not normal. A
		 * frame of ours interrupts the guest, and an idle TCG guest has
		 * been seen to oversleep its timers until some interrupt came;
		 * a live agent then beats again. Once per PROBE_MS of silence. */
		if (ph == PH_RUN && reading && !s->frame_t0 && s->o.heartbeat_ms && s->req_sent &&
		    !s->txlen) {
			uint64_t since = s->probe_at > s->last_rx ? s->probe_at : s->last_rx;

			if (now >= since + PROBE_MS) {
				log_debug("no frame from the agent for %llu ms: probing it",
					  (unsigned long long)(now - s->last_rx));
				tx_queue(s, MSG_HEARTBEAT, NULL, 0);
				s->probe_at = now;
			} else {
				until(&wake, since + PROBE_MS);
			}
		}
		if (s->o.owner_pid > 0 && s->pidfd < 0)
			until(&wake, s->next_owner_check);

		/* The owner is gone: read what the agent had sent, then stop
		 * (within a bound: our output may be stuck, the guest may flood). */
		if (owner_check(s)) {
			if (now >= s->dead_at + LOST_GRACE_MS)
				return owner_died(s, e);
			until(&wake, s->dead_at + LOST_GRACE_MS);
		}
		if (s->owner_dead && reading) {
			r = take_frames(s, ph, &drained, e);
			if (r)
				return r;
			if (drained)
				return owner_died(s, e);
			continue;
		}

		/* (not polled at all when neither: a hang-up would spin) */
		p[P_SOCK] = (struct pollfd){ .fd = reading || s->txlen ? s->sock : -1,
					     .events = (reading ? POLLIN : 0) | (s->txlen ? POLLOUT : 0) };
		p[P_SIG] = (struct pollfd){ .fd = s->o.sigfd, .events = POLLIN };
		p[P_OWNER] = (struct pollfd){ .fd = s->owner_dead ? -1 : s->pidfd, .events = POLLIN };
		p[P_IN] = (struct pollfd){ .fd = -1 };
		if (ph == PH_RUN && s->o.in_fd >= 0 && !s->in_eof && s->req_sent && !s->txlen)
			p[P_IN] = (struct pollfd){ .fd = s->o.in_fd, .events = POLLIN };
		p[P_OUT] = (struct pollfd){ .fd = s->out ? s->outfd : -1, .events = POLLOUT };
		if (wake == UINT64_MAX)
			n = poll(p, P_N, -1);
		else
			n = poll(p, P_N, wake > now ? (int)(wake - now) : 0);
		if (n < 0 && errno != EINTR)
			return fc_err_set(e, errno, "poll");
		if (n <= 0)
			continue;
		while ((sig = p[P_SIG].revents ? signal_next(s) : 0))
			if (on_signal(s, ph, sig, e) < 0)
				return -1;
		if (p[P_OUT].revents)
			out_step(s);
		if (p[P_IN].revents)
			in_step(s);
		if (s->txlen && (p[P_SOCK].revents & (POLLOUT | POLLERR | POLLHUP)) &&
		    tx_step(s, e) < 0)
			/* after a stop request, the agent going away is its answer */
			return s->fwd_sig ? end_by_signal(s, s->fwd_sig, e) : -1;
		if (!reading || !(p[P_SOCK].revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		r = take_frames(s, ph, &drained, e);
		if (r)
			return r;
	}
}

/* ---- the API ---- */

int agentc_connect(struct agentc *s, const char *path, uint32_t port, struct fc_err *e)
{
	uint64_t t0 = now_ms();
	int fl;

	s->deadline = t0 + s->o.timeout_ms;
	free(s->where);
	s->where = port ? xasprintf("vsock port %u", port) : xasprintf("unix socket '%s'", path);
	if (owner_watch(s, e) < 0)
		return -1;
	if (port)
		s->sock = hvsock_connect(path, port, s->o.timeout_ms, connect_give_up, s, e);
	else
		s->sock = sock_connect_unix(path, s->o.timeout_ms, connect_give_up, s, e);
	if (s->sock < 0) {
		/* (the connect helpers wrap what our give-up check said) */
		if (s->sig)
			return end_by_signal(s, s->sig, e);
		if (s->owner_dead)
			return owner_died(s, e);
		if (now_ms() >= s->deadline)
			return timed_out(s, PH_HELLO, e);
		return -1;
	}
	log_debug("connected after %llu ms", (unsigned long long)(now_ms() - t0));
	fl = fcntl(s->sock, F_GETFL);
	if (fl < 0 || fcntl(s->sock, F_SETFL, fl | O_NONBLOCK) < 0)
		return fc_err_set(e, errno, "make the agent socket non-blocking");
	if (pump(s, PH_HELLO, e) < 0)
		return -1;
	s->hello_ok = true;
	return 0;
}

int agentc_harden(struct agentc *s, struct fc_err *e)
{
	static const int base[] = {
		SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close, SYS_recvfrom,
		SYS_sendto, SYS_poll, SYS_ppoll, SYS_lseek, SYS_pread64, SYS_fstat,
		SYS_newfstatat, SYS_mmap, SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk,
		SYS_mprotect, SYS_clock_gettime, SYS_getpid, SYS_gettid, SYS_tgkill,
		SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_restart_syscall,
		SYS_futex, SYS_exit, SYS_exit_group,
	};
	int allowed[ARRAY_SIZE(base) + 3];
	size_t n = ARRAY_SIZE(base);

	memcpy(allowed, base, sizeof(base));
	console_open(s, false);
	/* Without a pidfd the owner is looked up in /proc (proc_alive). */
	if (s->o.owner_pid > 0 && s->pidfd < 0) {
		allowed[n++] = SYS_openat;
		allowed[n++] = SYS_open;
	}
	if (s->o.winch)
		allowed[n++] = SYS_ioctl;	/* TIOCGWINSZ */
	if (seccomp_allow_only(allowed, n, false, e) < 0)
		return fc_err_wrap(e, "drop privileges");
	s->hardened = true;
	return 0;
}

int agentc_run(struct agentc *s, uint8_t type, const void *req, size_t len, struct fc_err *e)
{
	if (len > PROTO_MAX_PAYLOAD)
		return fc_err_say(e, EMSGSIZE, "a %s request of %zu bytes (at most %u)",
				  proto_type_name(type), len, PROTO_MAX_PAYLOAD);
	tx_queue(s, type, req, len);
	s->req_queued = true;
	if (s->o.winch)	/* the size now (a run's pty is made after the request) */
		winsize_queue(s);
	s->last_rx = now_ms();
	if (pump(s, PH_RUN, e) < 0)
		return s->sig ? 128 + s->sig : -1;
	return s->exit_code;
}

int agentc_status(struct agentc *s, char **json, struct fc_err *e)
{
	tx_queue(s, MSG_STATUS_REQ, NULL, 0);
	s->req_queued = true;
	if (pump(s, PH_STATUS, e) < 0)
		return -1;
	*json = steal_ptr(&s->status);
	return 0;
}

int agentc_prepare(struct agentc *s, const void *plan, size_t len, struct fc_err *e)
{
	if (len > PROTO_MAX_PAYLOAD)
		return fc_err_say(e, EMSGSIZE, "a plan of %zu bytes (at most %u)", len,
				  PROTO_MAX_PAYLOAD);
	tx_queue(s, MSG_PREPARE, plan, len);
	s->req_queued = true;
	if (pump(s, PH_PREPARE, e) < 0)
		return fc_err_wrap(e, "prepare");
	return 0;
}

int agentc_clone(struct agentc *s, const struct clonefix *f, struct clonefix_done *done,
		 struct fc_err *e)
{
	_cleanup_free_ char *req = clonefix_encode(f);

	tx_queue(s, MSG_CLONE, req, strlen(req));
	s->req_queued = true;
	s->done = done;
	if (pump(s, PH_CLONE, e) < 0)
		return fc_err_wrap(e, "clone fix-up");
	/* (hostname is a checked fcvm name: safe to show) */
	if (strcmp(done->hostname, f->hostname))
		return fc_err_say(e, EPROTO, "clone fix-up: the agent set hostname '%s', not '%s'",
				  done->hostname, f->hostname);
	return 0;
}

int agentc_session(struct agentc *s, const char *path, uint32_t port, uint8_t type,
		   const void *req, size_t len, struct fc_err *e)
{
	if (agentc_connect(s, path, port, e) < 0)
		return s->sig ? 128 + s->sig : -1;
	if (s->o.harden && agentc_harden(s, e) < 0)
		return -1;
	return agentc_run(s, type, req, len, e);
}
