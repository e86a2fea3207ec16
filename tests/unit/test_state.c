/* test_state.c - unit tests for lib/state and the data-root checks of
 * lib/paths: the schema (writers strict, readers lenient), readers that
 * skip malformed/oversized/foreign files, liveness (zombies are dead),
 * state_wait's bounded and early exits, unprepared roots, and a full file
 * system reported as such. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "paths.h"
#include "proc.h"
#include "state.h"
#include "util.h"

#include "check.h"

static char root[] = "/tmp/fcvm-test-state-XXXXXX";

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

/* A complete record of ours that may be "running". */
static json_t *full_record(const char *id, const char *name, const char *status)
{
	json_t *rec = state_new(id, name, "vm", status);
	uint64_t start = 0;

	proc_start_time(getpid(), &start, NULL);
	json_object_set_new(rec, "vmm_pid", json_integer(getpid()));
	json_object_set_new(rec, "vmm_pid_start", json_integer((json_int_t)start));
	json_object_set_new(rec, "config",
			    json_pack("{s:i, s:i, s:s, s:n, s:[{s:s, s:b}], s:n, s:s}", "cpus", 1,
				      "memory_mib", 256, "kernel", "/k/vmlinux", "initrd",
				      "drives", "path", "/d/rootfs.ext4", "read_only", 0, "tap",
				      "vmm", "/usr/bin/fc-qemu"));
	json_object_set_new(rec, "sockets", json_pack("{s:s, s:n}", "api", "/r/api.sock", "vsock"));
	json_object_set_new(rec, "console", json_string("/d/console.log"));
	json_object_set_new(rec, "disk_dir", json_string("/d"));
	return rec;
}

static void test_schema(void)
{
	struct fc_err e;
	json_t *rec;

	rec = state_new("vm-a1", "alpha", "vm", "starting");
	CHECK(state_validate(rec, true, &e) == 0, "a fresh starting record is valid");
	json_object_set_new(rec, "status", json_string("running"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "field 'vmm_pid' is missing"),
	      "a running vm needs its VMM, config, sockets");
	json_decref(rec);

	rec = full_record("vm-a1", "alpha", "running");
	CHECK(state_validate(rec, true, &e) == 0, "a complete running record is valid");
	json_object_set_new(rec, "colour", json_string("red"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "field 'colour' is not in the schema"),
	      "writers: an unknown field is refused");
	CHECK(state_validate(rec, false, &e) == 0, "readers: an unknown field is ignored");
	json_object_del(rec, "colour");
	json_object_set_new(json_object_get(rec, "config"), "cpus", json_string("2"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "field 'config.cpus': must be an integer"),
	      "nested fields are typed");
	json_object_set_new(json_object_get(rec, "config"), "cpus", json_integer(0));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "config.cpus' is 0"), "ranges checked");
	json_object_set_new(json_object_get(rec, "config"), "cpus", json_integer(2));
	json_object_set_new(rec, "disk_dir", json_string("relative/dir"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "not an absolute path"), "paths are absolute");
	json_object_set_new(rec, "disk_dir", json_string("/d\x1b[2J"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "line of text"), "no control characters");
	json_object_set_new(rec, "disk_dir", json_string("/d"));
	json_object_set_new(rec, "name", json_string("../x"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "field 'name'"), "names are checked");
	json_object_set_new(rec, "name", json_string("alpha"));
	json_object_set_new(rec, "created", json_string("yesterday"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "RFC 3339"), "created is a time");
	json_object_set_new(rec, "created", json_string("2026-12-01T21:00:00.25Z"));
	CHECK(state_validate(rec, true, &e) == 0, "fractional seconds are fine");
	json_object_set_new(rec, "process_type", json_string("pod"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "process_type"), "types are an enum");
	json_object_set_new(rec, "process_type", json_string("serve"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "does not belong"),
	      "a serve record has no VMM or config");
	json_object_set_new(rec, "process_type", json_string("clone"));
	CHECK(state_validate(rec, true, &e) < 0 && strstr(e.msg, "field 'snapshot' is missing"),
	      "a running clone names its snapshot");
	json_object_set_new(rec, "snapshot", json_string("base"));
	json_object_set_new(rec, "serve_pid", json_integer(1));
	CHECK(state_validate(rec, true, &e) == 0, "a complete clone is valid");
	json_object_set_new(rec, "version", json_integer(2));
	CHECK(state_validate(rec, false, &e) < 0 && strstr(e.msg, "version 2"), "another version is refused");
	json_decref(rec);
}

