/* run.c - see run.h */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "mark.h"
#include "net.h"
#include "plan.h"
#include "run.h"
#include "util.h"
#include "volume.h"

#define DRAIN_MS	 5000	/* pipes kept open by an orphan after the child exits */
#define LOAD_CAPTURE_MAX (64 * 1024)
#define ERROR_TEXT_MAX	 2000
#define IN_HIGH		 (256 * 1024)	/* queued stdin at which the host is paused */

enum run_state { RUN_IDLE, RUN_STARTING, RUN_RUNNING, RUN_EXITED };

static const char *const state_names[] = {
	[RUN_IDLE] = "idle", [RUN_STARTING] = "starting",
	[RUN_RUNNING] = "running", [RUN_EXITED] = "exited",
};

/* One step's process: podman load, podman run, or (prepare) podman image
 * exists. */
struct child {
	struct ev_child proc;
	bool active;		/* started and not yet done */
	bool exited;
	int status;
	struct ev_watch out, err;	/* pipe read ends, fd -1 at EOF */
	struct ev_watch drain;		/* timer once exited */
	bool capture;
	char *cap;
	size_t caplen;
};

struct run {
	struct agent *a;
	enum run_state state;
	bool active;		/* see run_active() */
	enum { STEP_LOAD, STEP_RUN, STEP_WARM } step;	/* what the child is */
	bool poweroff;
	struct plan plan;
	struct conn *conn;	/* the host that sent the plan; NULL once gone */
	struct child ch;
	int exit_code;		/* RUN_EXITED */
	bool seen;		/* run_container_seen() */
	/* the container's stdin ("stdin": true) and terminal ("tty": true) */
	struct ev_watch in;	/* pipe write end or a dup of the pty master, -1 */
	int master;		/* pty master (also ch.out.fd) or -1 */
	uint8_t *ib;
	size_t ilen, icap;
	bool in_eof, in_paused;
	unsigned rows, cols;	/* the last WINSIZE */
	char *error;		/* RUN_EXITED without a container exit: why */
	bool store_mounted;	/* PLAN_STORE_DIR holds the VM's image store */
};

static const struct conn_ops run_ops;

static void run_complete(struct run *r)
{
	r->active = false;
	if (r->poweroff) {
		log_info("the plan asked to power off");
		r->a->end = AGENT_POWEROFF;
	} else if (r->a->terminate) {
		r->a->end = AGENT_TERMINATE;
	}
}

static void detach(struct run *r)
{
	if (!r->conn)
		return;
	r->conn = NULL;
	r->a->sessions--;
}

/* The last frame of the run (EXIT or ERROR) is queued: finish. */
static void last_frame_sent(struct run *r)
{
	vol_release();	/* the container is gone: its volumes go too */
	if (r->conn)
		conn_finish(r->conn);	/* run_gone() completes the run */
	else
		run_complete(r);
}

/* The run ends without a container exit status: ERROR @msg. */
static void fail_run(struct run *r, const char *msg)
{
	free(r->error);
	r->error = xstrdup(msg);
	r->state = RUN_EXITED;
	r->exit_code = 125;	/* podman's code for its own failures */
	if (r->conn)
		conn_send_error(r->conn, msg);
	else
		log_warn("run failed: %s", msg);
	last_frame_sent(r);
}

/* ---- the child's pipes ---- */

static void capture(struct child *c, const char *buf, size_t n)
{
	if (!c->cap)
		c->cap = xmalloc(LOAD_CAPTURE_MAX + 1);
	if (n > LOAD_CAPTURE_MAX) {
		buf += n - LOAD_CAPTURE_MAX;
		n = LOAD_CAPTURE_MAX;
	}
	/* Keep the end: that is where podman's verdict is. */
	if (c->caplen + n > LOAD_CAPTURE_MAX) {
		size_t drop = c->caplen + n - LOAD_CAPTURE_MAX;

		memmove(c->cap, c->cap + drop, c->caplen - drop);
		c->caplen -= drop;
	}
	memcpy(c->cap + c->caplen, buf, n);
	c->caplen += n;
	c->cap[c->caplen] = '\0';
}

static void close_pipe(struct run *r, struct ev_watch *w)
{
	if (w->fd < 0)
		return;
	ev_unlink(r->a->loop, w);
	close(w->fd);
	w->fd = -1;
}

