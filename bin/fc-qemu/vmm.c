/* vmm.c - run the configured VM under qemu-system-x86_64 -M microvm.
 *
 * How it starts (vmm_start), in this order because each step needs the
 * previous one:
 *   1. a private temp dir for the QMP and vhost-user sockets;
 *   2. fc-vsock, if /vsock was configured: it must listen on the vhost-user
 *      socket before QEMU starts, since QEMU connects to it while realizing
 *      the device; we wait for "ready\n" on its --ready-fd (its stdout,
 *      because spawn() passes no other fds);
 *   3. QEMU, with die_with_parent so it cannot outlive us even on SIGKILL,
 *      stderr on a pipe (forwarded to ours; the last line explains an early
 *      exit), the serial console on our stdout;
 *   4. QMP: connect (retrying while QEMU creates the socket), greeting,
 *      qmp_capabilities, query-status - only then is the VM "Running";
 *   5. the temp dir and its socket paths are removed: the connections are
 *      made, and nothing is left on disk for a SIGKILL to strand.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fcq.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "sock.h"
#include "text.h"
#include "util.h"

#define START_TIMEOUT_MS	30000
#define QMP_TIMEOUT_MS		10000
#define VSOCK_TIMEOUT_MS	10000
/* longest private dir: "/vhost-vsock.sock" must still fit in sun_path */
#define SOCK_DIR_MAX		88

void vmm_init(struct vmm *v)
{
	char *base = v->base_dir;

	memset(v, 0, sizeof(*v));
	v->base_dir = base;
	v->qmp_fd = v->err_fd = v->vsock_out_fd = -1;
}

/* --- argv building -------------------------------------------------------- */

struct argv {
	char **v;
	size_t n, cap;
};