struct scan_ctx {
	int n;
	char seen[4096];
};

static void bad_cb(const char *id, const struct fc_err *why, void *arg)
{
	char *seen = ((struct scan_ctx *)arg)->seen;
	size_t n = strlen(seen);

	snprintf(seen + n, sizeof(((struct scan_ctx *)arg)->seen) - n, "%s=%s\n", id, why->msg);
}

static int count_cb(json_t *rec, void *arg)
{
	(void)rec;
	((struct scan_ctx *)arg)->n++;
	return 0;
}

static void test_save_load(void)
{
	struct scan_ctx c = { 0, "" };
	struct fc_err e;
	char *path, *big;
	json_t *rec, *back;

	rec = state_new("vm-b1", "bravo", "vm", "starting");
	CHECK(state_save(rec, &e) == 0, "a valid record is saved");
	back = state_load("vm-b1", &e);
	CHECK(back && !strcmp(json_str(back, "name"), "bravo"), "and loaded");
	json_decref(back);
	path = fc_path("state/vm-b1.pid");
	big = read_file_max(path, 64, NULL, &e);
	CHECK(big && atoi(big) == getpid(), "the pid file holds the owner's pid");
	free(big);
	free(path);

	json_object_set_new(rec, "pid", json_integer(1));
	CHECK(state_save(rec, &e) < 0 && e.errnum == EPERM && strstr(e.msg, "only the owner"),
	      "a record of another pid is not ours to write");
	json_object_set_new(rec, "pid", json_integer(getpid()));
	json_object_set_new(rec, "status", json_string("running"));
	CHECK(state_save(rec, &e) < 0 && strstr(e.msg, "refusing to save state record 'vm-b1'"),
	      "an incomplete running record is refused");
	back = state_load("vm-b1", &e);
	CHECK(back && !strcmp(json_str(back, "status"), "starting"), "the old record is untouched");
	json_decref(back);
	json_decref(rec);

	/* files a reader must skip, each reported once */
	path = fc_path("state/vm-c1.json");
	write_text(path, "{\"version\": 1, \"id\": ");
	free(path);
	path = fc_path("state/vm-c2.json");
	write_text(path, "{\"version\":1,\"id\":\"vm-zz\",\"name\":\"x\",\"process_type\":\"vm\","
			 "\"pid\":1,\"pid_start\":1,\"status\":\"starting\",\"created\":\"2026-12-01T00:00:00Z\"}");
	free(path);
	path = fc_path("state/vm-c3.json");
	big = xmalloc(STATE_MAX_SIZE + 10);
	memset(big, ' ', STATE_MAX_SIZE + 9);
	big[0] = '{';
	big[STATE_MAX_SIZE + 8] = '}';
	big[STATE_MAX_SIZE + 9] = '\0';
	write_text(path, big);
	free(big);
	free(path);
	path = fc_path("state/vm-c4.json");
	CHECK(symlink("vm-b1.json", path) == 0, "symlink planted");
	free(path);
	CHECK(state_scan(count_cb, bad_cb, &c, &e) == 0, "scan succeeds");
	CHECK(c.n == 1, "only the valid record is handed out");
	CHECK(strstr(c.seen, "vm-c1=") && strstr(c.seen, "invalid JSON"), "malformed JSON reported");
	CHECK(strstr(c.seen, "vm-c2=") && strstr(c.seen, "foreign"), "a foreign id reported");
	CHECK(strstr(c.seen, "vm-c3=") && strstr(c.seen, "larger than"), "an oversized file reported");
	CHECK(strstr(c.seen, "vm-c4=") && strstr(c.seen, "symbolic link"), "a symlink reported");
	if (check_failures)
		printf("# seen: %s\n", c.seen);
	for (int i = 1; i <= 4; i++) {
		char id[16];

		snprintf(id, sizeof(id), "vm-c%d", i);
		state_remove(id);
	}
	state_remove("vm-b1");
}

