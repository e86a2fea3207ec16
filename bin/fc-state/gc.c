/* gc.c - "fc-state gc": remove what dead owners left under the data root.
 *
 * How it works, in this order:
 *  1. Under locks/state.lock (so no fc-boot claims a name meanwhile): every
 *     record whose owner is dead goes, with its .pid file, a VMM it names
 *     that still runs (SIGKILL), and its run/<id>/ directory. A record that
 *     does not parse goes only when its .pid names no running process. Then
 *     .pid files without a record, run/<id>/ directories no record names,
 *     run/uffd-TAG-PID.{sock,stats} of dead servers, and temporaries of atomic
 *     writes (".NAME.tmp-PID-RANDOM") of dead writers in state/.
 *  2. Builds: for kernels/ and rootfs/, try the build lock fc-setup holds
 *     while it builds (locks/kernel.lock, locks/rootfs.lock) without
 *     waiting. Got it: no build runs, so every temporary there is stale,
 *     and each build that is neither 'default' nor used by a live record's
 *     config or a snapshot's source goes too. Held: only temporaries whose
 *     PID is dead go.
 *  3. images/: temporaries of dead writers (fc-disk locks per image), then
 *     each image's archive (<hex>.img) and store (<hex>.store/) that no
 *     live record's drives use, nor a snapshot's (its clones attach the
 *     source's kernel, initrd and read-only drives by path), under that image's build lock taken without
 *     waiting (held: fc-disk is building it, it stays). A run between its
 *     'fc-disk image' and its VM's record can lose its image this way; it
 *     then fails at fc-boot, saying so, and the next run rebuilds it.
 * Nothing of a live owner is touched; vm-disks/ stays (the user's logs).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fc-state.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "snapshot.h"
#include "state.h"
#include "util.h"

struct gc {
	bool dry;
	bool json;
	json_t *done;		/* [{kind, path, reason}] */
	json_t *dead;		/* records of dead owners (copies) */
	json_t *bad;		/* ids of records that do not parse */
	json_t *ids;		/* every valid record's id: set */
	json_t *used;		/* real paths a live record's config uses: set */
	int failures;
	struct fc_err first;	/* the first removal that failed */
};

static const char *rel(const char *path)
{
	size_t n = strlen(fc_root());

	return !strncmp(path, fc_root(), n) && path[n] == '/' ? path + n + 1 : path;
}

/* Remove @path (a tree), or in -n mode only say so. */
static void drop(struct gc *g, const char *kind, const char *path, const char *reason)
{
	struct fc_err e;

	/* a temporary's writer is gone, but its children may not be */
	if (!g->dry && ((!strcmp(kind, "temporary") && fc_kill_users(path, &e) < 0) ||
			fc_rm_tree(path, &e) < 0)) {
		if (!g->failures++)
			g->first = e;
		log_warn("%s", e.msg);
		return;
	}
	json_array_append_new(g->done, json_pack("{s:s, s:s, s:s}", "kind", kind, "path", path,
						 "reason", reason));
	if (!g->json)
		printf("%s %s %s (%s)\n", g->dry ? "would remove" : "removed", kind, rel(path), reason);
}

/* The pid in a temporary's name, or 0: ".NAME.tmp-PID-RANDOM" (fs_tmpname),
 * ".tmp-KEY-PID" (fc-setup builds), ".default.PID" (fc-setup's symlink). */
static pid_t temp_pid(const char *name)
{
	const char *p = strstr(name, ".tmp-");
	char *end;
	long pid;

	if (name[0] != '.')
		return 0;
	if (!strncmp(name, ".tmp-", 5)) {
		p = strrchr(name, '-');
		pid = strtol(p + 1, &end, 10);
		return *end || pid <= 0 || pid > INT_MAX ? 0 : (pid_t)pid;
	}
	if (!strncmp(name, ".default.", 9)) {
		pid = strtol(name + 9, &end, 10);
		return *end || pid <= 0 || pid > INT_MAX ? 0 : (pid_t)pid;
	}
	if (!p)
		return 0;
	pid = strtol(p + 5, &end, 10);
	return *end != '-' || pid <= 0 || pid > INT_MAX ? 0 : (pid_t)pid;
}

/* Temporaries in @sub: of dead writers, or all of them when @all (their
 * directory's build lock is ours, so no writer can be at work). */
