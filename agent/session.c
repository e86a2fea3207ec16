/* session.c - see session.h */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "plan.h"
#include "proto.h"
#include "session.h"
#include "util.h"

#define HEARTBEAT_MS	  2000
#define PLAN_WAIT_MS	  60000	/* a host that connects and says nothing */
#define DRAIN_MS	  5000	/* pipes kept open by an orphan after the child exits */
#define LINGER_MS	  5000	/* wait for the host to read the last frame */
#define FRAME_STALL_S	  10	/* a frame started but never finished */
#define LOAD_CAPTURE_MAX  (64 * 1024)
#define ERROR_TEXT_MAX	  2000

struct sess {
	const struct agent_cfg *cfg;
	int conn;		/* -1 once the host is gone */
	uint64_t last_hb;
	bool terminate;		/* SIGTERM/SIGINT in test mode */
	bool running;		/* podman load or run is under way */
};

struct child {
	pid_t pid;
	int status;
	bool exited;
	uint64_t exit_ms;
	int out, err;		/* pipe read ends, -1 at EOF */
	char *cap;		/* load: output captured here instead of streamed */
	size_t caplen;
};

static void host_gone(struct sess *s, const char *why)
{
	if (s->conn < 0)
		return;
	log_warn("host connection: %s%s", why,
		 s->running ? "; the container keeps running, its output is discarded" : "");
	close(s->conn);
	s->conn = -1;
}

static void send_frame(struct sess *s, uint8_t type, const void *buf, size_t len)
{
	struct fc_err e;

	if (s->conn >= 0 && proto_send(s->conn, type, buf, len, &e) < 0)
		host_gone(s, e.msg);
}

static void send_json(struct sess *s, uint8_t type, json_t *j)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (!text)
		abort();	/* jansson only fails to serialise on out of memory */
	send_frame(s, type, text, strlen(text));
}

/* Control characters other than newline become '?': the text ends up on the
 * user's terminal. */
static void send_error(struct sess *s, const char *msg)
{
	_cleanup_free_ char *clean = xstrdup(msg);

	for (char *c = clean; *c; c++)
		if ((unsigned char)*c < ' ' && *c != '\n')
			*c = '?';
	log_warn("error sent to host: %s", clean);
	send_json(s, MSG_ERROR, json_pack("{s:s}", "message", clean));
}

/* A second connection while a session runs (a health check, a confused
 * host) gets HELLO - the agent is alive - and ERROR "busy", never a queue. */
static void refuse_busy(const struct agent_cfg *cfg)
{
	static const char msg[] = "{\"message\":\"busy: this agent is already running a container\"}";
	struct timeval tv = { .tv_sec = 1 };
	_cleanup_close_ int fd = accept4(cfg->lfd, NULL, NULL, SOCK_CLOEXEC);
	struct fc_err e;
	char hello[64];

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	snprintf(hello, sizeof(hello), "{\"version\":%d,\"agent\":\"fc-agent\"}", PROTO_VERSION);
	if (proto_send_str(fd, MSG_HELLO, hello, &e) == 0)
		proto_send_str(fd, MSG_ERROR, msg, &e);
	log_debug("refused a second connection: busy");
}

bool session_reap(pid_t pid, int *status)
{
	bool found = false;
	int st;
	pid_t r;

	while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
		if (r == pid) {
			*status = st;
			found = true;
		}
	}
	return found;
}

/* Drain the signalfd: reap, note termination requests. */
static void handle_signals(struct sess *s, struct child *c)
{
	struct signalfd_siginfo si;

	while (read(s->cfg->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !s->cfg->pid1) {
			s->terminate = true;
			if (c && c->pid > 0 && !c->exited)
				kill(c->pid, SIGTERM);
		}
	}
	if (c && c->pid > 0 && !c->exited && session_reap(c->pid, &c->status)) {
		c->exited = true;
		c->exit_ms = now_ms();
	} else if (!c || c->exited) {
		int dummy;

		session_reap(-1, &dummy);
	}
}

/* fork + exec with stdin from /dev/null and stdout/stderr on @out/@err.
 * An exec failure is reported on the child's stderr with status 127, the
 * way a shell does, so it reaches the user like any other podman error. */
static pid_t start_child(char **argv, int out, int err, struct fc_err *e)
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
	int in = open("/dev/null", O_RDONLY);
	if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(127);
	/* Every other fd of the agent is CLOEXEC. */
	execvp(argv[0], argv);
	dprintf(2, "fc-agent: execute '%s': %s\n", argv[0], strerror(errno));
	_exit(127);
}

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

/* Read what one pipe has: forward as @type frames, or capture. */
static void pump_pipe(struct sess *s, struct child *c, int *fd, uint8_t type)
{
	static char buf[PROTO_DATA_CHUNK];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return;
	}
	if (c->cap)
		capture(c, buf, n);
	else
		send_frame(s, type, buf, n);
}

