/* exec.c - see exec.h */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "exec.h"
#include "json.h"
#include "log.h"
#include "plan.h"
#include "run.h"
#include "util.h"

#define EXEC_IN_HIGH	(256 * 1024)	/* queued stdin at which the host is paused */
#define EXEC_REQ_MS	60000		/* the request must come within */
#define EXEC_POLL_MS	250		/* a starting container is looked at this often */
#define EXEC_RETRY_MS	500		/* podman wait failed: again after */
#define EXEC_DRAIN_MS	2000		/* output still held open after the command exited */
#define EXEC_SIZE_MS	100		/* exec -t: the command's terminal size is checked this often */
#define EXEC_SIZE_TRIES	50		/* ... for at most this many times */
#define MARKER_VAR	"FCVM_EXEC_ID"

enum ex_phase {
	EX_REQ,		/* waiting for MSG_EXEC */
	EX_WAIT_RUN,	/* the container is starting */
	EX_WAIT_PODMAN,	/* podman wait --condition=running */
	EX_RUNNING,	/* the command */
	EX_DONE,	/* EXIT or ERROR sent */
};

struct exec {
	struct agent *a;
	struct conn *c;		/* NULL once gone */
	bool attached;		/* counted in a->sessions */
	enum ex_phase ph;
	struct exec_req req;
	uint64_t wait_until;
	char marker[sizeof(MARKER_VAR) + 24];
	struct ev_watch timer;
	struct ev_child proc;
	bool child;		/* a child is registered and not yet reaped */
	bool exited;
	int status;
	bool pty;
	int master;		/* the pty's master (also out.fd), -1 */
	int size_tries;		/* left of the checks of the command's terminal size */
	struct ev_watch out, err, in;
	uint8_t *ib;
	size_t ilen, icap;
	bool in_eof;		/* STDIN_EOF came */
	bool in_paused;
	bool freeing;		/* gone: free once the child is reaped */
};

static const struct conn_ops exec_ops;
static void podman_waited(struct exec *x, int status);

static void exec_release(void *p)
{
	struct exec *x = p;

	exec_req_free(&x->req);
	free(x->ib);
	free(x);
}

static void close_watch(struct exec *x, struct ev_watch *w)
{
	if (w->fd < 0)
		return;
	ev_unlink(x->a->loop, w);
	close(w->fd);
	w->fd = -1;
}

static void exec_free(struct exec *x)
{
	close_watch(x, &x->out);
	close_watch(x, &x->err);
	close_watch(x, &x->in);
	x->master = -1;
	ev_unlink(x->a->loop, &x->timer);
	if (x->child)
		ev_child_del(x->a->loop, &x->proc);
	ev_defer(x->a->loop, exec_release, x);
}

static void detach(struct exec *x)
{
	if (x->attached) {
		x->attached = false;
		x->a->sessions--;
	}
}

/* The session's last frame is queued. */
static void done(struct exec *x)
{
	x->ph = EX_DONE;
	x->timer.deadline = 0;
	close_watch(x, &x->in);
	if (x->c)
		conn_finish(x->c);	/* exec_gone() frees */
}

static void fail(struct exec *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct exec *x, const char *fmt, ...)
{
	_cleanup_free_ char *m = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	if (x->c)
		conn_send_error(x->c, m);
	done(x);
}

/* ---- finding what podman started, by its marker ---- */

/* Does /proc/@pid/environ hold exactly @marker? */
static bool has_marker(const char *pid, const char *marker)
{
	char path[64], buf[64 * 1024];
	size_t ml = strlen(marker);
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%s/environ", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n;) {
		size_t l = strnlen(buf + i, n - i);

		if (l == ml && !memcmp(buf + i, marker, ml))
			return true;
		i += l + 1;
	}
	return false;
}

static pid_t parent_of(const char *pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd, ppid = 0;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');	/* the name may hold anything */
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return 0;
	return ppid;
}

/* Call @fn for every process with the marker whose parent has none (the
 * command itself, not what it started). How many @fn took (returned 0). */
