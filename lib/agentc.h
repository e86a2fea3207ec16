/* agentc.h - the host end of one session with fc-agent: connect, check its
 * HELLO, send one request frame, then move frames to and from file
 * descriptors until the agent reports an exit. fc-run uses it on the run
 * port (a PLAN request); fc-exec on the exec port (stdin forwarded).
 *
 * How it works:
 * 1. agentc_connect(): connect with retries (the hybrid vsock CONNECT
 *    handshake, or a plain Unix socket for a test-mode agent), asking
 *    between attempts whether a signal came or the VM's owner died; then
 *    wait for HELLO in the same poll loop as everything after it. The
 *    whole step is bounded by opts.timeout_ms.
 * 2. agentc_harden() (optional; agentc_session() does it when
 *    opts.harden): NO_NEW_PRIVS and a seccomp allowlist of exactly what
 *    step 3 needs. Whatever must be opened (the owner's pidfd, the
 *    console log) is opened before.
 * 3. agentc_run(): the socket is non-blocking and one poll() serves the
 *    socket, the signalfd, the owner's pidfd, stdin and the output fds, so
 *    a signal is always served: no read or write can block on the guest.
 *    A frame must arrive whole within opts.frame_ms of its first byte and
 *    be taken whole by the agent within as long; no frame at all for
 *    opts.heartbeat_ms ends the session (time spent waiting for our own
 *    stdout to drain does not count). Output is written in pieces only
 *    when the fd is writable and no more is read from the agent until it
 *    is out, so a slow reader of our stdout slows the guest down instead
 *    of filling our memory.
 *
 * Signals (read from opts.sigfd): before the request has been handed to
 * the agent, one ends the session at once (nothing runs yet); after it,
 * the first is forwarded as a SIGNAL frame and a second ends the session
 * (as does opts.stop_ms passing without the agent's EXIT).
 * Either way agentc_signal() then names it, and the caller exits 128+N.
 *
 * The owner (opts.owner_pid): when it dies the session ends with "the VM
 * stopped[ before its agent answered]: <last line of opts.console, or the
 * cause>" - at once, not at a timeout. What the agent had already sent
 * (its EXIT among it) is still read first.
 *
 * All guest text that reaches an error message passes through
 * text_clean(). The caller ignores SIGPIPE.
 */
#ifndef FC_AGENTC_H
#define FC_AGENTC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clonefix.h"
#include "err.h"

struct agentc_opts {
	int timeout_ms;		/* connect + HELLO (+ a STATUS answer); > 0 */
	int heartbeat_ms;	/* silence that ends a session; 0: no watchdog */
	int stop_ms;		/* after a forwarded signal, the command's time to end; then
				 * the session ends as by a second signal. 0: no bound */
	int frame_ms;		/* one frame in or out, whole; 0: 30 s or heartbeat_ms if less */
	int sigfd;		/* non-blocking signalfd to serve, or -1 (borrowed) */
	pid_t owner_pid;	/* the VM's owner to watch; 0: none */
	uint64_t owner_start;	/* its start time (proc_start_time); 0: any */
	const char *console;	/* the VM's console log, for the death message; or NULL */
	int in_fd;		/* sent as STDIN frames, then STDIN_EOF; -1: none (borrowed) */
	int out_fd, err_fd;	/* where STDOUT / STDERR bytes go (borrowed) */
	int started_fd;		/* gets "started\n" on STARTED; -1: none (owned: closed) */
	bool harden;		/* agentc_session(): agentc_harden() once connected */
	/* SIGWINCH on sigfd (added): not forwarded as a signal but sent as a
	 * WINSIZE frame with the size of terminal @tty_fd (fc-exec -t). */
	bool winch;
	int tty_fd;
};

/* Defaults: 120 s timeout, 90 s heartbeat, no signalfd, no owner, no stdin,
 * output to fds 1 and 2, no started fd, no hardening. */
#define AGENTC_OPTS_INIT                                                                     \
	{ .timeout_ms = 120000, .heartbeat_ms = 90000, .sigfd = -1, .in_fd = -1, .out_fd = 1, \
	  .err_fd = 2, .started_fd = -1 }

struct agentc;

/* A session with a copy of @o (its strings must outlive the session). */
struct agentc *agentc_new(const struct agentc_opts *o);

/* Free @s: closes the socket, the owner's pidfd, the console fd and
 * started_fd. NULL is fine. */
void agentc_free(struct agentc *s);
void cleanup_agentcp(struct agentc **s);
#define _cleanup_agentc_ __attribute__((cleanup(cleanup_agentcp)))

/* Connect to the agent and check its HELLO (protocol version). @port > 0:
 * @path is the VMM's hybrid vsock socket and @port the guest port; @port
 * 0: @path is a test-mode agent's Unix socket. 0, or -1 with @e: the
 * timeout ("agent did not answer on vsock port N within S s ..."), the
 * owner's death, the agent's refusal (its message, cleaned), a protocol
 * error, or a signal (agentc_signal() != 0). */
int agentc_connect(struct agentc *s, const char *path, uint32_t port, struct fc_err *e);

/* Drop privileges for the rest of the session (see the top). 0 or -1. */
int agentc_harden(struct agentc *s, struct fc_err *e);

/* Send the request frame @type (@len bytes of @req) and pump until the
 * agent's EXIT. Returns the exit code: the container's (0-255, 128+N for
 * signal N), or 128+N when signal N ended the session (agentc_signal());
 * -1 with @e when the session failed (ERROR frame, lost connection,
 * watchdog, protocol error, the owner's death). Once per session. */
int agentc_run(struct agentc *s, uint8_t type, const void *req, size_t len, struct fc_err *e);

/* Ask for the agent's state (STATUS_REQ) and wait for its STATUS within
 * what is left of opts.timeout_ms. *@json: the answer as compact JSON,
 * non-ASCII escaped, so it is safe for a terminal (caller frees). 0 or -1
 * (a signal: agentc_signal() != 0). Instead of agentc_run(). */
int agentc_status(struct agentc *s, char **json, struct fc_err *e);

/* Send the clone fix-up @f (MSG_CLONE: a restored guest's new hostname,
 * RNG seed and clock; make it with clonefix_make() right before) and wait
 * for the agent's CLONE_DONE within what is left of opts.timeout_ms, into
 * *@done. 0, or -1 with @e ("clone fix-up: ..."): the agent's ERROR (its
 * message, cleaned), a bad or mismatched answer, the timeout, the owner's
 * death, a signal. Instead of agentc_run(); fc-clone uses it, and so can
 * anything else that resumes a snapshot. */
int agentc_clone(struct agentc *s, const struct clonefix *f, struct clonefix_done *done,
		 struct fc_err *e);

/* Send @plan as PREPARE (the agent makes its image ready and runs
 * nothing: what a startup snapshot is taken after) and wait for PREPARED
 * within what is left of opts.timeout_ms. 0, or -1 with @e ("prepare:
 * ..."): the agent's ERROR, the timeout, the owner's death, a signal.
 * Instead of agentc_run(). */
int agentc_prepare(struct agentc *s, const void *plan, size_t len, struct fc_err *e);

/* agentc_connect, agentc_harden if opts.harden, agentc_run: one session
 * from start to end. Returns what agentc_run returns. */
int agentc_session(struct agentc *s, const char *path, uint32_t port, uint8_t type,
		   const void *req, size_t len, struct fc_err *e);

/* The signal that ended the session, or 0. */
int agentc_signal(const struct agentc *s);

/* True once the agent reported the command's end (EXIT): the code
 * agentc_session() returned is then the command's own. */
bool agentc_exited(const struct agentc *s);

#endif
