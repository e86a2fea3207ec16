/* session.h - one host connection on the run port: hello, plan, podman
 * load, podman run with its output streamed, exit code.
 *
 * How it works: everything happens in one poll() loop per child process
 * (load, then run) over the child's pipes, the host connection, a signalfd
 * (SIGCHLD: the agent may be PID 1 and reaps every orphan) and a 2 s
 * heartbeat tick. Output frames are written blocking: a host that stops
 * reading stalls the container's output, which is the backpressure we
 * want. If the host goes away mid-run the container keeps running to its
 * end (fcvm -d detaches that way) and its output is discarded.
 */
#ifndef FC_AGENT_SESSION_H
#define FC_AGENT_SESSION_H

#include <stdbool.h>

struct agent_cfg {
	const char *runner;	/* "podman" or a test substitute */
	int sigfd;		/* signalfd for SIGCHLD (and SIGTERM/SIGINT) */
	int lfd;		/* the non-blocking listener: others are refused while busy */
	bool pid1;		/* reap every child, not just ours */
};

enum session_end {
	SESSION_CONTINUE,	/* serve the next connection */
	SESSION_POWEROFF,	/* the plan asked to power off: do it now */
	SESSION_TERMINATE,	/* SIGTERM/SIGINT in test mode: exit */
};

/* Serve the connection @conn (takes ownership: closed on return). */
enum session_end session_serve(const struct agent_cfg *cfg, int conn);

/* Reap finished children (waitpid(-1, WNOHANG)); if @pid is among them,
 * store its status in *@status and return true. */
bool session_reap(pid_t pid, int *status);

#endif
