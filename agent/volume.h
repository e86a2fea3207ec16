/* volume.h - host directory volumes in the guest (issue 12): one fc-volfs
 * per plan volume, mounted before podman run, unmounted when the run ends.
 *
 * How it works: for volume i, mkdir PLAN_VOL_DIR/<i>, start
 * `fc-volfs --vsock PORT --connections N --ready-fd 3 PLAN_VOL_DIR/<i>` as
 * its own process (own process group, stdin /dev/null, its stderr kept in
 * PLAN_VOL_DIR/<i>.log), and wait (bounded, VOL_READY_MS) for its "ready"
 * line. plan_run_argv() then binds each mount into the container with
 * --volume. fc-volfs is not in the event loop: the loop's ev_reap() reaps
 * it once it ends. vol_release() detaches every mount (fc-volfs exits when
 * its mount goes) and sends SIGTERM to what is left.
 */
#ifndef FC_AGENT_VOLUME_H
#define FC_AGENT_VOLUME_H

#include "err.h"
#include "plan.h"

#define VOL_READY_MS 30000

/* Mount every volume of @p. On failure nothing stays mounted; -1 with @e
 * ("volume '/data' (host port 5100): fc-volfs: connect ...: timed out"). */
int vol_mount_all(const struct plan *p, struct fc_err *e);

/* Unmount and stop what vol_mount_all() started (idempotent). */
void vol_release(void);

#endif
