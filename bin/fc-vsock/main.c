/* fc-vsock - Firecracker's hybrid vsock (host side) as a vhost-user-vsock
 * back-end for QEMU's vhost-user-vsock-device.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fc-vsock.h"
#include "proc.h"
#include "log.h"
#include "sock.h"
#include "util.h"

int vsock_harden(struct fc_err *e);

static const char usage[] =
	"usage: fc-vsock --vhost-socket PATH --uds-path UDS --cid CID [--ready-fd N]\n"
	"                [--memory auto|map|vmm] [-v] [-q]\n";

static int watch(struct dev *d, int fd, uint32_t events, struct src *s, struct fc_err *e)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return fc_err_set(e, errno, "epoll_ctl");
	return 0;
}

static int accept_frontend(struct dev *d, struct fc_err *e)
{
	int fd = accept4(d->vu_listen, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return 0;
		return fc_err_set(e, errno, "accept on '%s'", d->vu_path);
	}
	/* Exactly one front-end: stop listening, and drop the path now so that
	 * not even a SIGKILL can leave it behind. */
	close(d->vu_listen);
	d->vu_listen = -1;
	unlink(d->vu_path);
	d->vu_path_gone = true;
	d->vu_fd = fd;
	d->had_frontend = true;
	{
		struct ucred cr;
		socklen_t cl = sizeof(cr);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid > 0)
			d->vmm_pid = cr.pid;
	}
	log_debug("front-end connected (pid %d)", (int)d->vmm_pid);
	if (d->mem_mode == MEM_AUTO && d->vmm_pid > 0) {
		char maps[64];

		snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)d->vmm_pid);
		d->maps_fd = open(maps, O_RDONLY | O_CLOEXEC);
		if (d->maps_fd < 0)
			log_debug("open '%s': %s (guest memory will be mapped)", maps, strerror(errno));
	}
	if (watch(d, fd, EPOLLIN, &d->s_vu, e) < 0)
		return -1;
	/* Only the front-end can hurt us from here on; drop what we do not need. */
	if (vsock_harden(e) < 0)
		return -1;
	return 0;
}

