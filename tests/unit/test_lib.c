/* test_lib.c - unit tests for the lib core: errors, number parsing, names,
 * hybrid vsock replies, Unix socket listeners, atomic JSON writes, state
 * records. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fsutil.h"
#include "hvsock.h"
#include "json.h"
#include "paths.h"
#include "proc.h"
#include "sock.h"
#include "state.h"
#include "util.h"
#include "volspec.h"

#include "check.h"

static void test_err(void)
{
	struct fc_err e;
	char big[2000];

	CHECK(fc_err_set(&e, ENOENT, "open '%s'", "x") == -1, "fc_err_set returns -1");
	CHECK(!strcmp(e.msg, "open 'x': No such file or directory"), "strerror appended once");
	fc_err_wrap(&e, "load kernel");
	CHECK(!strcmp(e.msg, "load kernel: open 'x': No such file or directory"), "context prepended");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	fc_err_wrap(&e, "%s", big);
	CHECK(strlen(e.msg) == FC_ERR_MAX - 1, "oversized context truncated, still terminated");
}

static void test_parse(void)
{
	struct fc_err e;
	uint64_t v = 0;

	CHECK(parse_u64("42", 1, 100, "n", &v, &e) == 0 && v == 42, "parses in range");
	CHECK(parse_u64("0", 1, 100, "n", &v, &e) < 0, "below min rejected");
	CHECK(strstr(e.msg, "invalid n '0': must be a number from 1 to 100") != NULL, "message names range");
	CHECK(parse_u64("101", 1, 100, "n", &v, &e) < 0, "above max rejected");
	CHECK(parse_u64("-1", 0, 100, "n", &v, &e) < 0, "sign rejected");
	CHECK(parse_u64("12abc", 0, 100, "n", &v, &e) < 0, "trailing junk rejected");
	CHECK(parse_u64("", 0, 100, "n", &v, &e) < 0, "empty rejected");
	CHECK(parse_u64("99999999999999999999999", 0, UINT64_MAX, "n", &v, &e) < 0, "overflow rejected");
	CHECK(parse_u64(" 5", 0, 100, "n", &v, &e) < 0, "leading space rejected");
}

static void test_names(void)
{
	CHECK(fc_valid_name("web-1.a_b"), "ordinary name valid");
	CHECK(!fc_valid_name(""), "empty invalid");
	CHECK(!fc_valid_name(".."), "dot-dot invalid");
	CHECK(!fc_valid_name("a/b"), "slash invalid");
	CHECK(!fc_valid_name("-rf"), "leading dash invalid");
	CHECK(!fc_valid_name("0123456789012345678901234567890123456789012345678901234567890123"),
	      "64 characters invalid");
}

static void test_hvsock(void)
{
	uint32_t p = 0;

	CHECK(hvsock_parse_ok("OK 1073741824\n", 14, &p) == 0 && p == 1073741824u, "OK line parsed");
	CHECK(hvsock_parse_ok("OK \n", 4, &p) < 0, "missing port rejected");
	CHECK(hvsock_parse_ok("OK 12", 5, &p) < 0, "missing newline rejected");
	CHECK(hvsock_parse_ok("OK 99999999999\n", 15, &p) < 0, "port overflow rejected");
	CHECK(hvsock_parse_ok("NO 12\n", 6, &p) < 0, "other reply rejected");
	CHECK(hvsock_parse_ok("OK 1x\n", 6, &p) < 0, "junk rejected");
}

static void test_state(void)
{
	char dir[] = "/tmp/fcvm-test-lib-XXXXXX";
	struct fc_err e;
	json_t *rec, *back, *found;
	char *id;

	CHECK(mkdtemp(dir) != NULL, "temp root");
	setenv("FCVM_ROOT", dir, 1);
	CHECK(fc_root_mark(&e) == 0, "root marked as prepared");
	CHECK(fc_root_init(&e) == 0, "root initialised");
	id = state_new_id();
	CHECK(strlen(id) == 15 && !strncmp(id, "vm-", 3) && fc_valid_name(id), "id shape");
	rec = state_new(id, "alpha", "vm", "starting");
	CHECK(state_save(rec, &e) == 0, "record saved");
	CHECK(state_live(rec), "own record is live");
	back = state_load(id, &e);
	CHECK(back && !strcmp(json_str(back, "name"), "alpha"), "record reloaded");
	found = state_find("alpha", &e);
	CHECK(found != NULL, "found by name");
	json_decref(found);
	found = state_find(id, &e);
	CHECK(found != NULL, "found by id");
	json_decref(found);
	/* A record whose pid start time differs is a dead owner (pid reuse). */
	json_object_set_new(rec, "pid_start", json_integer(1));
	CHECK(state_save(rec, &e) == 0 && !state_live(rec), "other start time: not live");
	found = state_find("alpha", &e);
	CHECK(found == NULL && e.errnum == ENOENT, "stale record not found");
	CHECK(state_load("../etc", &e) == NULL && e.errnum == EINVAL, "id cannot escape the root");
	state_remove(id);
	CHECK(state_load(id, &e) == NULL && e.errnum == ENOENT, "record removed");
	json_decref(rec);
	json_decref(back);
	free(id);
	{
		char *cmd = xasprintf("rm -rf '%s'", dir);

		CHECK(system(cmd) == 0, "cleanup");
		free(cmd);
	}
}

