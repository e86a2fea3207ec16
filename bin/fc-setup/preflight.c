/* preflight.c - "fc-setup preflight": one line per requirement,
 *   STATUS  NAME  DETAIL  [fix: ...]
 * STATUS is OK, WARN (fcvm works without it, something is slower or
 * missing) or FAIL. Only FAILs of blocking items make the exit status 1:
 * vmm, qemu (when the VMM is fc-qemu), reflink, podman, kernel, rootfs.
 *
 * setup-tools (what fc-setup itself runs) is informational (WARN).
 *
 * KVM is judged by really booting the default kernel with QEMU -accel kvm
 * and root=none for a few seconds: a KVM that exists but cannot run a stock
 * guest (nested PVM here) hangs instead of failing. The verdict is written
 * to $FCVM_ROOT/kvm-probe.json for fc-boot and fc-qemu.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "ownqemu.h"
#include "paths.h"
#include "proc.h"
#include "setup.h"
#include "util.h"

#define PREFLIGHT_USAGE "usage: fc-setup preflight [--json] [--no-probe] [--probe-timeout SEC]\n"

enum status { ST_OK, ST_WARN, ST_FAIL };
static const char *const st_names[] = { "OK", "WARN", "FAIL" };

struct report {
	json_t *items;
	bool json;
	bool blocked;
};

static void item(struct report *r, enum status st, bool blocking, const char *name,
		 const char *fix, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void item(struct report *r, enum status st, bool blocking, const char *name,
		 const char *fix, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (st == ST_FAIL && blocking)
		r->blocked = true;
	json_array_append_new(r->items, json_pack("{s:s,s:s,s:s,s:s?,s:b}", "name", name,
		"status", st_names[st], "detail", detail, "fix", st == ST_OK ? NULL : fix,
		"blocking", blocking));
	if (!r->json) {
		printf("%-4s  %-12s  %s", st_names[st], name, detail);
		if (st != ST_OK && fix)
			printf("  [fix: %s]", fix);
		putchar('\n');
		fflush(stdout);
	}
}

/* First line of "@tool @arg" output, or NULL when the tool is missing. */
static char *tool_version(const char *tool, const char *arg)
{
	char *argv[] = { (char *)tool, (char *)arg, NULL };
	_cleanup_free_ char *path = proc_find_tool(tool);
	struct fc_err e;
	char *out = NULL, *nl;

	if (!path)
		return NULL;
	if (run_capture(argv, &out, 4096, 10000, &e) != 0) {
		free(out);
		return xstrdup("(version unknown)");
	}
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	return out;
}

/* Whether the data root is prepared: only then is the probe recorded
 * there (preflight never populates a root fc-setup storage did not make). */
static bool g_prepared;

static void write_probe(bool usable, const char *detail)
{
	_cleanup_free_ char *p = fc_path("kvm-probe.json");
	_cleanup_json_ json_t *j = NULL;
	struct fc_err e;
	char now[32];

	if (!g_prepared)
		return;
	iso_now(now);
	j = json_pack("{s:b,s:s,s:s}", "usable", usable, "checked", now, "detail", detail);
	if (!j || json_write_atomic(p, j, &e) < 0)
		log_warn("cannot record the KVM probe: %s", j ? e.msg : "out of memory");
}

