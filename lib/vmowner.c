/* vmowner.c - see vmowner.h (the order of operations is explained there) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "kimage.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "sock.h"
#include "state.h"
#include "text.h"
#include "util.h"
#include "netns.h"
#include "vmowner.h"
#include "volspec.h"

#define API_WAIT_MS	10000
#define STOP_GRACE_MS	3000
#define DRAIN_MS	2000	/* VMM output still in the pipes when it ends */
#define JANITOR_WAIT_MS	5000
#define CMDLINE_MAX	2048	/* x86 COMMAND_LINE_SIZE */
#define LOG_CHUNK	65536
#define LOG_PIPE_SZ	(256 * 1024)
/* Guest-initiated vsock listeners are "<uds>_<port>", port up to 10 digits. */
#define VSOCK_SUFFIX_MAX 11

/* The VMM's stdout (the guest's serial console) and stderr reach us through
 * pipes; each is written to a file of at most @max bytes, which when full
 * becomes "<path>.1" (replacing the older one) while a new file starts. So
 * the newest output is kept, at most 2 x @max bytes stay on disk, and
 * neither the guest nor the VMM can fill the data root. */
struct caplog {
	const char *what;	/* "console", "VMM log": for messages */
	char *path, *old;	/* owned */
	int in;			/* read end of the pipe (non-blocking); -1 after EOF */
	int fd;			/* the file */
	uint64_t size, max;
	bool made;		/* this call created the file */
	bool warned;
};

struct vmowner {
	struct vm_spec s;	/* resolved copy; its strings point into the fields below */
	char *name, *id, *type, *vmm, *kernel, *initrd, *rootfs, *tap, *mac, *boot_args;
	char *drive_paths[VM_MAX_DRIVES];
	char *vsock, *run_dir, *disk_dir, *api_sock;
	char *cmdline;
	json_t *extra;
	json_t *volumes;	/* config.volumes (volspec.h), or NULL */
	json_t *rec;
	pid_t owner_pid;
	uint64_t owner_start;
	pid_t vmm_pid;
	pid_t janitor_pid;
	int janitor_fd;		/* write end; the janitor wakes when it closes */
	int sfd;		/* signalfd: SIGCHLD, SIGTERM, SIGINT, SIGHUP */
	struct caplog console;	/* the VMM's stdout: the guest's serial console */
	struct caplog vmm_log;	/* the VMM's stderr: vm-disks/<id>/vmm.log */
	int detach_fd;		/* --detach child: write end to the waiting parent */
	bool claimed, made_disk_dir;
};

/* ---- logs fed by the VMM: capped, rotated once ---------------------------- */

static void caplog_init(struct caplog *l, const char *what, char *path)
{
	l->what = what;
	l->path = path;
	l->old = xasprintf("%s.1", path);
	l->in = l->fd = -1;
}

static void caplog_release(struct caplog *l)
{
	free(l->path);
	free(l->old);
	cleanup_closep(&l->in);
	cleanup_closep(&l->fd);
}

/* Open (or append to) the file and make the pipe; *@write_end is the end
 * for the VMM (the caller closes it once the VMM has it). */
