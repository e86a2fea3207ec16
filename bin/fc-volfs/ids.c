/* ids.c - see ids.h */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "util.h"

enum { BY_G, BY_SRV, BY_NAME, NMAPS };

struct node {
	uint64_t g, srv, parent;
	char *name;		/* NULL: no name known (unlinked, overwritten) */
	uint64_t nlookup;	/* what the kernel counts */
	uint64_t srv_count;	/* what the server of @epoch counts */
	uint32_t epoch;		/* @srv is valid while this is the current epoch */
	uint32_t children;	/* nodes whose name is under this one */
	bool in_srv;		/* in the BY_SRV map */
	struct node *next[NMAPS];
};

static struct {
	pthread_mutex_t lock;
	struct node **b[NMAPS];
	size_t nb, count;
	uint64_t next_g;
	uint32_t epoch;
	struct node *root;
} T = { .lock = PTHREAD_MUTEX_INITIALIZER };

static size_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x;
}

static size_t name_hash(uint64_t parent, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return mix(h ^ parent);
}

static size_t slot(int map, const struct node *n)
{
	switch (map) {
	case BY_G: return mix(n->g) & (T.nb - 1);
	case BY_SRV: return mix(n->srv) & (T.nb - 1);
	default: return name_hash(n->parent, n->name) & (T.nb - 1);
	}
}

static void map_put(int map, struct node *n)
{
	size_t s = slot(map, n);

	n->next[map] = T.b[map][s];
	T.b[map][s] = n;
}

static void map_del(int map, struct node *n)
{
	struct node **pp = &T.b[map][slot(map, n)];

	while (*pp && *pp != n)
		pp = &(*pp)->next[map];
	if (*pp)
		*pp = n->next[map];
}

static struct node *find_g(uint64_t g)
{
	struct node *n = T.nb ? T.b[BY_G][mix(g) & (T.nb - 1)] : NULL;

	while (n && n->g != g)
		n = n->next[BY_G];
	return n;
}

static struct node *find_srv(uint64_t srv)
{
	struct node *n = T.b[BY_SRV][mix(srv) & (T.nb - 1)];

	while (n && n->srv != srv)
		n = n->next[BY_SRV];
	return n;
}

static struct node *find_name(uint64_t parent, const char *name)
{
	struct node *n = T.b[BY_NAME][name_hash(parent, name) & (T.nb - 1)];

	while (n && !(n->parent == parent && !strcmp(n->name, name)))
		n = n->next[BY_NAME];
	return n;
}

static bool current(const struct node *n)
{
	return n->epoch == T.epoch;
}

/* Keep the maps at most one node per bucket on average. */
static void grow(void)
{
	size_t old = T.nb, nb = old ? old * 2 : 256;
	struct node **gb = T.b[BY_G];

	if (T.count < old)
		return;
	T.nb = nb;
	for (int m = 0; m < NMAPS; m++) {
		if (m != BY_G)
			free(T.b[m]);	/* they chain the same nodes as BY_G */
		T.b[m] = xcalloc(nb, sizeof(struct node *));
	}
	for (size_t i = 0; i < old; i++) {
		for (struct node *n = gb[i], *next; n; n = next) {
			next = n->next[BY_G];
			map_put(BY_G, n);
			if (n->in_srv)
				map_put(BY_SRV, n);
			if (n->name)
				map_put(BY_NAME, n);
		}
	}
	free(gb);
}

static void maybe_free(struct node *n);

static void clear_name(struct node *n)
{
	struct node *p;

	if (!n->name)
		return;
	map_del(BY_NAME, n);
	free(n->name);
	n->name = NULL;
	p = find_g(n->parent);
	n->parent = 0;
	if (p) {
		p->children--;
		maybe_free(p);
	}
}

/* Free @n once nothing needs it: the kernel forgot it and no name is
 * under it. Its server count was given back by ids_forget already. */
static void maybe_free(struct node *n)
{
	if (n == T.root || n->nlookup || n->children)
		return;
	map_del(BY_G, n);
	if (n->in_srv)
		map_del(BY_SRV, n);
	T.count--;
	clear_name(n);
	free(n);
}