/* Boot the default kernel under KVM; 1 usable, 0 not (why in @why). */
static int kvm_probe(const char *kdir, int timeout_s, char *why, size_t whylen)
{
	_cleanup_free_ char *k = xasprintf("%s/vmlinux", kdir);
	_cleanup_free_ char *i = xasprintf("%s/initrd.img", kdir);
	char *argv[] = { "qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "host",
			 "-m", "256", "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none",
			 "-serial", "stdio", "-kernel", k, "-initrd", i, "-append",
			 "console=ttyS0 reboot=k panic=1 pci=off quiet root=none", NULL };
	struct spawn_opts o = { .fd_in = -1, .fd_out = -1, .fd_err = -1, .die_with_parent = true };
	_cleanup_close_ int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	uint64_t deadline = now_ms() + (uint64_t)timeout_s * 1000;
	char buf[16384];
	size_t got = 0;
	int p[2], ret = 0, status;
	struct fc_err e;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return 0;
	}
	o.fd_in = null;
	o.fd_out = p[1];
	o.fd_err = p[1];
	pid = spawn(argv, &o, &e);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		snprintf(why, whylen, "%.400s", e.msg);
		return 0;
	}
	snprintf(why, whylen, "a guest did not reach its init within %d s under KVM (nested or "
		 "paravirtual KVM that cannot run a stock guest)", timeout_s);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int64_t left = (int64_t)(deadline - now_ms());
		ssize_t n;

		if (left <= 0 || g_interrupted)
			break;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (n <= 0) {
			/* QEMU exited before the guest spoke: show its last words */
			char *last;

			buf[got] = '\0';
			while (got && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
				buf[--got] = '\0';
			last = strrchr(buf, '\n');
			snprintf(why, whylen, "QEMU could not start a KVM guest: %.300s",
				 got ? (last ? last + 1 : buf) : "(no output)");
			break;
		}
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "fcvm-init:")) {
			ret = 1;
			snprintf(why, whylen, "a guest booted to its init under KVM");
			break;
		}
		if (got > sizeof(buf) / 2) {
			/* keep the tail: the marker may straddle the cut */
			memmove(buf, buf + got - 64, 64);
			got = 64;
		}
	}
	close(p[0]);
	kill_wait(pid, 500);
	(void)status;
	return ret;
}

static void check_kvm(struct report *r, bool probe, int timeout_s)
{
	_cleanup_free_ char *kdir = fc_path("kernels/default");
	_cleanup_free_ char *vml = xasprintf("%s/vmlinux", kdir);
	_cleanup_free_ char *ppath = fc_path("kvm-probe.json");
	_cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	const char *fix = "none needed: fc-qemu runs guests under TCG (about 16x slower); for Firecracker use a host with working (nested) KVM";
	char why[512];

	if (fd < 0) {
		snprintf(why, sizeof(why), "/dev/kvm: %s", strerror(errno));
		write_probe(false, why);
		item(r, ST_WARN, false, "kvm", fix, "%s", why);
		return;
	}
	if (!probe) {
		_cleanup_json_ json_t *j = NULL;
		struct fc_err e;

		j = json_load_path(ppath, 65536, &e);
		if (!j) {
			item(r, ST_WARN, false, "kvm", "run 'fc-setup preflight' without --no-probe",
			     "/dev/kvm present, not probed");
			return;
		}
		item(r, json_is_true(json_object_get(j, "usable")) ? ST_OK : ST_WARN, false, "kvm", fix,
		     "%s (probed %s)", json_str(j, "detail") ? json_str(j, "detail") : "?",
		     json_str(j, "checked") ? json_str(j, "checked") : "?");
		return;
	}
	if (access(vml, R_OK) < 0) {
		item(r, ST_WARN, false, "kvm", "run 'fc-setup kernel', then preflight again",
		     "/dev/kvm present but cannot probe it: no kernel yet");
		return;
	}
	if (!proc_find_tool("qemu-system-x86_64")) {
		item(r, ST_WARN, false, "kvm", "apt-get install qemu-system-x86",
		     "/dev/kvm present but cannot probe it: qemu-system-x86_64 not found");
		return;
	}
	if (kvm_probe(kdir, timeout_s, why, sizeof(why))) {
		write_probe(true, why);
		item(r, ST_OK, false, "kvm", NULL, "%s", why);
	} else {
		write_probe(false, why);
		item(r, ST_WARN, false, "kvm", fix, "/dev/kvm present but unusable: %s", why);
	}
}