static void arg(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(struct argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void argv_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

/* QEMU option values separate on ',': a literal comma is written ",,". */
static char *qemu_escape(const char *s)
{
	size_t n = 0;
	char *o, *p;

	for (const char *c = s; *c; c++)
		n += *c == ',' ? 2 : 1;
	o = p = xmalloc(n + 1);
	for (; *s; s++) {
		*p++ = *s;
		if (*s == ',')
			*p++ = ',';
	}
	*p = '\0';
	return o;
}

/* Host TSC rate for tsc_early_khz: TCG guests without it hang about half
 * the time calibrating ("Marking TSC unstable"). 0 if unknown. */
static unsigned long tsc_khz(void)
{
	_cleanup_free_ char *buf = NULL;
	struct fc_err e;
	const char *p;
	double mhz;

	buf = read_file_max("/proc/cpuinfo", 4 << 20, NULL, &e);
	if (!buf || !(p = strstr(buf, "cpu MHz")) || !(p = strchr(p, ':')))
		return 0;
	if (sscanf(p + 1, "%lf", &mhz) != 1 || mhz < 1 || mhz > 100000)
		return 0;
	return (unsigned long)(mhz * 1000);
}

/* KVM only when fc-setup's probe saw a guest really run on it (here a
 * nested KVM hangs guests); FCVM_QEMU_ACCEL=tcg|kvm overrides. */
static bool use_kvm(void)
{
	const char *env = getenv("FCVM_QEMU_ACCEL");
	_cleanup_free_ char *probe = NULL;
	_cleanup_json_ json_t *j = NULL;
	struct fc_err e;

	if (env && *env)
		return !strcmp(env, "kvm");
	probe = fc_path("kvm-probe.json");
	if (access(probe, F_OK) < 0)
		return false;
	j = json_load_path(probe, 65536, &e);
	if (!j) {
		log_warn("%s; using TCG", e.msg);
		return false;
	}
	return json_is_true(json_object_get(j, "usable")) && access("/dev/kvm", R_OK | W_OK) == 0;
}

#define GUEST_HZ 250	/* CONFIG_HZ of the guest kernel, for lpj= */

static int build_cmdline(const struct fcq_config *c, bool tcg, char *out, struct fc_err *e)
{
	static const char def[] = "reboot=k panic=1 pci=off nomodules i8042.noaux i8042.nomux "
				  "i8042.dumbkbd swiotlb=noforce console=ttyS0";
	const struct fcq_drive *root = NULL;
	unsigned long khz = 0;
	int n;

	for (size_t i = 0; i < c->ndrives; i++)
		if (c->drives[i].root)
			root = &c->drives[i];
	n = snprintf(out, FCQ_CMDLINE_MAX, "%s", c->boot_args ? c->boot_args : def);
	/* like Firecracker: the root device is announced on the command line */
	if (root && n >= 0 && n < FCQ_CMDLINE_MAX)
		n += snprintf(out + n, FCQ_CMDLINE_MAX - n, " root=/dev/vda %s",
			      root->read_only ? "ro" : "rw");
	if (tcg && (khz = tsc_khz()) && n >= 0 && n < FCQ_CMDLINE_MAX)
		n += snprintf(out + n, FCQ_CMDLINE_MAX - n, " tsc_early_khz=%lu", khz);
	/* The boot CPU takes its loops-per-jiffy from the TSC rate, but every
	 * other vCPU calibrates its delay loop again, and under TCG that fails
	 * slowly (about 110 ms per vCPU here): preset it, for HZ=250 (Debian's
	 * kernels; another HZ only scales the guest's udelay()). */
	if (tcg && khz && n >= 0 && n < FCQ_CMDLINE_MAX && !strstr(out, "lpj="))
		n += snprintf(out + n, FCQ_CMDLINE_MAX - n, " lpj=%lu", khz * 1000 / GUEST_HZ);
	if (n < 0 || n >= FCQ_CMDLINE_MAX)
		return fc_err_set(e, 0, "kernel command line longer than %d bytes", FCQ_CMDLINE_MAX - 1);
	return 0;
}

static void build_qemu_argv(struct argv *a, const struct fcq_config *c, const struct vmm *v,
			    const char *cmdline)
{
	_cleanup_free_ char *kernel = NULL;
	_cleanup_free_ char *memobj = snap_mem_object(v, c->mem_mib);

	arg(a, "%s", snap_qemu_bin(v));	/* $FCVM_QEMU, fcvm's QEMU, or stock */
	arg(a, "-M");
	arg(a, "microvm,memory-backend=mem");
	arg(a, "-nodefaults");
	arg(a, "-no-user-config");
	arg(a, "-no-reboot");
	arg(a, "-display");
	arg(a, "none");
	arg(a, "-accel");
	arg(a, "%s", v->tcg ? "tcg,thread=single" : "kvm");
	arg(a, "-cpu");
	arg(a, "%s", v->tcg ? "max" : "host");
	arg(a, "-smp");
	if (c->smt && c->vcpus > 1)
		arg(a, "%u,sockets=1,cores=%u,threads=2", c->vcpus, c->vcpus / 2);
	else
		arg(a, "%u", c->vcpus);
	arg(a, "-m");
	arg(a, "%uM", c->mem_mib);
	/* shared memfd RAM: vhost-user backends (fc-vsock) map guest memory */
	arg(a, "-object");
	if (memobj)	/* snap.c: RAM in a file, so the VM can be snapshotted */
		arg(a, "%s", memobj);
	else
		arg(a, "memory-backend-memfd,id=mem,size=%uM,share=on", c->mem_mib);
	if (snap_incoming(v)) {	/* snap.c: loading a snapshot */
		arg(a, "-S");
		arg(a, "-incoming");
		arg(a, "defer");
	}
	arg(a, "-global");
	arg(a, "virtio-mmio.force-legacy=false");
	arg(a, "-kernel");
	arg(a, "%s", c->kernel);
	if (c->initrd) {
		arg(a, "-initrd");
		arg(a, "%s", c->initrd);
	}
	arg(a, "-append");
	arg(a, "%s", cmdline);
	arg(a, "-serial");
	arg(a, "stdio");
	arg(a, "-qmp");
	arg(a, "unix:%s/qmp.sock,server=on,wait=off", v->dir);
	/* root first so that it is /dev/vda, as with Firecracker */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < c->ndrives; i++) {
			const struct fcq_drive *d = &c->drives[i];
			_cleanup_free_ char *path = NULL;

			if (d->root != (pass == 0))
				continue;
			path = qemu_escape(d->path);
			arg(a, "-drive");
			arg(a, "if=none,id=blk_%s,file=%s,format=raw,cache=%s%s", d->id, path,
			    d->cache, d->read_only ? ",readonly=on" : "");
			arg(a, "-device");
			arg(a, "virtio-blk-device,drive=blk_%s", d->id);
		}
	}
	for (size_t i = 0; i < c->nnets; i++) {
		const struct fcq_net *n = &c->nets[i];

		arg(a, "-netdev");
		arg(a, "tap,id=net_%s,ifname=%s,script=no,downscript=no", n->id, n->tap);
		arg(a, "-device");
		if (n->mtu)
			arg(a, "virtio-net-device,netdev=net_%s%s%s,host_mtu=%u", n->id,
			    *n->mac ? ",mac=" : "", n->mac, n->mtu);
		else
			arg(a, "virtio-net-device,netdev=net_%s%s%s", n->id,
			    *n->mac ? ",mac=" : "", n->mac);
	}
	if (c->vsock) {
		arg(a, "-chardev");
		arg(a, "socket,id=vsock0,path=%s/vhost-vsock.sock", v->dir);
		arg(a, "-device");
		arg(a, "vhost-user-vsock-device,chardev=vsock0");
	}
}

