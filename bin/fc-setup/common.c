/* common.c - see setup.h */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "setup.h"
#include "state.h"
#include "util.h"

volatile sig_atomic_t g_interrupted;
static volatile pid_t g_child;

static char *tmps[16];

static void on_signal(int sig)
{
	pid_t c = g_child;

	g_interrupted = sig;
	if (c > 0)
		kill(-c, SIGTERM);
}

static void cleanup_tmps(void)
{
	struct fc_err e;

	for (size_t i = 0; i < ARRAY_SIZE(tmps); i++) {
		if (!tmps[i])
			continue;
		if (rm_tree(tmps[i], &e) < 0)
			log_warn("cleanup: %s", e.msg);
		else
			log_debug("removed temp dir '%s'", tmps[i]);
		free(tmps[i]);
		tmps[i] = NULL;
	}
}

void setup_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	/* no SA_RESTART: a blocking flock() or read() must return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	atexit(cleanup_tmps);
}

void tmp_register(const char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(tmps); i++)
		if (!tmps[i]) {
			tmps[i] = xstrdup(path);
			return;
		}
	abort();	/* more than 16 live temp dirs is a programming error */
}

void tmp_keep(const char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(tmps); i++)
		if (tmps[i] && strcmp(tmps[i], path) == 0) {
			free(tmps[i]);
			tmps[i] = NULL;
		}
}

noreturn void setup_fail(const struct fc_err *e)
{
	fc_err_exit(e, g_interrupted ? 130 : 1);
}

int check_interrupted(struct fc_err *e)
{
	if (g_interrupted)
		return fc_err_set(e, 0, "interrupted by signal %d", (int)g_interrupted);
	return 0;
}

int run_cmd(char *const argv[], const char *cwd, int fd_in, int fd_out, struct fc_err *e)
{
	struct spawn_opts o = { .fd_in = fd_in, .fd_out = fd_out < 0 ? 2 : fd_out, .fd_err = -1,
				.die_with_parent = true, .new_pgrp = true };
	_cleanup_close_ int null = -1, oldcwd = -1;
	int status, r;
	pid_t pid;

	if (check_interrupted(e) < 0)
		return -1;
	if (fd_in < 0) {
		null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		o.fd_in = null;
	}
	if (cwd) {
		oldcwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (oldcwd < 0 || chdir(cwd) < 0)
			return fc_err_set(e, errno, "enter '%s'", cwd);
	}
	pid = spawn(argv, &o, e);
	if (cwd && fchdir(oldcwd) < 0 && pid >= 0)
		log_warn("cannot return to the previous directory");
	if (pid < 0)
		return -1;
	g_child = pid;
	/* the child may not have called setpgid yet when a signal arrives */
	if (g_interrupted)
		kill(pid, SIGTERM);
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	g_child = 0;
	if (r < 0)
		return fc_err_set(e, errno, "wait for '%s'", argv[0]);
	if (check_interrupted(e) < 0)
		return -1;
	return exit_code_of(status);
}

int run_ok(char *const argv[], const char *cwd, int fd_in, int fd_out, struct fc_err *e)
{
	int r = run_cmd(argv, cwd, fd_in, fd_out, e);

	if (r < 0)
		return -1;
	if (r != 0)
		return fc_err_set(e, 0, "'%s' failed with exit code %d", argv[0], r);
	return 0;
}

int rm_tree(const char *path, struct fc_err *e)
{
	return fc_rm_tree(path, e);
}

/* The named lock @name, or the lock file @path when not NULL. */
static int lock_wait(const char *name, const char *path, int flags, struct fc_err *e)
{
#define TRY(f) (path ? fs_lock(path, (f), e) : fs_lock_named(name, (f), e))
	int fd = TRY(FS_LOCK_NB);

	if (fd >= 0 || e->errnum != EWOULDBLOCK || (flags & FS_LOCK_NB))
		return fd;
	log_info("another fc-setup is building %s; waiting for it", name);
	/* FS_LOCK_EINTR: our SIGINT/SIGTERM (no SA_RESTART) ends the wait */
	while ((fd = TRY(FS_LOCK_EINTR)) < 0 && e->errnum == EINTR)
		if (check_interrupted(e) < 0)
			return -1;
	return fd;
#undef TRY
}

int lock_build(const char *name, int flags, struct fc_err *e)
{
	return lock_wait(name, NULL, flags, e);
}

int lock_file(const char *path, const char *what, struct fc_err *e)
{
	return lock_wait(what, path, 0, e);
}

