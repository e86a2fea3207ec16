/* common.c - see setup.h */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "paths.h"
#include "proc.h"
#include "setup.h"
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

int lock_build(const char *name, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("locks");
	_cleanup_free_ char *p = fc_path("locks/%s.lock", name);
	_cleanup_close_ int fd = -1;

	if (mkdir_p(dir, 0755, e) < 0)
		return -1;
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return fc_err_set(e, errno, "open lock '%s'", p);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return fc_err_set(e, errno, "lock '%s'", p);
		log_info("another fc-setup is building %s; waiting for it", name);
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR || check_interrupted(e) < 0)
				return errno == EINTR ? -1 : fc_err_set(e, errno, "lock '%s'", p);
		}
	}
	return steal_fd(&fd);
}

int point_default(const char *dir, const char *target, struct fc_err *e)
{
	_cleanup_free_ char *tmp = xasprintf("%s/.default.%d", dir, (int)getpid());
	_cleanup_free_ char *dst = xasprintf("%s/default", dir);

	unlink(tmp);
	if (symlink(target, tmp) < 0)
		return fc_err_set(e, errno, "create symlink '%s'", tmp);
	if (rename(tmp, dst) < 0) {
		int err = errno;

		unlink(tmp);
		return fc_err_set(e, err, "replace '%s'", dst);
	}
	return 0;
}

int publish_build(const char *subdir, const char *what, const char *key16, build_fn build,
		  void *arg, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("%s", subdir);
	_cleanup_free_ char *final = fc_path("%s/%s", subdir, key16);
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int lock = -1;
	struct stat st;

	if (stat(final, &st) < 0) {
		lock = lock_build(what, e);
		if (lock < 0)
			return -1;
	}
	/* again: whoever held the lock may have just built it */
	if (stat(final, &st) == 0) {
		log_info("%s %s is up to date", what, key16);
	} else {
		uint64_t t0 = now_ms();

		tmp = fc_path("%s/.tmp-%s-%d", subdir, key16, (int)getpid());
		if (mkdir(tmp, 0755) < 0)
			return fc_err_set(e, errno, "create '%s'", tmp);
		tmp_register(tmp);
		if (build(tmp, arg, e) < 0 || check_interrupted(e) < 0)
			return -1;
		if (rename(tmp, final) < 0)
			return fc_err_set(e, errno, "rename '%s' to '%s'", tmp, final);
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