/* --- child output ---------------------------------------------------------- */

/* Forward a line (or a chunk of a long one) of QEMU's stderr to ours,
 * sanitised; a complete line also becomes the last line. */
static void err_emit(struct vmm *v, bool complete)
{
	_cleanup_free_ char *t = text_clean(v->err_part, v->err_part_len, v->err_part_len, false);
	size_t n = strlen(t);

	t[n] = complete ? '\n' : '\0';	/* in place of its NUL */
	if (write(STDERR_FILENO, t, n + complete) < 0) {
		/* our stderr is gone; nothing else to tell */
	}
	/* the last line: a long one by its first sizeof(err_line) bytes */
	if (v->err_part_len && !v->err_cont)
		snprintf(v->err_line, sizeof(v->err_line), "%.*s", (int)v->err_part_len, v->err_part);
	v->err_cont = !complete;
	v->err_part_len = 0;
}

int vmm_read_stderr(struct vmm *v)
{
	char buf[4096];
	ssize_t n;

	if (v->err_fd < 0)
		return -1;
	n = read(v->err_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		if (v->err_part_len)
			err_emit(v, true);
		close(v->err_fd);
		v->err_fd = -1;
		return -1;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			err_emit(v, true);
		} else {
			v->err_part[v->err_part_len++] = buf[i];
			if (v->err_part_len == sizeof(v->err_part))
				err_emit(v, false);
		}
	}
	return 0;
}

int vmm_read_vsock(struct vmm *v)
{
	char buf[256];
	ssize_t n;

	if (v->vsock_out_fd < 0)
		return -1;
	n = read(v->vsock_out_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		close(v->vsock_out_fd);
		v->vsock_out_fd = -1;
		return -1;
	}
	return 0;
}

/* --- QMP ----------------------------------------------------------------- */

/* Next QMP message (one JSON object per line), waiting up to @timeout_ms;
 * QEMU's stderr is drained meanwhile so it never blocks on a full pipe. */
