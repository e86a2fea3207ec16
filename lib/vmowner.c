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
#include "vmowner.h"

#define API_WAIT_MS	10000
#define STOP_GRACE_MS	3000
#define DRAIN_MS	2000	/* console output still in the pipe when the VMM ends */
#define JANITOR_WAIT_MS	5000
#define CMDLINE_MAX	2048	/* x86 COMMAND_LINE_SIZE */
#define CONSOLE_CHUNK	65536
#define CONSOLE_PIPE_SZ	(256 * 1024)
/* Guest-initiated vsock listeners are "<uds>_<port>", port up to 10 digits. */
#define VSOCK_SUFFIX_MAX 11

struct vmowner {
	struct vm_spec s;	/* resolved copy; its strings point into the fields below */
	char *name, *id, *type, *vmm, *kernel, *initrd, *rootfs, *tap, *mac, *boot_args;
	char *drive_paths[VM_MAX_DRIVES];
	char *vsock, *console, *console_old, *run_dir, *disk_dir, *api_sock, *vmm_log;
	char *cmdline;
	json_t *extra;
	json_t *rec;
	pid_t owner_pid;
	uint64_t owner_start;
	pid_t vmm_pid;
	pid_t janitor_pid;
	int janitor_fd;		/* write end; the janitor wakes when it closes */
	int sfd;		/* signalfd: SIGCHLD, SIGTERM, SIGINT, SIGHUP */
	int console_in;		/* read end of the VMM's stdout */
	int console_fd;		/* the console log */
	uint64_t console_size;
	bool console_warned;
	int detach_fd;		/* --detach child: write end to the waiting parent */
	bool claimed, made_disk_dir, made_console, made_vmm_log;
};

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
	/* In our network namespace, where the VMM will open it. */
	if (s->tap && if_nametoindex(s->tap) == 0)
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
	o->vmm_log = xasprintf("%s/vmm.log", o->disk_dir);
	if (check_sock_path("API", o->api_sock, 0, e) < 0)
		return fc_err_wrap(e, "data root '%s'", fc_root());
	if (!s->no_vsock) {
		o->vsock = s->vsock ? xstrdup(s->vsock) : xasprintf("%s/vsock.sock", o->run_dir);
		if (check_sock_path("vsock", o->vsock, VSOCK_SUFFIX_MAX, e) < 0)
			return -1;
	}
	if (s->console) {
		if (check_console(s->console, &o->console, e) < 0)
			return -1;
	} else {
		o->console = xasprintf("%s/console.log", o->disk_dir);
	}
	o->console_old = xasprintf("%s.1", o->console);
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
	o->s.console = o->console;
	o->s.console_max = max;
	o->s.configure = s->configure ? s->configure : vm_configure_boot;
	o->s.record_extra = o->extra;
	return 0;
}

struct vmowner *vmowner_new(const struct vm_spec *s, struct fc_err *e)
{
	struct vmowner *o = xcalloc(1, sizeof(*o));

	o->janitor_fd = o->sfd = o->console_in = o->console_fd = o->detach_fd = -1;
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
	free(o->console);
	free(o->console_old);
	free(o->run_dir);
	free(o->disk_dir);
	free(o->api_sock);
	free(o->vmm_log);
	free(o->cmdline);
	json_decref(o->extra);
	json_decref(o->rec);
	cleanup_closep(&o->janitor_fd);
	cleanup_closep(&o->sfd);
	cleanup_closep(&o->console_in);
	cleanup_closep(&o->console_fd);
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
 * "<uds>_<port>" listeners), then the directory; the record. Never the disk
 * directory: it holds the console log the user may still want. Safe to run
 * twice and from the janitor. */
