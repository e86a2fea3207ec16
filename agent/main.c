/* fc-agent - the guest agent: init of the microVM, runs one container per
 * plan received over vsock and streams its output back. See fc-agent(1).
 *
 * Start-up order: refuse to run on a host by mistake (not PID 1, no test
 * flag) before touching anything; console first (so every later problem is
 * visible), then mounts (podman and even the vsock device node need them),
 * then the listeners, and only then the ready line - the host may connect
 * as soon as it sees it. Then one event loop (ev.h) serves every
 * connection, the container's pipes and the signals; see agent.h for the
 * session types.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proc.h"
#include "log.h"
#include "proto.h"
#include "sock.h"
#include "agent.h"
#include "ev.h"
#include "exec.h"
#include "mark.h"
#include "run.h"
#include "sys.h"
#include "util.h"

static const char usage[] =
	"usage: fc-agent [--port N] [-v] [-q]\n"
	"       fc-agent --listen-unix PATH [--runner CMD] [-v] [-q]\n";

static int listen_vsock(unsigned port, struct fc_err *e)
{
	_cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_vm sa = {
		.svm_family = AF_VSOCK,
		.svm_cid = VMADDR_CID_ANY,
		.svm_port = port,
	};

	if (fd < 0)
		return fc_err_set(e, errno, "vsock socket (is vmw_vsock_virtio_transport loaded?)");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
		return fc_err_set(e, errno, "listen on vsock port %u", port);
	return steal_fd(&fd);
}

/* Printed once the listener exists; the host's tools wait for exactly this. */
static void say_ready(bool test_mode)
{
	static const char line[] = "fc-agent: ready\n";
	int fd = test_mode ? -1 : open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	if (write_full(fd >= 0 ? fd : STDERR_FILENO, line, sizeof(line) - 1) < 0)
		log_debug("write ready line: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* A listening socket and the session its connections start with. */
struct listener {
	struct ev_watch w;
	struct agent *a;
	void (*accept)(struct agent *a, int fd);
};

#define MAX_CONNS 64	/* beyond that new connections wait in the backlog */

static void on_accept(struct ev_watch *w, short revents)
{
	struct listener *li = w->data;

	(void)revents;
	for (int i = 0; i < 8 && conn_count() < MAX_CONNS; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&
			    errno != EINTR)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		log_debug("host connected");
		li->accept(li->a, fd);
	}
}

struct sigwatch {
	struct ev_watch w;
	struct agent *a;
};

static void on_signal(struct ev_watch *w, short revents)
{
	struct sigwatch *sw = w->data;
	struct agent *a = sw->a;
	struct signalfd_siginfo si;
	bool stop = false;

	(void)revents;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si))
		if (!a->pid1 && (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT))
			stop = true;
	ev_reap(a->loop);
	if (stop) {
		log_info("stopping");
		a->terminate = true;
		if (!run_stop(a->run))
			a->end = AGENT_TERMINATE;
	}
}

/* Stop the listeners' polling while the connection cap is reached. */
static void pace_listeners(struct listener *ls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ls[i].w.events = conn_count() < MAX_CONNS ? POLLIN : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen-unix", required_argument, NULL, 'U' },
		{ "runner", required_argument, NULL, 'R' },
		{ "port", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a = { .runner = "podman", .end = AGENT_SERVING };
	struct listener ls[2];
	size_t nls = 1;
	struct sigwatch sw;
	const char *unix_path = NULL;
	uint64_t port = AGENT_PORT_RUN;
	struct fc_err e;
	int c, lfd, xfd = -1, sigfd;

	mark(MARK_AGENT);
	a.pid1 = getpid() == 1;
	if (a.pid1) {
		sys_console();
		/* The console is a TTY, but its log is read by programs. */
		setenv("NO_COLOR", "1", 1);
	}
	log_init("fc-agent");
	unsetenv("NO_COLOR");
	while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
		switch (c) {
		case 'U':
			unix_path = optarg;
			break;
		case 'R':
			a.runner = optarg;
			break;
		case 'p':
			if (parse_u64(optarg, 1, UINT32_MAX - 1, "--port", &port, &e) < 0)
				usage_err(usage, "%s", e.msg);
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
	/* The kernel passes unknown command line words to init as arguments:
	 * as PID 1 they are not ours to reject. */
	if (optind < argc && !a.pid1)
		usage_err(usage, "unexpected argument '%s'", argv[optind]);
	if (a.pid1 && unix_path)
		diex("--listen-unix is a host test mode; refusing to run it as PID 1");
	/* Started on a host by mistake it would mount over /tmp and /run and
	 * write to the host's cgroups: nothing is touched before this. */
	if (!a.pid1 && !unix_path) {
		fputs("fc-agent: not PID 1: run it as a microVM's init, or use --listen-unix for tests\n",
		      stderr);
		return 2;
	}

	if (a.pid1) {
		int fails = sys_setup_mounts();

		if (fails)
			log_warn("%d set-up step(s) failed; podman may not work", fails);
		if (sys_set_hostname(&e) < 0)
			log_warn("hostname: %s", e.msg);
		if (sys_loopback_up(&e) < 0)
			log_warn("loopback: %s", e.msg);
	}

	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd_for((const int[]){ SIGCHLD, SIGTERM, SIGINT, 0 }, SFD_NONBLOCK, &e);
	if (sigfd < 0)
		fc_err_exit(&e, 1);

	lfd = unix_path ? sock_listen_unix(unix_path, SOCK_NONBLOCK, 16, &e) : listen_vsock(port, &e);
	if (lfd < 0) {
		if (a.pid1) {
			/* Nobody can reach us: end the VM instead of hanging it. */
			log_error("%s", e.msg);
			sys_poweroff();
		}
		fc_err_exit(&e, 1);
	}
	/* Test mode has one socket: exec requests come to the run port's
	 * dispatcher there. */
	if (!unix_path) {
		xfd = listen_vsock(port == AGENT_PORT_RUN ? AGENT_PORT_EXEC : port + 1, &e);
		if (xfd < 0)
			log_warn("%s; fc-exec will not reach this VM", e.msg);
	}

	a.loop = ev_new();
	a.run = run_new(&a);
	sw.a = &a;
	ev_watch_init(&sw.w, sigfd, on_signal, &sw);
	sw.w.events = POLLIN;
	ev_link(a.loop, &sw.w);
	/* The run port, and the exec port. */
	ls[0] = (struct listener){ .a = &a, .accept = dispatch_accept };
	ev_watch_init(&ls[0].w, lfd, on_accept, &ls[0]);
	ev_link(a.loop, &ls[0].w);
	if (xfd >= 0) {
		ls[1] = (struct listener){ .a = &a, .accept = exec_accept };
		ev_watch_init(&ls[1].w, xfd, on_accept, &ls[1]);
		ev_link(a.loop, &ls[1].w);
		nls = 2;
	}
	say_ready(unix_path != NULL);
	mark(MARK_READY);

	while (a.end == AGENT_SERVING) {
		pace_listeners(ls, nls);
		if (ev_run_once(a.loop) < 0) {
			log_error("poll: %s", strerror(errno));
			sleep(1);
		}
	}
	if (a.end == AGENT_POWEROFF && a.pid1)
		sys_poweroff();
	conn_close_all();
	run_free(a.run);
	for (size_t i = 0; i < nls; i++)
		ev_unlink(a.loop, &ls[i].w);
	ev_unlink(a.loop, &sw.w);
	ev_free(a.loop);
	close(lfd);
	if (xfd >= 0)
		close(xfd);
	close(sigfd);
	if (unix_path)
		unlink(unix_path);
	return 0;
}