static json_t *qmp_next(struct vmm *v, int timeout_ms, struct fc_err *e)
{
	uint64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		char *nl = memchr(v->qmp_buf, '\n', v->qmp_len);
		struct pollfd p[2] = { { v->qmp_fd, POLLIN, 0 }, { v->err_fd, POLLIN, 0 } };
		uint64_t now;
		ssize_t n;
		int r;

		if (nl) {
			size_t ll = nl - v->qmp_buf + 1;
			json_t *j = json_parse(v->qmp_buf, ll, e);

			memmove(v->qmp_buf, v->qmp_buf + ll, v->qmp_len - ll);
			v->qmp_len -= ll;
			if (!j)
				return fc_err_wrap(e, "QMP"), NULL;
			if (!json_is_object(j)) {
				json_decref(j);
				fc_err_set(e, 0, "QMP: message is not an object");
				return NULL;
			}
			return j;
		}
		if (v->qmp_len == sizeof(v->qmp_buf)) {
			fc_err_set(e, 0, "QMP: message longer than %zu bytes", sizeof(v->qmp_buf));
			return NULL;
		}
		now = now_ms();
		if (now >= deadline) {
			fc_err_set(e, ETIMEDOUT, "QMP: no answer from QEMU");
			return NULL;
		}
		r = poll(p, 2, (int)(deadline - now));
		if (r < 0 && errno != EINTR) {
			fc_err_set(e, errno, "poll");
			return NULL;
		}
		if (p[1].revents)
			vmm_read_stderr(v);
		if (!(p[0].revents))
			continue;
		n = read(v->qmp_fd, v->qmp_buf + v->qmp_len, sizeof(v->qmp_buf) - v->qmp_len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			fc_err_set(e, n < 0 ? errno : 0, "QMP: QEMU closed the connection");
			return NULL;
		}
		v->qmp_len += n;
	}
}

/* Execute @cmd and wait for its answer; events met on the way are dropped.
 * *@ret (if not NULL) gets the "return" value (new reference). */
static int qmp_exec(struct vmm *v, const char *cmd, json_t **ret, struct fc_err *e)
{
	_cleanup_free_ char *line = xasprintf("{\"execute\":\"%s\"}\n", cmd);

	if (v->qmp_fd < 0)
		return fc_err_set(e, 0, "QMP '%s': QEMU is not running", cmd);
	if (write_full(v->qmp_fd, line, strlen(line)) < 0)
		return fc_err_set(e, errno, "QMP '%s'", cmd);
	return vmm_qmp_await(v, cmd, ret, e);
}

int vmm_qmp_await(struct vmm *v, const char *cmd, json_t **ret, struct fc_err *e)
{
	for (;;) {
		_cleanup_json_ json_t *j = qmp_next(v, QMP_TIMEOUT_MS, e);
		json_t *r, *err;

		if (!j)
			return fc_err_wrap(e, "QMP '%s'", cmd);
		if ((err = json_object_get(j, "error"))) {
			const char *d = json_str(err, "desc") ? json_str(err, "desc") : "error";
			_cleanup_free_ char *desc = text_clean(d, strlen(d), 512, false);

			return fc_err_set(e, 0, "QMP '%s': %s", cmd, desc);
		}
		if ((r = json_object_get(j, "return"))) {
			if (ret)
				*ret = json_incref(r);
			return 0;
		}
		if (json_str(j, "event"))
			log_debug("QMP event %s", json_str(j, "event"));
	}
}

json_t *vmm_qmp_next(struct vmm *v, int timeout_ms, struct fc_err *e)
{
	return qmp_next(v, timeout_ms, e);
}

int vmm_qmp(struct vmm *v, const char *cmd, struct fc_err *e)
{
	return qmp_exec(v, cmd, NULL, e);
}

