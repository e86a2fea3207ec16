/* cpio.c - see cpio.h */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cpio.h"
#include "util.h"

void cpio_init(struct cpio *c, int fd)
{
	c->fd = fd;
	c->ino = 1;
	c->off = 0;
}

static int put(struct cpio *c, const void *buf, size_t len, struct fc_err *e)
{
	static const char zero[4];

	if (write_full(c->fd, buf, len) < 0)
		return fc_err_set(e, errno, "write initramfs");
	c->off += len;
	/* newc pads names and data to 4 bytes */
	if (c->off % 4) {
		size_t pad = 4 - c->off % 4;

		if (write_full(c->fd, zero, pad) < 0)
			return fc_err_set(e, errno, "write initramfs");
		c->off += pad;
	}
	return 0;
}

static int entry(struct cpio *c, const char *name, mode_t mode, const void *data, size_t len,
		 unsigned rmaj, unsigned rmin, struct fc_err *e)
{
	char hdr[111];
	size_t nlen = strlen(name) + 1;

	if (len > UINT32_MAX || nlen > 4096)
		return fc_err_set(e, 0, "initramfs entry '%s' too large", name);
	snprintf(hdr, sizeof(hdr),
		 "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		 strcmp(name, "TRAILER!!!") ? c->ino++ : 0, (unsigned)mode, 0u, 0u,
		 S_ISDIR(mode) ? 2u : 1u, 0u, (unsigned)len, 0u, 0u, rmaj, rmin,
		 (unsigned)nlen, 0u);
	/* the header (110 bytes) and name are padded together */
	if (write_full(c->fd, hdr, 110) < 0)
		return fc_err_set(e, errno, "write initramfs");
	c->off += 110;
	if (put(c, name, nlen, e) < 0)
		return -1;
	return len ? put(c, data, len, e) : 0;
}

int cpio_dir(struct cpio *c, const char *name, mode_t perm, struct fc_err *e)
{
	return entry(c, name, S_IFDIR | perm, NULL, 0, 0, 0, e);
}

int cpio_file(struct cpio *c, const char *name, mode_t perm, const void *data, size_t len,
	      struct fc_err *e)
{
	return entry(c, name, S_IFREG | perm, data, len, 0, 0, e);
}

int cpio_symlink(struct cpio *c, const char *name, const char *target, struct fc_err *e)
{
	return entry(c, name, S_IFLNK | 0777, target, strlen(target), 0, 0, e);
}

int cpio_chardev(struct cpio *c, const char *name, mode_t perm, unsigned maj, unsigned min,
		 struct fc_err *e)
{
	return entry(c, name, S_IFCHR | perm, NULL, 0, maj, min, e);
}

int cpio_finish(struct cpio *c, struct fc_err *e)
{
	return entry(c, "TRAILER!!!", 0, NULL, 0, 0, 0, e);
}
