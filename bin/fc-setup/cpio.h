/* cpio.h - a minimal writer of "newc" cpio archives (the initramfs format
 * the kernel unpacks). Entries carry uid/gid 0 and mtime 0 so the same
 * inputs give a byte-identical archive.
 */
#ifndef FC_SETUP_CPIO_H
#define FC_SETUP_CPIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct cpio {
	int fd;		/* not owned */
	uint32_t ino;
	uint64_t off;
};

void cpio_init(struct cpio *c, int fd);
/* Add a directory, regular file (@data, @len), symlink (target) or char device. */
int cpio_dir(struct cpio *c, const char *name, mode_t perm, struct fc_err *e);
int cpio_file(struct cpio *c, const char *name, mode_t perm, const void *data, size_t len,
	      struct fc_err *e);
int cpio_symlink(struct cpio *c, const char *name, const char *target, struct fc_err *e);
int cpio_chardev(struct cpio *c, const char *name, mode_t perm, unsigned maj, unsigned min,
		 struct fc_err *e);
/* Write the TRAILER!!! entry. */
int cpio_finish(struct cpio *c, struct fc_err *e);

#endif