int vmm_read_qmp(struct vmm *v)
{
	ssize_t n;

	if (v->qmp_fd < 0)
		return -1;
	if (v->qmp_len == sizeof(v->qmp_buf))
		v->qmp_len = 0;		/* an oversized event: drop it */
	n = read(v->qmp_fd, v->qmp_buf + v->qmp_len, sizeof(v->qmp_buf) - v->qmp_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		close(v->qmp_fd);
		v->qmp_fd = -1;
		return -1;
	}
	v->qmp_len += n;
	/* asynchronous events only: log and drop complete lines */
	for (char *nl; (nl = memchr(v->qmp_buf, '\n', v->qmp_len));) {
		size_t ll = nl - v->qmp_buf + 1;
		struct fc_err e;
		_cleanup_json_ json_t *j = json_parse(v->qmp_buf, ll, &e);

		if (j && json_str(j, "event"))
			log_debug("QMP event %s", json_str(j, "event"));
		memmove(v->qmp_buf, v->qmp_buf + ll, v->qmp_len - ll);
		v->qmp_len -= ll;
	}
	return 0;
}

/* --- processes ------------------------------------------------------------ */

/* Has @pid exited? Reaps it; *pid becomes 0 and *status is filled. */
static bool reaped(pid_t *pid, int *status)
{
	if (*pid > 0 && waitpid(*pid, status, WNOHANG) == *pid) {
		*pid = 0;
		return true;
	}
	return false;
}

int vmm_reap(struct vmm *v)
{
	int st;

	if (reaped(&v->qemu, &v->qemu_status))
		return 1;
	if (!reaped(&v->vsock, &st))
		return 0;
	/* A QEMU shutting down closes the backend's socket first, so give
	 * it a moment to exit on its own before calling the loss fatal. */
	if (v->qemu > 0 && wait_timeout(v->qemu, 1000, &v->qemu_status) == 1) {
		v->qemu = 0;
		return 1;
	}
	/* Without its vsock backend the guest's agent is unreachable and
	 * nothing would ever end the VM: stop it, so the owner tears it down. */
	log_error("fc-vsock, the VM's vsock backend, exited (%s %d): stopping the VM",
		  WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	v->backend_lost = true;
	if (v->qemu > 0)
		kill(v->qemu, SIGTERM);
	return 0;
}

static int start_vsock(struct vmm *v, const struct fcq_config *c, struct fc_err *e)
{
	_cleanup_free_ char *tool = proc_find_tool("fc-vsock");
	_cleanup_free_ char *vhost = xasprintf("%s/vhost-vsock.sock", v->dir);
	char cid[24], buf[16];
	struct spawn_opts o = { .fd_in = -1, .fd_out = -1, .fd_err = -1, .die_with_parent = true };
	int pfd[2];
	size_t got = 0;
	uint64_t deadline = now_ms() + VSOCK_TIMEOUT_MS;

	if (!tool)
		return fc_err_set(e, ENOENT, "fc-vsock not found beside fc-qemu or on PATH");
	snprintf(cid, sizeof(cid), "%lu", c->cid);
	/* --memory: auto (map QEMU's memfds unless QEMU maps them privately),
	 * or through QEMU's address space where that would bypass a uffd */
	char *argv[] = { tool, "--vhost-socket", vhost, "--uds-path", c->uds_path,
			 "--cid", cid, "--ready-fd", "1", "--memory",
			 snap_vsock_via_vmm(v) ? "vmm" : "auto", NULL };
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "pipe");
	o.fd_out = pfd[1];
	v->vsock = spawn(argv, &o, e);
	close(pfd[1]);
	if (v->vsock < 0) {
		v->vsock = 0;
		close(pfd[0]);
		return -1;
	}
	v->vsock_out_fd = pfd[0];
	v->uds_path = xstrdup(c->uds_path);
	while (got < 6) {
		struct pollfd p = { v->vsock_out_fd, POLLIN, 0 };
		uint64_t now = now_ms();
		ssize_t n;

		if (now >= deadline)
			return fc_err_set(e, ETIMEDOUT, "fc-vsock did not get ready");
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		n = read(v->vsock_out_fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int st = 0;

			wait_timeout(v->vsock, 2000, &st);
			v->vsock = 0;
			return fc_err_set(e, 0, "fc-vsock exited before it was ready (exit %d)",
					  exit_code_of(st));
		}
		got += n;
	}
	if (memcmp(buf, "ready\n", 6))
		return fc_err_set(e, 0, "fc-vsock: unexpected readiness message");
	fcntl(v->vsock_out_fd, F_SETFL, O_NONBLOCK);
	return 0;
}

