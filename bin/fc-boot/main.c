/* fc-boot - start a microVM through the Firecracker API and own it.
 *
 * How it works, and why in this order:
 *  1. Validate every input before anything is created, so bad arguments
 *     leave nothing behind.
 *  2. Claim the name under the state lock and write the record, so two
 *     fc-boot runs cannot take the same name.
 *  3. Fork a janitor that blocks on a pipe only we hold: if we die in any
 *     way, even SIGKILL, it wakes up, kills the VMM and removes our state
 *     and sockets. The VMM also gets PR_SET_PDEATHSIG, so nothing outlives
 *     us.
 *  4. Start the VMM (firecracker, or fc-qemu) and configure it only through
 *     the API: what works here works with real Firecracker.
 *  5. Stay in the foreground until the VMM exits or we are told to stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fcapi.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "state.h"
#include "util.h"

#define MAX_DRIVES 8
#define API_WAIT_MS 10000
#define STOP_GRACE_MS 3000
#define GUEST_CID 3

static const char usage_text[] =
	"usage: fc-boot --name NAME [--id ID] [--cpus N] [--memory MIB]\n"
	"               [--kernel FILE] [--initrd FILE] [--rootfs FILE] [--drive PATH[:ro]]...\n"
	"               [--tap TAP] [--mac MAC] [--vsock UDS | --no-vsock]\n"
	"               [--boot-args ARGS] [--console FILE] [--detach | --die-with-parent]\n"
	"               [-v] [-q]\n";

struct drive {
	char *path;
	bool ro;
};

struct boot {
	const char *name;
	char *id;
	uint64_t cpus, memory;
	char *kernel, *initrd, *rootfs;
	struct drive drives[MAX_DRIVES];
	int ndrives;
	const char *tap, *mac, *boot_args;
	char *vsock, *console, *api_sock, *run_dir, *disk_dir;
	bool no_vsock, detach, die_with_parent;
	char *vmm;
	pid_t vmm_pid;
	json_t *rec;
};

static void boot_release(struct boot *b)
{
	int i;

	free(b->id);
	free(b->kernel);
	free(b->initrd);
	free(b->rootfs);
	for (i = 0; i < b->ndrives; i++)
		free(b->drives[i].path);
	free(b->vsock);
	free(b->console);
	free(b->api_sock);
	free(b->run_dir);
	free(b->disk_dir);
	free(b->vmm);
	json_decref(b->rec);
}

static noreturn void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

static char *must_exist(const char *what, const char *path, const char *fix)
{
	struct stat st;

	if (stat(path, &st) < 0)
		diex("%s '%s' not found: %s", what, path, fix);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		diex("%s '%s' is not a regular file or block device", what, path);
	if (access(path, R_OK) < 0)
		die("%s '%s'", what, path);
	return realpath(path, NULL);
}

static void parse_args(struct boot *b, int argc, char **argv)
{
	enum { O_ID = 256, O_KERNEL, O_INITRD, O_ROOTFS, O_DRIVE, O_TAP, O_MAC, O_VSOCK,
	       O_NO_VSOCK, O_BOOT_ARGS, O_CONSOLE, O_DETACH, O_CPUS, O_MEMORY, O_DIE };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },   { "id", required_argument, NULL, O_ID },
		{ "cpus", required_argument, NULL, O_CPUS }, { "memory", required_argument, NULL, O_MEMORY },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "rootfs", required_argument, NULL, O_ROOTFS },
		{ "drive", required_argument, NULL, O_DRIVE }, { "tap", required_argument, NULL, O_TAP },
		{ "mac", required_argument, NULL, O_MAC }, { "vsock", required_argument, NULL, O_VSOCK },
		{ "no-vsock", no_argument, NULL, O_NO_VSOCK },
		{ "boot-args", required_argument, NULL, O_BOOT_ARGS },
		{ "console", required_argument, NULL, O_CONSOLE },
		{ "detach", no_argument, NULL, O_DETACH },
		{ "die-with-parent", no_argument, NULL, O_DIE }, { "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },	    { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *kernel = NULL, *initrd = NULL, *rootfs = NULL, *vsock = NULL, *console = NULL;
	const char *drives[MAX_DRIVES];
	struct fc_err e;
	int c, i;

	b->cpus = 2;
	b->memory = 1024;
	while ((c = getopt_long(argc, argv, "n:vqh", opts, NULL)) != -1) {
		switch (c) {
		case 'n': b->name = optarg; break;
		case O_ID: b->id = xstrdup(optarg); break;
		case O_CPUS:
			if (parse_u64(optarg, 1, 32, "--cpus", &b->cpus, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			break;
		case O_MEMORY:
			if (parse_u64(optarg, 128, 65536, "--memory (MiB)", &b->memory, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			break;
		case O_KERNEL: kernel = optarg; break;
		case O_INITRD: initrd = optarg; break;
		case O_ROOTFS: rootfs = optarg; break;
		case O_DRIVE:
			if (b->ndrives == MAX_DRIVES)
				usage_err(usage_text, "too many --drive options (at most %d)", MAX_DRIVES);
			drives[b->ndrives++] = optarg;
			break;
		case O_TAP: b->tap = optarg; break;
		case O_MAC: b->mac = optarg; break;
		case O_VSOCK: vsock = optarg; break;
		case O_NO_VSOCK: b->no_vsock = true; break;
		case O_BOOT_ARGS: b->boot_args = optarg; break;
		case O_CONSOLE: console = optarg; break;
		case O_DETACH: b->detach = true; break;
		case O_DIE: b->die_with_parent = true; break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': usage(0);
		default: usage(2);
		}
	}
	if (optind != argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (!b->name)
		usage_err(usage_text, "--name is required");
	if (!fc_valid_name(b->name))
		usage_err(usage_text, "invalid --name '%s': use 1-63 letters, digits, '_', '.', '-'",
			  b->name);
	/* Firecracker takes instance ids of letters, digits and '-' only. */
	if (b->id && (!fc_valid_name(b->id) ||
		      strspn(b->id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") !=
			      strlen(b->id)))
		usage_err(usage_text, "invalid --id '%s': use 1-63 letters, digits and '-'", b->id);
	if (b->detach && b->die_with_parent)
		usage_err(usage_text, "--detach and --die-with-parent exclude each other");
	if (vsock && b->no_vsock)
		usage_err(usage_text, "--vsock and --no-vsock exclude each other");
	if (b->mac && !b->tap)
		usage_err(usage_text, "--mac needs --tap");
	if (b->mac && (strlen(b->mac) != 17 ||
		       strspn(b->mac, "0123456789abcdefABCDEF:") != 17))
		usage_err(usage_text, "invalid --mac '%s': want xx:xx:xx:xx:xx:xx", b->mac);
	if (b->tap && (strlen(b->tap) >= 16 || !fc_valid_name(b->tap)))
		usage_err(usage_text, "invalid --tap '%s': an interface name of at most 15 characters",
			  b->tap);

	/* Inputs are resolved to absolute paths: the VMM runs elsewhere. */
	if (kernel) {
		b->kernel = must_exist("kernel", kernel, "pass an existing file to --kernel");
		if (initrd)
			b->initrd = must_exist("initrd", initrd, "pass an existing file to --initrd");
	} else {
		_cleanup_free_ char *k = fc_path("kernels/default/vmlinux");
		_cleanup_free_ char *i0 = fc_path("kernels/default/initrd.img");

		b->kernel = must_exist("kernel", k, "run 'fc-setup kernel' or pass --kernel");
		b->initrd = must_exist("initrd", initrd ? initrd : i0,
				       "run 'fc-setup kernel' or pass --initrd");
	}
	if (rootfs)
		b->rootfs = must_exist("rootfs", rootfs, "run 'fc-disk rootfs --vm ID' or pass an ext4 image");
	for (i = 0; i < b->ndrives; i++) {
		_cleanup_free_ char *p = xstrdup(drives[i]);
		size_t n = strlen(p);

		if (n > 3 && !strcmp(p + n - 3, ":ro")) {
			p[n - 3] = '\0';
			b->drives[i].ro = true;
		}
		b->drives[i].path = must_exist("drive", p, "pass an existing file to --drive");
	}
	if (!b->id)
		b->id = state_new_id();
	b->run_dir = fc_path("run/%s", b->id);
	b->disk_dir = fc_path("vm-disks/%s", b->id);
	b->api_sock = xasprintf("%s/api.sock", b->run_dir);
	if (!b->no_vsock)
		b->vsock = vsock ? xstrdup(vsock) : xasprintf("%s/vsock.sock", b->run_dir);
	b->console = console ? xstrdup(console) : xasprintf("%s/console.log", b->disk_dir);
}