static void test_json(void)
{
	char path[] = "/tmp/fcvm-test-json-XXXXXX";
	struct fc_err e;
	json_t *j = json_pack("{s:i}", "a", 1), *r;
	int fd = mkstemp(path);
	long long v = 0;

	close(fd);
	CHECK(json_write_atomic(path, j, &e) == 0, "atomic write");
	r = json_load_path(path, 1024, &e);
	CHECK(r && json_int(r, "a", 0, 10, &v, &e) == 0 && v == 1, "read back");
	CHECK(json_int(r, "b", 0, 10, &v, &e) == 1, "absent key reported as absent");
	CHECK(json_int(r, "a", 2, 10, &v, &e) < 0, "range enforced");
	json_decref(r);
	CHECK(json_load_path(path, 3, &e) == NULL && strstr(e.msg, "larger than 3 bytes"), "size bound");
	CHECK(json_parse("{\"a\":1,\"a\":2}", 13, &e) == NULL, "duplicate keys rejected");
	unlink(path);
	json_decref(j);
}

static void test_proc(void)
{
	char *argv[] = { "/nonexistent/prog", NULL };
	char *ok[] = { "true", NULL };
	struct fc_err e;
	int status;
	pid_t pid;

	CHECK(spawn(argv, NULL, &e) < 0 && e.errnum == ENOENT, "exec failure is an error, not a child exit");
	pid = spawn(ok, NULL, &e);
	CHECK(pid > 0 && wait_timeout(pid, 5000, &status) == 1 && exit_code_of(status) == 0, "spawn + wait");
	CHECK(proc_alive(getpid(), 0), "self alive");
	CHECK(!proc_alive(pid, 0), "reaped child not alive");
	{
		char *p = proc_find_tool("sh");

		CHECK(p && p[0] == '/', "finds sh on PATH");
		free(p);
	}
}

static void test_sock(void)
{
	char dir[] = "/tmp/fcvm-test-sock-XXXXXX";
	char *path, *file, *longp;
	struct stat st;
	struct fc_err e;
	int fd, fd2;

	CHECK(mkdtemp(dir) != NULL, "temp dir");
	path = xasprintf("%s/s", dir);
	file = xasprintf("%s/f", dir);
	longp = xasprintf("%s/%0200d", dir, 0);
	fd = sock_listen_unix(path, SOCK_NONBLOCK, 4, &e);
	CHECK(fd >= 0 && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode), "listens at the path");
	CHECK(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) && (fcntl(fd, F_GETFL) & O_NONBLOCK),
	      "CLOEXEC and non-blocking");
	fd2 = sock_listen_unix(path, 0, 4, &e);
	CHECK(fd2 >= 0 && !(fcntl(fd2, F_GETFL) & O_NONBLOCK), "a stale socket file is replaced");
	close(fd);
	close(fd2);
	close(open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	CHECK(sock_listen_unix(file, 0, 4, &e) < 0 && e.errnum == EEXIST &&
		      strstr(e.msg, "is not a socket") && lstat(file, &st) == 0 && S_ISREG(st.st_mode),
	      "a non-socket is refused and left alone");
	CHECK(sock_listen_unix(longp, 0, 4, &e) < 0 && e.errnum == ENAMETOOLONG,
	      "a path too long for sun_path is refused");
	unlink(path);
	unlink(file);
	CHECK(rmdir(dir) == 0, "nothing else left behind");
	free(path);
	free(file);
	free(longp);
}

