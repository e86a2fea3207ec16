/* paths.c - see paths.h */
#include <errno.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "paths.h"
#include "util.h"

#define MARKER_MAX 256

const char *fc_root(void)
{
	const char *r = getenv("FCVM_ROOT");

	return r && *r ? r : FC_DEFAULT_ROOT;
}

char *fc_path(const char *fmt, ...)
{
	_cleanup_free_ char *rel = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		rel = NULL;
	va_end(ap);
	if (!rel)
		return xstrdup("");	/* unreachable in practice: xasprintf below aborts on OOM */
	return xasprintf("%s/%s", fc_root(), rel);
}

bool fc_valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || name[0] == '.' || name[0] == '-')
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_.-") == n;
}

#define NOT_PREPARED "run 'fc-setup storage' (or set FCVM_ROOT)"

int fc_root_check(struct fc_err *e)
{
	_cleanup_free_ char *marker = fc_path(FC_ROOT_MARKER);
	_cleanup_free_ char *text = NULL;
	struct fc_err why;
	struct stat st;
	unsigned version;
	char extra;

	if (stat(fc_root(), &st) < 0) {
		if (errno != ENOENT)
			return fc_err_set(e, errno, "data root '%s'", fc_root());
		return fc_err_say(e, ENOENT, "data root '%s' does not exist: " NOT_PREPARED, fc_root());
	}
	if (!S_ISDIR(st.st_mode))
		return fc_err_say(e, ENOTDIR, "data root '%s' is not a directory: " NOT_PREPARED,
				  fc_root());
	text = read_file_max(marker, MARKER_MAX, NULL, &why);
	if (!text) {
		if (why.errnum == ENOENT)
			return fc_err_say(e, ENOENT, "data root '%s' is not prepared: " NOT_PREPARED,
					  fc_root());
		return fc_err_set(e, why.errnum, "data root '%s': %s", fc_root(), why.msg);
	}
	if (sscanf(text, "fcvm-root %u%c", &version, &extra) != 2 || extra != '\n' || version == 0)
		return fc_err_say(e, EINVAL, "data root '%s': marker '%s' is damaged: " NOT_PREPARED,
				  fc_root(), marker);
	if (version > FC_ROOT_VERSION)
		return fc_err_say(e, EINVAL,
				  "data root '%s' has format %u, newer than this fcvm's %d: upgrade fcvm",
				  fc_root(), version, FC_ROOT_VERSION);
	return 0;
}

int fc_root_mark(struct fc_err *e)
{
	_cleanup_free_ char *marker = fc_path(FC_ROOT_MARKER);
	_cleanup_free_ char *text = xasprintf("fcvm-root %d\n", FC_ROOT_VERSION);

	if (fs_write_atomic(marker, text, strlen(text), 0644, e) < 0) {
		if (fc_errno_full(e->errnum))
			return fc_err_enospc(e, marker);
		return fc_err_wrap(e, "mark data root '%s'", fc_root());
	}
	return 0;
}

int fc_root_init(struct fc_err *e)
{
	static const char *const dirs[] = { "kernels", "rootfs", "images", "vm-disks",
					    "snapshots", "state", "run", "locks" };
	struct stat st;
	size_t i;

	if (stat(fc_root(), &st) < 0) {
		if (errno != ENOENT)
			return fc_err_set(e, errno, "data root '%s'", fc_root());
		return fc_err_say(e, ENOENT, "data root '%s' does not exist: " NOT_PREPARED, fc_root());
	}
	if (!S_ISDIR(st.st_mode))
		return fc_err_say(e, ENOTDIR, "data root '%s' is not a directory: " NOT_PREPARED,
				  fc_root());
	for (i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = fc_path("%s", dirs[i]);

		if (mkdir(d, 0755) < 0 && errno != EEXIST) {
			if (fc_errno_full(errno))
				return fc_err_enospc(e, d);
			return fc_err_set(e, errno, "prepare data root '%s': create directory '%s'",
					  fc_root(), d);
		}
	}
	return 0;
}

bool fc_errno_full(int errnum)
{
	return errnum == ENOSPC || errnum == EDQUOT;
}