/* Give @n the name @name under @parent, taking it from whoever had it. */
static void set_name(struct node *n, struct node *parent, const char *name)
{
	struct node *other = find_name(parent->g, name);

	if (n->name && n->parent == parent->g && !strcmp(n->name, name))
		return;
	/* counted first, so that clearing the old names cannot free it */
	parent->children++;
	if (other && other != n) {
		clear_name(other);
		maybe_free(other);
	}
	clear_name(n);
	n->parent = parent->g;
	n->name = xstrdup(name);
	map_put(BY_NAME, n);
}

static void make_current(struct node *n, uint64_t srv)
{
	if (n->in_srv)
		map_del(BY_SRV, n);
	n->srv = srv;
	n->epoch = T.epoch;
	n->srv_count = 1;
	n->in_srv = !find_srv(srv);
	if (n->in_srv)
		map_put(BY_SRV, n);
}

void ids_init(uint64_t srv_root)
{
	pthread_mutex_lock(&T.lock);
	T.epoch = 1;
	T.next_g = IDS_ROOT + 1;
	grow();
	T.root = xcalloc(1, sizeof(*T.root));
	T.root->g = IDS_ROOT;
	T.root->nlookup = 1;
	map_put(BY_G, T.root);
	T.count = 1;
	make_current(T.root, srv_root);
	pthread_mutex_unlock(&T.lock);
}

uint32_t ids_epoch(void)
{
	uint32_t e;

	pthread_mutex_lock(&T.lock);
	e = T.epoch;
	pthread_mutex_unlock(&T.lock);
	return e;
}

uint32_t ids_new_epoch(void)
{
	uint32_t e;

	pthread_mutex_lock(&T.lock);
	e = ++T.epoch;
	memset(T.b[BY_SRV], 0, T.nb * sizeof(struct node *));
	for (size_t i = 0; i < T.nb; i++)
		for (struct node *n = T.b[BY_G][i]; n; n = n->next[BY_G])
			n->in_srv = false;
	/* every server's root is the same node */
	make_current(T.root, T.root->srv);
	pthread_mutex_unlock(&T.lock);
	return e;
}

uint64_t ids_add(uint64_t parent, const char *name, uint64_t srv, uint32_t epoch)
{
	struct node *p, *n = NULL;
	uint64_t g = 0;

	pthread_mutex_lock(&T.lock);
	p = find_g(parent);
	if (!p)
		goto out;
	if (epoch == T.epoch)
		n = find_srv(srv);
	if (!n) {
		n = find_name(parent, name);
		if (n && epoch == T.epoch) {
			if (current(n) && n->srv != srv)
				n = NULL;	/* another inode now has the name */
			else if (!current(n))
				make_current(n, srv);
			else
				n->srv_count++;
		}
	} else {
		n->srv_count++;
	}
	if (!n) {
		grow();
		n = xcalloc(1, sizeof(*n));
		n->g = T.next_g++;
		map_put(BY_G, n);
		T.count++;
		if (epoch == T.epoch)
			make_current(n, srv);
	}
	set_name(n, p, name);
	n->nlookup++;
	g = n->g;
out:
	pthread_mutex_unlock(&T.lock);
	return g;
}

int ids_srv(uint64_t g, uint32_t epoch, uint64_t *srv)
{
	struct node *n;
	int rc = 0;

	pthread_mutex_lock(&T.lock);
	n = find_g(g);
	if (!n)
		rc = -ENOENT;
	else if (n->epoch != epoch || epoch != T.epoch)
		rc = -ESTALE;
	else
		*srv = n->srv;
	pthread_mutex_unlock(&T.lock);
	return rc;
}

int ids_stale_chain(uint64_t g, uint32_t epoch, uint64_t *chain, size_t max)
{
	struct node *n;
	size_t k = 0;
	int rc = 0;

	pthread_mutex_lock(&T.lock);
	n = find_g(g);
	if (!n)
		rc = -ENOENT;
	while (!rc && n && !(n->epoch == epoch && epoch == T.epoch)) {
		if (!n->name)
			rc = -ESTALE;
		else if (k == max)
			rc = -ELOOP;
		else
			chain[k++] = n->g;
		n = find_g(n->parent);
		if (!rc && !n)
			rc = -ESTALE;
	}
	pthread_mutex_unlock(&T.lock);
	if (rc)
		return rc;
	for (size_t i = 0; i < k / 2; i++) {
		uint64_t t = chain[i];

		chain[i] = chain[k - 1 - i];
		chain[k - 1 - i] = t;
	}
	return (int)k;
}