static void check_vmm(struct report *r, bool *need_qemu)
{
	_cleanup_free_ char *fc = tool_version("firecracker", "--version");
	_cleanup_free_ char *dir = self_dir();
	_cleanup_free_ char *local = xasprintf("%s/fc-qemu", dir);
	_cleanup_free_ char *fq = proc_find_tool("fc-qemu");

	*need_qemu = !fc;
	if (fc) {
		item(r, ST_OK, true, "vmm", NULL, "firecracker: %s", fc);
		return;
	}
	if (fq || access(local, X_OK) == 0) {
		item(r, ST_OK, true, "vmm", NULL, "fc-qemu (the Firecracker API on QEMU): %s; firecracker not in PATH",
		     fq ? fq : local);
		return;
	}
	item(r, ST_FAIL, true, "vmm", "install firecracker, or build fcvm's fc-qemu ('make') and put it in PATH",
	     "neither firecracker nor fc-qemu found");
}

/* fc-qemu snapshots need fcvm's own QEMU (fc-setup qemu); lib/ownqemu's rule. */
static void check_snapshot_qemu(struct report *r)
{
	struct fc_err why = { 0 };
	bool capable;
	_cleanup_free_ char *bin = ownqemu_select(&capable, &why);

	if (capable)
		item(r, ST_OK, false, "snapshot-qemu", NULL, "fcvm's snapshot-capable QEMU: %s", bin);
	else
		item(r, ST_WARN, false, "snapshot-qemu", "fc-setup qemu (builds it once, about 8 minutes)",
		     "snapshots under fc-qemu are unavailable: %s", why.msg);
}

static void check_tool(struct report *r, const char *name, const char *tool, const char *arg,
		       bool blocking, const char *fix)
{
	_cleanup_free_ char *v = tool_version(tool, arg);

	if (v)
		item(r, ST_OK, blocking, name, NULL, "%s", v);
	else
		item(r, blocking ? ST_FAIL : ST_WARN, blocking, name, fix, "%s not found in PATH", tool);
}

static void check_dev(struct report *r, const char *name, const char *path, const char *why,
		      const char *fix)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		item(r, ST_OK, false, name, NULL, "%s usable", path);
	else
		item(r, ST_WARN, false, name, fix, "%s: %s (%s)", path, strerror(errno), why);
}

static void check_uffd(struct report *r)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int err = errno;

	if (fd >= 0) {
		close((int)fd);
		item(r, ST_OK, false, "userfaultfd", NULL, "userfaultfd(2) works");
		return;
	}
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close((int)fd);
		item(r, ST_OK, false, "userfaultfd", NULL, "/dev/userfaultfd usable (syscall: %s)", strerror(err));
		return;
	}
	item(r, ST_WARN, false, "userfaultfd", "sysctl vm.unprivileged_userfaultfd=1 or run as root",
	     "userfaultfd(2): %s; /dev/userfaultfd: %s (needed to serve snapshot memory to clones)",
	     strerror(err), strerror(errno));
}

static void check_reflink(struct report *r)
{
	const char *root = fc_root();
	struct statfs sf;
	struct fc_err e;

	if (statfs(root, &sf) < 0) {
		item(r, ST_FAIL, true, "reflink", "fc-setup storage", "data root %s: %s", root, strerror(errno));
		return;
	}
	if (!g_prepared) {
		fc_root_check(&e);
		item(r, ST_FAIL, true, "reflink", "fc-setup storage", "%s", e.msg);
		return;
	}
	if (reflink_probe(root, &e) == 0)
		item(r, ST_OK, true, "reflink", NULL, "data root %s (%s) clones files", root,
		     fs_type_name(sf.f_type));
	else
		item(r, ST_FAIL, true, "reflink", "fc-setup storage",
		     "data root %s (%s): %s", root, fs_type_name(sf.f_type), e.msg);
}

static void check_nft(struct report *r)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);

	if (fd >= 0) {
		close(fd);
		item(r, ST_OK, false, "nftables", NULL, "netlink netfilter socket opens");
	} else {
		item(r, ST_WARN, false, "nftables", "load nf_tables (modprobe nf_tables) and run as root",
		     "NETLINK_NETFILTER socket: %s (needed for port forwarding)", strerror(errno));
	}
}

