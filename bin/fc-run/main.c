/* fc-run - the host side of one container run: send a plan to fc-agent,
 * stream the container's output, exit with its exit code. See fc-run(1).
 *
 * Exit codes follow podman: the container's own code, 128+N when it died of
 * signal N, and 125 when fc-run itself (or the agent) failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "seccomp.h"
#include "hvsock.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "util.h"

#define EXIT_FAIL	 125
/* The agent sends a heartbeat every 2 s; a TCG guest on a loaded host can
 * stall for tens of seconds without being dead, hence the generous default. */
#define WATCHDOG_DEFAULT_S 90
#define PLAN_FILE_MAX	 PROTO_MAX_PAYLOAD
#define MESSAGE_MAX	 4096	/* of an agent's error text shown to the user */

static const char usage[] =
	"usage: fc-run --vsock UDS [--port N] [--timeout SECONDS] [--started-fd N]\n"
	"              [--heartbeat-timeout SECONDS] [--die-with-parent] PLAN.json\n"
	"       fc-run --unix PATH [--timeout SECONDS] [--started-fd N]\n"
	"              [--heartbeat-timeout SECONDS] [--die-with-parent] PLAN.json\n";

noreturn static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	char msg[FC_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "fc-run: %s\n", msg);
	exit(EXIT_FAIL);
}