int point_default(const char *dir, const char *target, struct fc_err *e)
{
	_cleanup_free_ char *tmp = xasprintf("%s/.default.%d", dir, (int)getpid());
	_cleanup_free_ char *dst = xasprintf("%s/default", dir);

	unlink(tmp);
	if (symlink(target, tmp) < 0)
		return fc_err_set(e, errno, "create symlink '%s'", tmp);
	if (fs_publish(tmp, dst, true, e) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The pid at the end of a ".tmp-KEY-PID" or ".default.PID" name, or 0. */
static pid_t name_pid(const char *name, char sep)
{
	const char *p = strrchr(name, sep);
	char *end;
	long pid;

	if (!p)
		return 0;
	pid = strtol(p + 1, &end, 10);
	return *end || pid <= 0 || pid > INT_MAX ? 0 : (pid_t)pid;
}

void sweep_build_temps(const char *dir, const char *prefix)
{
	struct dirent **names = NULL;
	int n = scandir(dir, &names, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		bool stale = false;
		pid_t pid;

		if (!strncmp(name, prefix, strlen(prefix))) {
			/* we hold the build lock, which every builder holds while
			 * its .tmp- dir exists: whoever made this one is gone */
			pid = name_pid(name, '-');
			stale = pid != getpid();
		} else if (!strncmp(name, ".default.", 9)) {
			/* made without the lock: only a dead maker's is stale */
			pid = name_pid(name, '.');
			stale = pid > 0 && pid != getpid() && !state_pid_live(pid, 0);
		}
		if (stale) {
			_cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
			struct fc_err e;

			/* a SIGKILLed builder's grandchildren may still write there */
			if (fc_kill_users(p, &e) < 0 || fc_rm_tree(p, &e) < 0)
				log_warn("stale temporary: %s", e.msg);
			else
				log_info("removed stale temporary '%s' of an interrupted build", p);
		}
		free(names[i]);
	}
	free(names);
}

/* fsync the regular files directly in @dir: fs_publish() syncs the
 * directory's entries, the data is ours to sync. */
static int sync_files(const char *dir, struct fc_err *e)
{
	struct dirent **names = NULL;
	int n = scandir(dir, &names, NULL, alphasort), r = 0;

	if (n < 0)
		return fc_err_set(e, errno, "read '%s'", dir);
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, names[i]->d_name);
		_cleanup_close_ int fd = -1;
		struct stat st;

		if (r == 0 && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			if (fd < 0 || fsync(fd) < 0)
				r = fc_err_set(e, errno, "fsync '%s'", p);
		}
		free(names[i]);
	}
	free(names);
	return r;
}

int publish_build(const char *subdir, const char *what, const char *key16, build_fn build,
		  void *arg, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("%s", subdir);
	_cleanup_free_ char *final = fc_path("%s/%s", subdir, key16);
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int lock = -1;
	struct stat st;

	/* Up to date: no need to wait for another build, but when none runs
	 * (the lock is free) collect what interrupted ones left. */
	lock = lock_build(what, stat(final, &st) == 0 ? FS_LOCK_NB : 0, e);
	if (lock < 0 && (e->errnum != EWOULDBLOCK || stat(final, &st) < 0))
		return -1;
	if (lock >= 0)
		sweep_build_temps(dir, ".tmp-");
	/* again: whoever held the lock may have just built it */
	if (stat(final, &st) == 0) {
		log_info("%s %s is up to date", what, key16);
	} else {
		uint64_t t0 = now_ms();

		tmp = fc_path("%s/.tmp-%s-%d", subdir, key16, (int)getpid());
		if (mkdir(tmp, 0755) < 0)
			return fc_err_set(e, errno, "create '%s'", tmp);
		tmp_register(tmp);
		if (build(tmp, arg, e) < 0 || check_interrupted(e) < 0 || sync_files(tmp, e) < 0 ||
		    fs_publish(tmp, final, false, e) < 0)
			return fc_errno_full(e->errnum) ? fc_err_enospc(e, tmp) : -1;
		tmp_keep(tmp);
		log_info("%s %s built in %.1f s", what, key16, (double)(now_ms() - t0) / 1000);
	}
	if (point_default(dir, key16, e) < 0)
		return -1;
	printf("%s\n", final);
	return 0;
}

char *self_dir(void)
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	char *slash;

	if (n <= 0)
		return xstrdup(".");
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
	return xstrdup(buf);
}

const char *fc_cache(void)
{
	const char *c = getenv("FCVM_CACHE");

	return c && *c ? c : "/var/cache/fcvm";
}

void iso_now(char buf[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void key_add(struct sha256 *s, const char *name, const char *value)
{
	sha256_update(s, name, strlen(name));
	sha256_update(s, " ", 1);
	sha256_update(s, value, strlen(value));
	sha256_update(s, "\n", 1);
}

int sha256_file_hex(const char *path, char hex[SHA256_HEX_LEN + 1], struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "open '%s'", path);
	if (sha256_fd(fd, 0, (uint64_t)st.st_size, hex, e) < 0)
		return fc_err_wrap(e, "hash '%s'", path);
	return 0;
}

void sha256_final_hex(struct sha256 *s, char hex[SHA256_HEX_LEN + 1])
{
	uint8_t d[SHA256_LEN];

	sha256_final(s, d);
	sha256_hex(d, hex);
}