static void remove_runtime(const char *id, const char *run_dir, const char *vsock)
{
	DIR *d = opendir(run_dir);
	struct dirent *de;

	if (d) {
		while ((de = readdir(d)))
			if (de->d_type == DT_SOCK)
				unlinkat(dirfd(d), de->d_name, 0);
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

/* A failure before "running": besides the runtime, remove what this call
 * put under vm-disks/<id>/ (not what fc-disk or the user put there). */
static void undo_claim(struct vmowner *o)
{
	if (!o->claimed)
		return;
	remove_runtime(o->id, o->run_dir, o->vsock);
	if (o->made_console)
		unlink(o->console);
	if (o->made_vmm_log)
		unlink(o->vmm_log);
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
	json_object_set_new(o->rec, "console", json_string(o->console));
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
	else if (errno != EEXIST)
		return fc_err_set(e, errno, "create '%s'", o->disk_dir);
	return 0;
}

/* ---- the console: the VMM's stdout, capped and rotated once ------------- */

static int open_new_or_append(const char *path, bool *made, struct fc_err *e)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd >= 0) {
		*made = true;
		return fd;
	}
	if (errno == EEXIST)
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return fc_err_set(e, errno, "open '%s'", path);
	return fd;
}

static int console_open(struct vmowner *o, struct fc_err *e)
{
	struct stat st;

	o->console_fd = open_new_or_append(o->console, &o->made_console, e);
	if (o->console_fd < 0)
		return -1;
	if (fstat(o->console_fd, &st) < 0)
		return fc_err_set(e, errno, "stat '%s'", o->console);
	o->console_size = st.st_size;
	return 0;
}

/* console.log becomes console.log.1 (replacing the older one) and a new,
 * empty console.log takes its place. */
static int console_rotate(struct vmowner *o, struct fc_err *e)
{
	cleanup_closep(&o->console_fd);
	/* ENOENT: an earlier rotation renamed it but could not open a new one. */
	if (rename(o->console, o->console_old) < 0 && errno != ENOENT)
		return fc_err_set(e, errno, "rotate '%s'", o->console);
	o->console_fd = open(o->console, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC |
				 O_NOFOLLOW, 0644);
	if (o->console_fd < 0)
		return fc_err_set(e, errno, "open '%s'", o->console);
	o->console_size = 0;
	return 0;
}

/* Append @n bytes; the file never grows beyond console_max. */
static int console_write(struct vmowner *o, const char *p, size_t n, struct fc_err *e)
{
	while (n > 0) {
		size_t k;

		if (o->console_size >= o->s.console_max || o->console_fd < 0)
			if (console_rotate(o, e) < 0)
				return -1;
		k = o->s.console_max - o->console_size;
		if (k > n)
			k = n;
		if (write_full(o->console_fd, p, k) < 0)
			return fc_err_set(e, errno, "write '%s'", o->console);
		o->console_size += k;
		p += k;
		n -= k;
	}
	return 0;
}

/* Copy what the VMM wrote (at most a few chunks, so signals stay served).
 * The pipe is always drained: a failing log must not stall the guest's
 * serial port. The first write error is logged once, not returned. */
static void console_pump(struct vmowner *o)
{
	static char buf[CONSOLE_CHUNK];

	for (int round = 0; round < 16 && o->console_in >= 0; round++) {
		ssize_t n = read(o->console_in, buf, sizeof(buf));
		struct fc_err e;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			cleanup_closep(&o->console_in);
			return;
		}
		if (console_write(o, buf, n, &e) < 0 && !o->console_warned) {
			log_warn("console output is being lost: %s", e.msg);
			o->console_warned = true;
		}
	}
}

/* After the VMM ended: what is still in the pipe, until EOF or DRAIN_MS. */
static void console_drain(struct vmowner *o)
{
	uint64_t deadline = now_ms() + DRAIN_MS;

	while (o->console_in >= 0 && now_ms() < deadline) {
		struct pollfd pf = { o->console_in, POLLIN, 0 };

		if (poll(&pf, 1, (int)(deadline - now_ms())) <= 0)
			break;
		console_pump(o);
	}
}

/* ---- the VMM ------------------------------------------------------------ */

