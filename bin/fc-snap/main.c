/* fc-snap - snapshot a running VM, list and remove snapshots. See fc-snap(1).
 *
 * create, in this order and why:
 *  1. find the VM's live record (by name/id or by its owner's pid) and
 *     check it can be snapshotted (a running "vm", not a clone); claim the
 *     tag (snapshot_begin: refused when it exists) under locks/snapshots;
 *  2. block SIGINT/SIGTERM/SIGHUP: from the pause on, the VM must be
 *     resumed whatever happens;
 *  3. PATCH /vm Paused, PUT /snapshot/create (Full) into the temporary
 *     directory, reflink the VM's rootfs (the disk at the paused instant),
 *     PATCH /vm Resumed - also after a failure;
 *  4. the manifest, then the directory is published (snapshot_finish). A
 *     signal that came meanwhile aborts here and nothing is published.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fcapi.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "ownqemu.h"
#include "paths.h"
#include "proc.h"
#include "snapshot.h"
#include "state.h"
#include "util.h"

static const char usage_text[] =
	"usage: fc-snap create (--vm NAME|ID | --pid PID) --tag TAG [--json] [-v] [-q]\n"
	"       fc-snap ls [--json]\n"
	"       fc-snap rm [--force] TAG\n";

static noreturn void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

static noreturn void bad_option(int o, char **argv)
{
	if (o == ':')
		usage_err(usage_text, "option '%s' needs a value", argv[optind - 1]);
	usage_err(usage_text, "unknown option '%s'", argv[optind - 1]);
}

/* ---- finding records ------------------------------------------------------ */

static json_t *find_vm(const char *key, pid_t pid, struct fc_err *e)
{
	json_t *rec = key ? state_find(key, e) : state_find_pid(pid, e);

	if (!rec && !key && e->errnum == ENOENT)
		fc_err_set(e, ENOENT, "no running VM is owned by pid %d", (int)pid);
	return rec;
}

struct clones {
	const char *tag;
	json_t *list;
};

static int clones_cb(json_t *rec, void *arg)
{
	struct clones *c = arg;
	const char *snap = json_str(rec, "snapshot");

	if (snap && !strcmp(snap, c->tag) && !strcmp(json_str(rec, "process_type"), "clone") &&
	    state_live(rec))
		json_array_append(c->list, rec);
	return 0;
}

/* Live clones (and servers) of @tag: a new array. */
static json_t *users_of(const char *tag, struct fc_err *e)
{
	struct clones c = { tag, json_array() };

	if (state_foreach(clones_cb, &c, e) < 0) {
		json_decref(c.list);
		return NULL;
	}
	return c.list;
}

/* ---- create ------------------------------------------------------------ */

static char *vmm_version(const char *vmm)
{
	char *argv[] = { (char *)vmm, "--version", NULL };
	char *out = NULL, *nl;
	struct fc_err e;

	if (run_capture(argv, &out, 4096, 10000, &e) != 0) {
		free(out);
		return NULL;
	}
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	return out;
}

static int api_call(struct fcapi *a, const char *method, const char *path, json_t *body,
		    struct fc_err *e)
{
	int r = fcapi_call(a, method, path, body, NULL, e);

	json_decref(body);
	return r;
}

static int snap_vm(json_t *rec, const char *tmp, struct fc_err *e)
{
	const char *api_sock = json_str(json_object_get(rec, "sockets"), "api");
	const char *rootfs = json_str(json_object_get(rec, "config"), "rootfs");
	_cleanup_free_ char *vs = xasprintf("%s/" SNAPSHOT_VMSTATE, tmp);
	_cleanup_free_ char *mem = xasprintf("%s/" SNAPSHOT_MEMORY, tmp);
	_cleanup_free_ char *disk = xasprintf("%s/" SNAPSHOT_DISK, tmp);
	struct fcapi *a;
	struct fc_err re;
	uint64_t t0 = now_ms();
	int r;

	if (!api_sock)
		return fc_err_set(e, EINVAL, "VM '%s' has no API socket in its record",
				  json_str(rec, "name"));
	if (!rootfs)
		return fc_err_set(e, EINVAL, "VM '%s' has no rootfs: nothing to snapshot the "
				  "disk from", json_str(rec, "name"));
	a = fcapi_new(api_sock);
	if (api_call(a, "PATCH", "/vm", json_pack("{s:s}", "state", "Paused"), e) < 0) {
		fcapi_free(a);
		return fc_err_wrap(e, "pause VM '%s'", json_str(rec, "name"));
	}
	r = api_call(a, "PUT", "/snapshot/create",
		     json_pack("{s:s, s:s, s:s}", "snapshot_type", "Full", "snapshot_path", vs,
			       "mem_file_path", mem), e);
	if (r == 0) {
		r = fs_reflink(rootfs, disk, 0644, false, e);
		if (r < 0)
			fc_err_wrap(e, "copy the VM's disk");
	}
	if (api_call(a, "PATCH", "/vm", json_pack("{s:s}", "state", "Resumed"), &re) < 0) {
		if (r == 0)
			*e = re;
		else
			log_warn("resume VM '%s': %s", json_str(rec, "name"), re.msg);
		r = -1;
	}
	fcapi_free(a);
	log_debug("VM %s paused for %llu ms", json_str(rec, "id"),
		 (unsigned long long)(now_ms() - t0));
	return r;
}

