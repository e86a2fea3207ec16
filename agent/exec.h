/* exec.h - the exec session: one command in the running container
 * (podman exec) or in the guest OS itself ("vm"), on its own connection,
 * with its own stdin, stdout, stderr or pseudo-terminal, signals, window
 * size and exit code. Any number run at once, beside the run session.
 *
 * How it works: the connection's first frame is MSG_EXEC (plan.h: the
 * request). A container exec while the run is idle (its plan not yet
 * sent) or still starting waits for it,
 * polling the run's state, up to the request's wait_ms; the first exec into
 * a container that podman has only just been asked to run first runs
 * `podman wait --condition=running` (retried until the bound), since
 * "running" in the agent means "podman run started". Then the command is a
 * child in its own session: three pipes, or one pty whose master carries
 * both directions (stderr is then stdout, as with any terminal).
 *
 * Flow control both ways: output is read from the child only while the
 * connection has room (conn_has_room); stdin frames are queued up to
 * EXEC_IN_HIGH and then the connection's input is paused until the child
 * has taken them, so neither a slow host nor a child that does not read
 * makes the agent buffer without bound. STDIN_EOF closes the child's stdin
 * (on a pty: the terminal's end-of-file character, after what was queued).
 *
 * Signals (SIGNAL frames) go to the command, not to podman: podman exec
 * does not pass them on, so every container exec carries a marker
 * variable FCVM_EXEC_ID=<random> and the agent signals the processes that
 * have it whose parent has not (what podman started). In a pty session
 * with --vm they go to the terminal's foreground process group. If the
 * host goes away the command is killed (SIGKILL) the same way: an exec
 * belongs to its connection, unlike the container.
 */
#ifndef FC_AGENT_EXEC_H
#define FC_AGENT_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"

/* Serve accepted connection @fd (takes ownership) on the exec port: wait
 * (at most 60 s) for MSG_EXEC. */
void exec_accept(struct agent *a, int fd);

/* MSG_EXEC was the first frame on @c on another port (the run port in
 * test mode): take @c over. */
void exec_take(struct agent *a, struct conn *c, const uint8_t *payload, size_t len);

#endif
