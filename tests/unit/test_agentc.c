/* test_agentc - the host end of an agent session (lib/agentc) against a
 * scripted agent in a thread, on a Unix socket: what fc-exec needs beyond
 * fc-run (stdin forwarded, then STDIN_EOF), signal forwarding, STARTED,
 * STATUS, the clone fix-up (acknowledged, refused, mismatched, unanswered),
 * and an owner that is gone before anything starts.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentc.h"
#include "proc.h"
#include "proto.h"
#include "sock.h"
#include "util.h"

#include "check.h"

enum scenario { SC_STDIN, SC_SIGNAL, SC_STATUS, SC_CLONE_OK, SC_CLONE_ERR, SC_CLONE_WRONG,
		SC_CLONE_SILENT };

struct agent {
	int lfd;
	enum scenario sc;
	char got[256];		/* what it received: frame types and data, in words */
	size_t got_len;
};

static void note(struct agent *a, const char *s)
{
	size_t n = strlen(s);

	if (a->got_len + n < sizeof(a->got)) {
		memcpy(a->got + a->got_len, s, n + 1);
		a->got_len += n;
	}
}

/* The scripted agent: one connection. */
static void *agent_main(void *arg)
{
	struct agent *a = arg;
	struct fc_err e;
	struct proto_hdr h;
	uint8_t *buf = NULL;
	int c = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (c < 0)
		return NULL;
	proto_send_str(c, MSG_HELLO, "{\"version\":1,\"agent\":\"test\"}", &e);
	while (proto_recv(c, &h, &buf, &e) == 1) {
		char w[96];

		snprintf(w, sizeof(w), "%s%s%.*s ", proto_type_name(h.type), h.len ? ":" : "",
			 (int)(h.len > 40 ? 40 : h.len), (char *)buf);
		note(a, w);
		if (a->sc == SC_STDIN && h.type == MSG_STDIN_EOF) {
			proto_send(c, MSG_STDOUT, "echoed", 6, &e);
			proto_send_str(c, MSG_EXIT, "{\"code\":7}", &e);
		}
		if (a->sc == SC_SIGNAL && h.type == MSG_PLAN) {
			proto_send_str(c, MSG_STARTED, "{}", &e);
			kill(getpid(), SIGUSR1);
		}
		if (a->sc == SC_SIGNAL && h.type == MSG_SIGNAL)
			proto_send_str(c, MSG_EXIT, "{\"signal\":10}", &e);
		if (a->sc == SC_STATUS && h.type == MSG_STATUS_REQ)
			proto_send_str(c, MSG_STATUS,
				       "{\"version\":1,\"state\":\"idle\",\"container\":null,"
				       "\"sessions\":1,\"x\":\"\\u009b\"}",
				       &e);
		if (h.type == MSG_CLONE && a->sc == SC_CLONE_ERR)
			proto_send_str(c, MSG_ERROR,
				       "{\"message\":\"set the clock: \\u001b[31mno\"}", &e);
		if (h.type == MSG_CLONE && (a->sc == SC_CLONE_OK || a->sc == SC_CLONE_WRONG))
			proto_send_str(c, MSG_CLONE_DONE, a->sc == SC_CLONE_OK ?
				       "{\"version\":1,\"hostname\":\"c1\",\"containers\":1,"
				       "\"reseeded\":true,\"announced\":0}" :
				       "{\"version\":1,\"hostname\":\"src\",\"containers\":1,"
				       "\"reseeded\":true,\"announced\":0}", &e);
		free(buf);
		buf = NULL;
	}
	close(c);
	return NULL;
}

static char sock_path[108];

static pthread_t start_agent(struct agent *a, enum scenario sc)
{
	struct fc_err e;
	pthread_t t;

	memset(a, 0, sizeof(*a));
	a->sc = sc;
	a->lfd = sock_listen_unix(sock_path, 0, 4, &e);
	if (a->lfd < 0) {
		fprintf(stderr, "listen: %s\n", e.msg);
		exit(1);
	}
	pthread_create(&t, NULL, agent_main, a);
	return t;
}