static void say_removed(const char *path, void *arg)
{
	(void)arg;
	log_info("removed the stale temporary '%s'", path);
}

static int cmd_create(int argc, char **argv)
{
	enum { O_VM = 256, O_PID, O_TAG, O_JSON };
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, O_VM },   { "pid", required_argument, NULL, O_PID },
		{ "tag", required_argument, NULL, O_TAG }, { "json", no_argument, NULL, O_JSON },
		{ "verbose", no_argument, NULL, 'v' },	   { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },	   { NULL, 0, NULL, 0 }
	};
	const char *key = NULL, *tag = NULL;
	_cleanup_json_ json_t *rec = NULL, *man = NULL, *done = NULL;
	_cleanup_free_ char *tmp = NULL, *ver = NULL, *qemu = NULL;
	_cleanup_close_ int lock = -1;
	struct fc_err e;
	sigset_t stop, pending;
	uint64_t pid = 0;
	bool json = false, capable = false;
	json_t *cfg;
	int c;

	while ((c = getopt_long(argc, argv, ":vqh", opts, NULL)) != -1) {
		switch (c) {
		case O_VM: key = optarg; break;
		case O_PID:
			if (parse_u64(optarg, 1, INT32_MAX, "--pid", &pid, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			break;
		case O_TAG: tag = optarg; break;
		case O_JSON: json = true; break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': usage(0);
		default: bad_option(c, argv);
		}
	}
	if (optind != argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (!key == !pid)
		usage_err(usage_text, "create needs exactly one of --vm and --pid");
	if (!tag)
		usage_err(usage_text, "create needs --tag");
	if (!snapshot_valid_tag(tag))
		usage_err(usage_text, "invalid --tag '%s': use 1-63 letters, digits, '_', '.', "
			  "'-'", tag);

	rec = find_vm(key, (pid_t)pid, &e);
	if (!rec)
		fc_err_exit(&e, 1);
	if (strcmp(json_str(rec, "process_type"), "vm")) {
		const char *s = json_str(rec, "snapshot");

		fc_err_set(&e, EINVAL, "'%s' is a %s%s%s, not a booted VM: it cannot be "
			   "snapshotted", json_str(rec, "name"), json_str(rec, "process_type"),
			   s ? " of snapshot " : "", s ? s : "");
		fc_err_exit(&e, 1);
	}
	if (strcmp(json_str(rec, "status"), "running")) {
		fc_err_set(&e, EAGAIN, "VM '%s' is %s, not running", json_str(rec, "name"),
			   json_str(rec, "status"));
		fc_err_exit(&e, 1);
	}
	if (fc_root_init(&e) < 0)
		fc_err_exit(&e, 1);
	lock = fs_lock_named("snapshots", FS_LOCK_EINTR, &e);
	if (lock < 0)
		fc_err_exit(&e, 1);
	snapshot_gc(say_removed, NULL);

	/* From the pause on we resume whatever comes: signals wait. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	sigprocmask(SIG_BLOCK, &stop, NULL);

	if (snapshot_begin(tag, &tmp, &e) < 0)
		fc_err_exit(&e, 1);
	if (snap_vm(rec, tmp, &e) < 0) {
		snapshot_abort(tmp);
		fc_err_exit(&e, 1);
	}
	cfg = json_object_get(rec, "config");
	ver = vmm_version(json_str(cfg, "vmm"));
	qemu = ownqemu_select(&capable, NULL);
	man = json_pack("{s:{s:s, s:s, s:O, s:O*}, s:{s:I, s:I, s:i}, s:{s:s, s:s?, s:s?}, "
			"s:[s, s]}",
			"source", "id", json_str(rec, "id"), "name", json_str(rec, "name"),
			"config", cfg, "network", json_object_get(rec, "network"),
			"machine", "cpus", json_integer_value(json_object_get(cfg, "cpus")),
			"memory_mib", json_integer_value(json_object_get(cfg, "memory_mib")),
			"vsock_cid", 3,
			"vmm", "program", json_str(cfg, "vmm"), "version", ver, "qemu", qemu,
			"backends", "File", "Uffd");
	if (!man) {
		snapshot_abort(tmp);
		fc_err_set(&e, EINVAL, "VM '%s': its record lacks its machine config",
			   json_str(rec, "name"));
		fc_err_exit(&e, 1);
	}
	sigpending(&pending);
	if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) ||
	    sigismember(&pending, SIGHUP)) {
		snapshot_abort(tmp);
		fc_err_set(&e, EINTR, "interrupted: snapshot '%s' not made (the VM was resumed)",
			   tag);
		fc_err_exit(&e, 130);
	}
	if (snapshot_finish(tag, tmp, man, &e) < 0) {
		snapshot_abort(tmp);
		fc_err_exit(&e, 1);
	}
	if (json) {
		done = snapshot_open(tag, &e);
		if (!done)
			fc_err_exit(&e, 1);
		json_dumpf(done, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
	} else {
		_cleanup_free_ char *dir = snapshot_dir(tag);

		printf("%s\n", dir);
	}
	return 0;
}

/* ---- ls, rm ------------------------------------------------------------- */

static int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	_cleanup_json_ json_t *list = NULL;
	struct fc_err e;
	bool json = false;
	size_t i;
	json_t *m;
	int c;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': usage(0);
		default: bad_option(c, argv);
		}
	}
	if (optind != argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	list = snapshot_list(&e);
	if (!list)
		fc_err_exit(&e, 1);
	json_array_foreach(list, i, m) {
		_cleanup_json_ json_t *users = users_of(json_str(m, "tag"), &e);

		json_object_set_new(m, "clones", json_integer(users ? (json_int_t)json_array_size(users) : 0));
	}
	if (json) {
		json_dumpf(list, stdout, JSON_INDENT(2));
		putchar('\n');
		return 0;
	}
	printf("%-24s %-20s %-16s %8s %6s %s\n", "TAG", "CREATED", "SOURCE", "MEMORY", "CLONES",
	       "STATUS");
	json_array_foreach(list, i, m) {
		const char *err = json_str(m, "error");
		json_t *mach = json_object_get(m, "machine");

		printf("%-24s %-20s %-16s %6lldMi %6lld %s\n", json_str(m, "tag"),
		       err ? "-" : json_str(m, "created"),
		       err ? "-" : json_str(json_object_get(m, "source"), "name"),
		       (long long)json_integer_value(json_object_get(mach, "memory_mib")),
		       (long long)json_integer_value(json_object_get(m, "clones")),
		       err ? "damaged" : "ok");
	}
	return 0;
}

/* Stop the owners of @users (SIGTERM, checked by start time), waiting up to
 * 30 s for each, then SIGKILL. */
static void stop_users(json_t *users)
{
	size_t i;
	json_t *u;

	json_array_foreach(users, i, u) {
		pid_t pid = (pid_t)json_integer_value(json_object_get(u, "pid"));
		uint64_t st = (uint64_t)json_integer_value(json_object_get(u, "pid_start"));

		if (proc_alive(pid, st)) {
			log_info("stopping clone %s (pid %d)", json_str(u, "name"), (int)pid);
			kill(pid, SIGTERM);
		}
	}
	json_array_foreach(users, i, u) {
		pid_t pid = (pid_t)json_integer_value(json_object_get(u, "pid"));
		uint64_t st = (uint64_t)json_integer_value(json_object_get(u, "pid_start"));
		uint64_t end = now_ms() + 30000;

		while (proc_alive(pid, st) && now_ms() < end) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		if (proc_alive(pid, st))
			kill(pid, SIGKILL);
	}
}

static int cmd_rm(int argc, char **argv)
{
	static const struct option opts[] = { { "force", no_argument, NULL, 'f' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	_cleanup_json_ json_t *users = NULL;
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *dir = NULL;
	struct fc_err e;
	bool force = false;
	const char *tag;
	int c;

	while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': force = true; break;
		case 'h': usage(0);
		default: bad_option(c, argv);
		}
	}
	if (optind + 1 != argc)
		usage_err(usage_text, "rm needs one TAG");
	tag = argv[optind];
	if (!snapshot_valid_tag(tag))
		usage_err(usage_text, "invalid TAG '%s'", tag);
	dir = snapshot_dir(tag);
	if (access(dir, F_OK) < 0) {
		fc_err_set(&e, ENOENT, "no snapshot '%s'", tag);
		fc_err_exit(&e, 1);
	}
	lock = fs_lock_named("snapshots", FS_LOCK_EINTR, &e);
	if (lock < 0)
		fc_err_exit(&e, 1);
	users = users_of(tag, &e);
	if (!users)
		fc_err_exit(&e, 1);
	if (json_array_size(users) > 0) {
		if (!force) {
			size_t i;
			json_t *u;
			char names[512] = "";

			json_array_foreach(users, i, u) {
				size_t l = strlen(names);

				snprintf(names + l, sizeof(names) - l, "%s%s", i ? ", " : "",
					 json_str(u, "name"));
			}
			fc_err_set(&e, EBUSY, "snapshot '%s' is used by %zu clone(s): %s (stop "
				   "them first, or pass --force to stop them)", tag,
				   json_array_size(users), names);
			fc_err_exit(&e, 1);
		}
		stop_users(users);
	}
	if (snapshot_remove(tag, &e) < 0)
		fc_err_exit(&e, 1);
	return 0;
}

int main(int argc, char **argv)
{
	log_init("fc-snap");
	if (argc < 2)
		usage(2);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		usage(0);
	optind = 1;
	if (!strcmp(argv[1], "create"))
		return cmd_create(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return cmd_ls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rm"))
		return cmd_rm(argc - 1, argv + 1);
	usage_err(usage_text, "unknown command '%s'", argv[1]);
}