static void sweep_temps(struct gc *g, const char *sub, bool all)
{
	_cleanup_free_ char *dir = fc_path("%s", sub);
	struct dirent **names = NULL;
	int n = scandir(dir, &names, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		pid_t pid = temp_pid(name);
		bool owned = !strncmp(name, ".tmp-", 5) || !strncmp(name, ".default.", 9) ||
			     strstr(name, ".tmp-");

		if (name[0] == '.' && owned && strcmp(name, ".") && strcmp(name, "..") &&
		    ((all && pid != getpid()) || (pid > 0 && !state_pid_live(pid, 0)))) {
			_cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
			char why[64];

			if (pid > 0 && !state_pid_live(pid, 0))
				snprintf(why, sizeof(why), "temporary of dead pid %d", (int)pid);
			else
				snprintf(why, sizeof(why), "temporary, no build running");
			drop(g, "temporary", p, why);
		}
		free(names[i]);
	}
	free(names);
}

/* ---- 1. records and sockets -------------------------------------------- */

static void add_used(struct gc *g, const char *path)
{
	char real[PATH_MAX];

	if (path && realpath(path, real))
		json_object_set_new(g->used, real, json_true());
}

static int collect_cb(json_t *rec, void *arg)
{
	struct gc *g = arg;
	json_t *cfg = json_object_get(rec, "config"), *d;
	size_t i;

	json_object_set_new(g->ids, json_str(rec, "id"), json_true());
	if (!state_live(rec)) {
		json_array_append(g->dead, rec);
		return 0;
	}
	add_used(g, json_str(cfg, "kernel"));
	add_used(g, json_str(cfg, "initrd"));
	add_used(g, json_str(cfg, "rootfs"));
	json_array_foreach(json_object_get(cfg, "drives"), i, d) {
		add_used(g, json_str(d, "path"));
	}
	return 0;
}

/* What every snapshot's clones will need: its source's kernel, initrd and
 * drives (the rootfs is the snapshot's own copy). A snapshot that does not
 * validate keeps nothing: no clone can start from it. */
static int collect_snapshots(struct gc *g, struct fc_err *e)
{
	_cleanup_json_ json_t *list = snapshot_list(e);
	json_t *m, *d;
	size_t i, j;

	if (!list)
		return -1;
	json_array_foreach(list, i, m) {
		json_t *cfg = json_object_get(json_object_get(m, "source"), "config");

		if (json_object_get(m, "error"))
			continue;
		add_used(g, json_str(cfg, "kernel"));
		add_used(g, json_str(cfg, "initrd"));
		json_array_foreach(json_object_get(cfg, "drives"), j, d) {
			add_used(g, json_str(d, "path"));
		}
	}
	return 0;
}

static void collect_bad(const char *id, const struct fc_err *why, void *arg)
{
	struct gc *g = arg;

	(void)why;
	json_array_append_new(g->bad, json_string(id));
}

/* The pid in state/<id>.pid, 0 when absent or unreadable. */
static pid_t pidfile_pid(const char *id)
{
	_cleanup_free_ char *path = fc_path("state/%s.pid", id);
	_cleanup_free_ char *text = NULL;
	struct fc_err e;
	uint64_t pid;
	char *nl;

	text = read_file_max(path, 32, NULL, &e);
	if (!text)
		return 0;
	nl = strchr(text, '\n');
	if (nl)
		*nl = '\0';
	return parse_u64(text, 1, INT_MAX, "pid", &pid, &e) < 0 ? 0 : (pid_t)pid;
}

static void drop_record(struct gc *g, const char *id, const char *reason)
{
	_cleanup_free_ char *json = fc_path("state/%s.json", id);
	_cleanup_free_ char *pid = fc_path("state/%s.pid", id);
	_cleanup_free_ char *run = fc_path("run/%s", id);
	struct stat st;

	drop(g, "record", json, reason);
	if (lstat(pid, &st) == 0)
		drop(g, "pidfile", pid, reason);
	if (lstat(run, &st) == 0)
		drop(g, "sockets", run, reason);
}

