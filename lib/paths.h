/* paths.h - the data root layout (see fcvm(7) in man/fcvm.1):
 *   $FCVM_ROOT (default /mnt/fcvm-btrfs)/{kernels,rootfs,images,vm-disks,
 *   snapshots,state,run,locks}
 * plus the marker file .fcvm-root that 'fc-setup storage' leaves in a root
 * it prepared. Names that become path components are validated here so no
 * caller can be steered outside the root.
 */
#ifndef FC_PATHS_H
#define FC_PATHS_H

#include <stdbool.h>

#include "err.h"

#define FC_DEFAULT_ROOT "/mnt/fcvm-btrfs"
/* The marker of a prepared data root and its format version. */
#define FC_ROOT_MARKER ".fcvm-root"
#define FC_ROOT_VERSION 1

/* The data root: $FCVM_ROOT if set and non-empty, else the default. */
const char *fc_root(void);

/* Newly allocated "$root/<formatted>" (caller frees). */
char *fc_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A VM name or id usable as a single path component: 1-63 chars of
 * [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool fc_valid_name(const char *name);

/* Is the data root one that 'fc-setup storage' prepared? 0 when it is a
 * directory holding FC_ROOT_MARKER of a version we understand; else -1 with
 * @e: "data root '/x' is not prepared: run 'fc-setup storage' (or set
 * FCVM_ROOT)" (errnum ENOENT when the root or marker is missing). Every tool
 * that writes under the root calls this before it writes anything. */
int fc_root_check(struct fc_err *e);

/* Mark the (existing) data root as prepared: write FC_ROOT_MARKER
 * atomically. Only 'fc-setup storage' (and test set-up) call this. */
int fc_root_mark(struct fc_err *e);

/* Create the standard subdirectories of the root. The root itself must
 * already exist: neither it nor its parents are created (a mistyped
 * FCVM_ROOT is an error, not a new directory tree). 0 or -1 with @e. */
int fc_root_init(struct fc_err *e);

/* Fill @e for a write under the root that failed for lack of space and
 * return -1: "data root '/x' is full (ENOSPC writing state/ID.json): free
 * space or move FCVM_ROOT" (@path is shown relative to the root when it is
 * below it; errnum stays ENOSPC). */
int fc_err_enospc(struct fc_err *e, const char *path);

/* True when @errnum means "no space" (ENOSPC, EDQUOT). */
bool fc_errno_full(int errnum);

/* Remove @path, a file or a whole tree (what a killed build or VM left
 * under the root): first unmount everything mounted at or below it
 * (deepest first, MNT_DETACH), then remove without following symlinks or
 * crossing into other file systems. Missing is fine. 0 or -1 with @e. */
int fc_rm_tree(const char *path, struct fc_err *e);

/* SIGKILL every process (not us) whose working directory, root or an open
 * file is at or below @path, and wait (at most 2 s) until none is left:
 * what a SIGKILLed builder's grandchildren (tar under dpkg-deb, say) would
 * otherwise go on writing into a temporary being removed. Only for stale
 * temporaries whose owner is known to be gone. Returns how many it killed,
 * or -1 with @e. */
int fc_kill_users(const char *path, struct fc_err *e);

#endif
