/* paths.h - the data root layout (see fcvm(7) in man/fcvm.1):
 *   $FCVM_ROOT (default /mnt/fcvm-btrfs)/{kernels,rootfs,images,vm-disks,
 *   snapshots,state,run,locks}
 * Names that become path components are validated here so no caller can
 * be steered outside the root.
 */
#ifndef FC_PATHS_H
#define FC_PATHS_H

#include <stdbool.h>

#include "err.h"

#define FC_DEFAULT_ROOT "/mnt/fcvm-btrfs"

/* The data root: $FCVM_ROOT if set and non-empty, else the default. */
const char *fc_root(void);

/* Newly allocated "$root/<formatted>" (caller frees). */
char *fc_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A VM name or id usable as a single path component: 1-63 chars of
 * [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool fc_valid_name(const char *name);

/* Create the standard subdirectories of the root. */
int fc_root_init(struct fc_err *e);

#endif