static void stop_agent(struct agent *a, pthread_t t)
{
	pthread_join(t, NULL);
	close(a->lfd);
	unlink(sock_path);
}

/* One session with the plan "{}" against the agent playing @sc (what it
 * got in @a). Returns agentc_session's code; *@sig: agentc_signal(). */
static int run_plan(struct agent *a, enum scenario sc, struct agentc_opts *o, int *sig)
{
	struct fc_err e;
	pthread_t t;
	struct agentc *s;
	int code;

	o->timeout_ms = 10000;
	t = start_agent(a, sc);
	s = agentc_new(o);
	code = agentc_session(s, sock_path, 0, MSG_PLAN, "{}", 2, &e);
	if (code < 0)
		printf("#   session failed: %s\n", e.msg);
	*sig = agentc_signal(s);
	agentc_free(s);
	stop_agent(a, t);
	return code;
}

/* Everything written to memfd @fd so far. */
static void read_back(int fd, char *out, size_t max)
{
	ssize_t n = pread(fd, out, max - 1, 0);

	out[n > 0 ? n : 0] = '\0';
}

static void test_stdin(void)
{
	struct agentc_opts o = AGENTC_OPTS_INIT;
	struct agent a;
	int in[2], out = memfd_create("out", MFD_CLOEXEC), sig;
	char text[64];

	if (pipe2(in, O_CLOEXEC) < 0 || out < 0)
		abort();
	if (write(in[1], "abc", 3) != 3)
		abort();
	close(in[1]);
	o.in_fd = in[0];
	o.out_fd = out;
	CHECK(run_plan(&a, SC_STDIN, &o, &sig) == 7 && !sig, "stdin session: the agent's exit code");
	if (!CHECK(!strcmp(a.got, "plan:{} stdin:abc stdin-eof "),
		   "the request, stdin as STDIN frames, then STDIN_EOF"))
		printf("#   got '%s'\n", a.got);
	read_back(out, text, sizeof(text));
	CHECK(!strcmp(text, "echoed"), "STDOUT bytes to out_fd");
	close(in[0]);
	close(out);
}

static void test_signal(int sigfd)
{
	struct agentc_opts o = AGENTC_OPTS_INIT;
	struct agent a;
	int started = memfd_create("started", MFD_CLOEXEC), dup_started, sig;
	char text[32];

	dup_started = dup(started);	/* the session closes its copy */
	o.sigfd = sigfd;
	o.started_fd = started;
	CHECK(run_plan(&a, SC_SIGNAL, &o, &sig) == 138, "a forwarded signal: the container's 128+N");
	CHECK(sig == 0, "the session was not ended by the signal itself");
	if (!CHECK(!strcmp(a.got, "plan:{} signal:{\"signal\":10} "),
		   "the first signal after the request went out as a SIGNAL frame"))
		printf("#   got '%s'\n", a.got);
	read_back(dup_started, text, sizeof(text));
	CHECK(!strcmp(text, "started\n"), "started_fd got its line");
	CHECK(fcntl(started, F_GETFD) < 0, "and was closed");
	close(dup_started);
}

static void test_status(void)
{
	struct agentc_opts o = AGENTC_OPTS_INIT;
	struct agent a;
	struct fc_err e;
	char *json = NULL;
	pthread_t t;
	struct agentc *s;

	o.timeout_ms = 10000;
	t = start_agent(&a, SC_STATUS);
	s = agentc_new(&o);
	if (!CHECK(agentc_connect(s, sock_path, 0, &e) == 0 && agentc_status(s, &json, &e) == 0,
		   "status: connect and ask"))
		printf("#   %s\n", e.msg);
	agentc_free(s);
	stop_agent(&a, t);
	if (!CHECK(json && !strcmp(json, "{\"version\":1,\"state\":\"idle\",\"container\":null,"
					 "\"sessions\":1,\"x\":\"\\u009B\"}"),
		   "the answer in order, non-ASCII escaped"))
		printf("#   got '%s'\n", json ? json : "(null)");
	CHECK(!strcmp(a.got, "status-request "), "one empty STATUS_REQ");
	free(json);
}