/* $FCVM_VMM, else firecracker when KVM can run a guest, else fc-qemu. */
static char *choose_vmm(void)
{
	const char *env = getenv("FCVM_VMM");
	_cleanup_free_ char *probe = fc_path("kvm-probe.json");
	_cleanup_json_ json_t *kvm = NULL;
	char *fc, *p;
	struct fc_err e;

	if (env && *env) {
		p = proc_find_tool(env);
		if (!p)
			diex("VMM '%s' (from FCVM_VMM) not found or not executable: "
			     "unset FCVM_VMM or point it at firecracker or fc-qemu", env);
		return p;
	}
	fc = proc_find_tool("firecracker");
	kvm = json_load_path(probe, 4096, &e);
	if (fc && kvm && json_is_true(json_object_get(kvm, "usable")))
		return fc;
	log_warn("%s: using fc-qemu (QEMU) instead of Firecracker",
		 !fc ? "firecracker not found in PATH"
		     : kvm ? "KVM cannot run a guest here (see 'fc-setup preflight')"
			   : "KVM not probed yet (run 'fc-setup preflight')");
	free(fc);
	p = proc_find_tool("fc-qemu");
	if (!p)
		diex("neither firecracker nor fc-qemu is usable: install fcvm's fc-qemu or set FCVM_VMM");
	return p;
}