/* Like hvsock_connect, for a test-mode agent on a plain Unix socket. */
static int unix_connect(const char *path, int timeout_ms, struct fc_err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t deadline = now_ms() + timeout_ms;

	if (strlen(path) >= sizeof(sa.sun_path))
		return fc_err_set(e, ENAMETOOLONG, "socket path '%s'", path);
	strcpy(sa.sun_path, path);
	for (;;) {
		_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (fd < 0)
			return fc_err_set(e, errno, "socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return steal_fd(&fd);
		if (errno != ENOENT && errno != ECONNREFUSED)
			return fc_err_set(e, errno, "connect '%s'", path);
		if (now_ms() >= deadline)
			return fc_err_set(e, ETIMEDOUT, "connect '%s'", path);
		nanosleep(&ts, NULL);
	}
}

/* Guest text for the user's terminal: bounded, control characters shown as '?'. */
static char *clean_text(const char *s, size_t len)
{
	char *out;

	if (len > MESSAGE_MAX)
		len = MESSAGE_MAX;
	out = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		out[i] = ((unsigned char)s[i] < ' ' && s[i] != '\n') || s[i] == 0x7f ? '?' : s[i];
	out[len] = '\0';
	return out;
}

struct run {
	int sock;
	int sigfd;
	int started_fd;
	int signals;		/* SIGINT/SIGTERM received so far */
	uint64_t watchdog_ms;	/* silence after which the agent is given up */
	bool out_broken, err_broken;
};

/* Byte-exact copy of a data frame; a closed stdout (| head) only stops that stream. */
static void emit(int fd, bool *broken, const uint8_t *buf, size_t len)
{
	if (*broken || !len)
		return;
	if (write_full(fd, buf, len) < 0) {
		if (errno != EPIPE)
			log_warn("write to fd %d: %s; dropping the rest of that stream", fd,
				 strerror(errno));
		*broken = true;
	}
}

static int exit_from(const uint8_t *buf, size_t len)
{
	struct fc_err e;
	_cleanup_json_ json_t *j = json_parse((const char *)buf, len, &e);
	long long code = -1, sig = -1;

	if (!j || !json_is_object(j) || json_object_size(j) != 1)
		fail("agent protocol error: bad exit message");
	if (json_int(j, "code", 0, 255, &code, &e) == 0)
		return code;
	if (json_int(j, "signal", 1, 64, &sig, &e) == 0)
		return 128 + sig;
	fail("agent protocol error: bad exit message: %s", e.msg);
}

static void on_signal(struct run *r)
{
	struct signalfd_siginfo si;

	while (read(r->sigfd, &si, sizeof(si)) == sizeof(si)) {
		char msg[32];
		struct fc_err e;

		if (++r->signals > 1)
			exit(128 + si.ssi_signo);
		snprintf(msg, sizeof(msg), "{\"signal\":%u}", si.ssi_signo);
		if (proto_send_str(r->sock, MSG_SIGNAL, msg, &e) < 0)
			exit(128 + si.ssi_signo);
	}
}

/* Once the plan is on its way fc-run only reads frames from the agent (the
 * guest is untrusted), writes to fds it holds and exits; what it needs for
 * that, and malloc, stdio and abort, is all it keeps. */
static int harden(struct fc_err *e)
{
	static const int allowed[] = {
		SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close, SYS_recvfrom,
		SYS_sendto, SYS_poll, SYS_ppoll, SYS_lseek, SYS_fstat, SYS_newfstatat,
		SYS_mmap, SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk, SYS_mprotect,
		SYS_clock_gettime, SYS_getpid, SYS_gettid, SYS_tgkill, SYS_rt_sigaction,
		SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_restart_syscall, SYS_futex,
		SYS_exit, SYS_exit_group,
	};

	return seccomp_allow_only(allowed, ARRAY_SIZE(allowed), false, e);
}

static void early_signal(int sig)
{
	_exit(128 + sig);
}

/* Frames until EXIT or ERROR; never returns. */
noreturn static void serve(struct run *r)
{
	uint64_t last = now_ms();

	for (;;) {
		struct pollfd p[2] = { { .fd = r->sock, .events = POLLIN },
				       { .fd = r->sigfd, .events = POLLIN } };
		_cleanup_free_ uint8_t *buf = NULL;
		struct proto_hdr h;
		struct fc_err e;
		uint64_t now = now_ms();
		int n;

		if (now >= last + r->watchdog_ms)
			fail("the agent stopped answering (no heartbeat for %llu s)",
			     (unsigned long long)r->watchdog_ms / 1000);
		n = poll(p, 2, last + r->watchdog_ms - now);
		if (n < 0 && errno != EINTR)
			fail("poll: %s", strerror(errno));
		if (n <= 0)
			continue;
		if (p[1].revents)
			on_signal(r);
		if (!p[0].revents)
			continue;
		n = proto_recv(r->sock, &h, &buf, &e);
		if (n == 0)
			fail("connection to the agent lost");
		if (n < 0) {
			if (e.errnum == ECONNRESET || e.errnum == EPIPE)
				fail("connection to the agent lost");
			if (e.errnum == EAGAIN || e.errnum == EWOULDBLOCK)
				fail("the agent stopped answering in the middle of a frame");
			fail("agent protocol error: %s", e.msg);
		}
		last = now_ms();
		switch (h.type) {
		case MSG_STDOUT:
			emit(STDOUT_FILENO, &r->out_broken, buf, h.len);
			break;
		case MSG_STDERR:
			emit(STDERR_FILENO, &r->err_broken, buf, h.len);
			break;
		case MSG_HEARTBEAT:
			break;
		case MSG_STARTED:
			log_debug("container started");
			if (r->started_fd >= 0) {
				if (write_full(r->started_fd, "started\n", 8) < 0)
					log_warn("--started-fd: %s", strerror(errno));
				close(r->started_fd);
				r->started_fd = -1;
			}
			break;
		case MSG_EXIT:
			exit(exit_from(buf, h.len));
		case MSG_ERROR: {
			_cleanup_json_ json_t *j = json_parse((const char *)buf, h.len, &e);
			const char *m = j ? json_str(j, "message") : NULL;
			_cleanup_free_ char *text = m ? clean_text(m, strlen(m)) : NULL;

			fail("%s", text ? text : "the agent reported an unreadable error");
		}
		default:
			fail("agent protocol error: unexpected %s frame", proto_type_name(h.type));
		}
	}
}

/* The first frame must be a compatible HELLO, within the connect timeout. */
static void expect_hello(int sock, int timeout_ms, const char *where, unsigned secs)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_json_ json_t *j = NULL;
	struct proto_hdr h;
	struct fc_err e;
	long long version = 0;
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		fail("agent did not answer on %s within %u s (is the VM booting? see its console log)",
		     where, secs);
	n = proto_recv(sock, &h, &buf, &e);
	if (n == 0)
		fail("connection to the agent lost");
	if (n < 0)
		fail("agent protocol error: %s", e.msg);
	if (h.type == MSG_ERROR)
		fail("the agent refused the connection: %.*s", (int)(h.len > 512 ? 512 : h.len),
		     buf);
	if (h.type != MSG_HELLO)
		fail("agent protocol error: expected hello, got a %s frame",
		     proto_type_name(h.type));
	j = json_parse((const char *)buf, h.len, &e);
	if (!j || json_int(j, "version", 0, 1000000, &version, &e) != 0)
		fail("agent protocol error: bad hello message");
	if (version != PROTO_VERSION)
		fail("the agent speaks protocol version %lld, fc-run version %d", version,
		     PROTO_VERSION);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vsock", required_argument, NULL, 'V' },
		{ "unix", required_argument, NULL, 'U' },
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "started-fd", required_argument, NULL, 'S' },
		{ "die-with-parent", no_argument, NULL, 'D' },
		{ "heartbeat-timeout", required_argument, NULL, 'H' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *vsock = NULL, *unix_path = NULL, *plan_path;
	uint64_t port = AGENT_PORT_RUN, timeout = 120, started = 0;
	_cleanup_free_ char *plan = NULL, *where = NULL;
	_cleanup_json_ json_t *pj = NULL;
	struct run r = { .sock = -1, .started_fd = -1, .watchdog_ms = WATCHDOG_DEFAULT_S * 1000 };
	uint64_t hb;
	struct fc_err e;
	uint64_t t0;
	size_t plan_len;
	int c;

	log_init("fc-run");
	while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
		switch (c) {
		case 'V':
			vsock = optarg;
			break;
		case 'U':
			unix_path = optarg;
			break;
		case 'p':
			if (parse_u64(optarg, 1, UINT32_MAX - 1, "--port", &port, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 't':
			if (parse_u64(optarg, 1, 86400, "--timeout", &timeout, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 'S':
			if (parse_u64(optarg, 0, 1 << 20, "--started-fd", &started, &e) < 0)
				usage_err(usage, "%s", e.msg);
			r.started_fd = started;
			break;
		case 'H':
			if (parse_u64(optarg, 3, 86400, "--heartbeat-timeout", &hb, &e) < 0)
				usage_err(usage, "%s", e.msg);
			r.watchdog_ms = hb * 1000;
			break;
		case 'D':
			/* Until the plan is sent SIGTERM ends us outright;
			 * afterwards it is forwarded like any stop request. */
			if (die_with_parent(SIGTERM, &e) < 0)
				fc_err_exit(&e, EXIT_FAIL);
			break;
		case 'v':
			log_adjust(1);
			break;
		case 'q':
			log_adjust(-1);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			usage_err(usage, "unknown option");
		}
	}
	if (!vsock == !unix_path)
		usage_err(usage, "give exactly one of --vsock and --unix");
	if (optind + 1 != argc)
		usage_err(usage, "expected one PLAN.json argument");
	plan_path = argv[optind];
	if (r.started_fd >= 0 && fcntl(r.started_fd, F_GETFD) < 0)
		usage_err(usage, "--started-fd %d is not an open file descriptor", r.started_fd);

	/* Check the plan before waiting two minutes for a VM. */
	plan = read_file_max(plan_path, PLAN_FILE_MAX, &plan_len, &e);
	if (!plan)
		fc_err_exit(&e, EXIT_FAIL);
	pj = json_parse(plan, plan_len, &e);
	if (!pj) {
		fc_err_wrap(&e, "plan '%s'", plan_path);
		fc_err_exit(&e, EXIT_FAIL);
	}
	if (!json_is_object(pj))
		fail("plan '%s': must be a JSON object", plan_path);

	signal(SIGPIPE, SIG_IGN);
	/* Nothing runs yet: SIGINT/SIGTERM end fc-run at once, even when it
	 * was started as a background job with SIGINT ignored. */
	signal(SIGINT, early_signal);
	signal(SIGTERM, early_signal);

	t0 = now_ms();
	if (vsock) {
		where = xasprintf("vsock port %u", (unsigned)port);
		r.sock = hvsock_connect(vsock, port, timeout * 1000, NULL, NULL, &e);
	} else {
		where = xasprintf("unix socket '%s'", unix_path);
		r.sock = unix_connect(unix_path, timeout * 1000, &e);
	}
	if (r.sock < 0) {
		if (now_ms() - t0 >= timeout * 1000)
			fail("agent did not answer on %s within %u s (is the VM booting? see its console log)",
			     where, (unsigned)timeout);
		fc_err_exit(&e, EXIT_FAIL);
	}
	log_debug("connected after %llu ms", (unsigned long long)(now_ms() - t0));
	{
		uint64_t used = now_ms() - t0;
		int left = used >= timeout * 1000 ? 1 : (int)(timeout * 1000 - used);

		expect_hello(r.sock, left, where, timeout);
	}
	{
		/* A guest that stops halfway through a frame trips this, not a hang. */
		struct timeval tv = { .tv_sec = r.watchdog_ms / 1000 };

		setsockopt(r.sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	/* From the plan on, the first SIGINT/SIGTERM goes to the container
	 * (one that arrives in between stays pending for the signalfd). */
	r.sigfd = signalfd_for((const int[]){ SIGINT, SIGTERM, 0 }, SFD_NONBLOCK, &e);
	if (r.sigfd < 0)
		fail("%s", e.msg);
	/* Everything is set up: from here on only guest frames come in. */
	if (harden(&e) < 0)
		fail("%s", e.msg);
	if (proto_send(r.sock, MSG_PLAN, plan, plan_len, &e) < 0)
		fail("send the plan: %s", e.msg);
	serve(&r);
}