/* A fix-up for "c1" against the agent playing @sc. 0 or -1 with @e. */
static int clone_fixup(enum scenario sc, struct agent *a, struct clonefix_done *d,
		       struct fc_err *e)
{
	struct agentc_opts o = AGENTC_OPTS_INIT;
	struct clonefix f;
	pthread_t t;
	struct agentc *s;
	int r;

	o.timeout_ms = sc == SC_CLONE_SILENT ? 1000 : 10000;
	t = start_agent(a, sc);
	s = agentc_new(&o);
	r = agentc_connect(s, sock_path, 0, e);
	if (r == 0 && clonefix_make(&f, "vm-0123456789ab", "c1", e) == 0)
		r = agentc_clone(s, &f, d, e);
	agentc_free(s);
	stop_agent(a, t);
	return r;
}

static void test_clone(void)
{
	struct agent a;
	struct clonefix_done d;
	struct fc_err e;
	uint64_t t0;
	int r;

	r = clone_fixup(SC_CLONE_OK, &a, &d, &e);
	if (!CHECK(r == 0 && !strcmp(d.hostname, "c1") && d.containers == 1 && d.reseeded,
		   "clone fix-up: acknowledged"))
		printf("#   %s\n", e.msg);
	CHECK(!strncmp(a.got, "clone:{\"version\":1,\"id\":\"vm-0123456789ab\",\"hostname\":\"c1\"", 40),
	      "one CLONE frame with the clone's id and name");
	r = clone_fixup(SC_CLONE_ERR, &a, &d, &e);
	if (!CHECK(r < 0 && !strcmp(e.msg, "clone fix-up: set the clock: ?[31mno"),
		   "a refused fix-up fails with the agent's message, cleaned"))
		printf("#   %s\n", e.msg);
	r = clone_fixup(SC_CLONE_WRONG, &a, &d, &e);
	CHECK(r < 0 && strstr(e.msg, "set hostname 'src', not 'c1'"),
	      "an answer for another hostname is a failure");
	t0 = now_ms();
	r = clone_fixup(SC_CLONE_SILENT, &a, &d, &e);
	if (!CHECK(r < 0 && e.errnum == ETIMEDOUT && strstr(e.msg, "did not finish the clone fix-up") &&
			   now_ms() - t0 < 5000,
		   "an unanswered fix-up times out within the bound"))
		printf("#   %s\n", e.msg);
}

static void test_dead_owner(void)
{
	struct agentc_opts o = AGENTC_OPTS_INIT;
	struct fc_err e;
	pid_t child = fork();
	struct agentc *s;
	uint64_t t0;
	int r;

	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	o.owner_pid = child;
	o.timeout_ms = 20000;
	s = agentc_new(&o);
	t0 = now_ms();
	r = agentc_connect(s, sock_path, 0, &e);
	CHECK(r < 0 && e.errnum == ESRCH && now_ms() - t0 < 5000,
	      "an owner already gone fails at once, ESRCH");
	CHECK(strstr(e.msg, "the VM stopped before its agent answered: its owner") != NULL,
	      "and says so");
	agentc_free(s);
}

int main(void)
{
	struct fc_err e;
	char dir[] = "/tmp/test_agentc.XXXXXX";
	int sigfd;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/agent.sock", dir);
	/* Blocked before any thread starts, so every thread has it blocked. */
	sigfd = signalfd_for((const int[]){ SIGUSR1, 0 }, SFD_NONBLOCK, &e);
	if (sigfd < 0)
		abort();
	test_stdin();
	test_signal(sigfd);
	test_status();
	test_clone();
	test_dead_owner();
	rmdir(dir);
	return check_done();
}