/* What fc-setup itself runs: missing ones only matter for (re)building. */
static void check_setup_tools(struct report *r)
{
	static const char *const tools[] = { "apt-get", "dpkg-deb", "debootstrap", "tar", "zstd",
					     "lz4", "mkfs.ext4", "mkfs.btrfs", "mount", "busybox" };
	char missing[256] = "";

	for (size_t i = 0; i < ARRAY_SIZE(tools); i++) {
		_cleanup_free_ char *p = proc_find_tool(tools[i]);

		if (!p && !(strcmp(tools[i], "busybox") == 0 && access("/bin/busybox", X_OK) == 0))
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", tools[i]);
	}
	if (!*missing)
		item(r, ST_OK, false, "setup-tools", NULL, "everything fc-setup runs is installed");
	else
		item(r, ST_WARN, false, "setup-tools",
		     "apt-get install debootstrap zstd lz4 e2fsprogs btrfs-progs busybox-static",
		     "missing:%s (needed to build a kernel, rootfs or storage)", missing);
}

static void check_artifact(struct report *r, const char *name, const char *sub, const char *file,
			   const char *fix)
{
	_cleanup_free_ char *dir = fc_path("%s/default", sub);
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, file);
	_cleanup_free_ char *m = xasprintf("%s/manifest.json", dir);
	_cleanup_free_ char *real = realpath(dir, NULL);
	_cleanup_json_ json_t *j = NULL;
	struct fc_err e;

	if (access(p, R_OK) < 0) {
		item(r, ST_FAIL, true, name, fix, "%s: %s", p, strerror(errno));
		return;
	}
	j = json_load_path(m, 1 << 20, &e);
	item(r, ST_OK, true, name, NULL, "%s%s%s", real ? real : dir,
	     j && json_str(j, "kernel_version") ? " " : "",
	     j && json_str(j, "kernel_version") ? json_str(j, "kernel_version") : "");
}

int cmd_preflight(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "no-probe", no_argument, NULL, 'n' },
		{ "probe-timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct report r = { .items = json_array() };
	_cleanup_json_ json_t *items = r.items;
	bool probe = true, need_qemu;
	uint64_t timeout_s = 8;
	struct fc_err e;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': r.json = true; break;
		case 'n': probe = false; break;
		case 't':
			if (parse_u64(optarg, 1, 300, "--probe-timeout (s)", &timeout_s, &e) < 0)
				usage_err(PREFLIGHT_USAGE, "%s", e.msg);
			break;
		case 'h': fputs(PREFLIGHT_USAGE, stdout); return 0;
		default: usage_err(PREFLIGHT_USAGE, "unknown option");
		}
	}
	if (optind != argc)
		usage_err(PREFLIGHT_USAGE, "unexpected argument '%s'", argv[optind]);
	g_prepared = fc_root_check(&e) == 0 && fc_root_init(&e) == 0;
	if (!g_prepared)
		log_debug("not recording the KVM probe: %s", e.msg);

	check_kvm(&r, probe, (int)timeout_s);
	check_vmm(&r, &need_qemu);
	check_tool(&r, "qemu", "qemu-system-x86_64", "--version", need_qemu,
		   "apt-get install qemu-system-x86");
	check_snapshot_qemu(&r);
	check_dev(&r, "tun", "/dev/net/tun", "needed for bridged networking",
		  "modprobe tun; mknod /dev/net/tun c 10 200");
	check_uffd(&r);
	check_reflink(&r);
	check_nft(&r);
	check_tool(&r, "slirp4netns", "slirp4netns", "--version", false, "apt-get install slirp4netns");
	check_tool(&r, "podman", "podman", "--version", true, "apt-get install podman");
	check_setup_tools(&r);
	check_artifact(&r, "kernel", "kernels", "vmlinux", "fc-setup kernel");
	check_artifact(&r, "rootfs", "rootfs", "rootfs.ext4", "fc-setup rootfs");
	if (r.json) {
		_cleanup_json_ json_t *j = json_pack("{s:O,s:b}", "items", items, "ok", !r.blocked);
		char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

		if (s)
			printf("%s\n", s);
		free(s);
	}
	fflush(stdout);
	if (r.blocked && !r.json)
		log_error("a blocking requirement failed (see FAIL above)");
	return r.blocked ? 1 : 0;
}