static void test_liveness(void)
{
	uint64_t start = 0;
	pid_t child;
	int st;

	proc_start_time(getpid(), &start, NULL);
	CHECK(state_pid_live(getpid(), start), "we are live");
	CHECK(!state_pid_live(getpid(), start + 1), "another start time is not us");
	child = fork();
	if (child == 0)
		_exit(0);
	/* not reaped yet: a zombie, which proc_alive still sees */
	for (int i = 0; i < 200; i++) {
		char path[64], buf[512];
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
		f = fopen(path, "r");
		if (f && fgets(buf, sizeof(buf), f) && strstr(buf, ") Z")) {
			fclose(f);
			break;
		}
		if (f)
			fclose(f);
		usleep(10000);
	}
	CHECK(proc_alive(child, 0), "a zombie still has a /proc entry");
	CHECK(!state_pid_live(child, 0), "but it is not live");
	waitpid(child, &st, 0);
}

/* A child that owns a record: writes @status1, after @ms1 does @then
 * ('r': becomes running, 'x': removes its record, 'd': dies leaving it),
 * then lives @linger_ms more. */
static pid_t owner(const char *id, const char *name, const char *status1, int ms1, char then,
		   int linger_ms)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct fc_err e;
		json_t *rec = full_record(id, name, status1);

		if (state_save(rec, &e) < 0)
			_exit(3);
		usleep(ms1 * 1000);
		if (then == 'r') {
			json_object_set_new(rec, "status", json_string("running"));
			if (state_save(rec, &e) < 0)
				_exit(4);
		} else if (then == 'x') {
			state_remove(id);
		} else if (then == 'd') {
			_exit(0);
		}
		usleep(linger_ms * 1000);
		_exit(0);
	}
	return pid;
}

static void test_wait(void)
{
	struct fc_err e;
	json_t *rec = NULL;
	uint64_t t0;
	pid_t p;
	int st;

	t0 = now_ms();
	CHECK(state_wait("nobody", "running", 0, 0, 0, NULL, &e) < 0 && e.errnum == ETIMEDOUT,
	      "timeout 0 looks once");
	CHECK(strstr(e.msg, "no VM named 'nobody' appeared within 0 s") != NULL, "and says so");
	CHECK(state_wait("nobody", "running", 300, 0, 0, NULL, &e) < 0 && e.errnum == ETIMEDOUT &&
	      now_ms() - t0 < 5000, "a bounded wait ends");
	CHECK(state_wait("x", "sleeping", 100, 0, 0, NULL, &e) < 0 && e.errnum == EINVAL,
	      "an unknown status is refused");

	p = owner("vm-w1", "w1", "starting", 300, 'r', 3000);
	t0 = now_ms();
	CHECK(state_wait("w1", "running", 20000, p, 0, &rec, &e) == 0, "waits until running");
	CHECK(now_ms() - t0 < 2500, "woken promptly (inotify)");
	CHECK(rec && !strcmp(json_str(rec, "status"), "running"), "returns the record");
	json_decref(rec);
	CHECK(state_wait("vm-w1", "starting", 1000, 0, 0, NULL, &e) < 0 && e.errnum == EINVAL &&
	      strstr(e.msg, "already 'running'"), "a status it moved past fails at once");
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	state_remove("vm-w1");

	p = owner("vm-w2", "w2", "starting", 300, 'd', 0);
	t0 = now_ms();
	CHECK(state_wait("w2", "running", 20000, p, 0, NULL, &e) < 0 && e.errnum == ESRCH,
	      "an owner that dies fails the wait");
	CHECK(now_ms() - t0 < 3000, "at once, not at the timeout");
	CHECK(strstr(e.msg, "(pid ") != NULL, "naming the owner");
	CHECK(state_wait("vm-w2", "running", 20000, 0, 0, NULL, &e) < 0 && e.errnum == ESRCH,
	      "a dead record found by id fails at once too");
	waitpid(p, &st, 0);
	CHECK(state_wait("w2", "running", 300, 0, 0, NULL, &e) < 0 && e.errnum == ETIMEDOUT,
	      "by name alone a dead record may be an older VM's: waited for a new one");
	state_remove("vm-w2");

	p = owner("vm-w3", "w3", "starting", 500, 'x', 5000);
	t0 = now_ms();
	CHECK(state_wait("w3", "running", 20000, 0, 0, NULL, &e) < 0 && e.errnum == ENOENT &&
	      strstr(e.msg, "its record was removed"), "a removed record fails the wait");
	CHECK(now_ms() - t0 < 3500, "at once");
	kill(p, SIGKILL);
	waitpid(p, &st, 0);

	p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, &st, 0);
	t0 = now_ms();
	CHECK(state_wait("w4", "running", 20000, p, 0, NULL, &e) < 0 && e.errnum == ESRCH &&
	      strstr(e.msg, "before it made a record"), "an owner dead before any record fails");
	CHECK(now_ms() - t0 < 1000, "at once");
}