static void gc_records(struct gc *g)
{
	json_t *rec, *v;
	size_t i;

	json_array_foreach(g->dead, i, rec) {
		const char *id = json_str(rec, "id");
		json_int_t vpid = json_integer_value(json_object_get(rec, "vmm_pid"));
		json_int_t vstart = json_integer_value(json_object_get(rec, "vmm_pid_start"));
		char why[96];

		/* the janitor that stops it died too (a SIGKILL of the group) */
		if (vpid > 0 && vstart > 0 && state_pid_live(vpid, vstart)) {
			_cleanup_free_ char *what = xasprintf("pid %lld", (long long)vpid);

			if (!g->dry && kill(vpid, SIGKILL) < 0)
				log_warn("stop orphan VMM %lld: %s", (long long)vpid, strerror(errno));
			json_array_append_new(g->done, json_pack("{s:s, s:s, s:s}", "kind", "vmm",
								 "path", what, "reason",
								 "its owner is dead"));
			if (!g->json)
				printf("%s vmm %s of %s (its owner is dead)\n",
				       g->dry ? "would stop" : "stopped", what, id);
		}
		snprintf(why, sizeof(why), "owner pid %lld is dead",
			 (long long)json_integer_value(json_object_get(rec, "pid")));
		drop_record(g, id, why);
	}
	json_array_foreach(g->bad, i, v) {
		const char *id = json_string_value(v);
		pid_t pid = pidfile_pid(id);

		if (pid > 0 && state_pid_live(pid, 0)) {
			log_warn("keeping malformed record 'state/%s.json': its pid %d runs", id, (int)pid);
			continue;
		}
		drop_record(g, id, "malformed, and no running owner");
	}
}

/* .pid files without a record, run/ entries of nobody, state/ temporaries. */
static void gc_orphans(struct gc *g)
{
	_cleanup_free_ char *sdir = fc_path("state"), *rdir = fc_path("run");
	struct dirent **names = NULL;
	int n;

	n = scandir(sdir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		char *name = names[i]->d_name;
		size_t len = strlen(name);

		if (name[0] != '.' && len > 4 && !strcmp(name + len - 4, ".pid")) {
			_cleanup_free_ char *json = NULL, *p = xasprintf("%s/%s", sdir, name);
			struct stat st;
			pid_t pid;

			name[len - 4] = '\0';
			json = fc_path("state/%s.json", name);
			pid = pidfile_pid(name);
			if (lstat(json, &st) < 0 && errno == ENOENT && !(pid > 0 && state_pid_live(pid, 0)))
				drop(g, "pidfile", p, "no record, no running owner");
		}
		free(names[i]);
	}
	free(names);
	sweep_temps(g, "state", false);

	n = scandir(rdir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		_cleanup_free_ char *p = xasprintf("%s/%s", rdir, name);
		const char *dash = strrchr(name, '-');
		struct stat st;

		if (fc_valid_name(name) && lstat(p, &st) == 0 && S_ISDIR(st.st_mode) &&
		    !json_object_get(g->ids, name)) {
			drop(g, "sockets", p, "no record names it");
		} else if (!strncmp(name, "uffd-", 5) && dash && strlen(dash) > 6 &&
			   (!strcmp(name + strlen(name) - 5, ".sock") ||
			    !strcmp(name + strlen(name) - 6, ".stats"))) {
			/* run/uffd-<tag>-<pid>.{sock,stats}: a memory server's */
			long pid = strtol(dash + 1, NULL, 10);

			if (pid > 0 && pid <= INT_MAX && !state_pid_live((pid_t)pid, 0))
				drop(g, "socket", p, "its server is dead");
		}
		free(names[i]);
	}
	free(names);
}

/* ---- 2. builds ----------------------------------------------------------- */

static bool build_used(struct gc *g, const char *dir)
{
	char real[PATH_MAX];
	const char *key;
	json_t *v;
	size_t n;

	if (!realpath(dir, real))
		return false;
	n = strlen(real);
	json_object_foreach(g->used, key, v) {
		if (!strncmp(key, real, n) && (key[n] == '/' || key[n] == '\0'))
			return true;
	}
	return false;
}

