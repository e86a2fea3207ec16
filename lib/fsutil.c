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
#include "util.h"

int fs_lock(const char *path, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		return fc_err_set(e, errno, "open lock '%s'", path);
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR)
			return fc_err_set(e, errno, "lock '%s'", path);
	}
	return steal_fd(&fd);
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
	if (ioctl(out, FICLONE, in) < 0 || fchmod(out, mode) < 0 || fsync(out) < 0)
		goto fail;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, replace ? 0 : RENAME_NOREPLACE) < 0)
		goto fail;
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
