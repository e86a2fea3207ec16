/* rootless.c - rootless mode (fc-net up --mode rootless), for an ordinary
 * user: no privilege on the host is used or needed.
 *
 * How it works:
 *   1. checks first (slirp4netns present, host ports free), record written
 *      with status "creating";
 *   2. a holder process is forked: it makes a user namespace (itself as
 *      uid/gid 0 inside) and a network namespace, and in it: lo up, a
 *      bridge "br0" and the VM's persistent TAP "tap0" in the bridge. It
 *      lives as long as the owner (pidfd) - then, while the VM's state
 *      record state/<id>.json is live, as long as its owner - or until
 *      SIGTERM, and
 *      holds the write end of slirp4netns's --exit-fd, so slirp4netns ends
 *      with it; the namespaces end when the last process in them does;
 *   3. slirp4netns is started on the holder's namespaces (TAP "slirp0",
 *      --api-socket, --ready-fd); once ready, the holder puts slirp0 into
 *      the bridge: the guest (10.0.2.15/24) talks to slirp's virtual
 *      network directly (gateway 10.0.2.2, DNS 10.0.2.3);
 *   4. every published port is an add_hostfwd on the API socket, on the
 *      VM's loopback address 127.x.y.z (or the address given);
 *   5. record status "up" with the holder's pid, its start time and its
 *      namespace paths: the VMM is started inside them (setns user, then
 *      net) and opens "tap0".
 * Any failure after 2 stops the holder and slirp4netns and removes the
 * record: nothing half-made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "net.h"
#include "nl.h"
#include "paths.h"
#include "proc.h"
#include "state.h"
#include "text.h"
#include "util.h"

#define RL_GUEST "10.0.2.15"
#define RL_GW "10.0.2.2"
#define RL_DNS "10.0.2.3"
#define RL_TIMEOUT_MS 10000

/* ---- the holder (child process) ------------------------------------ */

void net_reply(int fd, const char *fmt, ...)
{
	char buf[FC_ERR_MAX + 16];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(fd, buf, (size_t)n);
}

pid_t net_holder_fork(int rep[2], struct fc_err *e)
{
	pid_t pid;
	int end;

	if (pipe2(rep, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "pipe");
	pid = fork();
	if (pid < 0)
		return fc_err_set(e, errno, "fork");
	end = pid == 0 ? 0 : 1;	/* the one this side does not use */
	close(rep[end]);
	rep[end] = -1;
	return pid;
}

void net_holder_start(int *const keep[], size_t n, pid_t owner, uint64_t owner_start, int *sfd,
		      int *pfd)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, 0 };
	struct fc_err e;
	size_t i;
	int null;

	/* All above 64 first: renumbering one must not clobber another. */
	for (i = 0; i < n; i++)
		*keep[i] = fcntl(*keep[i], F_DUPFD_CLOEXEC, 64);
	for (i = 0; i < n; i++) {
		if (*keep[i] < 0 || dup2(*keep[i], 3 + (int)i) < 0)
			_exit(1);
		*keep[i] = 3 + (int)i;
	}
	close_range(3 + (unsigned int)n, ~0u, 0);
	setsid();
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	*sfd = signalfd_for(sigs, 0, &e);
	*pfd = (int)syscall(SYS_pidfd_open, owner, 0);
	if (*sfd < 0 || *pfd < 0 || !proc_alive(owner, owner_start)) {
		net_reply(*keep[0], "error: owner %d is not running", (int)owner);
		_exit(1);
	}
}

static int write_map(const char *file, const char *text, struct fc_err *e)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/%s", file);
	return write_sysctl(path, text, e);
}