/* Remove what a VM leaves under the data root (never the disk directory,
 * which holds the console log the user may still want). */
static void remove_runtime(const char *id, const char *run_dir, const char *vsock)
{
	_cleanup_free_ char *api = xasprintf("%s/api.sock", run_dir);

	state_remove(id);
	unlink(api);
	if (vsock) {
		/* Guest-initiated listeners "<uds>_<port>" belong to their creators. */
		unlink(vsock);
	}
	rmdir(run_dir);
}

/* fork() with a CLOEXEC pipe from parent to child (@parent_writes) or
 * from child to parent. Each side gets only its own end in *@end.
 * Returns fork()'s value; exits on failure. */
static pid_t fork_with_pipe(bool parent_writes, int *end)
{
	int p[2];
	pid_t pid;
	bool writer;

	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	writer = (pid > 0) == parent_writes;
	close(p[writer ? 0 : 1]);
	*end = p[writer ? 1 : 0];
	return pid;
}

/* The janitor runs remove_runtime() once the pipe's write end (held only
 * by fc-boot) closes - i.e. whenever and however fc-boot ends. */
static int start_janitor(struct boot *b)
{
	int end;
	char c;

	if (fork_with_pipe(true, &end) == 0) {
		_cleanup_json_ json_t *rec = NULL;
		struct fc_err e;

		/* Hold nothing of fc-boot's but our pipe - not even stdio: a
		 * caller reading our stdout would otherwise wait for us. */
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		for (int fd = 0; fd < 3 && null >= 0; fd++)
			dup2(null, fd);
		for (int fd = 3; fd < 1024; fd++)
			if (fd != end)
				close(fd);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		while (read(end, &c, 1) < 0 && errno == EINTR)
			;
		rec = state_load(b->id, &e);
		if (rec) {
			json_int_t vpid = json_integer_value(json_object_get(rec, "vmm_pid"));
			json_int_t vstart = json_integer_value(json_object_get(rec, "vmm_pid_start"));

			if (vpid > 0 && proc_alive(vpid, vstart))
				kill(vpid, SIGKILL);
		}
		remove_runtime(b->id, b->run_dir, b->vsock);
		_exit(0);
	}
	return end;
}