static int caplog_open(struct caplog *l, uint64_t max, int *write_end, struct fc_err *e)
{
	struct stat st;
	int p[2];

	l->max = max;
	l->fd = open(l->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (l->fd >= 0)
		l->made = true;
	else if (errno == EEXIST)
		l->fd = open(l->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (l->fd < 0)
		return fc_err_set(e, errno, "open %s '%s'", l->what, l->path);
	if (fstat(l->fd, &st) < 0)
		return fc_err_set(e, errno, "stat %s '%s'", l->what, l->path);
	l->size = st.st_size;
	if (pipe2(p, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "%s pipe", l->what);
	l->in = p[0];
	*write_end = p[1];
	fcntl(l->in, F_SETFL, O_NONBLOCK);	/* the read end only */
	fcntl(l->in, F_SETPIPE_SZ, LOG_PIPE_SZ);	/* best effort */
	return 0;
}

static int caplog_rotate(struct caplog *l, struct fc_err *e)
{
	cleanup_closep(&l->fd);
	/* ENOENT: an earlier rotation renamed it but could not open a new one. */
	if (rename(l->path, l->old) < 0 && errno != ENOENT)
		return fc_err_set(e, errno, "rotate %s '%s'", l->what, l->path);
	l->fd = open(l->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
		     0644);
	if (l->fd < 0)
		return fc_err_set(e, errno, "open %s '%s'", l->what, l->path);
	l->size = 0;
	return 0;
}

/* Append @n bytes; the file never grows beyond l->max. */
static int caplog_write(struct caplog *l, const char *p, size_t n, struct fc_err *e)
{
	while (n > 0) {
		size_t k;

		if ((l->size >= l->max || l->fd < 0) && caplog_rotate(l, e) < 0)
			return -1;
		k = l->max - l->size;
		if (k > n)
			k = n;
		if (write_full(l->fd, p, k) < 0)
			return fc_err_set(e, errno, "write %s '%s'", l->what, l->path);
		l->size += k;
		p += k;
		n -= k;
	}
	return 0;
}

/* Copy what the VMM wrote (a few chunks at most, so signals stay served).
 * The pipe is always emptied - a failing log must not stall the guest's
 * serial port - and the first write error is logged once, not returned. */
static void caplog_pump(struct caplog *l)
{
	static char buf[LOG_CHUNK];

	for (int round = 0; round < 16 && l->in >= 0; round++) {
		ssize_t n = read(l->in, buf, sizeof(buf));
		struct fc_err e;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			cleanup_closep(&l->in);
			return;
		}
		if (caplog_write(l, buf, n, &e) < 0 && !l->warned) {
			log_warn("%s output is being lost: %s", l->what, e.msg);
			l->warned = true;
		}
	}
}

/* Once the VMM ended: what is still in the pipes, until EOF or DRAIN_MS. */
static void caplog_drain(struct caplog *a, struct caplog *b)
{
	uint64_t deadline = now_ms() + DRAIN_MS;

	while ((a->in >= 0 || b->in >= 0) && now_ms() < deadline) {
		struct pollfd pf[2] = { { a->in, POLLIN, 0 }, { b->in, POLLIN, 0 } };

		if (poll(pf, 2, (int)(deadline - now_ms())) <= 0)
			break;
		caplog_pump(a);
		caplog_pump(b);
	}
}

/* ---- validation (nothing is created here) ------------------------------ */

/* Absolute path of an existing readable regular file (or block device when
 * @blk_ok) in *@out; -1 with @e "WHAT 'PATH' not found: FIX". */
static int check_input(const char *what, const char *path, const char *fix, bool blk_ok,
		       char **out, struct fc_err *e)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno == ENOENT ? fc_err_set(e, 0, "%s '%s' not found: %s", what, path, fix)
				       : fc_err_set(e, errno, "%s '%s'", what, path);
	if (!S_ISREG(st.st_mode) && !(blk_ok && S_ISBLK(st.st_mode)))
		return fc_err_set(e, 0, "%s '%s' is not a regular file%s", what, path,
				  blk_ok ? " or block device" : "");
	if (access(path, R_OK) < 0)
		return fc_err_set(e, errno, "%s '%s'", what, path);
	*out = realpath(path, NULL);
	if (!*out)
		return fc_err_set(e, errno, "%s '%s': resolve path", what, path);
	return 0;
}

/* Firecracker boots an uncompressed ELF vmlinux only: check it here rather
 * than learn it from a failed InstanceStart. */
static int check_kernel(const char *path, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct kimage_elf info;
	struct stat st;
	void *map;
	int r;

	if (fd < 0 || fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "kernel '%s'", path);
	if (st.st_size == 0)
		return fc_err_set(e, 0, "kernel '%s' is empty: pass an ELF vmlinux "
				  "('fc-setup kernel' makes one)", path);
	map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return fc_err_set(e, errno, "kernel '%s': map", path);
	r = kimage_check_elf(map, st.st_size, &info, e);
	munmap(map, st.st_size);
	if (r < 0)
		return fc_err_wrap(e, "kernel '%s' is not a bootable ELF vmlinux "
				   "('fc-setup kernel' makes one from a bzImage)", path);
	return 0;
}

/* A socket path must fit sun_path, with room for @suffix more bytes. */
static int check_sock_path(const char *what, const char *path, size_t suffix, struct fc_err *e)
{
	struct sockaddr_un sa;
	_cleanup_free_ char *longest = xasprintf("%s%*s", path, (int)suffix, "");

	if (sock_unix_addr(longest, &sa, e) < 0)
		return fc_err_set(e, ENAMETOOLONG, "%s socket path '%s' is too long: at most %zu bytes%s",
				  what, path, sizeof(sa.sun_path) - 1 - suffix,
				  suffix ? " (its listeners add \"_<port>\")" : "");
	return 0;
}

/* The console log: an existing regular file (appended to) or a new name in
 * an existing writable directory. Sets *@out to its absolute path. */
static int check_console(const char *path, char **out, struct fc_err *e)
{
	_cleanup_free_ char *d = xstrdup(path), *b = xstrdup(path), *dir = NULL;
	const char *base = basename(b);
	struct stat st;

	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return fc_err_set(e, 0, "console '%s' is not a regular file", path);
	if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/"))
		return fc_err_set(e, 0, "console '%s' is not a file name", path);
	dir = realpath(dirname(d), NULL);
	if (!dir)
		return fc_err_set(e, errno, "console '%s': directory", path);
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return fc_err_set(e, ENOTDIR, "console '%s': directory '%s'", path, dir);
	if (access(dir, W_OK | X_OK) < 0)
		return fc_err_set(e, errno, "console '%s': directory '%s'", path, dir);
	*out = xasprintf("%s/%s", strcmp(dir, "/") ? dir : "", base);
	return 0;
}

/* One line of printable text: the kernel command line is one line. */
static int check_boot_args(const char *s, struct fc_err *e)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return fc_err_set(e, 0, "boot args contain a %s (byte 0x%02x at %zu): "
					  "the kernel command line is one line of text",
					  *p == '\n' ? "newline" : "control character", *p,
					  (size_t)(p - (const unsigned char *)s));
	return 0;
}