/* fs_publish / fs_write_atomic / fs_lock: the one publish and lock. */
static void test_fsutil(void)
{
	char dir[] = "/tmp/fc-test-fs.XXXXXX";
	struct fc_err e;
	_cleanup_free_ char *f = NULL, *t = NULL, *d = NULL, *dt = NULL, *got = NULL;
	int l1, l2;

	CHECK(mkdtemp(dir) != NULL, "temp dir");
	f = xasprintf("%s/file", dir);
	CHECK(fs_write_atomic(f, "one\n", 4, 0600, &e) == 0, "atomic write creates");
	CHECK(fs_write_atomic(f, "two\n", 4, 0640, &e) == 0, "atomic write replaces");
	got = read_file_max(f, 100, NULL, &e);
	CHECK(got && !strcmp(got, "two\n"), "new content in place");
	{
		struct stat st;

		CHECK(stat(f, &st) == 0 && (st.st_mode & 0777) == 0640, "mode applied");
	}
	t = xasprintf("%s/tmp", dir);
	CHECK(fs_write_atomic(t, "x", 1, 0644, &e) == 0, "second file");
	CHECK(fs_publish(t, f, false, &e) < 0 && e.errnum == EEXIST, "no-replace publish refuses an existing file");
	CHECK(access(t, F_OK) == 0, "a refused publish leaves the temporary to its caller");
	d = xasprintf("%s/built", dir);
	dt = xasprintf("%s/.built.tmp", dir);
	CHECK(mkdir(dt, 0755) == 0, "build dir");
	CHECK(fs_publish(dt, d, false, &e) == 0 && access(d, F_OK) == 0, "a directory is published");
	CHECK(fs_write_atomic("/nonexistent-dir/x", "x", 1, 0644, &e) < 0 && e.errnum == ENOENT,
	      "a write into a missing directory fails with ENOENT");

	{
		_cleanup_free_ char *lk = xasprintf("%s/lock", dir);

		l1 = fs_lock(lk, 0, &e);
		CHECK(l1 >= 0, "lock taken");
		l2 = fs_lock(lk, FS_LOCK_NB, &e);
		CHECK(l2 < 0 && e.errnum == EWOULDBLOCK, "a held lock is refused without waiting");
		close(l1);
		l2 = fs_lock(lk, FS_LOCK_NB, &e);
		CHECK(l2 >= 0, "released lock can be taken");
		close(l2);
	}
	{
		_cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", dir);

		CHECK(system(cmd) == 0, "cleanup");
	}
}

static int give_up_now(void *arg, struct fc_err *e)
{
	int *calls = arg;

	(*calls)++;
	return fc_err_set(e, 0, "the owner died");
}

static void test_connect(void)
{
	struct fc_err e;
	char big[200];
	int calls = 0, fd;
	uint64_t t0 = now_ms();

	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	CHECK(sock_connect_unix(big, 1000, NULL, NULL, &e) < 0 && e.errnum == ENAMETOOLONG,
	      "a path longer than sun_path is refused up front");
	fd = sock_connect_unix("/tmp/fc-test-no-such.sock", 300, NULL, NULL, &e);
	CHECK(fd < 0 && e.errnum == ETIMEDOUT, "nothing listening: ETIMEDOUT at the bound");
	CHECK(now_ms() - t0 < 5000, "the bound is kept");
	fd = sock_connect_unix("/tmp/fc-test-no-such.sock", -1, give_up_now, &calls, &e);
	CHECK(fd < 0 && calls == 1 && strstr(e.msg, "the owner died"), "give_up ends an unbounded wait");
	{
		char path[] = "/tmp/fc-test-conn.XXXXXX";
		_cleanup_free_ char *sp = NULL;
		int l;

		CHECK(mkdtemp(path) != NULL, "temp dir");
		sp = xasprintf("%s/s", path);
		l = sock_listen_unix(sp, 0, 4, &e);
		fd = sock_connect_unix(sp, 1000, NULL, NULL, &e);
		CHECK(l >= 0 && fd >= 0, "connects to a listener");
		close(fd);
		close(l);
		unlink(sp);
		rmdir(path);
	}
	calls = 0;
	fd = hvsock_connect("/tmp/fc-test-no-such.sock", 1024, -1, give_up_now, &calls, &e);
	CHECK(fd < 0 && calls == 1, "hvsock_connect honours give_up");
}