int fc_err_enospc(struct fc_err *e, const char *path)
{
	const char *root = fc_root();
	size_t n = strlen(root);
	const char *rel = path;

	while (n > 1 && root[n - 1] == '/')
		n--;
	if (!strncmp(path, root, n) && path[n] == '/')
		rel = path + n + 1;
	return fc_err_say(e, ENOSPC, "data root '%s' is full (ENOSPC writing %s): free space or move FCVM_ROOT",
			  root, rel);
}

/* Mount points at or below @path, from /proc/self/mountinfo, deepest first. */
static int umount_below(const char *path, struct fc_err *e)
{
	size_t plen = strlen(path);

	for (int pass = 0; pass < 64; pass++) {
		_cleanup_free_ char *info = read_file_max("/proc/self/mountinfo", 4 << 20, NULL, e);
		_cleanup_free_ char *best = NULL;
		char *line, *save = NULL;
		size_t bestlen = 0;

		if (!info)
			return -1;
		for (line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char mp[4096];

			/* id parent maj:min root mountpoint ... (octal escapes ignored: our paths have none) */
			if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
				continue;
			if (strncmp(mp, path, plen) == 0 && (mp[plen] == '/' || mp[plen] == '\0') &&
			    strlen(mp) > bestlen) {
				free(best);
				best = xstrdup(mp);
				bestlen = strlen(mp);
			}
		}
		if (!best)
			return 0;
		if (umount2(best, MNT_DETACH) < 0)
			return fc_err_set(e, errno, "unmount '%s'", best);
	}
	return fc_err_set(e, 0, "too many mounts below '%s'", path);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(p) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(p) < 0 && errno != ENOENT ? -1 : 0;
}

int fc_rm_tree(const char *path, struct fc_err *e)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : fc_err_set(e, errno, "stat '%s'", path);
	if (umount_below(path, e) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 && errno != ENOENT ? fc_err_set(e, errno, "remove '%s'", path) : 0;
	if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return fc_err_set(e, errno, "remove '%s'", path);
	return 0;
}

/* Is the link /proc/@pid/@what at or below @dir (@len bytes)? */
static bool link_below(const char *link, const char *dir, size_t len)
{
	char buf[PATH_MAX];
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);

	if (n <= 0)
		return false;
	buf[n] = '\0';
	return !strncmp(buf, dir, len) && (buf[len] == '/' || buf[len] == '\0');
}

static bool uses_path(pid_t pid, const char *dir, size_t len)
{
	char p[64];
	DIR *d;
	struct dirent *de;
	bool hit = false;

	snprintf(p, sizeof(p), "/proc/%d/cwd", (int)pid);
	if (link_below(p, dir, len))
		return true;
	snprintf(p, sizeof(p), "/proc/%d/root", (int)pid);
	if (link_below(p, dir, len))
		return true;
	snprintf(p, sizeof(p), "/proc/%d/fd", (int)pid);
	d = opendir(p);
	if (!d)
		return false;
	while (!hit && (de = readdir(d))) {
		char fd[320];

		if (de->d_name[0] == '.')
			continue;
		snprintf(fd, sizeof(fd), "/proc/%d/fd/%s", (int)pid, de->d_name);
		hit = link_below(fd, dir, len);
	}
	closedir(d);
	return hit;
}

int fc_kill_users(const char *path, struct fc_err *e)
{
	char real[PATH_MAX];
	int killed = 0;

	if (!realpath(path, real))
		return errno == ENOENT ? 0 : fc_err_set(e, errno, "resolve '%s'", path);
	for (int round = 0; round < 40; round++) {
		DIR *d = opendir("/proc");
		struct dirent *de;
		int found = 0;
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (!d)
			return fc_err_set(e, errno, "read /proc");
		while ((de = readdir(d))) {
			char *end;
			long pid = strtol(de->d_name, &end, 10);

			if (*end || pid <= 0 || pid == getpid() || !uses_path(pid, real, strlen(real)))
				continue;
			found++;
			if (kill((pid_t)pid, SIGKILL) == 0 && round == 0)
				killed++;
		}
		closedir(d);
		if (!found)
			return killed;
		nanosleep(&ts, NULL);
	}
	return fc_err_set(e, EBUSY, "processes still use '%s'", path);
}