/* $FCVM_VMM, else firecracker when KVM can run a guest, else fc-qemu. */
static int choose_vmm(const char *want, char **out, struct fc_err *e)
{
	const char *env = want ? want : getenv("FCVM_VMM");
	_cleanup_free_ char *probe = fc_path("kvm-probe.json");
	_cleanup_json_ json_t *kvm = NULL;
	struct fc_err ignored;
	char *fc;

	if (env && *env) {
		*out = proc_find_tool(env);
		if (!*out)
			return fc_err_set(e, 0, "VMM '%s'%s not found or not executable: "
					  "unset FCVM_VMM or point it at firecracker or fc-qemu",
					  env, want ? "" : " (from FCVM_VMM)");
		return 0;
	}
	fc = proc_find_tool("firecracker");
	kvm = json_load_path(probe, 4096, &ignored);
	if (fc && kvm && json_is_true(json_object_get(kvm, "usable"))) {
		*out = fc;
		return 0;
	}
	log_warn("%s: using fc-qemu (QEMU) instead of Firecracker",
		 !fc ? "firecracker not found in PATH"
		     : kvm ? "KVM cannot run a guest here (see 'fc-setup preflight')"
			   : "KVM not probed yet (run 'fc-setup preflight')");
	free(fc);
	*out = proc_find_tool("fc-qemu");
	if (!*out)
		return fc_err_set(e, 0, "neither firecracker nor fc-qemu is usable: "
				  "install fcvm's fc-qemu or set FCVM_VMM");
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static int resolve(struct vmowner *o, const struct vm_spec *s, struct fc_err *e)
{
	bool boot = !s->configure || s->configure == vm_configure_boot;
	uint64_t max = s->console_max ? s->console_max : VM_CONSOLE_MAX_DEFAULT;

	/* A data root 'fc-setup storage' did not prepare is refused before
	 * anything is looked up in it. */
	if (fc_root_check(e) < 0)
		return -1;
	if (!s->name || !fc_valid_name(s->name))
		return fc_err_set(e, EINVAL, "invalid VM name '%s'", s->name ? s->name : "");
	if (s->id && !fc_valid_name(s->id))
		return fc_err_set(e, EINVAL, "invalid VM id '%s'", s->id);
	if (s->ndrives < 0 || s->ndrives > VM_MAX_DRIVES)
		return fc_err_set(e, EINVAL, "too many drives (at most %d)", VM_MAX_DRIVES);
	if (max < VM_CONSOLE_MAX_MIN)
		return fc_err_set(e, EINVAL, "console size cap %llu is below %d bytes",
				  (unsigned long long)max, VM_CONSOLE_MAX_MIN);
	if (s->ready && fcntl(s->ready_fd, F_GETFD) < 0)
		return fc_err_set(e, errno, "ready fd %d", s->ready_fd);
	if (s->boot_args && check_boot_args(s->boot_args, e) < 0)
		return -1;

	/* Inputs are resolved to absolute paths: the VMM runs elsewhere. */
	if (s->kernel || boot) {
		_cleanup_free_ char *k = fc_path("kernels/default/vmlinux");

		if (check_input("kernel", s->kernel ? s->kernel : k,
				s->kernel ? "pass an existing file to --kernel"
					  : "run 'fc-setup kernel' or pass --kernel",
				false, &o->kernel, e) < 0 ||
		    check_kernel(o->kernel, e) < 0)
			return -1;
	}
	if (s->initrd || (boot && !s->kernel)) {
		_cleanup_free_ char *i = fc_path("kernels/default/initrd.img");

		if (check_input("initrd", s->initrd ? s->initrd : i,
				s->initrd ? "pass an existing file to --initrd"
					  : "run 'fc-setup kernel' or pass --initrd",
				false, &o->initrd, e) < 0)
			return -1;
	}
	if (s->rootfs && check_input("rootfs", s->rootfs,
				     "run 'fc-disk rootfs --vm ID' or pass an ext4 image", true,
				     &o->rootfs, e) < 0)
		return -1;
	for (int i = 0; i < s->ndrives; i++)
		if (check_input("drive", s->drives[i].path, "pass an existing file to --drive",
				true, &o->drive_paths[i], e) < 0)
			return -1;
	/* In our network namespace, where the VMM will open it (with a
	 * namespace holder: in the holder's, checked once we are inside). */
	if (s->tap && !s->netns_pid && if_nametoindex(s->tap) == 0)
		return fc_err_set(e, errno == ENODEV ? 0 : errno,
				  "tap '%s' does not exist%s", s->tap,
				  errno == ENODEV ? ": create it first (fc-net up)" : "");
	if (choose_vmm(s->vmm, &o->vmm, e) < 0)
		return -1;

	o->name = xstrdup(s->name);
	o->id = s->id ? xstrdup(s->id) : state_new_id();
	o->type = xstrdup(s->process_type ? s->process_type : "vm");
	o->tap = dup_or_null(s->tap);
	o->mac = dup_or_null(s->mac);
	o->boot_args = dup_or_null(s->boot_args);
	o->run_dir = fc_path("run/%s", o->id);
	o->disk_dir = fc_path("vm-disks/%s", o->id);
	o->api_sock = xasprintf("%s/api.sock", o->run_dir);
	caplog_init(&o->vmm_log, "VMM log", xasprintf("%s/vmm.log", o->disk_dir));
	if (check_sock_path("API", o->api_sock, 0, e) < 0)
		return fc_err_wrap(e, "data root '%s'", fc_root());
	if (!s->no_vsock) {
		o->vsock = s->vsock ? xstrdup(s->vsock) : xasprintf("%s/vsock.sock", o->run_dir);
		if (check_sock_path("vsock", o->vsock, VSOCK_SUFFIX_MAX, e) < 0)
			return -1;
	}
	if (s->console) {
		char *path = NULL;

		if (check_console(s->console, &path, e) < 0)
			return -1;
		caplog_init(&o->console, "console", path);
	} else {
		caplog_init(&o->console, "console", xasprintf("%s/console.log", o->disk_dir));
	}
	o->cmdline = xasprintf("console=ttyS0 reboot=k panic=1 pci=off fcvm.id=%s root=%s%s%s",
			       o->id, o->rootfs ? "/dev/vda rw" : "none", o->boot_args ? " " : "",
			       o->boot_args ? o->boot_args : "");
	if (boot && strlen(o->cmdline) >= CMDLINE_MAX)
		return fc_err_set(e, E2BIG, "kernel command line of %zu bytes is too long "
				  "(at most %d): shorten the boot args",
				  strlen(o->cmdline), CMDLINE_MAX - 1);
	if (s->record_extra) {
		if (!json_is_object(s->record_extra))
			return fc_err_set(e, EINVAL, "extra record fields must be an object");
		o->extra = json_deep_copy(s->record_extra);
	}
	if (s->volumes) {
		if (volspec_check(s->volumes, e) < 0)
			return -1;
		o->volumes = json_deep_copy(s->volumes);
	}

	o->s = *s;
	o->s.name = o->name;
	o->s.id = o->id;
	o->s.process_type = o->type;
	o->s.vmm = o->vmm;
	o->s.cpus = s->cpus ? s->cpus : 2;
	o->s.memory_mib = s->memory_mib ? s->memory_mib : 1024;
	o->s.kernel = o->kernel;
	o->s.initrd = o->initrd;
	o->s.rootfs = o->rootfs;
	for (int i = 0; i < s->ndrives; i++)
		o->s.drives[i].path = o->drive_paths[i];
	o->s.tap = o->tap;
	o->s.mac = o->mac;
	o->s.boot_args = o->boot_args;
	o->s.vsock = o->vsock;
	o->s.console = o->console.path;
	o->s.console_max = max;
	o->s.configure = s->configure ? s->configure : vm_configure_boot;
	o->s.record_extra = o->extra;
	o->s.volumes = o->volumes;
	return 0;
}

struct vmowner *vmowner_new(const struct vm_spec *s, struct fc_err *e)
{
	struct vmowner *o = xcalloc(1, sizeof(*o));

	o->janitor_fd = o->sfd = o->detach_fd = -1;
	o->console.in = o->console.fd = o->vmm_log.in = o->vmm_log.fd = -1;
	o->vmm_pid = o->janitor_pid = -1;
	if (resolve(o, s, e) < 0) {
		vmowner_free(o);
		return NULL;
	}
	return o;
}

void vmowner_free(struct vmowner *o)
{
	if (!o)
		return;
	free(o->name);
	free(o->id);
	free(o->type);
	free(o->vmm);
	free(o->kernel);
	free(o->initrd);
	free(o->rootfs);
	free(o->tap);
	free(o->mac);
	free(o->boot_args);
	for (int i = 0; i < VM_MAX_DRIVES; i++)
		free(o->drive_paths[i]);
	free(o->vsock);
	free(o->run_dir);
	free(o->disk_dir);
	free(o->api_sock);
	free(o->cmdline);
	json_decref(o->extra);
	json_decref(o->volumes);
	json_decref(o->rec);
	cleanup_closep(&o->janitor_fd);
	cleanup_closep(&o->sfd);
	caplog_release(&o->console);
	caplog_release(&o->vmm_log);
	cleanup_closep(&o->detach_fd);
	free(o);
}

const struct vm_spec *vmowner_spec(const struct vmowner *o)
{
	return &o->s;
}

const char *vmowner_cmdline(const struct vmowner *o)
{
	return o->cmdline;
}

json_t *vmowner_record(struct vmowner *o)
{
	return o->rec;
}

/* ---- what a VM leaves, and who removes it ------------------------------ */

/* Every socket in run/<id>/ (the API, the vsock, guest-initiated
 * "<uds>_<port>" listeners) and every directory in it (a VMM's private
 * one: fc-qemu keeps QEMU's sockets and RAM file in run/<id>/fc-qemu.XXXXXX
 * so that a SIGKILLed fc-qemu leaves them here, where we clean up), then
 * the directory; the record. Never the disk directory: it holds the
 * console log the user may still want. Safe to run twice and from the
 * janitor. */
static void remove_runtime(const char *id, const char *run_dir, const char *vsock)
{
	DIR *d = opendir(run_dir);
	struct dirent *de;

	if (d) {
		while ((de = readdir(d))) {
			if (de->d_type == DT_SOCK) {
				unlinkat(dirfd(d), de->d_name, 0);
			} else if (de->d_type == DT_DIR && strcmp(de->d_name, ".") &&
				   strcmp(de->d_name, "..")) {
				_cleanup_free_ char *sub = xasprintf("%s/%s", run_dir, de->d_name);
				struct fc_err e;

				if (fc_rm_tree(sub, &e) < 0)
					log_warn("%s", e.msg);
			}
		}
		closedir(d);
	}
	/* A --vsock outside run/<id>/ is ours too (its listeners are not). */
	if (vsock) {
		struct stat st;

		if (lstat(vsock, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(vsock);
	}
	rmdir(run_dir);
	state_remove(id);
}

/* With own_disk_dir: vm-disks/<id>/ and all in it are the owner's. */
static void remove_disk_dir(struct vmowner *o)
{
	struct fc_err e;

	if (fc_rm_tree(o->disk_dir, &e) < 0)
		log_warn("%s", e.msg);
}

/* A failure before "running": besides the runtime, remove what this call
 * put under vm-disks/<id>/ (not what fc-disk or the user put there). */
static void undo_claim(struct vmowner *o)
{
	if (!o->claimed)
		return;
	if (o->s.own_disk_dir && o->made_disk_dir)
		remove_disk_dir(o);
	remove_runtime(o->id, o->run_dir, o->vsock);
	if (o->console.made)
		unlink(o->console.path);
	if (o->vmm_log.made)
		unlink(o->vmm_log.path);
	if (o->made_disk_dir)
		rmdir(o->disk_dir);
	o->claimed = false;
}

/* The janitor: in its own session, holding nothing of the owner's but the
 * pipe's read end. When that pipe closes it cleans up after the owner, but
 * only while the record is still the owner's (same pid and start time):
 * an owner that cleaned up itself leaves nothing to do, and someone else's
 * record is never touched. */
static noreturn void janitor(struct vmowner *o, int end)
{
	_cleanup_json_ json_t *rec = NULL;
	struct fc_err ignored;
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	char c;

	setsid();
	/* Not even stdio: a caller reading our stdout would wait for us. */
	for (int fd = 0; fd < 3 && null >= 0; fd++)
		dup2(null, fd);
	for (int fd = 3; fd < 1024; fd++)
		if (fd != end)
			close(fd);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	while (read(end, &c, 1) < 0 && errno == EINTR)
		;
	rec = state_load(o->id, &ignored);
	if (rec && json_integer_value(json_object_get(rec, "pid")) == o->owner_pid &&
	    (uint64_t)json_integer_value(json_object_get(rec, "pid_start")) == o->owner_start) {
		json_int_t vpid = json_integer_value(json_object_get(rec, "vmm_pid"));
		json_int_t vstart = json_integer_value(json_object_get(rec, "vmm_pid_start"));

		if (vpid > 0 && proc_alive(vpid, vstart))
			kill(vpid, SIGKILL);
		if (o->s.own_disk_dir)
			remove_disk_dir(o);
		remove_runtime(o->id, o->run_dir, o->vsock);
	}
	_exit(0);
}

/* fork() with a CLOEXEC pipe between parent and child: the child gets the
 * read end when @child_reads, else the write end; each side keeps only its
 * own end, in *@end. Returns fork()'s value, or -1 with @e. */
static pid_t fork_with_pipe(bool child_reads, int *end, struct fc_err *e)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "pipe");
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return fc_err_set(e, errno, "fork");
	}
	/* p[0] reads, p[1] writes: keep the end this side uses. */
	if ((pid == 0) == child_reads) {
		close(p[1]);
		*end = p[0];
	} else {
		close(p[0]);
		*end = p[1];
	}
	return pid;
}

