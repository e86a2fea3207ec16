/* fsutil.h - file-system helpers shared by the disk tools: exclusive
 * flock files, reflink (FICLONE) copies published atomically, and padding.
 */
#ifndef FC_FSUTIL_H
#define FC_FSUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* fs_lock() flags. */
#define FS_LOCK_NB	1	/* do not wait: EWOULDBLOCK when another holds it */
#define FS_LOCK_EINTR	2	/* a signal while waiting ends the wait (EINTR) */

/* Open (creating, mode 0644, O_NOFOLLOW) @path and take an exclusive flock
 * on it; without FS_LOCK_NB it waits as long as it takes. Returns the
 * CLOEXEC fd that holds the lock (close it to release) or -1 with @e. */
int fs_lock(const char *path, int flags, struct fc_err *e);

/* fs_lock() on the named lock $FCVM_ROOT/locks/@name.lock (the directory
 * is created). @name must be a valid path component (fc_valid_name). */
int fs_lock_named(const char *name, int flags, struct fc_err *e);

/* The one way to publish: @tmp, a file or a directory made beside @final
 * in the same directory, becomes @final. @tmp itself is fsync'ed (for a
 * directory only its entries; files in it are their writer's to fsync; a
 * symbolic link needs none),
 * renamed (RENAME_NOREPLACE unless @replace: EEXIST then), and the parent
 * directory is fsync'ed so the rename survives a crash. On failure @tmp is
 * left in place for the caller to remove. 0 or -1 with @e. */
int fs_publish(const char *tmp, const char *final, bool replace, struct fc_err *e);

/* Write @len bytes as @path with @mode atomically: a temporary file in the
 * same directory, fsync, fs_publish (replacing). Readers see the old or the
 * new content, never a part. On failure nothing new is left. 0 or -1. */
int fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode,
		    struct fc_err *e);

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
