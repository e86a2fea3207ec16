/* ownqemu.h - fcvm's own QEMU: the snapshot-capable qemu-system-x86_64
 * that "fc-setup qemu" builds (Debian's QEMU source plus the project's
 * vhost-user-vsock migration patch), chosen the same way by fc-qemu and
 * reported by fc-setup preflight.
 *
 * A build lives in $FCVM_CACHE/qemu/<key16>/{bin/qemu-system-x86_64,
 * manifest.json}; $FCVM_CACHE/qemu/default points at the newest one. A
 * binary is snapshot-capable when it is such a build: its manifest (in the
 * directory above its bin/) says "snapshot_capable": true.
 */
#ifndef FC_OWNQEMU_H
#define FC_OWNQEMU_H

#include <stdbool.h>

#include "err.h"

/* Relative to the cache dir: the newest complete build's binary. */
#define OWNQEMU_DEFAULT	"qemu/default/bin/qemu-system-x86_64"

/* The cache dir: $FCVM_CACHE, or /var/cache/fcvm. */
const char *ownqemu_cache(void);

/* The QEMU binary to run (caller frees): $FCVM_QEMU when set, else
 * $FCVM_CACHE/OWNQEMU_DEFAULT when it is executable, else
 * "qemu-system-x86_64" (stock QEMU on PATH). *@capable says whether that
 * binary is fcvm's snapshot-capable build (see above); when it is not,
 * @why (may be NULL) receives one sentence saying why not. */
char *ownqemu_select(bool *capable, struct fc_err *why);

/* True if the executable @bin is a build of fc-setup qemu (its manifest
 * says so); else false with @why filled. */
bool ownqemu_is_capable(const char *bin, struct fc_err *why);

#endif
