/* fc-agent - the guest agent: init of the microVM, runs one container per
 * plan received over vsock and streams its output back. See fc-agent(1).
 *
 * Start-up order: console first (so every later problem is visible), then
 * mounts (podman and even the vsock device node need them), then the
 * listener, and only then the ready line - the host may connect as soon as
 * it sees it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/vm_sockets.h>
#include <poll.h>
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
#include "session.h"
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
	struct agent_cfg cfg = { .runner = "podman" };
	const char *unix_path = NULL;
	uint64_t port = AGENT_PORT_RUN;
	struct fc_err e;
	int c, lfd;

	cfg.pid1 = getpid() == 1;
	if (cfg.pid1) {
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
			cfg.runner = optarg;
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
	if (optind < argc && !cfg.pid1)
		usage_err(usage, "unexpected argument '%s'", argv[optind]);
	if (cfg.pid1 && unix_path)
		diex("--listen-unix is a host test mode; refusing to run it as PID 1");

	if (!unix_path) {
		int fails = sys_setup_mounts();

		if (fails)
			log_warn("%d set-up step(s) failed; podman may not work", fails);
		if (sys_set_hostname(&e) < 0)
			log_warn("hostname: %s", e.msg);
		if (sys_loopback_up(&e) < 0)
			log_warn("loopback: %s", e.msg);
	}

	signal(SIGPIPE, SIG_IGN);
	cfg.sigfd = signalfd_for((const int[]){ SIGCHLD, SIGTERM, SIGINT, 0 }, SFD_NONBLOCK, &e);
	if (cfg.sigfd < 0)
		fc_err_exit(&e, 1);

	lfd = unix_path ? sock_listen_unix(unix_path, SOCK_NONBLOCK, 16, &e) : listen_vsock(port, &e);
	if (lfd < 0) {
		if (cfg.pid1) {
			/* Nobody can reach us: end the VM instead of hanging it. */
			log_error("%s", e.msg);
			sys_poweroff();
		}
		fc_err_exit(&e, 1);
	}
	cfg.lfd = lfd;
	say_ready(unix_path != NULL);

	for (;;) {
		struct pollfd p[2] = { { .fd = cfg.sigfd, .events = POLLIN },
				       { .fd = lfd, .events = POLLIN } };
		struct signalfd_siginfo si;
		enum session_end end;
		int conn, dummy;

		if (poll(p, 2, -1) < 0) {
			if (errno != EINTR)
				die("poll");
			continue;
		}
		if (p[0].revents) {
			bool stop = false;

			while (read(cfg.sigfd, &si, sizeof(si)) == sizeof(si))
				if (!cfg.pid1 && si.ssi_signo != SIGCHLD)
					stop = true;
			session_reap(-1, &dummy);
			if (stop)
				break;
		}
		if (!p[1].revents)
			continue;
		conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno != EAGAIN && errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			continue;
		}
		log_info("host connected");
		end = session_serve(&cfg, conn);
		if (end == SESSION_POWEROFF) {
			if (cfg.pid1)
				sys_poweroff();
			break;
		}
		if (end == SESSION_TERMINATE)
			break;
	}
	if (unix_path)
		unlink(unix_path);
	return 0;
}
