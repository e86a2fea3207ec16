/* attach.c - the guest stand-in (fc-net attach): tests and benchmarks
 * exercise the real host side (TAP, routes, DNAT, masquerade) without a VM.
 *
 * How it works: the VM's TAP is opened the way a VMM opens it (TUNSETIFF
 * on the existing persistent TAP), in the host's network namespace. Then
 * the process enters network namespace @netns, creates a TAP "eth0" there
 * with the guest's MAC, address and default route (netlink, in that
 * namespace), and copies every frame from one TAP's fd to the other's.
 * Frames are copied, never parsed. The namespace's eth0 goes away with
 * the process (it is not persistent).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "net.h"
#include "netns.h"
#include "nl.h"
#include "proc.h"
#include "util.h"

int net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int v[6];
	int i;

	if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -1;
	for (i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

/* Copy one frame from @from to @to; frames the other side cannot take
 * right now are dropped, like a NIC would. 0, or -1 on a fatal error. */
static int pump(int from, int to, char *buf, size_t size)
{
	ssize_t n = read(from, buf, size);

	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	if (n == 0)
		return -1;
	if (write(to, buf, (size_t)n) < 0 && errno != EAGAIN && errno != EIO && errno != EINTR)
		return -1;
	return 0;
}

int attach_run(json_t *rec, const char *netns, char **cmd, int ready_fd, int *code,
	       struct fc_err *e)
{
	_cleanup_close_ int host = -1, guest = -1, ns = -1, sfd = -1;
	_cleanup_free_ char *nspath = NULL, *buf = NULL;
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	const char *tap = json_str(rec, "tap"), *mode = json_str(rec, "mode");
	const char *gip = json_str(rec, "guest_ip"), *gws = json_str(rec, "gateway");
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD, 0 };
	bool in_holder = mode && (!strcmp(mode, "rootless") || !strcmp(mode, "clone"));
	struct in_addr addr, gw;
	long long prefix = 0;
	pid_t child = -1;
	uint8_t mac[6];
	struct nl_link l = { 0 };
	int r;

	*code = 0;
	if (!tap || !gip || !gws || inet_pton(AF_INET, gip, &addr) != 1 ||
	    inet_pton(AF_INET, gws, &gw) != 1 || net_parse_mac(json_str(rec, "mac"), mac) < 0 ||
	    json_int(rec, "prefix", 1, 32, &prefix, e) != 0)
		return fc_err_set(e, EINVAL, "the record has no usable network");
	if (netns) {
		nspath = strchr(netns, '/') ? xstrdup(netns) : xasprintf("/run/netns/%s", netns);
		ns = open(nspath, O_RDONLY | O_CLOEXEC);
		if (ns < 0)
			return fc_err_set(e, errno, "open network namespace '%s'", nspath);
	} else {
		nspath = xstrdup("a new network namespace");
	}
	sfd = signalfd_for(sigs, SFD_NONBLOCK, e);
	if (sfd < 0)
		return -1;
	/* The VMM's end of the VM's TAP: on the host, or (rootless, clone)
	 * inside the holder's namespaces, where the VMM runs. */
	if (in_holder && netns_enter_record(rec, e) < 0)
		return -1;
	host = tap_open(tap, false, false, (uid_t)-1, e);
	if (host < 0)
		return -1;
	if (ns >= 0 ? setns(ns, CLONE_NEWNET) : unshare(CLONE_NEWNET))
		return fc_err_set(e, errno, "enter %s", nspath);
	/* Not persistent: eth0 disappears with this process. */
	guest = tap_open("eth0", true, false, (uid_t)-1, e);
	if (guest < 0)
		return fc_err_wrap(e, "in %s", nspath);
	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	if (nl_link_get(&nl, "lo", &l, e) != 0 || nl_link_set(&nl, l.ifindex, NULL, 0, 0, true, e) < 0)
		return fc_err_wrap(e, "bring up 'lo' in %s", nspath);
	r = nl_link_get(&nl, "eth0", &l, e);
	if (r != 0)
		return r < 0 ? -1 : fc_err_set(e, ENODEV, "tap 'eth0' vanished");
	if (nl_link_set(&nl, l.ifindex, mac, 0, 0, true, e) < 0 ||
	    nl_addr_add(&nl, l.ifindex, addr, (int)prefix, e) < 0 || nl_route_default(&nl, gw, e) < 0)
		return fc_err_wrap(e, "configure 'eth0' in %s", nspath);
	if (fcntl(host, F_SETFL, O_NONBLOCK) < 0 || fcntl(guest, F_SETFL, O_NONBLOCK) < 0)
		return fc_err_set(e, errno, "non-blocking tap");
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "ready\n", 6);
		close(ready_fd);
	}
	if (cmd) {
		struct spawn_opts so = { -1, -1, -1, true, false };

		child = spawn(cmd, &so, e);
		if (child < 0)
			return -1;
	}
	buf = xmalloc(65536 + 64);
	for (;;) {
		struct pollfd p[3] = { { host, POLLIN, 0 }, { guest, POLLIN, 0 }, { sfd, POLLIN, 0 } };

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return fc_err_set(e, errno, "poll");
		}
		if (p[2].revents) {
			struct signalfd_siginfo si;
			int st;

			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo != SIGCHLD) {
					if (child > 0)
						kill_wait(child, 2000);
					return 0;
				}
			}
			if (child > 0 && waitpid(child, &st, WNOHANG) == child) {
				*code = exit_code_of(st);
				return 0;
			}
		}
		if ((p[0].revents & POLLIN) && pump(host, guest, buf, 65536 + 64) < 0)
			return fc_err_set(e, errno, "copy frames from tap '%s'", tap);
		if ((p[1].revents & POLLIN) && pump(guest, host, buf, 65536 + 64) < 0)
			return fc_err_set(e, errno, "copy frames to tap '%s'", tap);
		if ((p[0].revents | p[1].revents) & (POLLERR | POLLHUP | POLLNVAL))
			return fc_err_set(e, EIO, "tap closed");
	}
}
