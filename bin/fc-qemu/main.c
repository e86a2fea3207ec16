/* fc-qemu - a drop-in for the firecracker binary: serves (a subset of)
 * Firecracker's HTTP API on a Unix socket and runs the VM under QEMU.
 *
 * One thread, one poll loop: signals (signalfd), the API listener, its
 * connections, QMP events, QEMU's stderr and fc-vsock's stdout. When QEMU
 * exits (guest poweroff/reboot) we clean up and exit, like Firecracker.
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
#include "util.h"

#define MAX_CONNS	32
#define CONN_BUF	(HTTP_MAX_HEAD + HTTP_MAX_BODY)

static const char usage[] =
	"usage: fc-qemu --api-sock PATH [--id ID] [-v|-q]\n"
	"       fc-qemu --version | -h\n"
	"Firecracker-compatible options accepted and ignored: --level L, --log-path P,\n"
	"  --show-level, --show-log-origin, --boot-timer, --no-seccomp, --seccomp-filter F,\n"
	"  --start-time-us N, --start-time-cpu-us N, --parent-cpu-time-us N,\n"
	"  --http-api-max-payload-size N, --mmds-size-limit N, --metrics-path P, --module M\n";

struct conn {
	int fd;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	bool closing;		/* close once the output is sent */
	bool continued;		/* "100 Continue" sent for the current request */
};

static struct conn conns[MAX_CONNS];
static struct fcq fcq;

static void conn_close(struct conn *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void conn_queue(struct conn *c, const char *buf, size_t len)
{
	c->out = xrealloc(c->out, c->out_len + len);
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
}

static void conn_respond(struct conn *c, int status, const char *json, bool keep_alive)
{
	size_t len;
	_cleanup_free_ char *r = http_format_response(status, json, keep_alive, &len);

	conn_queue(c, r, len);
	if (!keep_alive)
		c->closing = true;
}

static void conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->out_off += n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	/* Half-close and drain instead of closing: a client still writing
	 * (an oversized request) would otherwise get EPIPE before it reads
	 * our answer. conn_read closes at EOF or after CONN_BUF more bytes. */
	if (c->closing)
		shutdown(c->fd, SHUT_WR);
}

/* Answer every complete request in the buffer (pipelining). */
static void conn_process(struct conn *c)
{
	while (c->in_len && !c->closing) {
		struct http_request req;
		struct fc_err e = { 0 };
		int status;
		ssize_t n = http_parse_request(c->in, c->in_len, &req, &status, &e);

		if (n < 0) {
			_cleanup_free_ char *s = api_fault(e.msg);

			log_debug("malformed request: %s", e.msg);
			conn_respond(c, status, s, false);
			return;
		}
		if (n == 0) {
			if (req.head_len && req.expect_continue && !c->continued) {
				size_t len;
				_cleanup_free_ char *r = http_format_response(100, NULL, true, &len);

				conn_queue(c, r, len);
				c->continued = true;
			}
			return;
		}
		{
			_cleanup_free_ char *json = NULL;

			status = api_handle(&fcq, &req, &json);
			log_debug("%s %s -> %d%s%s", req.method, req.target, status,
				  json && status >= 400 ? " " : "", json && status >= 400 ? json : "");
			conn_respond(c, status, json, req.keep_alive);
		}
		c->continued = false;
		memmove(c->in, c->in + n, c->in_len - n);
		c->in_len -= n;
	}
}

static void conn_read(struct conn *c)
{
	ssize_t n;

	if (c->closing) {
		/* discard what arrives after an answer that closes */
		char sink[4096];

		n = read(c->fd, sink, sizeof(sink));
		if (n > 0)
			c->in_len += n;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
		    c->in_len > 16 * CONN_BUF)
			conn_close(c);
		return;
	}
	n = read(c->fd, c->in + c->in_len, CONN_BUF - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->in_len += n;
	conn_process(c);
}

static void accept_conn(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct conn *c = NULL;

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd < 0) {
			c = &conns[i];
			break;
		}
	if (!c) {
		log_warn("too many API connections; refusing one");
		close(fd);
		return;
	}
	c->fd = fd;
	c->in = xmalloc(CONN_BUF);
}

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
	struct pollfd pfd[5 + MAX_CONNS];
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

	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
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

	while (!stop) {
		struct vmm *v = &fcq.vmm;
		int n = 0, base;

		pfd[n++] = (struct pollfd){ sfd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ lfd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ v->qmp_fd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ v->err_fd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ v->vsock_out_fd, POLLIN, 0 };
		base = n;
		for (int i = 0; i < MAX_CONNS; i++)
			pfd[n++] = (struct pollfd){ conns[i].fd,
				(short)(POLLIN | (conns[i].out_len ? POLLOUT : 0)), 0 };
		if (poll(pfd, n, -1) < 0) {
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

				if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
					log_info("QEMU exited: the guest shut down");
				} else {
					log_warn("QEMU exited (%s %d)%s%s",
						 WIFEXITED(st) ? "status" : "signal",
						 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
						 *v->err_line ? ": " : "", v->err_line);
					code = 1;
				}
				stop = true;
			}
		}
		if (pfd[2].revents)
			vmm_read_qmp(v);
		if (pfd[3].revents)
			vmm_read_stderr(v);
		if (pfd[4].revents)
			vmm_read_vsock(v);
		if (pfd[1].revents & POLLIN)
			accept_conn(lfd);
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *cn = &conns[i];
			short re = pfd[base + i].revents;

			if (cn->fd < 0 || pfd[base + i].fd != cn->fd || !re)
				continue;
			if (re & POLLIN)
				conn_read(cn);
			else if (re & (POLLHUP | POLLERR))
				conn_close(cn);
			if (cn->fd >= 0 && cn->out_len)
				conn_flush(cn);
		}
	}

	vmm_stop(&fcq.vmm);
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd >= 0)
			conn_close(&conns[i]);
	close(lfd);
	unlink(sock);
	fcq_free(&fcq);
	free(fcq.vmm.base_dir);
	return code;
}