/* Output is held back while the host's queue is full. */
static bool paused(const struct run *r)
{
	return r->conn && !r->ch.capture && !conn_has_room(r->conn);
}

static void child_step_done(struct run *r);

static void check_done(struct run *r)
{
	struct child *c = &r->ch;

	if (c->active && c->exited && c->out.fd < 0 && c->err.fd < 0)
		child_step_done(r);
}

static void arm_drain(struct run *r)
{
	struct child *c = &r->ch;

	if (c->exited)
		c->drain.deadline = paused(r) ? 0 : now_ms() + DRAIN_MS;
}

static void pipe_event(struct ev_watch *w, short revents)
{
	static char buf[PROTO_DATA_CHUNK];
	struct run *r = w->data;
	struct child *c = &r->ch;
	uint8_t type = w == &c->out ? MSG_STDOUT : MSG_STDERR;
	ssize_t n;

	(void)revents;
	if (paused(r)) {
		w->events = 0;	/* run_writable() resumes */
		return;
	}
	n = read(w->fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {	/* EOF; EIO: a pty whose other side is all closed */
		if (w == &c->out && r->master >= 0)
			r->master = -1;
		close_pipe(r, w);
		check_done(r);
		return;
	}
	if (!c->capture)
		mark(MARK_OUTPUT);	/* the container's first byte (mark.h) */
	if (c->capture)
		capture(c, buf, n);
	else if (r->conn)
		conn_send(r->conn, type, buf, n);
	/* else: the host is gone, the output is discarded */
	arm_drain(r);
}

static void resume_pipes(struct run *r)
{
	struct child *c = &r->ch;

	if (c->out.fd >= 0)
		c->out.events = POLLIN;
	if (c->err.fd >= 0)
		c->err.events = POLLIN;
	arm_drain(r);
}

static void drain_event(struct ev_watch *w, short revents)
{
	struct run *r = w->data;

	(void)revents;
	if (paused(r)) {
		w->deadline = 0;
		return;
	}
	/* An orphan of podman still holds the pipes: stop waiting. */
	log_debug("closing output pipes still held open %d s after podman exited",
		  DRAIN_MS / 1000);
	close_pipe(r, &r->ch.out);
	close_pipe(r, &r->ch.err);
	check_done(r);
}

static void child_exited(struct ev_child *p, int status)
{
	struct run *r = p->data;
	struct child *c = &r->ch;

	c->exited = true;
	c->status = status;
	ev_link(r->a->loop, &c->drain);
	arm_drain(r);
	check_done(r);
}

/* fork + exec with stdin from /dev/null and stdout/stderr on @out/@err.
 * An exec failure is reported on the child's stderr with status 127, the
 * way a shell does, so it reaches the user like any other podman error. */
static pid_t start_child(char **argv, int in, int out, int err, const char *slave,
			 struct fc_err *e)
{
	sigset_t none;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return fc_err_set(e, errno, "fork");
	if (pid)
		return pid;
	/* Dispositions the agent inherited (SIG_IGN for SIGINT in a background
	 * job) would reach the container and make MSG_SIGNAL a no-op. */
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (slave) {	/* the container's terminal: our controlling tty */
		setsid();
		in = out = err = open(slave, O_RDWR);
		if (in < 0 || ioctl(in, TIOCSCTTY, 0) < 0)
			_exit(127);
	}
	if (in < 0)
		in = open("/dev/null", O_RDONLY);
	if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(127);
	/* Every other fd of the agent is CLOEXEC. */
	execvp(argv[0], argv);
	dprintf(2, "fc-agent: execute '%s': %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* ---- the container's stdin and terminal (podman run -i / -t) ---- */

static void in_close(struct run *r)
{
	if (r->in.fd < 0)
		return;
	ev_unlink(r->a->loop, &r->in);
	close(r->in.fd);
	r->in.fd = -1;
	r->ilen = 0;
}

static void in_flow(struct run *r)
{
	bool want = r->ilen >= IN_HIGH;

	if (r->conn && want != r->in_paused) {
		r->in_paused = want;
		conn_pause_input(r->conn, want);
	}
	if (r->in.fd >= 0)
		r->in.events = r->ilen || r->in_eof ? POLLOUT : 0;
}

static void in_event(struct ev_watch *w, short revents)
{
	struct run *r = w->data;

	(void)revents;
	while (r->ilen) {
		ssize_t n = write(w->fd, r->ib, r->ilen);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {	/* the container closed its stdin: drop the rest */
			in_close(r);
			in_flow(r);
			return;
		}
		memmove(r->ib, r->ib + n, r->ilen - n);
		r->ilen -= n;
	}
	if (!r->ilen && r->in_eof) {
		if (r->master >= 0) {
			struct termios t;
			char eof = tcgetattr(w->fd, &t) == 0 && t.c_cc[VEOF] ? t.c_cc[VEOF] : 4;

			if (write(w->fd, &eof, 1) < 0 && errno == EAGAIN)
				return;
			r->in_eof = false;
			w->events = 0;
		} else {
			in_close(r);
		}
	}
	in_flow(r);
}

static void in_add(struct run *r, const uint8_t *buf, size_t len)
{
	if (!r->plan.in || r->in_eof || (r->state == RUN_RUNNING && r->in.fd < 0) ||
	    r->state == RUN_EXITED)
		return;
	if (r->ilen + len > r->icap) {
		r->icap = r->ilen + len + 16 * 1024;
		r->ib = xrealloc(r->ib, r->icap);
	}
	memcpy(r->ib + r->ilen, buf, len);
	r->ilen += len;
	in_flow(r);
}

static void set_winsize(struct run *r)
{
	struct winsize ws = { .ws_row = r->rows, .ws_col = r->cols };

	if (r->master >= 0 && r->rows && r->cols)
		ioctl(r->master, TIOCSWINSZ, &ws);
}

/* run_child() for podman run with a stdin pipe, or with a pty that is
 * stdin, stdout and stderr (its master carries both ways). */
static int run_child_stdio(struct run *r, char **argv, struct fc_err *e)
{
	struct child *c = &r->ch;
	int pin[2] = { -1, -1 }, po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	_cleanup_close_ int master = -1;
	char slave[128];
	pid_t pid;

	if (r->plan.tty) {
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
		    ptsname_r(master, slave, sizeof(slave)) != 0)
			return fc_err_set(e, errno, "open a pseudo-terminal");
		r->master = master;
		set_winsize(r);
		r->master = -1;
		pid = start_child(argv, -1, -1, -1, slave, e);
	} else {
		if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
			fc_err_set(e, errno, "pipe");
			pid = -1;
		} else {
			pid = start_child(argv, pin[0], po[1], pe[1], NULL, e);
		}
	}
	for (int i = 0; i < 2 && pid < 0; i++) {
		if (pin[i] >= 0)
			close(pin[i]);
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	if (pid < 0)
		return -1;
	c->active = true;
	c->proc = (struct ev_child){ .pid = pid, .cb = child_exited, .data = r };
	ev_child_add(r->a->loop, &c->proc);
	ev_watch_init(&r->in, -1, in_event, r);
	if (r->plan.tty) {
		int dup = fcntl(master, F_DUPFD_CLOEXEC, 3);

		fcntl(master, F_SETFL, O_NONBLOCK | O_RDWR);
		r->master = master;
		c->out.fd = steal_fd(&master);
		if (dup >= 0 && r->plan.in)
			r->in.fd = dup;
		else if (dup >= 0)
			close(dup);
	} else {
		close(pin[0]);
		close(po[1]);
		close(pe[1]);
		fcntl(po[0], F_SETFL, O_NONBLOCK);
		fcntl(pe[0], F_SETFL, O_NONBLOCK);
		fcntl(pin[1], F_SETFL, O_NONBLOCK);
		c->out.fd = po[0];
		c->err.fd = pe[0];
		r->in.fd = pin[1];
	}
	c->out.events = POLLIN;
	ev_link(r->a->loop, &c->out);
	if (c->err.fd >= 0) {
		c->err.events = POLLIN;
		ev_link(r->a->loop, &c->err);
	}
	if (r->in.fd >= 0) {
		ev_link(r->a->loop, &r->in);
		in_flow(r);
	}
	return 0;
}

/* Start @argv as the current step; capture (load) or stream (run). */
static int run_child(struct run *r, char **argv, bool capture_output, struct fc_err *e)
{
	struct child *c = &r->ch;
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	pid_t pid;

	free(c->cap);
	memset(c, 0, sizeof(*c));
	ev_watch_init(&c->out, -1, pipe_event, r);
	ev_watch_init(&c->err, -1, pipe_event, r);
	ev_watch_init(&c->drain, -1, drain_event, r);
	if (!capture_output && (r->plan.in || r->plan.tty))
		return run_child_stdio(r, argv, e);
	/* Only our ends are non-blocking: the container's output stays blocking. */
	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0 ||
	    fcntl(po[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(pe[0], F_SETFL, O_NONBLOCK) < 0) {
		fc_err_set(e, errno, "pipe");
		goto fail;
	}
	pid = start_child(argv, -1, po[1], pe[1], NULL, e);
	if (pid < 0)
		goto fail;
	close(po[1]);
	close(pe[1]);
	c->active = true;
	c->capture = capture_output;
	c->proc = (struct ev_child){ .pid = pid, .cb = child_exited, .data = r };
	ev_child_add(r->a->loop, &c->proc);
	c->out.fd = po[0];
	c->err.fd = pe[0];
	c->out.events = c->err.events = POLLIN;
	ev_link(r->a->loop, &c->out);
	ev_link(r->a->loop, &c->err);
	if (capture_output)
		capture(c, "", 0);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	return -1;
}

static char *describe_status(int status)
{
	if (WIFSIGNALED(status))
		return xasprintf("killed by signal %d", WTERMSIG(status));
	return xasprintf("exited with status %d", WEXITSTATUS(status));
}

/* "WHAT: <the tail of its output>" */
static char *step_error(const struct child *c, const char *what)
{
	const char *text = c->cap ? c->cap : "";
	size_t len = c->caplen;

	while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
		len--;
	while (len && (*text == '\n' || *text == ' ')) {
		text++;
		len--;
	}
	if (len > ERROR_TEXT_MAX) {
		text += len - ERROR_TEXT_MAX;
		len = ERROR_TEXT_MAX;
	}
	if (!len) {
		_cleanup_free_ char *st = describe_status(c->status);

		return xasprintf("%s: %s", what, st);
	}
	return xasprintf("%s: %.*s", what, (int)len, text);
}

static void start_container(struct run *r, const char *ref)
{
	char **argv = plan_run_argv(r->a->runner, &r->plan, ref);
	struct fc_err e;
	int rc;

	log_info("running '%s' as '%s'", ref, r->plan.name);
	r->step = STEP_RUN;
	mark(MARK_EXEC);
	rc = run_child(r, argv, false, &e);
	plan_argv_free(argv);
	if (rc < 0) {
		fc_err_wrap(&e, "podman run");
		fail_run(r, e.msg);
		return;
	}
	/* podman creates and starts the container right away; a failure to do
	 * so still arrives as its stderr and exit status 125-127. */
	r->state = RUN_RUNNING;
	if (r->conn)
		conn_send(r->conn, MSG_STARTED, "{}", 2);
}

static void prepare_end(struct run *r, const char *error);

/* The current step's child has exited and its pipes are closed. */
static void child_step_done(struct run *r)
{
	struct child *c = &r->ch;
	_cleanup_free_ char *ref = NULL;
	_cleanup_free_ char *st = describe_status(c->status);
	struct fc_err e;

	c->active = false;
	ev_unlink(r->a->loop, &c->drain);
	if (r->step == STEP_WARM) {
		_cleanup_free_ char *m = NULL;

		/* podman image exists: 1 (and silence) for an image it lacks */
		if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 1 && !c->caplen)
			m = xasprintf("image '%s' is not in the image store", r->plan.ref);
		else if (!WIFEXITED(c->status) || WEXITSTATUS(c->status))
			m = step_error(c, "podman image exists");
		prepare_end(r, m);
		return;
	}
	if (r->step == STEP_LOAD) {
		if (!WIFEXITED(c->status) || WEXITSTATUS(c->status)) {
			_cleanup_free_ char *m = step_error(c, "podman load");

			fail_run(r, m);
			return;
		}
		if (r->plan.ref) {
			ref = xstrdup(r->plan.ref);
		} else if (!(ref = plan_loaded_ref(c->cap, &e))) {
			fc_err_wrap(&e, "podman load");
			fail_run(r, e.msg);
			return;
		}
		free(c->cap);
		c->cap = NULL;
		if (r->a->terminate) {
			fail_run(r, "fc-agent was stopped before the container started");
			return;
		}
		start_container(r, ref);
		return;
	}
	log_info("podman run %s", st);
	mark_report();
	in_close(r);
	r->state = RUN_EXITED;
	if (WIFSIGNALED(c->status)) {
		r->exit_code = 128 + WTERMSIG(c->status);
		if (r->conn)
			conn_send_json(r->conn, MSG_EXIT,
				       json_pack("{s:i}", "signal", WTERMSIG(c->status)));
	} else {
		r->exit_code = WEXITSTATUS(c->status);
		if (r->conn)
			conn_send_json(r->conn, MSG_EXIT, json_pack("{s:i}", "code", r->exit_code));
	}
	last_frame_sent(r);
}

/* ---- the host connection ---- */

static int parse_signal(const uint8_t *buf, size_t len, int *sig, struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, e);
	long long n = 0;

	if (!j)
		return -1;
	if (!json_is_object(j) || json_object_size(j) != 1 ||
	    json_int(j, "signal", 1, SIGRTMAX, &n, e) != 0)
		return fc_err_set(e, 0, "signal message must be {\"signal\":1..%d}", SIGRTMAX);
	*sig = n;
	return 0;
}

static const struct conn_ops dropped_ops = { .name = "run (dropped)" };

/* A protocol error by the host: tell it, let the container run on. */
static void drop_host(struct run *r, const char *msg)
{
	struct conn *c = r->conn;

	conn_send_error(c, msg);
	conn_set_session(c, &dropped_ops, NULL);
	conn_finish(c);
	detach(r);
	in_close(r);
	log_warn("host connection dropped; the container keeps running, its output is discarded");
	resume_pipes(r);
}

static void run_frame(struct conn *c, void *sess, const struct proto_hdr *h,
		      const uint8_t *payload)
{
	struct run *r = sess;
	struct fc_err e;
	int sig = 0;

	(void)c;
	switch (h->type) {
	case MSG_SIGNAL:
		if (parse_signal(payload, h->len, &sig, &e) < 0) {
			drop_host(r, e.msg);
			return;
		}
		log_info("forwarding signal %d", sig);
		if (r->ch.active && !r->ch.exited)
			kill(r->ch.proc.pid, sig);
		break;
	case MSG_HEARTBEAT:	/* the host's probe: its arrival woke us, that is all */
		break;
	case MSG_STDIN:
		/* Without "stdin" the container's stdin is /dev/null: ignored. */
		in_add(r, payload, h->len);
		break;
	case MSG_STDIN_EOF:
		if (r->plan.in) {
			r->in_eof = true;
			in_flow(r);
		}
		break;
	case MSG_WINSIZE: {
		unsigned rows, cols;

		if (exec_winsize_parse((const char *)payload, h->len, &rows, &cols, &e) < 0) {
			drop_host(r, e.msg);
			return;
		}
		r->rows = rows;
		r->cols = cols;
		set_winsize(r);
		break;
	}
	default: {
		_cleanup_free_ char *m = xasprintf("unexpected %s frame during a run",
						   proto_type_name(h->type));

		drop_host(r, m);
	}
	}
}

static void run_writable(struct conn *c, void *sess)
{
	(void)c;
	resume_pipes(sess);
}

static void run_gone(struct conn *c, void *sess, const char *why)
{
	struct run *r = sess;

	(void)c;
	detach(r);
	in_close(r);
	if (r->ch.active) {
		log_warn("host connection: %s; the container keeps running, its output is discarded",
			 why ? why : "closed");
		resume_pipes(r);
		return;
	}
	if (r->state == RUN_EXITED)
		run_complete(r);
}

static const struct conn_ops run_ops = {
	.name = "run",
	.frame = run_frame,
	.writable = run_writable,
	.gone = run_gone,
};

/* ---- the interface ---- */

struct run *run_new(struct agent *a)
{
	struct run *r = xcalloc(1, sizeof(*r));

	r->a = a;
	r->ch.out.fd = r->ch.err.fd = -1;
	r->master = -1;
	ev_watch_init(&r->in, -1, NULL, r);
	return r;
}

void run_free(struct run *r)
{
	if (!r)
		return;
	if (r->ch.active)
		ev_child_del(r->a->loop, &r->ch.proc);
	close_pipe(r, &r->ch.out);
	close_pipe(r, &r->ch.err);
	ev_unlink(r->a->loop, &r->ch.drain);
	in_close(r);
	free(r->ib);
	free(r->ch.cap);
	plan_free(&r->plan);
	free(r->error);
	free(r);
}

bool run_active(const struct run *r)
{
	return r->active;
}

bool run_stop(struct run *r)
{
	if (!r->active)
		return false;
	if (r->ch.active && !r->ch.exited)
		kill(r->ch.proc.pid, SIGTERM);
	return true;
}

/* Mount the image store disk @disk read-only at PLAN_STORE_DIR, once per
 * VM (it is the VM's one image disk). Read-only all the way down: the
 * container's writable layer is in the guest's own rootfs (graphroot). */
static int mount_store(struct run *r, const char *disk, struct fc_err *e)
{
	struct stat st;

	if (r->store_mounted)
		return 0;
	if (!r->a->pid1) {	/* test mode: the host's mounts are not ours */
		log_info("test mode: not mounting the image store '%s'", disk);
		return 0;
	}
	if (stat(disk, &st) < 0)
		return fc_err_set(e, errno, "'%s'", disk);
	if (!S_ISBLK(st.st_mode))
		return fc_err_set(e, 0, "'%s' is not a block device", disk);
	if (mkdir_p(PLAN_STORE_DIR, 0755, e) < 0)
		return -1;
	if (mount(disk, PLAN_STORE_DIR, "ext4", MS_RDONLY, "") < 0)
		return fc_err_set(e, errno, "mount '%s' on '%s' (not an image store, or a damaged one?)",
				  disk, PLAN_STORE_DIR);
	r->store_mounted = true;
	log_info("image store '%s' mounted read-only at %s", disk, PLAN_STORE_DIR);
	return 0;
}

void run_plan(struct run *r, struct conn *c, const uint8_t *payload, size_t len)
{
	char **argv;
	struct fc_err e;
	int rc;

	if (r->active) {
		conn_send_error(c, "busy: a container is already running");
		conn_finish(c);
		return;
	}
	plan_free(&r->plan);
	free(r->error);
	r->error = NULL;
	r->active = true;
	r->poweroff = false;
	r->seen = false;
	in_close(r);
	r->master = -1;
	r->in_eof = r->in_paused = false;
	r->rows = r->cols = 0;
	r->conn = c;
	r->a->sessions++;
	conn_set_session(c, &run_ops, r);
	conn_set_deadline(c, 0);
	conn_heartbeat(c, true);
	mark(MARK_PLAN);
	rc = plan_parse((const char *)payload, len, &r->plan, &e);
	r->poweroff = r->plan.poweroff;
	if (rc < 0) {
		_cleanup_free_ char *m = xasprintf("invalid plan: %s", e.msg);

		plan_free(&r->plan);
		fail_run(r, m);
		return;
	}
	/* The guest's network before the container (see net.h); a test-mode
	 * agent runs on a host, whose network is not its to change. */
	if (r->plan.net.set && r->a->pid1 && net_configure(&r->plan.net, &e) < 0) {
		_cleanup_free_ char *m = xasprintf("network: %s", e.msg);

		fail_run(r, m);
		return;
	}
	/* host directory volumes: mounted before podman run binds them */
	if (r->plan.nvols && vol_mount_all(&r->plan, &e) < 0) {
		_cleanup_free_ char *m = xasprintf("volumes: %s", e.msg);

		fail_run(r, m);
		return;
	}
	r->state = RUN_STARTING;
	if (r->plan.store) {
		/* The image is already unpacked on the disk: no load. */
		if (mount_store(r, r->plan.disk, &e) < 0) {
			_cleanup_free_ char *m = xasprintf("image store: %s", e.msg);

			fail_run(r, m);
			return;
		}
		start_container(r, r->plan.ref);
		return;
	}
	r->step = STEP_LOAD;
	argv = plan_load_argv(r->a->runner, &r->plan);
	log_info("loading the image from '%s'", r->plan.disk);
	rc = run_child(r, argv, true, &e);
	plan_argv_free(argv);
	if (rc < 0) {
		fc_err_wrap(&e, "podman load");
		fail_run(r, e.msg);
	}
}

/* ---- prepare ---- */

/* The host went away during a prepare: the warm-up ends by itself. */
static void prepare_gone(struct conn *c, void *sess, const char *why)
{
	(void)c;
	(void)why;
	detach(sess);
}

static void prepare_frame(struct conn *c, void *sess, const struct proto_hdr *h,
			  const uint8_t *payload)
{
	struct run *r = sess;
	_cleanup_free_ char *m = xasprintf("unexpected %s frame during a prepare",
					   proto_type_name(h->type));

	(void)payload;
	conn_send_error(c, m);
	conn_set_session(c, &dropped_ops, NULL);
	conn_finish(c);
	detach(r);
}

static const struct conn_ops prepare_ops = {
	.name = "prepare",
	.frame = prepare_frame,
	.gone = prepare_gone,
};

/* The warm-up is over: PREPARED (or ERROR @error) to the host, if it is
 * still there, and the agent idle again, its store left mounted. */
static void prepare_end(struct run *r, const char *error)
{
	struct conn *c = r->conn;

	if (c) {
		if (error)
			conn_send_error(c, error);
		else
			conn_send(c, MSG_PREPARED, "{}", 2);
		conn_set_session(c, &dropped_ops, NULL);
		conn_finish(c);
		detach(r);
	}
	if (error)
		log_warn("prepare: %s", error);
	else
		log_info("image '%s' ready", r->plan.ref);
	free(r->ch.cap);
	r->ch.cap = NULL;
	plan_free(&r->plan);
	r->state = RUN_IDLE;
	r->poweroff = false;	/* the plan's: for its run, not for this */
	run_complete(r);
}

void run_prepare(struct run *r, struct conn *c, const uint8_t *payload, size_t len)
{
	_cleanup_free_ char *m = NULL;
	char **argv;
	struct fc_err e;
	int rc;

	if (r->active || r->state != RUN_IDLE) {
		conn_send_error(c, r->active ? "busy: a container is already running"
					     : "prepare is for a VM that has run nothing yet");
		conn_finish(c);
		return;
	}
	plan_free(&r->plan);
	if (plan_parse((const char *)payload, len, &r->plan, &e) < 0)
		m = xasprintf("invalid plan: %s", e.msg);
	else if (!r->plan.store)
		m = xstrdup("prepare needs a plan whose image is an image store (\"store\": true)");
	else if (mount_store(r, r->plan.disk, &e) < 0)
		m = xasprintf("image store: %s", e.msg);
	if (m) {
		plan_free(&r->plan);
		conn_send_error(c, m);
		conn_finish(c);
		return;
	}
	r->active = true;
	r->step = STEP_WARM;
	r->conn = c;
	r->a->sessions++;
	conn_set_session(c, &prepare_ops, r);
	conn_set_deadline(c, 0);
	conn_heartbeat(c, true);
	argv = plan_warm_argv(r->a->runner, &r->plan);
	rc = run_child(r, argv, true, &e);
	plan_argv_free(argv);
	if (rc < 0) {
		_cleanup_free_ char *fm = xasprintf("podman image exists: %s", e.msg);

		prepare_end(r, fm);
	}
}

json_t *run_status(const struct run *r)
{
	json_t *j = json_pack("{s:i,s:s,s:o,s:i}", "version", 1, "state", state_names[r->state],
			      "container",
			      r->state != RUN_IDLE && r->plan.name ? json_string(r->plan.name)
								   : json_null(),
			      "sessions", (int)r->a->sessions);

	if (r->state == RUN_EXITED) {
		json_object_set_new(j, "exit_code", json_integer(r->exit_code));
		if (r->error)
			json_object_set_new(j, "error", conn_json_text(r->error, true));
	}
	return j;
}

const char *run_state_name(const struct run *r)
{
	return state_names[r->state];
}

const char *run_container_name(const struct run *r)
{
	return r->state != RUN_IDLE ? r->plan.name : NULL;
}

const char *run_image_store(const struct run *r)
{
	return r->state != RUN_IDLE && r->plan.store ? PLAN_STORE_DIR : NULL;
}

bool run_container_seen(const struct run *r)
{
	return r->seen && r->state == RUN_RUNNING;
}

void run_container_set_seen(struct run *r)
{
	r->seen = true;
}
