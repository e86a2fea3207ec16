/* fsutil.h - file-system helpers shared by the disk tools: exclusive
 * flock files, reflink (FICLONE) copies published atomically, and padding.
 */
#ifndef FC_FSUTIL_H
#define FC_FSUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Open (creating, mode 0644) @path and take an exclusive flock on it,
 * waiting as long as it takes. Returns the CLOEXEC fd that holds the lock
 * (close it to release) or -1 with @e filled. */
int fs_lock(const char *path, struct fc_err *e);

/* True for the errno values FICLONE uses to say "this file system (pair)
 * cannot share extents": EOPNOTSUPP, EXDEV, EINVAL, ENOTTY. */
bool fs_reflink_unsupported(int err);

/* Make @dst a copy-on-write clone of @src (ioctl FICLONE) with @mode.
 * The clone is made in a temporary file beside @dst, fsync'ed and renamed
 * into place, so @dst is either absent or complete. Without @replace an
 * existing @dst is an error (EEXIST). On failure nothing is left behind and
 * @e reads "reflink 'SRC' to 'DST': <strerror>" (errno kept in @e->errnum;
 * test it with fs_reflink_unsupported()). 0 or -1. */
int fs_reflink(const char *src, const char *dst, mode_t mode, bool replace,
	       struct fc_err *e);

/* Extend @fd with zeros to a multiple of @align bytes (block devices need
 * whole sectors). *@size receives the new size. 0 or -1. */
int fs_pad(int fd, uint64_t align, uint64_t *size, struct fc_err *e);

/* A fresh temporary file name "DIR/.NAME.tmp-PID-RANDOM" (caller frees);
 * the file is not created. */
char *fs_tmpname(const char *dir, const char *name);

#endif