/* User + network namespace, lo, br0, tap0 in br0. 0 or -1 with @e. */
static int holder_setup(uid_t uid, gid_t gid, struct fc_err *e)
{
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	struct nl_link lo = { 0 }, br = { 0 }, tap = { 0 };
	char map[64];
	int fd;

	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
		return fc_err_set(e, errno, "user namespaces are not available here (disabled, or the limit in /proc/sys/user/max_user_namespaces is reached): create a user and network namespace");
	snprintf(map, sizeof(map), "0 %u 1", (unsigned int)uid);
	if (write_map("uid_map", map, e) < 0)
		return -1;
	if (write_map("setgroups", "deny", e) < 0)
		return -1;
	snprintf(map, sizeof(map), "0 %u 1", (unsigned int)gid);
	if (write_map("gid_map", map, e) < 0)
		return -1;
	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	if (nl_link_get(&nl, "lo", &lo, e) != 0 || nl_link_set(&nl, lo.ifindex, NULL, 0, 0, true, e) < 0)
		return fc_err_wrap(e, "bring up 'lo'");
	if (nl_bridge_add(&nl, "br0", e) < 0)
		return -1;
	fd = tap_open("tap0", true, true, (uid_t)-1, e);
	if (fd < 0)
		return fc_err_wrap(e, "(is /dev/net/tun usable by this user? a normal distro has it 0666)");
	close(fd);
	if (nl_link_get(&nl, "br0", &br, e) != 0 || nl_link_get(&nl, "tap0", &tap, e) != 0)
		return fc_err_set(e, ENODEV, "br0 or tap0 vanished");
	if (nl_link_set(&nl, tap.ifindex, NULL, 0, br.ifindex, true, e) < 0 ||
	    nl_link_set(&nl, br.ifindex, NULL, 0, 0, true, e) < 0)
		return fc_err_wrap(e, "bridge tap0");
	return 0;
}

static int holder_attach(const char *name, struct fc_err *e)
{
	_cleanup_nl_ struct nl nl = { NULL, 0, 0 };
	struct nl_link br = { 0 }, l = { 0 };

	if (nl_open(&nl, NETLINK_ROUTE, e) < 0)
		return -1;
	if (nl_link_get(&nl, "br0", &br, e) != 0 || nl_link_get(&nl, name, &l, e) != 0)
		return fc_err_set(e, ENODEV, "no '%s' in the namespace", name);
	if (nl_link_set(&nl, l.ifindex, NULL, 0, br.ifindex, true, e) < 0)
		return fc_err_wrap(e, "bridge '%s'", name);
	return 0;
}

int net_adopt_vm_owner(const char *id)
{
	_cleanup_json_ json_t *st = NULL;
	struct fc_err e;
	json_int_t pid;
	int fd;

	st = state_load(id, &e);
	if (!st || !state_live(st))
		return -1;
	pid = json_integer_value(json_object_get(st, "pid"));
	fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	/* Checked after opening: the pidfd cannot be a reused pid's. */
	if (fd >= 0 && !state_live(st)) {
		close(fd);
		return -1;
	}
	return fd;
}