/* "QEMU exited (N): <its last line of error output>", sanitised: QEMU's
 * output may quote anything (file names, guest-controlled text). */
static int qemu_exit_err(struct vmm *v, int status, struct fc_err *e)
{
	_cleanup_free_ char *line = text_clean(v->err_line, strlen(v->err_line),
					       sizeof(v->err_line), false);

	return fc_err_set(e, 0, "QEMU exited (%d): %s", exit_code_of(status),
			  *line ? line : "no message");
}

/* sock_connect_unix's give-up check while QEMU creates its QMP socket:
 * QEMU exiting ends the wait with its own words. Its stderr is drained
 * meanwhile, so it never blocks on a full pipe. */
static int qemu_gone(void *arg, struct fc_err *e)
{
	struct vmm *v = arg;
	struct pollfd p = { v->err_fd, POLLIN, 0 };
	int st;

	if (v->err_fd >= 0 && poll(&p, 1, 0) > 0)
		vmm_read_stderr(v);
	if (v->qemu > 0 && waitpid(v->qemu, &st, WNOHANG) == v->qemu) {
		v->qemu = 0;
		while (vmm_read_stderr(v) == 0)
			;
		return qemu_exit_err(v, st, e);
	}
	return 0;
}

/* Connect to QMP while QEMU creates its socket; fails early if QEMU exits. */
static int qmp_connect(struct vmm *v, struct fc_err *e)
{
	_cleanup_free_ char *path = xasprintf("%s/qmp.sock", v->dir);
	int fd = sock_connect_unix(path, START_TIMEOUT_MS, qemu_gone, v, e);

	if (fd < 0) {
		if (e->errnum == ETIMEDOUT)
			fc_err_wrap(e, "QEMU did not open its QMP socket");
		return -1;
	}
	v->qmp_fd = fd;
	return 0;
}

/* Once QEMU answers QMP, our QMP connection is made and QEMU is connected
 * to fc-vsock: nobody needs the socket paths any more. Removing them now
 * means even a SIGKILL (of us, and so of QEMU) leaves nothing behind. */
static void remove_private_dir(struct vmm *v)
{
	_cleanup_free_ char *q = NULL, *h = NULL;

	if (!v->dir)
		return;
	q = xasprintf("%s/qmp.sock", v->dir);
	h = xasprintf("%s/vhost-vsock.sock", v->dir);
	unlink(q);
	unlink(h);
	if (rmdir(v->dir) < 0)
		log_warn("remove '%s': %s", v->dir, strerror(errno));
	free(v->dir);
	v->dir = NULL;
}