static int parse_signal(const uint8_t *buf, size_t len, int *sig, struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, e);
	long long n = 0;

	if (!j)
		return -1;
	if (!json_is_object(j) || json_object_size(j) != 1 ||
	    json_int(j, "signal", 1, SIGRTMAX, &n, e) != 0)
		return fc_err_set(e, 0, "signal message must be {\"signal\":1..%d}",
				  SIGRTMAX);
	*sig = n;
	return 0;
}

/* One frame from the host while a child runs. */
static void host_frame(struct sess *s, struct child *c)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct proto_hdr h;
	struct fc_err e;
	int r, sig = 0;

	r = proto_recv(s->conn, &h, &buf, &e);
	if (r <= 0) {
		host_gone(s, r ? e.msg : "closed by the host");
		return;
	}
	switch (h.type) {
	case MSG_SIGNAL:
		if (parse_signal(buf, h.len, &sig, &e) < 0) {
			send_error(s, e.msg);
			host_gone(s, "protocol error");
			return;
		}
		log_info("forwarding signal %d", sig);
		if (!c->exited)
			kill(c->pid, sig);
		break;
	case MSG_STDIN:
	case MSG_STDIN_EOF:
		/* The container's stdin is /dev/null in this version. */
		log_debug("ignoring %s frame", proto_type_name(h.type));
		break;
	default: {
		_cleanup_free_ char *m = xasprintf("unexpected %s frame during a run",
						   proto_type_name(h.type));

		send_error(s, m);
		host_gone(s, "protocol error");
	}
	}
}

/* Run @c until it has exited and its pipes are at EOF. */
static void pump(struct sess *s, struct child *c)
{
	for (;;) {
		struct pollfd p[5];
		int n = 0, i_conn = -1, i_out = -1, i_err = -1, timeout;
		uint64_t now = now_ms();

		if (c->exited && c->out < 0 && c->err < 0)
			return;
		if (c->exited && now >= c->exit_ms + DRAIN_MS) {
			/* An orphan of podman still holds the pipes: stop waiting. */
			if (c->out >= 0)
				close(c->out);
			if (c->err >= 0)
				close(c->err);
			c->out = c->err = -1;
			return;
		}
		if (s->conn >= 0 && now >= s->last_hb + HEARTBEAT_MS) {
			send_frame(s, MSG_HEARTBEAT, NULL, 0);
			s->last_hb = now;
		}
		timeout = -1;
		if (s->conn >= 0)
			timeout = (int)(s->last_hb + HEARTBEAT_MS - now);
		if (c->exited && (timeout < 0 || c->exit_ms + DRAIN_MS - now < (uint64_t)timeout))
			timeout = (int)(c->exit_ms + DRAIN_MS - now);
		p[n++] = (struct pollfd){ .fd = s->cfg->sigfd, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = s->cfg->lfd, .events = POLLIN };
		if (s->conn >= 0) {
			i_conn = n;
			p[n++] = (struct pollfd){ .fd = s->conn, .events = POLLIN };
		}
		if (c->out >= 0) {
			i_out = n;
			p[n++] = (struct pollfd){ .fd = c->out, .events = POLLIN };
		}
		if (c->err >= 0) {
			i_err = n;
			p[n++] = (struct pollfd){ .fd = c->err, .events = POLLIN };
		}
		if (poll(p, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			sleep(1);
			continue;
		}
		if (p[0].revents)
			handle_signals(s, c);
		if (p[1].revents)
			refuse_busy(s->cfg);
		/* stdout before stderr within one round keeps ordering close to
		 * what the program wrote; the two streams are independent anyway. */
		if (i_out >= 0 && p[i_out].revents)
			pump_pipe(s, c, &c->out, MSG_STDOUT);
		if (i_err >= 0 && p[i_err].revents)
			pump_pipe(s, c, &c->err, MSG_STDERR);
		if (i_conn >= 0 && s->conn >= 0 && p[i_conn].revents)
			host_frame(s, c);
	}
}

/* Start @argv with both output pipes; capture (load) or stream (run). */
static int run_child(char **argv, bool capture_output, struct child *c,
		     struct fc_err *e)
{
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };

	memset(c, 0, sizeof(*c));
	c->out = c->err = -1;
	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		fc_err_set(e, errno, "pipe");
		goto fail;
	}
	c->pid = start_child(argv, po[1], pe[1], e);
	if (c->pid < 0)
		goto fail;
	close(po[1]);
	close(pe[1]);
	c->out = po[0];
	c->err = pe[0];
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

/* "podman load: <the tail of its output>" */
static char *load_error(const struct child *c)
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

		return xasprintf("podman load: %s", st);
	}
	return xasprintf("podman load: %.*s", (int)len, text);
}

static void send_exit(struct sess *s, int status)
{
	json_t *j;

	if (WIFSIGNALED(status))
		j = json_pack("{s:i}", "signal", WTERMSIG(status));
	else
		j = json_pack("{s:i}", "code", WEXITSTATUS(status));
	send_json(s, MSG_EXIT, j);
}