static int serve(struct dev *d, struct fc_err *e)
{
	struct epoll_event evs[64];

	while (!d->quit) {
		int i, n = epoll_wait(d->epfd, evs, ARRAY_SIZE(evs), vsock_timeout(d));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fc_err_set(e, errno, "epoll_wait");
		}
		for (i = 0; i < n && !d->quit; i++) {
			struct src *s = evs[i].data.ptr;
			int r;

			switch (s->kind) {
			case SRC_VU_LISTEN:
				if (accept_frontend(d, e) < 0)
					return -1;
				break;
			case SRC_VU:
				r = vu_handle(d, e);
				if (r < 0)
					return fc_err_wrap(e, "vhost-user front-end");
				if (r > 0 || (evs[i].events & (EPOLLHUP | EPOLLERR) &&
					      !(evs[i].events & EPOLLIN))) {
					log_debug("front-end disconnected");
					d->quit = true;
				}
				break;
			case SRC_KICK:
				vq_drain_kick(d, s->idx);
				break;
			case SRC_UDS:
				vsock_accept(d);
				break;
			case SRC_SIG: {
				struct signalfd_siginfo si;

				if (read(d->sig_fd, &si, sizeof(si)) == sizeof(si))
					log_debug("signal %u: exiting", si.ssi_signo);
				d->quit = true;
				break;
			}
			case SRC_CONN:
				vsock_conn_event(d, s->ptr, evs[i].events);
				break;
			}
		}
		if (!d->quit)
			vsock_run(d);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vhost-socket", required_argument, NULL, 's' },
		{ "uds-path", required_argument, NULL, 'u' },
		{ "cid", required_argument, NULL, 'c' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "memory", required_argument, NULL, 'm' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dev d = { .epfd = -1, .vu_listen = -1, .vu_fd = -1, .uds_fd = -1, .sig_fd = -1,
			 .maps_fd = -1, .log_fd = -1 };
	struct fc_err e = { 0 };
	uint64_t cid = 0, ready = 0;
	int ready_fd = -1, opt, r, i;

	log_init("fc-vsock");
	while ((opt = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			d.vu_path = optarg;
			break;
		case 'u':
			d.uds_path = optarg;
			break;
		case 'c':
			/* 0-2 are reserved; Firecracker takes a u32. */
			if (parse_u64(optarg, 3, UINT32_MAX - 1, "--cid", &cid, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 'r':
			if (parse_u64(optarg, 0, 65535, "--ready-fd", &ready, &e) < 0)
				usage_err(usage, "%s", e.msg);
			ready_fd = (int)ready;
			break;
		case 'm':
			if (!strcmp(optarg, "auto"))
				d.mem_mode = MEM_AUTO;
			else if (!strcmp(optarg, "map"))
				d.mem_mode = MEM_MAP;
			else if (!strcmp(optarg, "vmm"))
				d.mem_mode = MEM_VMM;
			else
				usage_err(usage, "invalid --memory '%s': must be auto, map or vmm", optarg);
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
	if (optind != argc)
		usage_err(usage, "unexpected argument '%s'", argv[optind]);
	if (!d.vu_path || !d.uds_path || !cid)
		usage_err(usage, "--vhost-socket, --uds-path and --cid are required");
	if (ready_fd >= 0 && fcntl(ready_fd, F_GETFD) < 0)
		usage_err(usage, "--ready-fd %d is not open", ready_fd);
	d.cid = cid;
	for (i = 0; i < NQ; i++) {
		d.q[i].kick_fd = d.q[i].call_fd = d.q[i].err_fd = -1;
		d.s_kick[i] = (struct src){ .kind = SRC_KICK, .idx = i };
	}
	d.s_vu_listen.kind = SRC_VU_LISTEN;
	d.s_vu.kind = SRC_VU;
	d.s_uds.kind = SRC_UDS;
	d.s_sig.kind = SRC_SIG;
	vsock_init(&d);

	signal(SIGPIPE, SIG_IGN);
	d.sig_fd = signalfd_for((const int[]){ SIGTERM, SIGINT, SIGHUP, 0 }, SFD_NONBLOCK, &e);
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d.sig_fd < 0 || d.epfd < 0)
		die("set up the event loop");

	d.uds_fd = sock_listen_unix(d.uds_path, SOCK_NONBLOCK, 128, &e);
	if (d.uds_fd < 0)
		fc_err_exit(&e, 1);
	d.vu_listen = sock_listen_unix(d.vu_path, SOCK_NONBLOCK, 128, &e);
	if (d.vu_listen < 0) {
		unlink(d.uds_path);
		fc_err_exit(&e, 1);
	}
	if (watch(&d, d.sig_fd, EPOLLIN, &d.s_sig, &e) < 0 ||
	    watch(&d, d.uds_fd, EPOLLIN, &d.s_uds, &e) < 0 ||
	    watch(&d, d.vu_listen, EPOLLIN, &d.s_vu_listen, &e) < 0) {
		r = -1;
		goto out;
	}
	if (ready_fd >= 0) {
		int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (write_full(ready_fd, "ready\n", 6) < 0)
			log_warn("write to --ready-fd %d: %s", ready_fd, strerror(errno));
		/* Close it for the reader, but keep the number taken: with
		 * --ready-fd 1 a later socket must not become our stdout. */
		if (nul < 0 || dup2(nul, ready_fd) < 0)
			close(ready_fd);
		if (nul >= 0 && nul != ready_fd)
			close(nul);
	}
	log_debug("listening on '%s' (vhost-user) and '%s' (host clients), guest cid %llu",
		  d.vu_path, d.uds_path, (unsigned long long)d.cid);
	r = serve(&d, &e);
out:
	vsock_close_all(&d);
	vu_reset(&d);
	if (d.maps_fd >= 0)
		close(d.maps_fd);
	unlink(d.uds_path);
	if (!d.vu_path_gone)
		unlink(d.vu_path);
	if (r < 0)
		fc_err_exit(&e, 1);
	return 0;
}
