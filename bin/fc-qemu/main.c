/* fc-qemu - a drop-in for the firecracker binary: serves (a subset of)
 * Firecracker's HTTP API on a Unix socket and runs the VM under QEMU.
 *
 * One thread, one poll loop: signals (signalfd), the API listener and its
 * connections (server.c), QMP events, QEMU's stderr and fc-vsock's stdout.
 * When QEMU exits (guest poweroff/reboot) we clean up and exit, like
 * Firecracker.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fcq.h"
#include "log.h"
#include "proc.h"
#include "sock.h"
#include "text.h"
#include "util.h"

static const char usage[] =
	"usage: fc-qemu --api-sock PATH [--id ID] [-v|-q]\n"
	"       fc-qemu --version | -h\n"
	"Firecracker-compatible options accepted and ignored: --level L, --log-path P,\n"
	"  --show-level, --show-log-origin, --boot-timer, --no-seccomp, --seccomp-filter F,\n"
	"  --start-time-us N, --start-time-cpu-us N, --parent-cpu-time-us N,\n"
	"  --http-api-max-payload-size N, --mmds-size-limit N, --metrics-path P, --module M\n";

static struct fcq fcq;

int main(int argc, char **argv)
{
	enum { O_VERSION = 256, O_IGN_ARG, O_IGN_FLAG, O_REFUSE };
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, 'a' },
		{ "id", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "level", required_argument, NULL, O_IGN_ARG },
		{ "log-path", required_argument, NULL, O_IGN_ARG },
		{ "seccomp-filter", required_argument, NULL, O_IGN_ARG },
		{ "start-time-us", required_argument, NULL, O_IGN_ARG },
		{ "start-time-cpu-us", required_argument, NULL, O_IGN_ARG },
		{ "parent-cpu-time-us", required_argument, NULL, O_IGN_ARG },
		{ "http-api-max-payload-size", required_argument, NULL, O_IGN_ARG },
		{ "mmds-size-limit", required_argument, NULL, O_IGN_ARG },
		{ "metrics-path", required_argument, NULL, O_IGN_ARG },
		{ "module", required_argument, NULL, O_IGN_ARG },
		{ "show-level", no_argument, NULL, O_IGN_FLAG },
		{ "show-log-origin", no_argument, NULL, O_IGN_FLAG },
		{ "boot-timer", no_argument, NULL, O_IGN_FLAG },
		{ "no-seccomp", no_argument, NULL, O_IGN_FLAG },
		{ "config-file", required_argument, NULL, O_REFUSE },
		{ "metadata", required_argument, NULL, O_REFUSE },
		{ "describe-snapshot", required_argument, NULL, O_REFUSE },
		{ "no-api", no_argument, NULL, O_REFUSE },
		{ "enable-pci", no_argument, NULL, O_REFUSE },
		{ 0 }
	};
	const char *sock = NULL, *id = "anonymous-instance", *accel;
	struct fc_err e = { 0 };
	struct pollfd pfd[4 + FCQ_SERVER_FDS];
	struct api_server srv;
	int c, li = 0, sfd, lfd, code = 0;
	bool stop = false;

	log_init("fc-qemu");
	while ((c = getopt_long(argc, argv, "hvq", opts, &li)) != -1) {
		switch (c) {
		case 'a':
			sock = optarg;
			break;
		case 'i':
			id = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'v':
			log_adjust(1);
			break;
		case 'q':
			log_adjust(-1);
			break;
		case O_VERSION:
			printf("fc-qemu (Firecracker API v%s subset on QEMU)\n", FCQ_VERSION);
			return 0;
		case O_IGN_ARG:
		case O_IGN_FLAG:
			log_debug("ignoring Firecracker option '--%s'", opts[li].name);
			break;
		case O_REFUSE:
			usage_err(usage, "option '--%s' is not supported by fc-qemu", opts[li].name);
		default:
			usage_err(usage, "invalid option");
		}
	}
	if (optind < argc)
		usage_err(usage, "unexpected argument '%s'", argv[optind]);
	if (!sock)
		usage_err(usage, "--api-sock is required");
	if (!fcq_valid_id(id, '-'))
		usage_err(usage, "invalid --id '%s': 1-64 characters of [A-Za-z0-9-], as for Firecracker", id);
	accel = getenv("FCVM_QEMU_ACCEL");
	if (accel && *accel && strcmp(accel, "tcg") && strcmp(accel, "kvm"))
		diex("invalid FCVM_QEMU_ACCEL '%s': must be tcg or kvm", accel);
	log_set_tag(id);

	fcq_init(&fcq, id);
	{
		_cleanup_free_ char *d = xstrdup(sock);

		fcq.vmm.base_dir = xstrdup(dirname(d));
	}

	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd_for((const int[]){ SIGCHLD, SIGTERM, SIGINT, SIGHUP, 0 }, SFD_NONBLOCK, &e);
	if (sfd < 0)
		fc_err_exit(&e, 1);
	lfd = sock_listen_unix(sock, SOCK_NONBLOCK, 64, &e);
	if (lfd < 0) {
		fc_err_wrap(&e, "API socket");
		fc_err_exit(&e, 1);
	}
	log_debug("API on '%s'", sock);
	server_init(&srv, lfd);
	srv.q = &fcq;

	while (!stop) {
		struct vmm *v = &fcq.vmm;
		int n = 0;

		pfd[n++] = (struct pollfd){ sfd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ v->qmp_fd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ v->err_fd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ v->vsock_out_fd, POLLIN, 0 };
		n += server_fill(&srv, pfd + n);
		if (poll(pfd, n, server_timeout(&srv)) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo != SIGCHLD) {
					log_info("signal %d: stopping", (int)si.ssi_signo);
					stop = true;
					code = 0;
				}
			}
			if (vmm_reap(v)) {
				int st = v->qemu_status;

				if (v->backend_lost) {
					/* last, so the owner's "last line" names the cause */
					log_error("the VM was stopped: its vsock backend fc-vsock died");
					code = 1;
				} else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
					log_info("QEMU exited: the guest shut down");
				} else {
					_cleanup_free_ char *line = text_clean(v->err_line,
						strlen(v->err_line), sizeof(v->err_line), false);

					log_warn("QEMU exited (%s %d)%s%s",
						 WIFEXITED(st) ? "status" : "signal",
						 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
						 *line ? ": " : "", line);
					code = 1;
				}
				stop = true;
			}
		}
		if (pfd[1].revents)
			vmm_read_qmp(v);
		if (pfd[2].revents)
			vmm_read_stderr(v);
		if (pfd[3].revents)
			vmm_read_vsock(v);
		if (!stop)
			server_events(&srv, pfd + 4);
	}

	vmm_stop(&fcq.vmm);
	server_close(&srv);
	close(lfd);
	unlink(sock);
	fcq_free(&fcq);
	free(fcq.vmm.base_dir);
	return code;
}