static json_t *config_json(struct boot *b)
{
	json_t *drives = json_array();
	int i;

	if (b->rootfs)
		json_array_append_new(drives, json_pack("{s:s, s:b}", "path", b->rootfs, "read_only", 0));
	for (i = 0; i < b->ndrives; i++)
		json_array_append_new(drives, json_pack("{s:s, s:b}", "path", b->drives[i].path,
							"read_only", b->drives[i].ro));
	return json_pack("{s:I, s:I, s:s, s:s?, s:s?, s:o, s:s?, s:s}", "cpus", (json_int_t)b->cpus,
			 "memory_mib", (json_int_t)b->memory, "kernel", b->kernel, "initrd",
			 b->initrd, "rootfs", b->rootfs, "drives", drives, "tap", b->tap, "vmm",
			 b->vmm);
}

static int vmm_alive(void *arg)
{
	struct boot *b = arg;
	int status;

	return waitpid(b->vmm_pid, &status, WNOHANG) == 0;
}

/* Last non-empty line of the VMM's log, to say why it died. */
static char *vmm_last_line(struct boot *b)
{
	_cleanup_free_ char *path = xasprintf("%s/vmm.log", b->disk_dir);
	_cleanup_free_ char *text = NULL;
	struct fc_err e;
	size_t len;
	char *end, *start;

	text = read_file_max(path, 1 << 20, &len, &e);
	if (!text || !len)
		return xstrdup("(no output)");
	end = text + len;
	while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	start = strrchr(text, '\n');
	return xstrdup(start ? start + 1 : text);
}

static char *boot_args(struct boot *b)
{
	return xasprintf("console=ttyS0 reboot=k panic=1 pci=off fcvm.id=%s root=%s%s%s", b->id,
			 b->rootfs ? "/dev/vda rw" : "none", b->boot_args ? " " : "",
			 b->boot_args ? b->boot_args : "");
}

/* Everything the VM needs, through the API only. */
static int configure(struct boot *b, struct fcapi *api, struct fc_err *e)
{
	_cleanup_free_ char *args = boot_args(b);
	char path[64];
	json_t *j;
	int i, r;

#define CALL(method, p, body)                                        \
	do {                                                         \
		j = (body);                                          \
		r = fcapi_call(api, method, p, j, NULL, e);          \
		json_decref(j);                                      \
		if (r < 0)                                           \
			return -1;                                   \
	} while (0)

	CALL("PUT", "/machine-config",
	     json_pack("{s:I, s:I}", "vcpu_count", (json_int_t)b->cpus, "mem_size_mib",
		       (json_int_t)b->memory));
	CALL("PUT", "/boot-source",
	     json_pack("{s:s, s:s, s:s?}", "kernel_image_path", b->kernel, "boot_args", args,
		       "initrd_path", b->initrd));
	if (b->rootfs)
		CALL("PUT", "/drives/rootfs",
		     json_pack("{s:s, s:s, s:b, s:b}", "drive_id", "rootfs", "path_on_host",
			       b->rootfs, "is_root_device", 1, "is_read_only", 0));
	for (i = 0; i < b->ndrives; i++) {
		char id[24];	/* "drive" + any int: the compiler cannot see i <= MAX_DRIVES */

		snprintf(id, sizeof(id), "drive%d", i + 1);
		snprintf(path, sizeof(path), "/drives/%s", id);
		CALL("PUT", path,
		     json_pack("{s:s, s:s, s:b, s:b}", "drive_id", id, "path_on_host",
			       b->drives[i].path, "is_root_device", 0, "is_read_only",
			       b->drives[i].ro));
	}
	if (b->tap)
		CALL("PUT", "/network-interfaces/eth0",
		     json_pack("{s:s, s:s, s:s?}", "iface_id", "eth0", "host_dev_name", b->tap,
			       "guest_mac", b->mac));
	if (b->vsock)
		CALL("PUT", "/vsock",
		     json_pack("{s:i, s:s}", "guest_cid", GUEST_CID, "uds_path", b->vsock));
	CALL("PUT", "/actions", json_pack("{s:s}", "action_type", "InstanceStart"));
#undef CALL
	return 0;
}

