/* ev.c - see ev.h */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "ev.h"
#include "util.h"

struct deferred {
	void (*fn)(void *);
	void *p;
	struct deferred *next;
};

struct ev_loop {
	struct ev_watch *watches;
	struct ev_child *children;
	struct deferred *deferred;
	struct ev_watch **round;	/* the watches of the current round */
	struct pollfd *pfd;
	size_t cap;
};

struct ev_loop *ev_new(void)
{
	return xcalloc(1, sizeof(struct ev_loop));
}

static void run_deferred(struct ev_loop *l)
{
	while (l->deferred) {
		struct deferred *d = l->deferred;

		l->deferred = d->next;
		d->fn(d->p);
		free(d);
	}
}

void ev_free(struct ev_loop *l)
{
	if (!l)
		return;
	run_deferred(l);
	free(l->round);
	free(l->pfd);
	free(l);
}

void ev_watch_init(struct ev_watch *w, int fd, void (*cb)(struct ev_watch *, short), void *data)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->cb = cb;
	w->data = data;
	w->slot = -1;
}

void ev_link(struct ev_loop *l, struct ev_watch *w)
{
	if (w->linked)
		return;
	w->next = l->watches;
	l->watches = w;
	w->linked = true;
	w->slot = -1;	/* joins from the next round on */
}

void ev_unlink(struct ev_loop *l, struct ev_watch *w)
{
	if (!w->linked)
		return;
	for (struct ev_watch **pp = &l->watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	w->linked = false;
	w->next = NULL;
	w->slot = -1;
}

void ev_defer(struct ev_loop *l, void (*fn)(void *), void *p)
{
	struct deferred *d = xmalloc(sizeof(*d)), **pp = &l->deferred;

	/* In order: what was deferred first is released first. */
	while (*pp)
		pp = &(*pp)->next;
	*d = (struct deferred){ .fn = fn, .p = p };
	*pp = d;
}

void ev_child_add(struct ev_loop *l, struct ev_child *c)
{
	c->next = l->children;
	l->children = c;
}

void ev_child_del(struct ev_loop *l, struct ev_child *c)
{
	for (struct ev_child **pp = &l->children; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			c->next = NULL;
			return;
		}
	}
}

void ev_reap(struct ev_loop *l)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (struct ev_child *c = l->children; c; c = c->next) {
			if (c->pid == pid) {
				ev_child_del(l, c);
				c->cb(c, status);
				break;
			}
		}
	}
}

int ev_run_once(struct ev_loop *l)
{
	size_t n = 0, np = 0;
	uint64_t now = now_ms(), next = 0;
	int timeout = -1, r;
	int *pidx;

	for (struct ev_watch *w = l->watches; w; w = w->next)
		n++;
	if (n > l->cap) {
		l->cap = n * 2;
		l->round = xrealloc(l->round, l->cap * sizeof(*l->round));
		l->pfd = xrealloc(l->pfd, l->cap * sizeof(*l->pfd));
	}
	pidx = n ? xcalloc(n, sizeof(*pidx)) : NULL;
	n = 0;
	for (struct ev_watch *w = l->watches; w; w = w->next) {
		w->slot = n;
		l->round[n] = w;
		pidx[n] = -1;
		if (w->fd >= 0 && w->events) {
			pidx[n] = np;
			l->pfd[np++] = (struct pollfd){ .fd = w->fd, .events = w->events };
		}
		if (w->deadline && (!next || w->deadline < next))
			next = w->deadline;
		n++;
	}
	if (next)
		timeout = next <= now ? 0 : (next - now > 60000 ? 60000 : (int)(next - now));
	r = poll(l->pfd, np, timeout);
	if (r < 0 && errno != EINTR) {
		int err = errno;

		free(pidx);
		for (size_t i = 0; i < n; i++)
			l->round[i]->slot = -1;
		errno = err;
		return -1;
	}
	now = now_ms();
	for (size_t i = 0; i < n; i++) {
		struct ev_watch *w = l->round[i];
		short rev;

		/* Unlinked (or unlinked and linked again) by an earlier callback. */
		if (w->slot != (int)i)
			continue;
		w->slot = -1;
		rev = r > 0 && pidx[i] >= 0 ? l->pfd[pidx[i]].revents : 0;
		if (rev || (w->deadline && w->deadline <= now))
			w->cb(w, rev);
	}
	free(pidx);
	run_deferred(l);
	return 0;
}