static int start_janitor(struct vmowner *o, struct fc_err *e)
{
	int end;
	pid_t pid;

	o->owner_pid = getpid();
	if (proc_start_time(o->owner_pid, &o->owner_start, e) < 0)
		return -1;
	pid = fork_with_pipe(true, &end, e);
	if (pid < 0)
		return fc_err_wrap(e, "start the janitor");
	if (pid == 0)
		janitor(o, end);
	o->janitor_fd = end;
	o->janitor_pid = pid;
	return 0;
}

static void stop_janitor(struct vmowner *o)
{
	int status;

	cleanup_closep(&o->janitor_fd);
	if (o->janitor_pid > 0 && wait_timeout(o->janitor_pid, JANITOR_WAIT_MS, &status) == 1)
		o->janitor_pid = -1;
}

/* Claim the name and write the first record under the state lock. */
static int claim(struct vmowner *o, struct fc_err *e)
{
	_cleanup_close_ int lock = -1;
	_cleanup_json_ json_t *other = NULL;
	struct fc_err ferr;
	struct stat st;

	lock = state_lock(e);
	if (lock < 0)
		return -1;
	other = state_find(o->name, &ferr);
	if (other)
		return fc_err_set(e, EEXIST, "name '%s' is already used by VM %s (pid %lld): "
				  "stop it or choose another --name",
				  o->name, json_str(other, "id"),
				  (long long)json_integer_value(json_object_get(other, "pid")));
	if (ferr.errnum != ENOENT) {
		*e = ferr;
		return -1;
	}
	json_decref(other);
	other = state_find(o->id, &ferr);
	if (other || stat(o->run_dir, &st) == 0)
		return fc_err_set(e, EEXIST, "VM id '%s' is already in use", o->id);

	/* The record first: whatever else exists is found through it. */
	o->rec = state_new(o->id, o->name, o->type, "starting");
	if (o->extra)
		json_object_update(o->rec, o->extra);
	json_object_set_new(o->rec, "console", json_string(o->console.path));
	json_object_set_new(o->rec, "disk_dir", json_string(o->disk_dir));
	if (state_save(o->rec, e) < 0) {
		state_remove(o->id);
		return -1;
	}
	o->claimed = true;
	if (mkdir(o->run_dir, 0700) < 0)
		return fc_err_set(e, errno, "create '%s'", o->run_dir);
	if (mkdir(o->disk_dir, 0755) == 0)
		o->made_disk_dir = true;
	else if (errno != EEXIST || o->s.own_disk_dir)
		return fc_err_set(e, errno, "create '%s'", o->disk_dir);
	return 0;
}