static int for_marked(const struct exec *x, int (*fn)(pid_t, const struct exec *, int), int arg)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char ppid[16];
		pid_t pp;

		if (de->d_name[0] < '1' || de->d_name[0] > '9' || !has_marker(de->d_name, x->marker))
			continue;
		pp = parent_of(de->d_name);
		snprintf(ppid, sizeof(ppid), "%d", (int)pp);
		if (pp > 0 && has_marker(ppid, x->marker))
			continue;
		if (fn(atoi(de->d_name), x, arg) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int kill_one(pid_t pid, const struct exec *x, int sig)
{
	(void)x;
	return kill(pid, sig);
}

/*
 * podman 4.3 sizes an exec's terminal by a resize sent to conmon after the
 * command started (podman#10710), and may lose it: the command then sees a
 * 0x0 terminal for good. Until the marked command's terminal has a size,
 * give it the one the host asked for. Returns 0 once it has one.
 */
static int size_one(pid_t pid, const struct exec *x, int unused)
{
	char path[64];
	struct winsize ws = { 0 };
	int fd, ret = -1;

	(void)unused;
	snprintf(path, sizeof(path), "/proc/%d/fd/0", (int)pid);
	fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0) {
		if (ws.ws_row && ws.ws_col) {
			ret = 0;
		} else {
			ws = (struct winsize){ .ws_row = x->req.rows, .ws_col = x->req.cols };
			if (ioctl(fd, TIOCSWINSZ, &ws) == 0) {
				log_debug("exec: gave pid %d its terminal size %ux%u (podman had not)",
					  (int)pid, x->req.cols, x->req.rows);
				ret = 0;
			}
		}
	}
	close(fd);
	return ret;
}

static void check_size(struct exec *x)
{
	if (for_marked(x, size_one, 0) > 0 || --x->size_tries <= 0)
		x->size_tries = 0;
	else
		x->timer.deadline = now_ms() + EXEC_SIZE_MS;
}

static void signal_command(struct exec *x, int sig)
{
	pid_t pg;

	if (!x->child || x->exited)
		return;
	if (!x->req.vm) {
		if (for_marked(x, kill_one, sig) > 0)
			return;
	} else if (x->pty && (pg = tcgetpgrp(x->master)) > 0 && kill(-pg, sig) == 0) {
		return;
	}
	kill(x->proc.pid, sig);
}

/* ---- the command's output ---- */

static bool paused(const struct exec *x)
{
	return x->c && !conn_has_room(x->c);
}

