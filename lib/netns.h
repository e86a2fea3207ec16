/* netns.h - enter the namespaces of fc-net's namespace holders (rootless
 * and clone mode).
 *
 * fc-net up --mode rootless forks a holder process that owns a user and a
 * network namespace (with the VM's tap0 in it). Whoever opens that TAP (the
 * VMM, fc-net attach) must run inside both: the user namespace first (it
 * owns the network namespace: entering the latter needs CAP_SYS_ADMIN in
 * it), then the network namespace.
 *
 * The holder is named by pid and start time: both namespace files are
 * opened first and the start time is checked after that, so the
 * descriptors cannot belong to a process that reused the pid.
 * fc-net's clone mode (as root) has a holder with a network namespace
 * only: its user namespace is the caller's own, and only the network
 * namespace is entered.
 * The calling process must be single-threaded (setns(CLONE_NEWUSER)).
 */
#ifndef FC_NETNS_H
#define FC_NETNS_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"

/* Enter the user, then the network namespace of @pid, which must have
 * started at @start (proc_start_time). 0, or -1 with @e ("the namespace
 * holder (pid N) is gone", "enter the user namespace of pid N: ..."). */
int netns_enter_holder(pid_t pid, uint64_t start, struct fc_err *e);

/* Parse "PID:START" (both decimal, > 0). 0, or -1 with @e. */
int netns_parse_holder(const char *s, pid_t *pid, uint64_t *start, struct fc_err *e);

/* The holder named by a rootless fc-net record or result ("netns": {"pid",
 * "pid_start"}), entered as netns_enter_holder does. 0 or -1 with @e. */
int netns_enter_record(json_t *rec, struct fc_err *e);

#endif
