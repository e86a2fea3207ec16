/* ev.h - fc-agent's one event loop: fd watches with deadlines, child
 * processes, and deferred release, so nothing done for one connection can
 * block another.
 *
 * How it works: every round ev_run_once() collects the linked watches,
 * polls the fds whose owner wants events (w->events != 0) with a timeout
 * up to the nearest deadline, then calls each watch that has events or
 * whose deadline has passed. Callbacks may link and unlink any watch
 * (their own included) at any time; a watch unlinked during a round is not
 * called later in that round. Objects that embed watches are released
 * through ev_defer() so that a callback never runs on freed memory within
 * the round. Owners change w->events and w->deadline directly; the loop
 * reads them at the start of the next round.
 */
#ifndef FC_AGENT_EV_H
#define FC_AGENT_EV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct ev_loop;

struct ev_watch {
	int fd;			/* -1: a timer only */
	short events;		/* poll events wanted now; 0: not polled */
	uint64_t deadline;	/* now_ms() at which cb runs (revents 0); 0: none */
	/* @revents: what poll() reported, 0 when called for the deadline. */
	void (*cb)(struct ev_watch *w, short revents);
	void *data;
	/* private */
	struct ev_watch *next;
	int slot;		/* index in the current round, -1 when not in it */
	bool linked;
};

struct ev_child {
	pid_t pid;
	/* The child ended with wait status @status; the entry is unlinked. */
	void (*cb)(struct ev_child *c, int status);
	void *data;
	struct ev_child *next;	/* private */
};

struct ev_loop *ev_new(void);

/* Free the loop (not the watches: their owners do that). */
void ev_free(struct ev_loop *l);

/* Initialise @w (fd, callback, data; no events, no deadline). */
void ev_watch_init(struct ev_watch *w, int fd, void (*cb)(struct ev_watch *, short),
		   void *data);

void ev_link(struct ev_loop *l, struct ev_watch *w);
void ev_unlink(struct ev_loop *l, struct ev_watch *w);

/* Run @fn(@p) after the current round (or the next one, outside a round). */
void ev_defer(struct ev_loop *l, void (*fn)(void *), void *p);

/* Tell @c's callback when its pid is reaped by ev_reap(). */
void ev_child_add(struct ev_loop *l, struct ev_child *c);
void ev_child_del(struct ev_loop *l, struct ev_child *c);

/* waitpid(-1, WNOHANG) until nothing is left to reap (as PID 1 the agent
 * reaps every orphan too); calls the callbacks of registered children. */
void ev_reap(struct ev_loop *l);

/* One round. 0, or -1 with errno when poll() failed (not EINTR). */
int ev_run_once(struct ev_loop *l);

#endif