static void gc_builds(struct gc *g, const char *sub, const char *lock_name)
{
	_cleanup_free_ char *dir = fc_path("%s", sub);
	_cleanup_free_ char *def = fc_path("%s/default", sub);
	_cleanup_close_ int lock = -1;
	struct dirent **names = NULL;
	char target[PATH_MAX];
	ssize_t tl;
	struct fc_err e;
	int n;

	lock = fs_lock_named(lock_name, FS_LOCK_NB, &e);
	sweep_temps(g, sub, lock >= 0);
	if (lock < 0) {
		if (e.errnum != EWOULDBLOCK)
			log_warn("%s", e.msg);
		else
			log_info("a %s build is running: keeping the %s builds", lock_name, sub);
		return;
	}
	tl = readlink(def, target, sizeof(target) - 1);
	target[tl > 0 ? tl : 0] = '\0';
	n = scandir(dir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
		struct stat st;

		if (name[0] != '.' && strcmp(name, "default") && strcmp(name, target) &&
		    lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && !build_used(g, p))
			drop(g, "build", p, "neither default nor used by a running VM");
		free(names[i]);
	}
	free(names);
}

/* ---- 3. images ------------------------------------------------------------ */

/* Is @name an image's archive "<hex>.img" or store "<hex>.store"? Its
 * digest into @hex. */
static bool image_entry(const char *name, char hex[65])
{
	const char *rest = name + 64;

	if (strlen(name) <= 64 || strspn(name, "0123456789abcdef") != 64 ||
	    (strcmp(rest, ".img") && strcmp(rest, ".store")))
		return false;
	memcpy(hex, name, 64);
	hex[64] = '\0';
	return true;
}

static void gc_images(struct gc *g)
{
	_cleanup_free_ char *dir = fc_path("images");
	struct dirent **names = NULL;
	int n = scandir(dir, &names, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
		_cleanup_free_ char *lockp = NULL;
		_cleanup_close_ int lock = -1;
		struct fc_err e;
		char hex[65];

		if (!image_entry(name, hex) || build_used(g, p))
			goto next;
		lockp = fc_path("locks/image-%s.lock", hex);
		lock = fs_lock(lockp, FS_LOCK_NB, &e);
		if (lock < 0 && e.errnum == EWOULDBLOCK)
			log_info("image %.16s is being built: keeping it", hex);
		else if (lock < 0)
			log_warn("%s", e.msg);
		else
			drop(g, "image", p, "no running VM uses it");
next:
		free(names[i]);
	}
	free(names);
}

static const char gc_usage[] = "usage: fc-state gc [-n] [--json]\n";

int cmd_gc(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_json_ json_t *done = json_array(), *dead = json_array(), *bad = json_array();
	_cleanup_json_ json_t *ids = json_object(), *used = json_object();
	struct gc g = { false, false, done, dead, bad, ids, used, 0, { 0, "" } };
	_cleanup_close_ int lock = -1;
	struct fc_err e;
	int o;

	while ((o = getopt_long(argc, argv, ":njh", opts, NULL)) != -1) {
		switch (o) {
		case 'n': g.dry = true; break;
		case 'j': g.json = true; break;
		case 'h': fputs(gc_usage, stdout); return 0;
		case ':': usage_err(gc_usage, "option '%s' needs a value", argv[optind - 1]);
		default: usage_err(gc_usage, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_err(gc_usage, "gc: unexpected argument '%s'", argv[optind]);
	lock = state_lock(&e);	/* checks the data root first */
	if (lock < 0 || state_scan(collect_cb, collect_bad, &g, &e) < 0 ||
	    collect_snapshots(&g, &e) < 0)
		fc_err_exit(&e, 1);
	gc_records(&g);
	gc_orphans(&g);
	close(steal_fd(&lock));
	gc_builds(&g, "kernels", "kernel");
	gc_builds(&g, "rootfs", "rootfs");
	sweep_temps(&g, "images", false);
	gc_images(&g);
	/* a snapshot fc-snap was making, or fc-snap rm was removing, when it died */
	sweep_temps(&g, "snapshots", false);
	sweep_temps(&g, ".", false);
	if (g.json) {
		_cleanup_free_ char *text = json_dumps(done, JSON_INDENT(2));

		puts(text ? text : "[]");
	}
	if (fflush(stdout) != 0)
		return 1;
	if (g.failures) {
		fc_err_wrap(&g.first, "%d removal%s failed; the first", g.failures,
			    g.failures > 1 ? "s" : "");
		fc_err_exit(&g.first, 1);
	}
	return 0;
}