static void test_capture(void)
{
	struct fc_err e;
	char *ok_argv[] = { "sh", "-c", "echo out; echo err >&2", NULL };
	char *bad_argv[] = { "sh", "-c", "echo first >&2; echo 'last words' >&2; exit 3", NULL };
	char *slow_argv[] = { "sleep", "10", NULL };
	char *none_argv[] = { "/nonexistent/tool", NULL };
	_cleanup_free_ char *out = NULL;
	uint64_t t0;

	CHECK(run_capture(ok_argv, &out, 100, 5000, &e) == 0 && out && !strcmp(out, "out\n"),
	      "stdout captured, stderr not mixed in");
	CHECK(run_capture(bad_argv, NULL, 0, 5000, &e) == 3 && strstr(e.msg, "exited with 3: last words"),
	      "non-zero exit code returned with stderr's last line");
	t0 = now_ms();
	CHECK(run_capture(slow_argv, NULL, 0, 200, &e) < 0 && strstr(e.msg, "did not finish"),
	      "a child past its bound is killed and reported");
	CHECK(now_ms() - t0 < 5000, "the bound is kept");
	CHECK(run_capture(none_argv, NULL, 0, 1000, &e) < 0, "a missing program is an error, not an exit code");
}

/* config.volumes as fc-boot and fc-clone take them (volspec.h). */
static void test_volspec(void)
{
	static const struct {
		const char *json;
		const char *err;	/* NULL: valid; else in the message */
	} cases[] = {
		{ "[]", NULL },
		{ "[{\"port\":5100,\"guest\":\"/data\",\"host\":\"/srv/d\",\"read_only\":false}]", NULL },
		{ "{}", "array" },
		{ "[1]", "not an object" },
		{ "[{\"port\":80,\"guest\":\"/d\",\"host\":\"/h\",\"read_only\":true}]", "port" },
		{ "[{\"port\":5100,\"guest\":\"d\",\"host\":\"/h\",\"read_only\":true}]", "guest" },
		{ "[{\"port\":5100,\"guest\":\"/d/../e\",\"host\":\"/h\",\"read_only\":true}]", "guest" },
		{ "[{\"port\":5100,\"guest\":\"/d\",\"host\":\"/h/.\",\"read_only\":true}]", "host" },
		{ "[{\"port\":5100,\"guest\":\"/d\",\"host\":\"/h\\n\",\"read_only\":true}]", "host" },
		{ "[{\"port\":5100,\"guest\":\"/d\",\"host\":\"/h\",\"read_only\":1}]", "read_only" },
		{ "[{\"port\":5100,\"guest\":\"/d\",\"host\":\"/h\",\"read_only\":true,\"x\":1}]", "unknown field 'x'" },
		{ "[{\"port\":5100,\"guest\":\"/d\",\"host\":\"/h\",\"read_only\":true},"
		  "{\"port\":5100,\"guest\":\"/e\",\"host\":\"/h\",\"read_only\":true}]", "used twice" },
		{ "[{\"port\":5100,\"guest\":\"/d\",\"host\":\"/h\",\"read_only\":true},"
		  "{\"port\":5101,\"guest\":\"/d\",\"host\":\"/h\",\"read_only\":true}]", "used twice" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fc_err e = { 0 };
		json_t *j = json_loads(cases[i].json, 0, NULL);
		int rc = volspec_check(j, &e);
		char what[160];

		snprintf(what, sizeof(what), "volspec: %s %s", cases[i].json,
			 cases[i].err ? "refused" : "accepted");
		if (!CHECK(cases[i].err ? rc < 0 && strstr(e.msg, cases[i].err) : rc == 0, what))
			printf("#   rc %d, message '%s'\n", rc, e.msg);
		json_decref(j);
	}
}

int main(void)
{
	test_err();
	test_parse();
	test_names();
	test_hvsock();
	test_sock();
	test_json();
	test_state();
	test_proc();
	test_fsutil();
	test_connect();
	test_capture();
	test_volspec();
	return check_done();
}