static void set_status(struct boot *b, const char *status)
{
	struct fc_err e;

	json_object_set_new(b->rec, "status", json_string(status));
	if (state_save(b->rec, &e) < 0)
		log_warn("%s", e.msg);
}

static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		die("open '%s'", path);
	return fd;
}

/* Claim the name and write the first record; exits on conflict. */
static void claim(struct boot *b)
{
	_cleanup_close_ int lock = -1;
	_cleanup_json_ json_t *other = NULL;
	struct fc_err e;
	struct stat st;

	lock = state_lock(&e);
	if (lock < 0)
		fc_err_exit(&e, 1);
	other = state_find(b->name, &e);
	if (other)
		diex("name '%s' is already used by VM %s (pid %lld): stop it or choose another --name",
		     b->name, json_str(other, "id"),
		     (long long)json_integer_value(json_object_get(other, "pid")));
	if (stat(b->run_dir, &st) == 0)
		diex("VM id '%s' is already in use", b->id);
	if (mkdir_p(b->run_dir, 0700, &e) < 0 || mkdir_p(b->disk_dir, 0755, &e) < 0)
		fc_err_exit(&e, 1);
	b->rec = state_new(b->id, b->name, "vm", "starting");
	if (state_save(b->rec, &e) < 0) {
		rmdir(b->run_dir);
		fc_err_exit(&e, 1);
	}
}

/* --detach: the child carries on as the VM's owner; the parent waits for
 * "running" on a pipe and prints the owner's pid. Returns the pipe's
 * write end in the child. */