/* Load the image and run the container. Returns after EXIT or ERROR went out. */
static void execute(struct sess *s, const struct plan *p)
{
	_cleanup_free_ char *ref = NULL;
	struct child c;
	struct fc_err e;
	char **argv;
	int r;

	s->last_hb = now_ms();
	s->running = true;
	argv = plan_load_argv(s->cfg->runner, p);
	log_info("loading the image from '%s'", p->disk);
	r = run_child(argv, true, &c, &e);
	plan_argv_free(argv);
	if (r < 0) {
		fc_err_wrap(&e, "podman load");
		send_error(s, e.msg);
		return;
	}
	pump(s, &c);
	if (!WIFEXITED(c.status) || WEXITSTATUS(c.status)) {
		_cleanup_free_ char *m = load_error(&c);

		free(c.cap);
		send_error(s, m);
		return;
	}
	if (p->ref)
		ref = xstrdup(p->ref);
	else if (!(ref = plan_loaded_ref(c.cap, &e))) {
		fc_err_wrap(&e, "podman load");
		free(c.cap);
		send_error(s, e.msg);
		return;
	}
	free(c.cap);
	if (s->terminate) {
		send_error(s, "fc-agent was stopped before the container started");
		return;
	}

	argv = plan_run_argv(s->cfg->runner, p, ref);
	log_info("running '%s'", ref);
	r = run_child(argv, false, &c, &e);
	plan_argv_free(argv);
	if (r < 0) {
		fc_err_wrap(&e, "podman run");
		send_error(s, e.msg);
		return;
	}
	/* podman creates and starts the container right away; a failure to do
	 * so still arrives as its stderr and exit status 125-127. */
	send_frame(s, MSG_STARTED, "{}", 2);
	pump(s, &c);
	{
		_cleanup_free_ char *st = describe_status(c.status);

		log_info("podman run %s", st);
	}
	send_exit(s, c.status);
}

/* Wait for the first frame: it must be the plan. Returns the payload
 * (caller frees) or NULL when the session is over. */
static uint8_t *wait_plan(struct sess *s, size_t *len)
{
	uint64_t deadline = now_ms() + PLAN_WAIT_MS;
	uint8_t *buf = NULL;
	struct proto_hdr h;
	struct fc_err e;
	int r;

	while (s->conn >= 0 && !s->terminate) {
		struct pollfd p[3] = { { .fd = s->cfg->sigfd, .events = POLLIN },
				       { .fd = s->cfg->lfd, .events = POLLIN },
				       { .fd = s->conn, .events = POLLIN } };
		uint64_t now = now_ms();

		if (now >= deadline) {
			send_error(s, "no plan received within 60 s");
			return NULL;
		}
		if (poll(p, 3, deadline - now) < 0 && errno != EINTR)
			return NULL;
		if (p[0].revents)
			handle_signals(s, NULL);
		if (p[1].revents)
			refuse_busy(s->cfg);
		if (!p[2].revents)
			continue;
		r = proto_recv(s->conn, &h, &buf, &e);
		if (r <= 0) {
			log_info("host closed the connection before sending a plan%s%s",
				 r ? ": " : "", r ? e.msg : "");
			return NULL;
		}
		if (h.type != MSG_PLAN) {
			_cleanup_free_ char *m = xasprintf("expected a plan, got a %s frame",
							   proto_type_name(h.type));

			free(buf);
			send_error(s, m);
			return NULL;
		}
		*len = h.len;
		return buf;
	}
	return NULL;
}

/* After the last frame: half-close and wait for the host to close, so the
 * frame is really out of the guest before the VM powers off. */
static void linger(struct sess *s)
{
	uint64_t deadline = now_ms() + LINGER_MS;
	char buf[4096];

	if (s->conn < 0)
		return;
	shutdown(s->conn, SHUT_WR);
	for (;;) {
		struct pollfd p = { .fd = s->conn, .events = POLLIN };
		uint64_t now = now_ms();

		if (now >= deadline || poll(&p, 1, deadline - now) <= 0)
			break;
		if (read(s->conn, buf, sizeof(buf)) <= 0)
			break;
	}
}

enum session_end session_serve(const struct agent_cfg *cfg, int conn)
{
	struct sess s = { .cfg = cfg, .conn = conn };
	struct timeval tv = { .tv_sec = FRAME_STALL_S };
	_cleanup_free_ uint8_t *buf = NULL;
	struct plan p;
	struct fc_err e;
	size_t len = 0;
	bool poweroff = false;

	/* A host that stops in the middle of a frame must not stall the agent for ever. */
	setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	send_json(&s, MSG_HELLO, json_pack("{s:i,s:s}", "version", PROTO_VERSION, "agent",
					   "fc-agent"));
	buf = wait_plan(&s, &len);
	if (buf) {
		if (plan_parse((const char *)buf, len, &p, &e) < 0) {
			_cleanup_free_ char *m = xasprintf("invalid plan: %s", e.msg);

			send_error(&s, m);
		} else {
			execute(&s, &p);
		}
		poweroff = p.poweroff;
		plan_free(&p);
	}
	linger(&s);
	if (s.conn >= 0)
		close(s.conn);
	if (poweroff)
		return SESSION_POWEROFF;
	return s.terminate ? SESSION_TERMINATE : SESSION_CONTINUE;
}