static noreturn void holder_main(const char *id, int ctl, int rep, int exw, pid_t owner,
				 uint64_t owner_start, uid_t uid, gid_t gid)
{
	int *keep[] = { &rep, &ctl, &exw };
	struct fc_err e;
	int pfd, sfd;
	char line[64];
	ssize_t n;

	net_holder_start(keep, ARRAY_SIZE(keep), owner, owner_start, &sfd, &pfd);
	if (holder_setup(uid, gid, &e) < 0) {
		net_reply(rep, "error: %s", e.msg);
		_exit(1);
	}
	net_reply(rep, "ok");
	/* One request: the name of slirp4netns's TAP, once it exists. */
	n = read(ctl, line, sizeof(line) - 1);
	if (n <= 0)
		_exit(1);
	line[n] = '\0';
	line[strcspn(line, "\n")] = '\0';
	if (holder_attach(line, &e) < 0) {
		net_reply(rep, "error: %s", e.msg);
		_exit(1);
	}
	net_reply(rep, "ok");
	close(rep);
	close(ctl);
	for (;;) {	/* fd 5, the write end of slirp4netns's --exit-fd, stays open */
		struct pollfd p[2] = { { pfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			_exit(1);
		if (p[1].revents)
			_exit(0);	/* told to stop: the namespaces go */
		if (p[0].revents) {
			/* The owner is gone. The VM's own record (state/<id>.json)
			 * takes over while it is live: so fcvm can run 'fc-net up'
			 * before fc-boot exists and leave with the VM detached. */
			close(pfd);
			pfd = net_adopt_vm_owner(id);
			if (pfd < 0)
				_exit(0);	/* no live VM either: the namespaces go */
		}
	}
}

/* ---- the parent (fc-net up) ---------------------------------------- */

/* One line from @fd within @timeout_ms into @buf. 0, or -1 with @e. */
static int read_line(int fd, char *buf, size_t size, int timeout_ms, const char *who,
		     struct fc_err *e)
{
	size_t len = 0;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (len < size - 1) {
		struct pollfd p = { fd, POLLIN, 0 };
		int left = (int)(end - now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, left) == 0)
			return fc_err_set(e, ETIMEDOUT, "%s did not answer within %d ms", who, timeout_ms);
		n = read(fd, buf + len, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fc_err_set(e, n < 0 ? errno : EPIPE, "%s ended", who);
		if (buf[len] == '\n')
			break;
		len++;
	}
	buf[len] = '\0';
	return 0;
}

int net_expect_ok(int rep, const char *who, struct fc_err *e)
{
	char line[FC_ERR_MAX + 16];

	if (read_line(rep, line, sizeof(line), RL_TIMEOUT_MS, who, e) < 0)
		return -1;
	if (!strcmp(line, "ok"))
		return 0;
	return fc_err_set(e, 0, "%s", !strncmp(line, "error: ", 7) ? line + 7 : line);
}

/* Last line of @path (a log), cleaned for a terminal; caller frees. */
static char *last_line(const char *path)
{
	_cleanup_free_ char *buf = NULL;
	struct fc_err e;
	size_t len;
	char *p;

	buf = read_file_max(path, 64 * 1024, &len, &e);
	if (!buf || !len)
		return xstrdup("no output");
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	p = strrchr(buf, '\n');
	p = p ? p + 1 : buf;
	return text_clean(p, strlen(p), 300, false);
}

/* Start slirp4netns on @holder's namespaces; fds 3 (exit) and 4 (ready)
 * are the only ones it gets. Returns its pid or -1. */
static pid_t start_slirp(const char *slirp, pid_t holder, const char *api, const char *log,
			 int exit_r, int ready_w, bool host_loopback, struct fc_err *e)
{
	char pid_s[16], api_opt[PATH_MAX + 16];
	char *argv[12];
	int n = 0;
	pid_t pid;

	snprintf(pid_s, sizeof(pid_s), "%d", (int)holder);
	snprintf(api_opt, sizeof(api_opt), "--api-socket=%s", api);
	argv[n++] = (char *)slirp;
	argv[n++] = "--exit-fd=3";
	argv[n++] = "--ready-fd=4";
	argv[n++] = api_opt;
	if (!host_loopback)
		argv[n++] = "--disable-host-loopback";
	argv[n++] = pid_s;
	argv[n++] = "slirp0";
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		return fc_err_set(e, errno, "fork"), -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY), out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if (null < 0 || out < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		/* exit_r/ready_w onto 3/4 without clobbering each other. */
		exit_r = fcntl(exit_r, F_DUPFD_CLOEXEC, 10);
		ready_w = fcntl(ready_w, F_DUPFD_CLOEXEC, 10);
		if (exit_r < 0 || ready_w < 0 || dup2(exit_r, 3) < 0 || dup2(ready_w, 4) < 0)
			_exit(127);
		close_range(5, ~0u, 0);
		execv(slirp, argv);
		fprintf(stderr, "exec %s: %s\n", slirp, strerror(errno));
		_exit(127);
	}
	return pid;
}

/* One request on slirp4netns's API socket; the reply parsed. */
static json_t *slirp_api(const char *api, json_t *req, struct fc_err *e)
{
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	_cleanup_free_ char *s = json_dumps(req, JSON_COMPACT);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096];
	size_t len = 0;

	if (fd < 0)
		return fc_err_set(e, errno, "socket"), NULL;
	if (strlen(api) >= sizeof(sa.sun_path))
		return fc_err_set(e, ENAMETOOLONG, "API socket path '%s'", api), NULL;
	strcpy(sa.sun_path, api);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fc_err_set(e, errno, "connect to slirp4netns at '%s'", api), NULL;
	if (write_full(fd, s, strlen(s)) < 0)
		return fc_err_set(e, errno, "send to slirp4netns"), NULL;
	shutdown(fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (len == sizeof(buf))
			return fc_err_set(e, EMSGSIZE, "slirp4netns: reply too long"), NULL;
		if (poll(&p, 1, RL_TIMEOUT_MS) <= 0)
			return fc_err_set(e, ETIMEDOUT, "slirp4netns did not answer"), NULL;
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fc_err_set(e, errno, "read from slirp4netns"), NULL;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	return json_parse(buf, len, e);
}

static int add_hostfwd(const char *api, const struct port_map *m, struct fc_err *e)
{
	_cleanup_json_ json_t *req = NULL, *rep = NULL;
	json_t *err;

	req = json_pack("{s:s, s:{s:s, s:s, s:i, s:s, s:i}}", "execute", "add_hostfwd", "arguments",
			"proto", proto_name(m->proto), "host_addr", ip_str(m->host_ip), "host_port",
			(int)m->host_port, "guest_addr", RL_GUEST, "guest_port", (int)m->guest_port);
	rep = slirp_api(api, req, e);
	if (!rep)
		return fc_err_wrap(e, "publish %s:%u/%s", ip_str(m->host_ip), m->host_port,
				   proto_name(m->proto));
	err = json_object_get(rep, "error");
	if (err || !json_object_get(rep, "return")) {
		const char *d = json_str(err, "desc");
		_cleanup_free_ char *c = text_clean(d ? d : "malformed reply", strlen(d ? d : "malformed reply"),
						    300, false);

		return fc_err_set(e, 0, "publish %s:%u/%s: slirp4netns: %s", ip_str(m->host_ip),
				  m->host_port, proto_name(m->proto), c);
	}
	return 0;
}

/* Is @pid's command name @comm? */
static bool comm_is(pid_t pid, const char *comm)
{
	char path[64], buf[32] = { 0 };
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
		return false;
	buf[strcspn(buf, "\n")] = '\0';
	return !strcmp(buf, comm);
}

void net_stop_process(pid_t pid, uint64_t start, const char *comm, int grace_ms)
{
	uint64_t end;

	/* Without a start time the pid is not an identity: leave it. The
	 * name check keeps a tampered record from aiming us elsewhere. */
	if (pid <= 0 || !start || !state_pid_live(pid, start) || !comm_is(pid, comm))
		return;
	kill(pid, SIGTERM);
	for (end = now_ms() + (uint64_t)grace_ms; now_ms() < end;) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		waitpid(pid, NULL, WNOHANG);	/* reaps it when it is ours */
		if (!state_pid_live(pid, start))
			return;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, WNOHANG);
}

