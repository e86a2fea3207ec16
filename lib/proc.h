/* proc.h - child processes and pid identity.
 *
 * A pid alone is not an identity (pids are reused), so records keep the
 * process start time too (field 22 of /proc/PID/stat) and readers compare.
 */
#ifndef FC_PROC_H
#define FC_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Start time of @pid in clock ticks since boot. 0 or -1 (@e may be NULL). */
int proc_start_time(pid_t pid, uint64_t *out, struct fc_err *e);

/* True if @pid exists and (when @start != 0) started at @start. */
bool proc_alive(pid_t pid, uint64_t start);

struct spawn_opts {
	int fd_in, fd_out, fd_err;	/* -1: inherit; dup'ed onto 0/1/2 */
	bool die_with_parent;		/* PR_SET_PDEATHSIG SIGKILL in the child */
	bool new_pgrp;			/* setpgid(0, 0) in the child */
};

/* fork + exec @argv[0] (PATH search). Returns the child pid, or -1 with @e
 * filled when the program could not be executed (reported through a
 * CLOEXEC pipe, so "not found" is an error here, not a child exit code).
 * All fds other than 0-2 are closed in the child. */
pid_t spawn(char *const argv[], const struct spawn_opts *o, struct fc_err *e);

/* waitpid with a timeout in ms (-1: forever). Returns 1 when the child
 * exited (*status filled), 0 on timeout, -1 on error. */
int wait_timeout(pid_t pid, int timeout_ms, int *status);

/* Run @argv with stdin from /dev/null and its stdout and stderr captured
 * (memfds: no pipe to fill). Waits up to @timeout_ms (-1: no bound; at the
 * bound the child is killed and it is an error). When @out is not NULL it
 * receives at most @max bytes of stdout, NUL-terminated (caller frees).
 * Returns the child's exit code (128+N for a signal) - with @e filled as
 * "'CMD ARG1' exited with N: <last line of its stderr>" when non-zero - or
 * -1 when it could not be run or waited for. */
int run_capture(char *const argv[], char **out, size_t max, int timeout_ms, struct fc_err *e);

/* SIGTERM, wait up to @grace_ms, then SIGKILL and reap. */
void kill_wait(pid_t pid, int grace_ms);

/* Shell-style exit code from a wait status: code, or 128+signal. */
int exit_code_of(int status);

/* Block the signals in the 0-terminated list @sigs and return a signalfd
 * for them (CLOEXEC, plus @flags such as SFD_NONBLOCK), so a poll loop
 * serves signals as events. -1 with @e on failure. Children started with
 * spawn() get the default mask back. */
int signalfd_for(const int *sigs, int flags, struct fc_err *e);

/* Ask for @sig when our parent process dies (PR_SET_PDEATHSIG), so a front
 * end killed outright, even with SIGKILL, takes us along. Fails with
 * ESRCH if the parent is already gone. */
int die_with_parent(int sig, struct fc_err *e);

/* Full path of program @name: first beside our own executable (so a
 * build tree's tools find each other), then on $PATH; a name with a '/'
 * is checked as is. Caller frees; NULL when not found or not executable. */
char *proc_find_tool(const char *name);

#endif
