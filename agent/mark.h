/* mark.h - guest-side timestamps of the start-up path, for the breakdown
 * that tests/bench/run prints (issue 13).
 *
 * Each mark is the guest's uptime (CLOCK_BOOTTIME, the clock of the
 * kernel's printk stamps) at the first time the event happens; later
 * calls keep the first value. mark_report() logs them all as one line,
 *   fc-agent: timing: init=0.812 root=2.104 agent=2.301 ... (guest uptime, s)
 * where init and root come from the kernel's log ("Run /init as init
 * process", "EXT4-fs (vda): mounted filesystem"), read from /dev/kmsg.
 * An event that did not happen prints as "-". Only the guest's init
 * (PID 1) reports: test mode has no kernel of its own.
 */
#ifndef FC_AGENT_MARK_H
#define FC_AGENT_MARK_H

enum mark {
	MARK_AGENT,	/* fc-agent's main() */
	MARK_READY,	/* the ready line is out: the listeners exist */
	MARK_CONNECTED,	/* the first host connection on the run port */
	MARK_PLAN,	/* a plan was received */
	MARK_EXEC,	/* podman run was started (fork + exec) */
	MARK_OUTPUT,	/* the container's first output byte reached the agent */
	MARK_N
};

/* Record @m now, unless it is already recorded. */
void mark(enum mark m);

/* Log the marks (info level), once per boot; a no-op when not PID 1. */
void mark_report(void);

#endif