int rootless_up(struct up_opts *o, json_t **out, struct fc_err *e)
{
	_cleanup_close_ int lock = -1;
	_cleanup_json_ json_t *records = NULL, *rec = NULL;
	_cleanup_free_ char *slirp = NULL, *api = NULL, *log = NULL, *kip = NULL;
	_cleanup_free_ char *nsuser = NULL, *nsnet = NULL;
	int ctl[2] = { -1, -1 }, rep[2] = { -1, -1 }, ex[2] = { -1, -1 }, rdy[2] = { -1, -1 };
	struct in_addr loopback;
	char tap[16], mac_s[18];
	uint8_t mac[6];
	pid_t holder = -1, sl = -1;
	uint64_t holder_start = 0, sl_start = 0;
	size_t i;
	int r = -1;

	slirp = proc_find_tool("slirp4netns");
	if (!slirp)
		return fc_err_set(e, ENOENT, "slirp4netns not found: rootless mode needs it (Debian: apt-get install slirp4netns)");
	lock = net_up_lock(o->id, NULL, &records, e);
	if (lock < 0)
		return -1;
	if (net_derive(o->id, records, NULL, tap, &loopback, mac, mac_s, e) < 0)
		return -1;
	if (ports_check(o->ports, o->nports, loopback, records, e) < 0)
		return -1;
	/* slirp4netns --disable-host-loopback also drops UDP replies to
	 * clients on a loopback address (measured: TCP is not affected). */
	for (i = 0; i < o->nports && !o->host_loopback; i++)
		if (o->ports[i].proto == IPPROTO_UDP)
			return fc_err_set(e, 0, "rootless: UDP port %u needs --host-loopback (without it slirp4netns drops the replies to host clients)",
					  o->ports[i].guest_port);
	api = fc_path("net/%s.sock", o->id);
	log = fc_path("net/%s.slirp.log", o->id);
	kip = xasprintf("ip=%s::%s:255.255.255.0::eth0:off", RL_GUEST, RL_GW);
	rec = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:[s],"
			" s:s, s:o, s:b, s:s, s:s}",
			"version", 1, "id", o->id, "mode", "rootless", "status", "creating",
			"owner_pid", (json_int_t)o->owner, "owner_start", (json_int_t)o->owner_start,
			"tap", "tap0", "mac", mac_s, "subnet", "10.0.2.0/24", "guest_ip", RL_GUEST,
			"gateway", RL_GW, "prefix", 24, "netmask", "255.255.255.0", "dns", RL_DNS,
			"loopback_ip", ip_str(loopback), "ports", ports_json(o->ports, o->nports, loopback),
			"host_loopback", o->host_loopback, "api_socket", api, "kernel_ip", kip);
	if (!rec)
		return fc_err_set(e, ENOMEM, "build record");
	if (net_record_save(rec, e) < 0)
		return -1;

	if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0 || pipe2(rdy, O_CLOEXEC) < 0) {
		fc_err_set(e, errno, "pipe");
		goto out;
	}
	holder = net_holder_fork(rep, e);
	if (holder < 0)
		goto out;
	if (holder == 0) {
		close(ctl[1]);
		holder_main(o->id, ctl[0], rep[1], ex[1], o->owner, o->owner_start, getuid(), getgid());
	}
	close(ctl[0]); ctl[0] = -1;
	close(ex[1]); ex[1] = -1;	/* only the holder keeps slirp4netns alive */
	proc_start_time(holder, &holder_start, NULL);
	json_object_set_new(rec, "holder_pid", json_integer(holder));
	json_object_set_new(rec, "holder_start", json_integer((json_int_t)holder_start));
	if (net_record_save(rec, e) < 0 || net_expect_ok(rep[0], "the namespace holder", e) < 0)
		goto out;

	sl = start_slirp(slirp, holder, api, log, ex[0], rdy[1], o->host_loopback, e);
	if (sl < 0)
		goto out;
	close(rdy[1]); rdy[1] = -1;
	proc_start_time(sl, &sl_start, NULL);
	json_object_set_new(rec, "slirp_pid", json_integer(sl));
	json_object_set_new(rec, "slirp_start", json_integer((json_int_t)sl_start));
	if (net_record_save(rec, e) < 0)
		goto out;
	{
		char line[16];
		struct pollfd p = { rdy[0], POLLIN, 0 };
		ssize_t n = 0;

		if (poll(&p, 1, RL_TIMEOUT_MS) > 0)
			n = read(rdy[0], line, sizeof(line));
		if (n <= 0) {
			_cleanup_free_ char *why = last_line(log);

			fc_err_set(e, 0, "slirp4netns did not start: %s", why);
			goto out;
		}
	}
	if (write_full(ctl[1], "slirp0\n", 7) < 0) {
		fc_err_set(e, errno, "tell the namespace holder");
		goto out;
	}
	if (net_expect_ok(rep[0], "the namespace holder", e) < 0)
		goto out;
	for (i = 0; i < o->nports; i++)
		if (add_hostfwd(api, &o->ports[i], e) < 0)
			goto out;
	nsuser = xasprintf("/proc/%d/ns/user", (int)holder);
	nsnet = xasprintf("/proc/%d/ns/net", (int)holder);
	json_object_set_new(rec, "netns", json_pack("{s:s, s:s, s:i, s:I}", "user", nsuser, "net",
						    nsnet, "pid", (int)holder, "pid_start",
						    (json_int_t)holder_start));
	json_object_set_new(rec, "status", json_string("up"));
	if (net_record_save(rec, e) < 0)
		goto out;
	*out = steal_ptr(&rec);
	r = 0;
