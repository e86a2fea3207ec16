/* fsutil.c - see fsutil.h */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "paths.h"
#include "util.h"

int fs_lock(const char *path, int flags, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	int op = LOCK_EX | (flags & FS_LOCK_NB ? LOCK_NB : 0);

	if (fd < 0)
		return fc_err_set(e, errno, "open lock '%s'", path);
	while (flock(fd, op) < 0) {
		if (errno == EWOULDBLOCK && (flags & FS_LOCK_NB))
			return fc_err_set(e, errno, "'%s' is held by another process", path);
		if (errno != EINTR || (flags & FS_LOCK_EINTR))
			return fc_err_set(e, errno, "lock '%s'", path);
	}
	return steal_fd(&fd);
}

int fs_lock_named(const char *name, int flags, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("locks");
	_cleanup_free_ char *path = NULL;

	if (!fc_valid_name(name))
		return fc_err_set(e, EINVAL, "invalid lock name '%s'", name);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return fc_err_set(e, errno, "create '%s'", dir);
	path = fc_path("locks/%s.lock", name);
	return fs_lock(path, flags, e);
}

/* fsync the directory that holds @path, so a rename into it is durable. */
static int fsync_parent(const char *path, struct fc_err *e)
{
	_cleanup_free_ char *copy = xstrdup(path);
	const char *dir = dirname(copy);
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0)
		return fc_err_set(e, errno, "fsync directory '%s'", dir);
	return 0;
}

int fs_publish(const char *tmp, const char *final, bool replace, struct fc_err *e)
{
	_cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;

	/* A symbolic link has no data of its own to sync: the directory's
	 * fsync after the rename makes it durable. */
	if (fd < 0 && !(errno == ELOOP && lstat(tmp, &st) == 0 && S_ISLNK(st.st_mode)))
		return fc_err_set(e, errno, "publish '%s': open", tmp);
	if (fd >= 0 && fsync(fd) < 0)
		return fc_err_set(e, errno, "publish '%s': fsync", tmp);
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, replace ? 0 : RENAME_NOREPLACE) < 0)
		return fc_err_set(e, errno, "rename '%s' to '%s'", tmp, final);
	return fsync_parent(final, e);
}

int fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode,
		    struct fc_err *e)
{
	_cleanup_free_ char *d1 = xstrdup(path);
	_cleanup_free_ char *d2 = xstrdup(path);
	_cleanup_free_ char *tmp = fs_tmpname(dirname(d1), basename(d2));
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	int err;

	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", tmp);
	if (write_full(fd, buf, len) < 0 || fchmod(fd, mode) < 0) {
		err = errno;
		unlink(tmp);
		return fc_err_set(e, err, "write '%s'", path);
	}
	if (fs_publish(tmp, path, true, e) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

bool fs_reflink_unsupported(int err)
{
	return err == EOPNOTSUPP || err == EXDEV || err == EINVAL || err == ENOTTY;
}

char *fs_tmpname(const char *dir, const char *name)
{
	unsigned int r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (unsigned int)now_ms();
	return xasprintf("%s/.%s.tmp-%d-%08x", dir, name, (int)getpid(), r);
}

int fs_reflink(const char *src, const char *dst, mode_t mode, bool replace,
	       struct fc_err *e)
{
	_cleanup_free_ char *d1 = xstrdup(dst);
	_cleanup_free_ char *d2 = xstrdup(dst);
	_cleanup_free_ char *tmp = fs_tmpname(dirname(d1), basename(d2));
	_cleanup_close_ int in = -1, out = -1;
	int err;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fc_err_set(e, errno, "reflink '%s' to '%s': open source", src, dst);
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (out < 0)
		return fc_err_set(e, errno, "reflink '%s' to '%s': create '%s'", src, dst, tmp);
	if (ioctl(out, FICLONE, in) < 0 || fchmod(out, mode) < 0)
		goto fail;
	if (fs_publish(tmp, dst, replace, e) < 0) {
		unlink(tmp);
		return fc_err_wrap(e, "reflink '%s' to '%s'", src, dst);
	}
	return 0;
fail:
	err = errno;
	unlink(tmp);
	return fc_err_set(e, err, "reflink '%s' to '%s'", src, dst);
}

int fs_pad(int fd, uint64_t align, uint64_t *size, struct fc_err *e)
{
	struct stat st;
	uint64_t n;

	if (fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "stat");
	n = ((uint64_t)st.st_size + align - 1) / align * align;
	if (n != (uint64_t)st.st_size && ftruncate(fd, n) < 0)
		return fc_err_set(e, errno, "pad to %llu bytes", (unsigned long long)n);
	if (size)
		*size = n;
	return 0;
}