static void send_exit(struct exec *x)
{
	int st = x->status;

	log_debug("exec: '%s' %s %d", x->req.cmd[0], WIFSIGNALED(st) ? "killed by signal" : "exited",
		  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	if (x->c) {
		if (WIFSIGNALED(st))
			conn_send_json(x->c, MSG_EXIT, json_pack("{s:i}", "signal", WTERMSIG(st)));
		else
			conn_send_json(x->c, MSG_EXIT, json_pack("{s:i}", "code", WEXITSTATUS(st)));
	}
	done(x);
}

static void check_done(struct exec *x)
{
	if (x->ph == EX_RUNNING && x->exited && x->out.fd < 0 && x->err.fd < 0)
		send_exit(x);
}

static void arm_drain(struct exec *x)
{
	if (x->ph == EX_RUNNING && x->exited)
		x->timer.deadline = paused(x) ? 0 : now_ms() + EXEC_DRAIN_MS;
}

static void out_event(struct ev_watch *w, short revents)
{
	static char buf[PROTO_DATA_CHUNK];
	struct exec *x = w->data;
	ssize_t n;

	(void)revents;
	if (paused(x)) {
		w->events = 0;	/* exec_writable() resumes */
		return;
	}
	n = read(w->fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {	/* EOF; EIO: a pty whose other side is all closed */
		if (w == &x->out)
			x->master = -1;
		close_watch(x, w);
		check_done(x);
		return;
	}
	if (x->c)
		conn_send(x->c, w == &x->err ? MSG_STDERR : MSG_STDOUT, buf, n);
	arm_drain(x);
}

static void resume_output(struct exec *x)
{
	if (x->out.fd >= 0)
		x->out.events = POLLIN;
	if (x->err.fd >= 0)
		x->err.events = POLLIN;
	arm_drain(x);
}

/* ---- the command's input ---- */

static void in_drop(struct exec *x)
{
	x->ilen = 0;
	close_watch(x, &x->in);
}

static void in_flow(struct exec *x)
{
	bool want = x->ilen >= EXEC_IN_HIGH;

	if (x->c && want != x->in_paused) {
		x->in_paused = want;
		conn_pause_input(x->c, want);
	}
	if (x->in.fd >= 0)
		x->in.events = x->ilen || x->in_eof ? POLLOUT : 0;
}

static void in_event(struct ev_watch *w, short revents)
{
	struct exec *x = w->data;

	(void)revents;
	while (x->ilen) {
		ssize_t n = write(w->fd, x->ib, x->ilen);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {	/* EPIPE: the command closed its stdin; the rest is dropped */
			log_debug("exec: stdin: %s", strerror(errno));
			in_drop(x);
			in_flow(x);
			return;
		}
		memmove(x->ib, x->ib + n, x->ilen - n);
		x->ilen -= n;
	}
	if (!x->ilen && x->in_eof) {
		if (x->pty) {
			struct termios t;
			char eof = tcgetattr(w->fd, &t) == 0 && t.c_cc[VEOF] ? t.c_cc[VEOF] : 4;

			if (write(w->fd, &eof, 1) < 0 && errno == EAGAIN)
				return;
			x->in_eof = false;	/* sent once; the pty stays open for output */
			w->events = 0;
		} else {
			close_watch(x, w);
		}
	}
	in_flow(x);
}

static void in_add(struct exec *x, const uint8_t *buf, size_t len)
{
	if (!x->req.in || x->in_eof || (x->ph == EX_RUNNING && x->in.fd < 0))
		return;	/* not asked for, or nobody reads it any more */
	if (x->ilen + len > x->icap) {
		x->icap = x->ilen + len + 16 * 1024;
		x->ib = xrealloc(x->ib, x->icap);
	}
	memcpy(x->ib + x->ilen, buf, len);
	x->ilen += len;
	in_flow(x);
}

/* ---- the command ---- */

static void child_exited(struct ev_child *p, int status)
{
	struct exec *x = p->data;

	x->child = false;
	x->exited = true;
	x->status = status;
	if (x->freeing) {
		exec_free(x);
		return;
	}
	if (x->ph == EX_WAIT_PODMAN) {
		podman_waited(x, status);
		return;
	}
	arm_drain(x);
	check_done(x);
}

/* In the child: become what the request asks, then exec; never returns. */
static void child_exec(struct exec *x, char **argv, int in, int out, int err, const char *slave)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (slave) {
		int fd = open(slave, O_RDWR);

		if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) < 0)
			_exit(125);
		in = out = err = fd;
	}
	if (in < 0)
		in = open("/dev/null", O_RDONLY);
	if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(125);
	if (x && x->req.vm) {
		for (size_t i = 0; x->req.env[i]; i++)
			putenv(x->req.env[i]);
		if (x->req.tty)
			setenv("TERM", x->req.term ? x->req.term : "xterm", 1);
		if (x->req.user) {
			unsigned long uid, gid;
			char *end;

			uid = strtoul(x->req.user, &end, 10);
			gid = *end == ':' ? strtoul(end + 1, &end, 10) : uid;
			if (*end || end == x->req.user) {
				dprintf(2, "fc-agent: --vm takes a numeric user (UID[:GID]), not '%s'\n",
					x->req.user);
				_exit(125);
			}
			if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
				dprintf(2, "fc-agent: user '%s': %s\n", x->req.user, strerror(errno));
				_exit(125);
			}
		}
		if (x->req.workdir && chdir(x->req.workdir) < 0) {
			dprintf(2, "fc-agent: workdir '%s': %s\n", x->req.workdir, strerror(errno));
			_exit(125);
		}
	}
	execvp(argv[0], argv);
	dprintf(2, "fc-agent: execute '%s': %s\n", argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static void start_child_watches(struct exec *x, pid_t pid)
{
	x->proc = (struct ev_child){ .pid = pid, .cb = child_exited, .data = x };
	x->child = true;
	x->exited = false;
	ev_child_add(x->a->loop, &x->proc);
}

/* podman wait --condition=running NAME, output discarded. */
static void start_podman_wait(struct exec *x)
{
	char **argv = exec_wait_argv(x->a->runner, run_image_store(x->a->run),
				     run_container_name(x->a->run));
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	pid_t pid = null < 0 ? -1 : fork();

	if (pid == 0)
		child_exec(NULL, argv, null, null, null, NULL);
	plan_argv_free(argv);
	if (null >= 0)
		close(null);
	if (pid < 0) {
		fail(x, "podman wait: fork: %s", strerror(errno));
		return;
	}
	x->ph = EX_WAIT_PODMAN;
	start_child_watches(x, pid);
	x->timer.deadline = x->wait_until;
}

static void start_command(struct exec *x);
static void check_container(struct exec *x);

static void podman_waited(struct exec *x, int status)
{
	const char *st = run_state_name(x->a->run);

	x->exited = false;
	if (WIFEXITED(status) && !WEXITSTATUS(status) && !strcmp(st, "running")) {
		run_container_set_seen(x->a->run);
		start_command(x);
		return;
	}
	/* Not there yet (podman run has not created it), or gone. */
	x->ph = EX_WAIT_RUN;
	x->timer.deadline = now_ms() + EXEC_RETRY_MS;
}

static void check_container(struct exec *x)
{
	const char *st = run_state_name(x->a->run);

	if (!strcmp(st, "running")) {
		if (run_container_seen(x->a->run))
			start_command(x);
		else
			start_podman_wait(x);
		return;
	}
	/* idle: the plan has not come yet (fc-run connects after the boot). */
	if (strcmp(st, "starting") && strcmp(st, "idle")) {
		fail(x, "no container is running in this VM (its state is '%s'); --vm runs a command in the guest itself",
		     st);
		return;
	}
	x->ph = EX_WAIT_RUN;
	x->timer.deadline = now_ms() + EXEC_POLL_MS;
}

static void timer_event(struct ev_watch *w, short revents)
{
	struct exec *x = w->data;
	uint64_t now = now_ms();

	(void)revents;
	w->deadline = 0;
	switch (x->ph) {
	case EX_WAIT_RUN:
	case EX_WAIT_PODMAN:
		if (now >= x->wait_until) {
			if (x->ph == EX_WAIT_PODMAN && x->child)
				kill(x->proc.pid, SIGKILL);	/* reaped by the loop; x->ph moves on */
			x->ph = EX_WAIT_RUN;
			fail(x, "no container is running in this VM after %u s (its state is '%s'); --vm runs a command in the guest itself",
			     x->req.wait_ms / 1000, run_state_name(x->a->run));
			return;
		}
		if (x->ph == EX_WAIT_RUN)
			check_container(x);
		else
			w->deadline = x->wait_until;
		return;
	case EX_RUNNING:
		if (!x->exited) {
			if (x->size_tries > 0)
				check_size(x);
			return;
		}
		if (paused(x))
			return;
		/* Something the command started still holds its output open. */
		log_debug("exec: closing output still held open %d s after the command exited",
			  EXEC_DRAIN_MS / 1000);
		close_watch(x, &x->out);
		close_watch(x, &x->err);
		x->master = -1;
		check_done(x);
		return;
	default:
		return;
	}
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void start_command(struct exec *x)
{
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
	_cleanup_close_ int master = -1;
	char slave[128] = "";
	char **argv = NULL;
	pid_t pid;

	if (x->req.vm) {
		argv = x->req.cmd;
	} else {
		uint64_t r[2] = { 0, 0 };
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

		if (fd < 0 || read_full(fd, r, sizeof(r)) != sizeof(r)) {
			if (fd >= 0)
				close(fd);
			fail(x, "exec: read /dev/urandom: %s", strerror(errno));
			return;
		}
		close(fd);
		snprintf(x->marker, sizeof(x->marker), MARKER_VAR "=%016llx%04llx",
			 (unsigned long long)r[0], (unsigned long long)(r[1] & 0xffff));
		argv = exec_req_argv(x->a->runner, run_image_store(x->a->run), &x->req,
				     run_container_name(x->a->run), x->marker);
	}
	if (x->req.tty) {
		struct winsize ws = { .ws_row = x->req.rows, .ws_col = x->req.cols };

		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
		    ptsname_r(master, slave, sizeof(slave)) != 0) {
			fail(x, "exec: open a pseudo-terminal: %s", strerror(errno));
			goto out;
		}
		if (ws.ws_row && ws.ws_col)
			ioctl(master, TIOCSWINSZ, &ws);
	} else if ((x->req.in && pipe2(pin, O_CLOEXEC) < 0) || pipe2(pout, O_CLOEXEC) < 0 ||
		   pipe2(perr, O_CLOEXEC) < 0) {
		fail(x, "exec: pipe: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid == 0)
		child_exec(x, argv, pin[0], pout[1], perr[1], x->req.tty ? slave : NULL);
	if (pid < 0) {
		fail(x, "exec: fork: %s", strerror(errno));
		goto out;
	}
	log_debug("exec: '%s'%s%s (pid %d)", x->req.cmd[0], x->req.vm ? " in the guest" : "",
		  x->req.tty ? " on a pty" : "", (int)pid);
	start_child_watches(x, pid);
	x->ph = EX_RUNNING;
	if (x->req.tty) {
		int in = fcntl(master, F_DUPFD_CLOEXEC, 3);

		x->pty = true;
		x->master = master;
		nonblock(master);
		ev_watch_init(&x->out, steal_fd(&master), out_event, x);
		if (in >= 0 && x->req.in)
			ev_watch_init(&x->in, in, in_event, x);
		else if (in >= 0)
			close(in);
	} else {
		ev_watch_init(&x->out, pout[0], out_event, x);
		ev_watch_init(&x->err, perr[0], out_event, x);
		pout[0] = perr[0] = -1;
		nonblock(x->out.fd);
		nonblock(x->err.fd);
		if (pin[1] >= 0) {
			ev_watch_init(&x->in, pin[1], in_event, x);
			nonblock(pin[1]);
			pin[1] = -1;
		}
	}
	x->out.events = POLLIN;
	if (x->err.fd >= 0)
		x->err.events = POLLIN;
	ev_link(x->a->loop, &x->out);
	if (x->err.fd >= 0)
		ev_link(x->a->loop, &x->err);
	if (x->in.fd >= 0)
		ev_link(x->a->loop, &x->in);
	in_flow(x);
	if (x->req.tty && !x->req.vm && x->req.rows && x->req.cols) {
		x->size_tries = EXEC_SIZE_TRIES;
		x->timer.deadline = now_ms() + EXEC_SIZE_MS;
	}
	if (x->c)
		conn_send(x->c, MSG_STARTED, "{}", 2);
out:
	for (int i = 0; i < 2; i++) {
		if (pin[i] >= 0)
			close(pin[i]);
		if (pout[i] >= 0)
			close(pout[i]);
		if (perr[i] >= 0)
			close(perr[i]);
	}
	if (argv != x->req.cmd)
		plan_argv_free(argv);
}

/* ---- the connection ---- */

static void exec_request(struct exec *x, const uint8_t *payload, size_t len)
{
	struct fc_err e;

	conn_set_deadline(x->c, 0);
	conn_heartbeat(x->c, true);
	x->attached = true;
	x->a->sessions++;
	if (exec_req_parse((const char *)payload, len, &x->req, &e) < 0) {
		fail(x, "invalid exec request: %s", e.msg);
		return;
	}
	x->wait_until = now_ms() + x->req.wait_ms;
	if (x->req.vm)
		start_command(x);
	else
		check_container(x);
}

static void exec_frame(struct conn *c, void *sess, const struct proto_hdr *h,
		       const uint8_t *payload)
{
	struct exec *x = sess;
	unsigned rows, cols;
	struct fc_err e;
	long long sig = 0;

	(void)c;
	if (x->ph == EX_REQ) {
		if (h->type == MSG_EXEC) {
			exec_request(x, payload, h->len);
		} else {
			fail(x, "expected an exec request, got a %s frame", proto_type_name(h->type));
		}
		return;
	}
	if (x->ph == EX_DONE)
		return;
	switch (h->type) {
	case MSG_HEARTBEAT:	/* the host's probe after a silence */
		return;
	case MSG_STDIN:
		in_add(x, payload, h->len);
		return;
	case MSG_STDIN_EOF:
		if (!x->req.in)
			return;
		x->in_eof = true;
		in_flow(x);
		return;
	case MSG_SIGNAL: {
		_cleanup_json_ json_t *j = json_parse((const char *)payload, h->len, &e);

		if (!j || !json_is_object(j) || json_object_size(j) != 1 ||
		    json_int(j, "signal", 1, SIGRTMAX, &sig, &e) != 0) {
			fail(x, "signal message must be {\"signal\":1..%d}", SIGRTMAX);
			break;
		}
		log_debug("exec: forwarding signal %lld", sig);
		signal_command(x, sig);
		return;
	}
	case MSG_WINSIZE:
		if (exec_winsize_parse((const char *)payload, h->len, &rows, &cols, &e) < 0) {
			fail(x, "%s", e.msg);
			break;
		}
		if (x->pty && x->master >= 0) {
			struct winsize ws = { .ws_row = rows, .ws_col = cols };

			ioctl(x->master, TIOCSWINSZ, &ws);
		}
		x->req.rows = rows;
		x->req.cols = cols;
		return;
	default:
		fail(x, "unexpected %s frame during an exec", proto_type_name(h->type));
	}
	/* a protocol error: the command goes with its session */
	signal_command(x, SIGKILL);
}

static void exec_writable(struct conn *c, void *sess)
{
	(void)c;
	resume_output(sess);
}

static void exec_timeout(struct conn *c, void *sess)
{
	(void)c;
	fail(sess, "no exec request received within %d s", EXEC_REQ_MS / 1000);
}

static void exec_gone(struct conn *c, void *sess, const char *why)
{
	struct exec *x = sess;

	(void)c;
	x->c = NULL;
	detach(x);
	if (x->child && !x->exited) {
		if (x->ph == EX_RUNNING)
			log_info("exec: host connection %s; killing '%s'", why ? why : "closed",
				 x->req.cmd[0]);
		if (x->ph == EX_RUNNING && !x->req.vm)
			for_marked(x, kill_one, SIGKILL);
		kill(-x->proc.pid, SIGKILL);
		kill(x->proc.pid, SIGKILL);
		x->freeing = true;	/* child_exited() frees */
		close_watch(x, &x->out);
		close_watch(x, &x->err);
		close_watch(x, &x->in);
		ev_unlink(x->a->loop, &x->timer);
		return;
	}
	exec_free(x);
}

static const struct conn_ops exec_ops = {
	.name = "exec",
	.frame = exec_frame,
	.writable = exec_writable,
	.timeout = exec_timeout,
	.gone = exec_gone,
};

static struct exec *exec_new(struct agent *a)
{
	struct exec *x = xcalloc(1, sizeof(*x));

	x->a = a;
	x->master = -1;
	ev_watch_init(&x->timer, -1, timer_event, x);
	ev_watch_init(&x->out, -1, out_event, x);
	ev_watch_init(&x->err, -1, out_event, x);
	ev_watch_init(&x->in, -1, in_event, x);
	ev_link(a->loop, &x->timer);
	return x;
}

void exec_accept(struct agent *a, int fd)
{
	struct exec *x = exec_new(a);

	x->c = conn_new(a->loop, fd, &exec_ops, x);
	conn_set_deadline(x->c, now_ms() + EXEC_REQ_MS);
}

void exec_take(struct agent *a, struct conn *c, const uint8_t *payload, size_t len)
{
	struct exec *x = exec_new(a);

	x->c = c;
	conn_set_session(c, &exec_ops, x);
	exec_request(x, payload, len);
}