static int detach(void)
{
	char buf[16];
	ssize_t n;
	int status, end;
	pid_t pid;

	pid = fork_with_pipe(false, &end);
	if (pid == 0) {
		/* A daemon keeps nothing it inherited: a caller's pipe held
		 * open here would leave the caller waiting for EOF forever. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != end)
				close(fd);
		setsid();
		return end;
	}
	do
		n = read(end, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		printf("%d\n", (int)pid);
		exit(0);
	}
	/* The child failed and has said why on our shared stderr. */
	waitpid(pid, &status, 0);
	exit(exit_code_of(status) ? exit_code_of(status) : 1);
}

/* Tell the waiting parent we run, then let go of the caller's terminal or
 * pipes: stdin and stdout to /dev/null, our later messages to fc-boot.log
 * beside the console log. */
static void detach_done(struct boot *b, int fd)
{
	_cleanup_free_ char *path = xasprintf("%s/fc-boot.log", b->disk_dir);
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
	if (write(fd, "running\n", 8) < 0)
		log_debug("detach pipe: %s", strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	struct boot b = { 0 };
	struct fcapi *api = NULL;
	struct spawn_opts so = { -1, -1, -1, true, false };
	_cleanup_close_ int sfd = -1, console_fd = -1, vmm_log = -1, null_fd = -1;
	_cleanup_free_ char *vmm_log_path = NULL;
	int janitor, detach_fd = -1, status, code = 0;
	uint64_t vstart = 0;
	struct fc_err e;

	log_init("fc-boot");
	parse_args(&b, argc, argv);
	log_set_tag(b.name);
	if (fc_root_init(&e) < 0)
		fc_err_exit(&e, 1);
	b.vmm = choose_vmm();
	if (b.detach)
		detach_fd = detach();

	sfd = signalfd_for((const int[]){ SIGCHLD, SIGTERM, SIGINT, SIGHUP, 0 }, 0, &e);
	if (sfd < 0)
		fc_err_exit(&e, 1);
	/* A front end killed outright (SIGKILL) takes its VM along: we get a
	 * SIGTERM and stop the VM the ordinary way. */
	if (b.die_with_parent && die_with_parent(SIGTERM, &e) < 0)
		fc_err_exit(&e, 1);

	claim(&b);
	janitor = start_janitor(&b);

	console_fd = open_log(b.console);
	vmm_log_path = xasprintf("%s/vmm.log", b.disk_dir);
	vmm_log = open_log(vmm_log_path);
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	so.fd_in = null_fd;
	so.fd_out = console_fd;
	so.fd_err = vmm_log;
	{
		char *vargv[] = { b.vmm, "--api-sock", b.api_sock, "--id", b.id, NULL };

		b.vmm_pid = spawn(vargv, &so, &e);
	}
	if (b.vmm_pid < 0) {
		fc_err_wrap(&e, "start VMM");
		goto fail;
	}
	proc_start_time(b.vmm_pid, &vstart, NULL);
	json_object_set_new(b.rec, "vmm_pid", json_integer(b.vmm_pid));
	json_object_set_new(b.rec, "vmm_pid_start", json_integer(vstart));
	json_object_set_new(b.rec, "config", config_json(&b));
	json_object_set_new(b.rec, "sockets", json_pack("{s:s, s:s?}", "api", b.api_sock,
							"vsock", b.vsock));
	json_object_set_new(b.rec, "console", json_string(b.console));
	json_object_set_new(b.rec, "disk_dir", json_string(b.disk_dir));
	set_status(&b, "starting");

	api = fcapi_new(b.api_sock);
	if (fcapi_wait(api, API_WAIT_MS, vmm_alive, &b, &e) < 0 || configure(&b, api, &e) < 0) {
		if (!vmm_alive(&b)) {
			_cleanup_free_ char *last = vmm_last_line(&b);

			fc_err_wrap(&e, "the VMM '%s' exited during configuration (%s)", b.vmm, last);
			b.vmm_pid = -1;
		}
		goto fail;
	}
	set_status(&b, "running");
	log_info("VM %s running (VMM pid %d, console %s)", b.id, (int)b.vmm_pid, b.console);
	if (detach_fd >= 0)
		detach_done(&b, detach_fd);

	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));

		if (n != sizeof(si)) {
			if (n < 0 && errno == EINTR)
				continue;
			die("read signalfd");
		}
		if (si.ssi_signo == SIGCHLD) {
			if (waitpid(b.vmm_pid, &status, WNOHANG) == b.vmm_pid) {
				code = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
				if (code)
					log_error("VMM exited with status %d (see %s)",
						  exit_code_of(status), vmm_log_path);
				else
					log_info("VM %s stopped", b.id);
				b.vmm_pid = -1;
				break;
			}
			continue;
		}
		log_info("stopping VM %s on signal %d", b.id, (int)si.ssi_signo);
		set_status(&b, "stopping");
		kill_wait(b.vmm_pid, STOP_GRACE_MS);
		b.vmm_pid = -1;
		code = 128 + si.ssi_signo;
		break;
	}
	fcapi_free(api);
	remove_runtime(b.id, b.run_dir, b.vsock);
	close(janitor);
	waitpid(-1, NULL, 0);
	boot_release(&b);
	return code;

fail:
	if (b.vmm_pid > 0)
		kill_wait(b.vmm_pid, STOP_GRACE_MS);
	fcapi_free(api);
	remove_runtime(b.id, b.run_dir, b.vsock);
	close(janitor);
	fc_err_exit(&e, 1);
}