/* ---- the VMM ------------------------------------------------------------ */

static int spawn_vmm(struct vmowner *o, struct fc_err *e)
{
	_cleanup_close_ int null = -1, out = -1, err = -1;
	struct spawn_opts so = { -1, -1, -1, true, false };
	char *argv[] = { o->vmm, "--api-sock", o->api_sock, "--id", o->id, NULL };
	uint64_t start = 0;

	if (caplog_open(&o->console, o->s.console_max, &out, e) < 0 ||
	    caplog_open(&o->vmm_log, o->s.console_max, &err, e) < 0)
		return -1;
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0)
		return fc_err_set(e, errno, "open /dev/null");
	so.fd_in = null;
	so.fd_out = out;
	so.fd_err = err;
	o->vmm_pid = spawn(argv, &so, e);
	if (o->vmm_pid < 0)
		return fc_err_wrap(e, "start VMM");
	proc_start_time(o->vmm_pid, &start, NULL);
	json_object_set_new(o->rec, "vmm_pid", json_integer(o->vmm_pid));
	json_object_set_new(o->rec, "vmm_pid_start", json_integer(start));
	return 0;
}

/* Reap the VMM if it ended; true while it runs. */
static bool vmm_running(struct vmowner *o, int *status)
{
	int st;

	if (o->vmm_pid <= 0)
		return false;
	if (waitpid(o->vmm_pid, status ? status : &st, WNOHANG) == 0)
		return true;
	o->vmm_pid = -1;
	return false;
}