int vmm_start(struct vmm *v, const struct fcq_config *c, struct fc_err *e)
{
	char cmdline[FCQ_CMDLINE_MAX], tmpl[4096];
	const char *tmp = getenv("TMPDIR");
	struct argv a = { 0 };
	struct spawn_opts o = { .fd_in = -1, .fd_out = -1, .fd_err = -1, .die_with_parent = true };
	_cleanup_json_ json_t *greeting = NULL, *status = NULL;
	int efd[2];

	v->tcg = !use_kvm();
	if (build_cmdline(c, v->tcg, cmdline, e) < 0)
		return -1;
	/* Beside the API socket when the socket paths fit: a SIGKILLed fc-qemu
	 * then leaves its sockets only where its caller already cleans up. */
	if (v->base_dir && strlen(v->base_dir) <= SOCK_DIR_MAX - 15)
		snprintf(tmpl, sizeof(tmpl), "%s/fc-qemu.XXXXXX", v->base_dir);
	else
		snprintf(tmpl, sizeof(tmpl), "%s/fc-qemu.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpl))
		return fc_err_set(e, errno, "create temp dir '%s'", tmpl);
	v->dir = xstrdup(tmpl);
	if (strlen(v->dir) > SOCK_DIR_MAX) {
		fc_err_set(e, 0, "temp dir '%s' too long for socket paths (set TMPDIR)", v->dir);
		goto fail;
	}
	if (snap_prepare(v, c, e) < 0)
		goto fail;
	if (c->vsock && start_vsock(v, c, e) < 0) {
		fc_err_wrap(e, "vsock");
		goto fail;
	}

	build_qemu_argv(&a, c, v, cmdline);
	if (log_enabled(LOG_DEBUG))
		for (size_t i = 0; i < a.n; i++)
			log_debug("qemu argv[%zu] = %s", i, a.v[i]);
	if (pipe2(efd, O_CLOEXEC) < 0) {
		fc_err_set(e, errno, "pipe");
		goto fail;
	}
	o.fd_err = efd[1];
	v->qemu = spawn(a.v, &o, e);
	close(efd[1]);
	v->err_fd = efd[0];
	fcntl(v->err_fd, F_SETFL, O_NONBLOCK);
	if (v->qemu < 0) {
		v->qemu = 0;
		goto fail;
	}
	if (qmp_connect(v, e) < 0)
		goto fail;
	greeting = qmp_next(v, QMP_TIMEOUT_MS, e);
	if (!greeting || !json_object_get(greeting, "QMP")) {
		if (greeting)
			fc_err_set(e, 0, "QMP: no greeting from QEMU");
		goto fail;
	}
	if (qmp_exec(v, "qmp_capabilities", NULL, e) < 0 ||
	    qmp_exec(v, "query-status", &status, e) < 0)
		goto fail;
	if (!snap_incoming(v) && !json_is_true(json_object_get(status, "running"))) {
		fc_err_set(e, 0, "QEMU is not running (status '%s')",
			   json_str(status, "status") ? json_str(status, "status") : "?");
		goto fail;
	}
	fcntl(v->qmp_fd, F_SETFL, O_NONBLOCK);
	argv_free(&a);
	snap_started(v);
	remove_private_dir(v);
	return 0;
fail:
	argv_free(&a);
	/* QEMU opens QMP before it loads the kernel: a QMP failure usually
	 * means QEMU is exiting, and its own message is the useful one */
	if (v->qemu > 0) {
		int st;

		if (wait_timeout(v->qemu, 2000, &st) == 1) {
			v->qemu = 0;
			while (vmm_read_stderr(v) == 0)
				;
			qemu_exit_err(v, st, e);
		}
	}
	vmm_stop(v);
	return -1;
}

void vmm_stop(struct vmm *v)
{
	struct stat st;

	if (v->qmp_fd >= 0)
		close(v->qmp_fd);
	v->qmp_fd = -1;
	v->qmp_len = 0;
	if (v->qemu > 0)
		kill_wait(v->qemu, 3000);
	v->qemu = 0;
	if (v->err_fd >= 0) {
		while (vmm_read_stderr(v) == 0)
			;
	}
	/* fc-vsock ends by itself once QEMU disconnects; give it a moment */
	if (v->vsock > 0) {
		int s;

		if (wait_timeout(v->vsock, 1000, &s) == 0)
			kill_wait(v->vsock, 2000);
	}
	v->vsock = 0;
	if (v->vsock_out_fd >= 0)
		close(v->vsock_out_fd);
	v->vsock_out_fd = -1;
	/* fc-vsock removes it on a clean exit; not after SIGKILL */
	if (v->uds_path && lstat(v->uds_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(v->uds_path);
	free(v->uds_path);
	v->uds_path = NULL;
	snap_stop(v);	/* before the dir: the RAM file may still be in it */
	remove_private_dir(v);
}