int ids_name_of(uint64_t g, uint64_t *parent, char *name, size_t size)
{
	struct node *n;
	int rc = -ESTALE;

	pthread_mutex_lock(&T.lock);
	n = find_g(g);
	if (n && n->name) {
		*parent = n->parent;
		snprintf(name, size, "%s", n->name);
		rc = 0;
	}
	pthread_mutex_unlock(&T.lock);
	return rc;
}

void ids_set(uint64_t g, uint64_t srv, uint32_t epoch)
{
	struct node *n;

	pthread_mutex_lock(&T.lock);
	n = find_g(g);
	if (n && epoch == T.epoch) {
		if (current(n))
			n->srv_count++;
		else
			make_current(n, srv);
	}
	pthread_mutex_unlock(&T.lock);
}

bool ids_forget(uint64_t g, uint64_t n, uint64_t *srv, uint64_t *count, uint32_t *epoch)
{
	struct node *x;
	bool send = false;

	pthread_mutex_lock(&T.lock);
	x = find_g(g);
	if (x && x != T.root) {
		x->nlookup -= n < x->nlookup ? n : x->nlookup;
		if (!x->nlookup) {
			/* The server forgets it now; should it stay as a
			 * parent's name, it is looked up again when needed. */
			if (current(x) && x->srv_count) {
				send = true;
				*srv = x->srv;
				*count = x->srv_count;
				*epoch = T.epoch;
			}
			if (x->in_srv)
				map_del(BY_SRV, x);
			x->in_srv = false;
			x->epoch = 0;
			x->srv_count = 0;
			maybe_free(x);
		}
	}
	pthread_mutex_unlock(&T.lock);
	return send;
}

void ids_unlink(uint64_t parent, const char *name)
{
	struct node *n;

	pthread_mutex_lock(&T.lock);
	n = find_name(parent, name);
	if (n) {
		clear_name(n);
		maybe_free(n);
	}
	pthread_mutex_unlock(&T.lock);
}

void ids_rename(uint64_t parent, const char *name, uint64_t newparent, const char *newname,
		bool exchange)
{
	struct node *x, *y, *p, *np;

	pthread_mutex_lock(&T.lock);
	p = find_g(parent);
	np = find_g(newparent);
	x = find_name(parent, name);
	y = find_name(newparent, newname);
	if (!p || !np)
		goto out;
	p->children++;	/* pinned while names move */
	np->children++;
	if (exchange && x && y) {
		clear_name(x);
		clear_name(y);
		set_name(x, np, newname);
		set_name(y, p, name);
	} else if (exchange) {
		/* one side unknown: the other's name is known no more */
		if (x)
			clear_name(x);
		if (y)
			clear_name(y);
		if (x)
			maybe_free(x);
		if (y)
			maybe_free(y);
	} else if (x) {
		set_name(x, np, newname);
		maybe_free(x);
	} else if (y) {
		clear_name(y);
		maybe_free(y);
	}
	/* the pins taken above, so that neither parent went meanwhile */
	p->children--;
	np->children--;
	maybe_free(p);
	if (np != p)
		maybe_free(np);
out:
	pthread_mutex_unlock(&T.lock);
}

struct seen {
	uint64_t g, parent;
	char *name;
};

void ids_foreach(void (*fn)(uint64_t g, uint64_t parent, const char *name, void *arg), void *arg)
{
	struct seen *s;
	size_t k = 0;

	pthread_mutex_lock(&T.lock);
	s = xcalloc(T.count ? T.count : 1, sizeof(*s));
	for (size_t i = 0; i < T.nb; i++)
		for (struct node *n = T.b[BY_G][i]; n; n = n->next[BY_G])
			if (k < T.count)
				s[k++] = (struct seen){ n->g, n->parent,
							n->name ? xstrdup(n->name) : NULL };
	pthread_mutex_unlock(&T.lock);
	for (size_t i = 0; i < k; i++) {
		fn(s[i].g, s[i].parent, s[i].name, arg);
		free(s[i].name);
	}
	free(s);
}

size_t ids_count(void)
{
	size_t n;

	pthread_mutex_lock(&T.lock);
	n = T.count;
	pthread_mutex_unlock(&T.lock);
	return n;
}