static int spawn_vmm(struct vmowner *o, struct fc_err *e)
{
	_cleanup_close_ int null = -1, log = -1, out = -1;
	struct spawn_opts so = { -1, -1, -1, true, false };
	char *argv[] = { o->vmm, "--api-sock", o->api_sock, "--id", o->id, NULL };
	int p[2];
	uint64_t start = 0;

	if (console_open(o, e) < 0)
		return -1;
	log = open_new_or_append(o->vmm_log, &o->made_vmm_log, e);
	if (log < 0)
		return -1;
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0)
		return fc_err_set(e, errno, "open /dev/null");
	if (pipe2(p, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "console pipe");
	o->console_in = p[0];
	out = p[1];
	fcntl(o->console_in, F_SETFL, O_NONBLOCK);	/* the read end only */
	fcntl(o->console_in, F_SETPIPE_SZ, CONSOLE_PIPE_SZ);	/* best effort */
	so.fd_in = null;
	so.fd_out = out;
	so.fd_err = log;
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

/* Last non-empty line of the VMM's log, sanitised, to say why it died. */
static char *vmm_last_line(struct vmowner *o)
{
	_cleanup_free_ char *text = NULL;
	struct fc_err e;
	size_t len;
	char *end, *start;

	text = read_file_max(o->vmm_log, 1 << 20, &len, &e);
	if (!text || !len)
		return xstrdup("(no output)");
	end = text + len;
	while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	start = strrchr(text, '\n');
	start = start ? start + 1 : text;
	return text_clean(start, strlen(start), 1024, false);
}

static json_t *config_json(struct vmowner *o)
{
	json_t *drives = json_array();

	if (o->rootfs)
		json_array_append_new(drives, json_pack("{s:s, s:b}", "path", o->rootfs,
							"read_only", 0));
	for (int i = 0; i < o->s.ndrives; i++)
		json_array_append_new(drives, json_pack("{s:s, s:b}", "path", o->drive_paths[i],
							"read_only", o->s.drives[i].read_only));
	return json_pack("{s:I, s:I, s:s?, s:s?, s:s?, s:o, s:s?, s:s, s:s}",
			 "cpus", (json_int_t)o->s.cpus, "memory_mib", (json_int_t)o->s.memory_mib,
			 "kernel", o->kernel, "initrd", o->initrd, "rootfs", o->rootfs,
			 "drives", drives, "tap", o->tap, "vmm", o->vmm, "boot_args", o->cmdline);
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
 * later messages to fc-boot.log beside the console log). */
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

/* Steps 3-6: janitor, claim, VMM, configuration. On failure the caller
 * undoes the claim. */
static int start(struct vmowner *o, struct fc_err *e)
{
	_cleanup_free_ char *why = NULL;
	struct fcapi *api;
	int r;

	if (start_janitor(o, e) < 0 || claim(o, e) < 0 || spawn_vmm(o, e) < 0)
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
		struct pollfd pf[2] = { { o->sfd, POLLIN, 0 }, { o->console_in, POLLIN, 0 } };
		struct signalfd_siginfo si;
		int status = 1 << 8;	/* exit 1, should the status be lost */
		ssize_t n;

		if (poll(pf, o->console_in >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return fc_err_set(e, errno, "poll");
		}
		if (o->console_in >= 0 && pf[1].revents)
			console_pump(o);
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
			console_drain(o);
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				log_info("VM %s stopped", o->id);
				*code = 0;
				return 0;
			}
			{
				_cleanup_free_ char *why = vmm_last_line(o);

				return fc_err_set(e, 0, "the VMM exited with status %d: %s (see %s)",
						  exit_code_of(status), why, o->vmm_log);
			}
		}
		log_info("stopping VM %s on signal %d", o->id, (int)si.ssi_signo);
		if (set_status(o, "stopping", e) < 0)
			log_warn("%s", e->msg);
		kill_wait(o->vmm_pid, STOP_GRACE_MS);
		o->vmm_pid = -1;
		console_drain(o);
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
	log_info("VM %s running (VMM pid %d, console %s)", o->id, (int)o->vmm_pid, o->console);
	report_ready(o);

	r = serve(o, &code, e);
	if (o->vmm_pid > 0)
		kill_wait(o->vmm_pid, STOP_GRACE_MS);
	o->vmm_pid = -1;
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