out:
	for (i = 0; i < 2; i++) {
		if (ctl[i] >= 0) close(ctl[i]);
		if (rep[i] >= 0) close(rep[i]);
		if (ex[i] >= 0) close(ex[i]);
		if (rdy[i] >= 0) close(rdy[i]);
	}
	if (r < 0 && rec)
		net_up_undo(rec);
	/* Our children are detached (setsid); reap what already ended. */
	if (holder > 0)
		waitpid(holder, NULL, WNOHANG);
	if (sl > 0)
		waitpid(sl, NULL, WNOHANG);
	return r;
}

int rootless_down(json_t *rec, struct fc_err *e)
{
	long long hp = 0, hs = 0, sp = 0, ss = 0;
	const char *id = json_str(rec, "id");
	_cleanup_free_ char *log = NULL, *api = NULL;

	(void)e;
	json_int(rec, "holder_pid", 1, 1LL << 31, &hp, e);
	json_int(rec, "holder_start", 0, 1LL << 62, &hs, e);
	json_int(rec, "slirp_pid", 1, 1LL << 31, &sp, e);
	json_int(rec, "slirp_start", 0, 1LL << 62, &ss, e);
	/* The holder first: slirp4netns ends by itself once it is gone. */
	net_stop_process((pid_t)hp, (uint64_t)hs, "fc-net", 3000);
	net_stop_process((pid_t)sp, (uint64_t)ss, "slirp4netns", 3000);
	/* Our own paths, not the record's: nothing else is unlinked. */
	api = fc_path("net/%s.sock", id);
	unlink(api);
	log = fc_path("net/%s.slirp.log", id);
	unlink(log);
	return 0;
}