static void test_root(void)
{
	char other[] = "/tmp/fcvm-test-state-plain-XXXXXX";
	char *missing;
	struct fc_err e;
	json_t *rec;
	struct stat st;

	CHECK(mkdtemp(other) != NULL, "plain dir");
	missing = xasprintf("%s/no/such", other);
	setenv("FCVM_ROOT", missing, 1);
	CHECK(fc_root_check(&e) < 0 && e.errnum == ENOENT && strstr(e.msg, "does not exist"),
	      "a missing root is refused");
	CHECK(fc_root_init(&e) < 0 && stat(missing, &st) < 0, "and not created");
	{
		char *parent = xasprintf("%s/no", other);

		CHECK(stat(parent, &st) < 0, "nor its parents");
		free(parent);
	}
	setenv("FCVM_ROOT", other, 1);
	{
		char *want = xasprintf("data root '%s' is not prepared: run 'fc-setup storage' "
				       "(or set FCVM_ROOT)", other);

		if (!CHECK(fc_root_check(&e) < 0 && e.errnum == ENOENT && !strcmp(e.msg, want),
			   "an unprepared root is refused, saying what to do"))
			printf("# got: %s (errno %d)\n", e.msg, e.errnum);
		free(want);
	}
	CHECK(state_lock(&e) < 0, "no claim in it");
	rec = state_new("vm-r1", "r1", "vm", "starting");
	CHECK(state_save(rec, &e) < 0 && strstr(e.msg, "not prepared"), "no record written into it");
	json_decref(rec);
	CHECK(rmdir(other) == 0, "and it stayed empty");
	free(missing);
	setenv("FCVM_ROOT", root, 1);
}

/* In a child with its own mount namespace: a tiny tmpfs, filled up. */
static void test_full(void)
{
	pid_t p;
	int st;

	if (geteuid() != 0) {
		printf("ok - full root: skipped (needs root for a private tmpfs)\n");
		return;
	}
	int before = check_failures;

	fflush(stdout);
	p = fork();
	if (p == 0) {
		char dir[] = "/tmp/fcvm-test-state-full-XXXXXX";
		struct fc_err e;
		char *fill, *want;
		json_t *rec;
		int fd;
		char block[4096] = { 0 };

		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    !mkdtemp(dir) || mount("tmpfs", dir, "tmpfs", 0, "size=256k") < 0) {
			printf("ok - full root: skipped (%s)\n", strerror(errno));
			_exit(0);
		}
		setenv("FCVM_ROOT", dir, 1);
		CHECK(fc_root_mark(&e) == 0 && fc_root_init(&e) == 0, "tiny root prepared");
		fill = xasprintf("%s/fill", dir);
		fd = open(fill, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		while (fd >= 0 && write(fd, block, sizeof(block)) > 0)
			;
		CHECK(errno == ENOSPC, "the root is full");
		rec = state_new("vm-f1", "f1", "vm", "starting");
		want = xasprintf("data root '%s' is full (ENOSPC writing state/vm-f1.json): "
				 "free space or move FCVM_ROOT", dir);
		CHECK(state_save(rec, &e) < 0 && e.errnum == ENOSPC, "saving fails with ENOSPC");
		CHECK(!strcmp(e.msg, want), "and says the data root is full, and where");
		if (strcmp(e.msg, want))
			printf("# got: %s\n", e.msg);
		umount2(dir, MNT_DETACH);
		rmdir(dir);
		fflush(stdout);
		_exit(check_failures > before ? 1 : 0);
	}
	waitpid(p, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "full-root checks (in a child) passed");
}

int main(void)
{
	struct fc_err e;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!mkdtemp(root))
		return 1;
	setenv("FCVM_ROOT", root, 1);
	CHECK(fc_root_mark(&e) == 0 && fc_root_init(&e) == 0, "root prepared");
	test_schema();
	test_save_load();
	test_liveness();
	test_wait();
	test_root();
	test_full();
	{
		char *cmd = xasprintf("rm -rf '%s'", root);

		CHECK(system(cmd) == 0, "cleanup");
		free(cmd);
	}
	return check_done();
}