/* The first stop signal (SIGTERM, SIGINT, SIGHUP) waiting for the main
 * loop, or 0. */
static int pending_stop(void)
{
	static const int stops[] = { SIGTERM, SIGINT, SIGHUP };
	sigset_t pending;

	if (sigpending(&pending) < 0)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(stops); i++)
		if (sigismember(&pending, stops[i]))
			return stops[i];
	return 0;
}

/* Between API connection attempts: stop when the VMM died or we were
 * told to stop (the signal stays pending). */
static int api_give_up(void *arg, struct fc_err *e)
{
	struct vmowner *o = arg;

	if (!vmm_running(o, NULL))
		return fc_err_set(e, ECHILD, "the VMM exited before its API socket answered");
	if (pending_stop())
		return fc_err_set(e, EINTR, "stopped by a signal while the VMM was starting");
	return 0;
}

/* The last 4 KiB of @path, NUL-terminated, or NULL when empty or unreadable. */
static char *file_tail(const char *path, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *buf;
	struct stat st;
	off_t off;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
		return NULL;
	off = st.st_size > 4096 ? st.st_size - 4096 : 0;
	buf = xmalloc(4097);
	n = pread(fd, buf, 4096, off);
	if (n <= 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Last non-empty line the VMM wrote to stderr (once it has ended: what is
 * still in the pipes is written first), sanitised, to say why it died. */
static char *vmm_last_line(struct vmowner *o)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	char *end, *start;

	caplog_drain(&o->console, &o->vmm_log);
	text = file_tail(o->vmm_log.path, &len);
	if (!text)	/* just rotated */
		text = file_tail(o->vmm_log.old, &len);
	if (!text)
		return xstrdup("(no output)");
	end = text + len;
	while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\0'))
		*--end = '\0';
	if (end == text)
		return xstrdup("(no output)");
	start = memrchr(text, '\n', end - text);
	start = start ? start + 1 : text;
	return text_clean(start, strlen(start), 1024, false);
}

static json_t *config_json(struct vmowner *o)
{
	json_t *drives = json_array(), *cfg;

	if (o->rootfs)
		json_array_append_new(drives, json_pack("{s:s, s:b}", "path", o->rootfs,
							"read_only", 0));
	for (int i = 0; i < o->s.ndrives; i++)
		json_array_append_new(drives, json_pack("{s:s, s:b}", "path", o->drive_paths[i],
							"read_only", o->s.drives[i].read_only));
	cfg = json_pack("{s:I, s:I, s:s?, s:s?, s:s?, s:o, s:s?, s:s, s:s}",
			"cpus", (json_int_t)o->s.cpus, "memory_mib", (json_int_t)o->s.memory_mib,
			"kernel", o->kernel, "initrd", o->initrd, "rootfs", o->rootfs,
			"drives", drives, "tap", o->tap, "vmm", o->vmm, "boot_args", o->cmdline);
	if (cfg && o->volumes)
		json_object_set(cfg, "volumes", o->volumes);
	return cfg;
}

int vm_configure_boot(struct vmowner *o, struct fcapi *api, void *arg, struct fc_err *e)
{
	const struct vm_spec *s = &o->s;
	char path[64];
	json_t *j;
	int r;

	(void)arg;
#define CALL(method, p, body)                                        \
	do {                                                         \
		j = (body);                                          \
		r = fcapi_call(api, method, p, j, NULL, e);          \
		json_decref(j);                                      \
		if (r < 0)                                           \
			return -1;                                   \
	} while (0)

	CALL("PUT", "/machine-config",
	     json_pack("{s:I, s:I}", "vcpu_count", (json_int_t)s->cpus, "mem_size_mib",
		       (json_int_t)s->memory_mib));
	CALL("PUT", "/boot-source",
	     json_pack("{s:s, s:s, s:s*}", "kernel_image_path", s->kernel, "boot_args",
		       o->cmdline, "initrd_path", s->initrd));
	if (s->rootfs)
		CALL("PUT", "/drives/rootfs",
		     json_pack("{s:s, s:s, s:b, s:b}", "drive_id", "rootfs", "path_on_host",
			       s->rootfs, "is_root_device", 1, "is_read_only", 0));
	for (int i = 0; i < s->ndrives; i++) {
		char id[24];	/* "drive" + any int: the compiler cannot see i <= VM_MAX_DRIVES */

		snprintf(id, sizeof(id), "drive%d", i + 1);
		snprintf(path, sizeof(path), "/drives/%s", id);
		CALL("PUT", path,
		     json_pack("{s:s, s:s, s:b, s:b}", "drive_id", id, "path_on_host",
			       s->drives[i].path, "is_root_device", 0, "is_read_only",
			       s->drives[i].read_only));
	}
	if (s->tap)
		CALL("PUT", "/network-interfaces/eth0",
		     json_pack("{s:s, s:s, s:s*}", "iface_id", "eth0", "host_dev_name", s->tap,
			       "guest_mac", s->mac));
	if (s->vsock)
		CALL("PUT", "/vsock",
		     json_pack("{s:i, s:s}", "guest_cid", VM_GUEST_CID, "uds_path", s->vsock));
	CALL("PUT", "/actions", json_pack("{s:s}", "action_type", "InstanceStart"));
#undef CALL
	return 0;
}

static int set_status(struct vmowner *o, const char *status, struct fc_err *e)
{
	json_object_set_new(o->rec, "status", json_string(status));
	return state_save(o->rec, e);
}

/* Done with a descriptor we were handed: stdio keeps its slot (on
 * /dev/null), anything else is closed. */
static void release_fd(int fd)
{
	int null;

	if (fd > STDERR_FILENO) {
		close(fd);
		return;
	}
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, fd);
		close(null);
	}
}

/* ---- --detach and readiness --------------------------------------------- */

/* Fork; the parent waits for the child's "running" and fills @out. Returns
 * 1 in the parent, 0 in the child (which keeps the pipe's write end). */
static int detach(struct vmowner *o, struct vm_outcome *out, struct fc_err *e)
{
	int end, status;
	char buf[16];
	ssize_t n;
	pid_t pid = fork_with_pipe(false, &end, e);

	if (pid < 0)
		return fc_err_wrap(e, "detach");
	if (pid == 0) {
		o->detach_fd = end;
		/* A daemon keeps nothing it inherited: a caller's pipe held
		 * open here would leave the caller waiting for EOF forever. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != o->detach_fd && !(o->s.ready && fd == o->s.ready_fd))
				close(fd);
		setsid();
		return 0;
	}
	if (o->s.ready && o->s.ready_fd > STDERR_FILENO) {
		close(o->s.ready_fd);	/* only the owner answers on it */
		o->s.ready = false;
	}
	do
		n = read(end, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	close(end);
	if (n > 0) {
		out->detached = pid;
		out->code = 0;
		return 1;
	}
	/* The child failed and has said why on our shared stderr. */
	waitpid(pid, &status, 0);
	out->detached = 0;
	out->code = exit_code_of(status) ? exit_code_of(status) : 1;
	return 1;
}

/* Tell whoever waits that we run: the ready fd, the --detach parent (then
 * let go of the caller's terminal or pipes: stdin and stdout to /dev/null,
 * later messages to vm-disks/<id>/fc-boot.log). */
static void report_ready(struct vmowner *o)
{
	if (o->s.ready) {
		char line[96];
		int n = snprintf(line, sizeof(line), "ready %s\n", o->id);

		if (write_full(o->s.ready_fd, line, n) < 0)
			log_debug("ready fd %d: %s", o->s.ready_fd, strerror(errno));
		release_fd(o->s.ready_fd);
		o->s.ready = false;
	}
	if (o->detach_fd >= 0) {
		_cleanup_free_ char *path = xasprintf("%s/fc-boot.log", o->disk_dir);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(log >= 0 ? log : null, STDERR_FILENO);
			close(null);
		}
		if (log >= 0)
			close(log);
		if (write(o->detach_fd, "running\n", 8) < 0)
			log_debug("detach pipe: %s", strerror(errno));
		cleanup_closep(&o->detach_fd);
	}
}

/* ---- owning it ------------------------------------------------------------ */

/* Rootless networking: into the holder's namespaces (user, then net), for
 * good - the VMM spawned next inherits them. Only sockets by path, files
 * and signals are used from here on, which work across namespaces. */
static int enter_netns(struct vmowner *o, struct fc_err *e)
{
	if (!o->s.netns_pid)
		return 0;
	if (netns_enter_holder(o->s.netns_pid, o->s.netns_start, e) < 0)
		return fc_err_wrap(e, "rootless network");
	if (o->tap && if_nametoindex(o->tap) == 0)
		return fc_err_set(e, errno, "tap '%s' does not exist in the namespaces of pid %d",
				  o->tap, (int)o->s.netns_pid);
	return 0;
}

/* Steps 3-6: janitor, claim, VMM, configuration. On failure the caller
 * undoes the claim. */
static int start(struct vmowner *o, struct fc_err *e)
{
	_cleanup_free_ char *why = NULL;
	struct fcapi *api;
	int r;

	if (start_janitor(o, e) < 0 || claim(o, e) < 0 || enter_netns(o, e) < 0 ||
	    spawn_vmm(o, e) < 0)
		return -1;
	json_object_set_new(o->rec, "config", config_json(o));
	json_object_set_new(o->rec, "sockets", json_pack("{s:s, s:s?}", "api", o->api_sock,
							 "vsock", o->vsock));
	if (state_save(o->rec, e) < 0)
		return -1;

	api = fcapi_new(o->api_sock);
	r = fcapi_wait(api, API_WAIT_MS, api_give_up, o, e);
	if (r == 0)
		r = o->s.configure(o, api, o->s.configure_arg, e);
	fcapi_free(api);
	if (r == 0)
		return 0;
	if (!vmm_running(o, NULL)) {
		why = vmm_last_line(o);
		fc_err_wrap(e, "the VMM '%s' exited during configuration (%s)", o->vmm, why);
	}
	return -1;
}

/* Step 7: until the VMM ends or a signal stops it. 0 with *@code, or -1
 * with @e when the VMM failed. */
static int serve(struct vmowner *o, int *code, struct fc_err *e)
{
	for (;;) {
		/* poll() skips a log whose pipe is closed (fd -1). */
		struct pollfd pf[3] = { { o->sfd, POLLIN, 0 }, { o->console.in, POLLIN, 0 },
					{ o->vmm_log.in, POLLIN, 0 } };
		struct signalfd_siginfo si;
		int status = 1 << 8;	/* exit 1, should the status be lost */
		ssize_t n;

		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return fc_err_set(e, errno, "poll");
		}
		if (pf[1].revents)
			caplog_pump(&o->console);
		if (pf[2].revents)
			caplog_pump(&o->vmm_log);
		if (!(pf[0].revents & POLLIN))
			continue;
		n = read(o->sfd, &si, sizeof(si));
		if (n != sizeof(si)) {
			if (n < 0 && errno == EINTR)
				continue;
			return fc_err_set(e, errno, "read signalfd");
		}
		if (si.ssi_signo == SIGCHLD) {
			if (vmm_running(o, &status))
				continue;
			caplog_drain(&o->console, &o->vmm_log);
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				log_info("VM %s stopped", o->id);
				*code = 0;
				return 0;
			}
			{
				_cleanup_free_ char *why = vmm_last_line(o);

				return fc_err_set(e, 0, "the VMM exited with status %d: %s (see %s)",
						  exit_code_of(status), why, o->vmm_log.path);
			}
		}
		log_info("stopping VM %s on signal %d", o->id, (int)si.ssi_signo);
		if (set_status(o, "stopping", e) < 0)
			log_warn("%s", e->msg);
		kill_wait(o->vmm_pid, STOP_GRACE_MS);
		o->vmm_pid = -1;
		caplog_drain(&o->console, &o->vmm_log);
		*code = 128 + si.ssi_signo;
		return 0;
	}
}

int vmowner_run(struct vmowner *o, struct vm_outcome *out, struct fc_err *e)
{
	int code = 0, r;

	out->detached = 0;
	out->code = 0;
	if (fc_root_init(e) < 0)
		return -1;
	if (o->s.detach && (r = detach(o, out, e)) != 0)
		return r < 0 ? -1 : 0;
	if (o->s.ready && o->s.ready_fd > STDERR_FILENO)
		fcntl(o->s.ready_fd, F_SETFD, FD_CLOEXEC);
	/* A reader of the ready fd or the --detach parent may be gone: a
	 * write there must fail with EPIPE, not kill the VM's owner. */
	signal(SIGPIPE, SIG_IGN);
	o->sfd = signalfd_for((const int[]){ SIGCHLD, SIGTERM, SIGINT, SIGHUP, 0 }, 0, e);
	if (o->sfd < 0)
		return -1;
	/* A front end killed outright (SIGKILL) takes its VM along: we get a
	 * SIGTERM and stop the VM the ordinary way. */
	if (o->s.die_with_parent && die_with_parent(SIGTERM, e) < 0)
		return -1;

	/* "running" is a promise to whoever waits: if it cannot be recorded
	 * (a full data root), the start failed. */
	if (start(o, e) < 0 || set_status(o, "running", e) < 0) {
		int sig = e->errnum == EINTR ? pending_stop() : 0;

		if (o->vmm_pid > 0)
			kill_wait(o->vmm_pid, STOP_GRACE_MS);
		o->vmm_pid = -1;
		undo_claim(o);
		stop_janitor(o);
		/* Told to stop while starting: that is no failure. */
		if (sig) {
			log_info("VM %s stopped on signal %d while starting", o->id, sig);
			out->code = 128 + sig;
			return 0;
		}
		return -1;
	}
	log_info("VM %s running (VMM pid %d, console %s)", o->id, (int)o->vmm_pid,
		 o->console.path);
	report_ready(o);

	r = serve(o, &code, e);
	if (o->vmm_pid > 0)
		kill_wait(o->vmm_pid, STOP_GRACE_MS);
	o->vmm_pid = -1;
	if (o->s.own_disk_dir)
		remove_disk_dir(o);
	remove_runtime(o->id, o->run_dir, o->vsock);
	o->claimed = false;
	stop_janitor(o);
	out->code = code;
	return r;
}

int vmowner_own(const struct vm_spec *s, struct vm_outcome *out, struct fc_err *e)
{
	struct vmowner *o = vmowner_new(s, e);
	int r;

	if (!o)
		return -1;
	r = vmowner_run(o, out, e);
	vmowner_free(o);
	return r;
}
