/* fc-volfs - the FUSE client of a host directory served by fc-volume: a
 * libfuse3 low-level filesystem whose every operation is one vproto request
 * over one of N connections (a Unix socket for tests on the host; AF_VSOCK
 * to the host, CID 2, inside a guest). Built static so the guest rootfs
 * needs nothing but this binary, /dev/fuse and the fuse module.
 *
 * How it works: FUSE worker threads take a free connection from the pool,
 * send one request and read its reply (same id and op, or the connection is
 * dropped as broken), then give the connection back; N connections carry N
 * requests at once. A connection that breaks (a snapshot restore resets
 * vsock) is reconnected for up to --reconnect-timeout seconds, greeted
 * (HELLO) and the request sent again. The kernel sees our own node ids and
 * handles (ids.h), not the server's: when the greeting shows a new server
 * instance (a clone's, maybe over another directory), every node is found
 * again by its name and every open file opened again, on first use, and
 * the request in flight is translated and sent to the new server; a
 * watcher thread notices the reset of idle connections and drops the
 * kernel's caches of the former directory.
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "ids.h"
#include "log.h"
#include "sock.h"
#include "util.h"
#include "vproto.h"

static const char usage_text[] =
	"usage: fc-volfs (--connect UNIX_PATH | --vsock PORT [--cid CID]) [--connections N]\n"
	"                [--attr-timeout SEC] [--reconnect-timeout SEC] [--ready-fd N]\n"
	"                [-o FUSE_OPTIONS] [-v] [-q] MOUNTPOINT\n";

#define MAX_CONNS  64
#define MAX_DEPTH  1024		/* names walked to find a node again */

struct pconn {
	int fd;
	bool busy;
	uint32_t epoch;		/* of the server this connection reached */
};

/* A file handle the kernel holds: ours, so that it can be opened again on
 * a new server. */
struct ghandle {
	pthread_mutex_t lock;	/* held while it is opened again */
	uint64_t node;		/* guest id */
	uint64_t srv;		/* the server's handle in @epoch */
	uint32_t epoch;
	uint32_t flags;		/* open flags, for opening it again */
	bool dir;
};

struct volfs {
	const char *unix_path;
	unsigned cid, port;
	struct pconn conns[MAX_CONNS];
	unsigned nconns;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next_id;
	uint32_t max_data;
	bool ro;
	double timeout;
	int reconnect_ms;
	uint64_t instance;	/* the server's, from HELLO */
	struct fuse_session *se;
	bool inval;		/* a new epoch: the kernel's caches go */
	pthread_cond_t watch;
};

static struct volfs V = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.watch = PTHREAD_COND_INITIALIZER,
	.timeout = 1.0,
	.reconnect_ms = 30000,
	.cid = VMADDR_CID_HOST,
};

static int dial(int ms, struct fc_err *e)
{
	if (V.unix_path)
		return sock_connect_unix(V.unix_path, ms, NULL, NULL, e);
	{
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = V.cid, .svm_port = V.port };
		uint64_t end = now_ms() + (uint64_t)ms;

		for (;;) {
			int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

			if (fd < 0)
				return fc_err_set(e, errno, "vsock socket");
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
				return fd;
			close(fd);
			if (now_ms() >= end)
				return fc_err_set(e, errno, "connect to vsock %u:%u", V.cid, V.port);
			usleep(50000);
		}
	}
}

/* @want_idle: only a connection no request holds (the watcher), else NULL. */
static struct pconn *conn_take(bool want_idle, unsigned i)
{
	struct pconn *c = NULL;

	pthread_mutex_lock(&V.lock);
	if (want_idle) {
		if (!V.conns[i].busy) {
			c = &V.conns[i];
			c->busy = true;
		}
		pthread_mutex_unlock(&V.lock);
		return c;
	}
	for (;;) {
		for (i = 0; i < V.nconns; i++) {
			if (!V.conns[i].busy) {
				c = &V.conns[i];
				c->busy = true;
				break;
			}
		}
		if (c)
			break;
		pthread_cond_wait(&V.cond, &V.lock);
	}
	pthread_mutex_unlock(&V.lock);
	return c;
}

static void conn_give(struct pconn *c)
{
	pthread_mutex_lock(&V.lock);
	c->busy = false;
	pthread_cond_signal(&V.cond);
	pthread_mutex_unlock(&V.lock);
}

static void conn_drop(struct pconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static uint64_t new_id(void)
{
	return __atomic_add_fetch(&V.next_id, 1, __ATOMIC_RELAXED);
}

/* One exchange on @c: send @frame, read the reply to (@op, @id). Returns
 * the reply's err (>= 0) with its body in *@body (caller frees), or -1 when
 * the connection broke or answered out of turn. */
static int exchange(struct pconn *c, const struct vp_buf *frame, uint16_t op, uint64_t id,
		    uint8_t **body, size_t *blen)
{
	uint8_t hdr[VP_HDR_SIZE], e4[4];
	struct vp_hdr h;
	uint8_t *p;

	if (c->fd < 0 || write_full(c->fd, frame->p, frame->len) < 0)
		return -1;
	if (op == VP_FORGET)
		return 0;
	if (read_full(c->fd, hdr, sizeof(hdr)) != sizeof(hdr) ||
	    vp_hdr_parse(hdr, VP_REPLY, &h) < 0 || h.op != op || h.id != id || h.len < 4) {
		log_warn("connection %d: no reply, or a reply out of turn, to %s", c->fd,
			 vp_op_name(op));
		return -1;
	}
	if (read_full(c->fd, e4, 4) != 4)
		return -1;
	p = xmalloc(h.len - 4 + 1);
	if (h.len > 4 && read_full(c->fd, p, h.len - 4) != (ssize_t)(h.len - 4)) {
		free(p);
		return -1;
	}
	*body = p;
	*blen = h.len - 4;
	{
		uint32_t err = (uint32_t)e4[0] | (uint32_t)e4[1] << 8 | (uint32_t)e4[2] << 16 |
			       (uint32_t)e4[3] << 24;

		return err > 4095 ? EIO : (int)err;
	}
}

struct hello {
	uint32_t version, flags, max_data;
	uint64_t root, instance;
};

/* HELLO on @c alone. 0, or -1 (broken) / a positive errno. */
static int hello_on(struct pconn *c, struct hello *h)
{
	struct vp_req r = { .op = VP_HELLO, .size = VP_MAX_DATA, .id = new_id() };
	struct vp_buf frame = { 0 };
	struct vp_cur cur;
	uint8_t *body = NULL;
	size_t blen = 0;
	int rc;

	vp_req_encode(&frame, &r);
	rc = exchange(c, &frame, r.op, r.id, &body, &blen);
	vp_buf_free(&frame);
	if (rc == 0) {
		vp_cur_init(&cur, body, blen);
		h->version = vp_get_u32(&cur);
		h->flags = vp_get_u32(&cur);
		h->root = vp_get_u64(&cur);
		h->max_data = vp_get_u32(&cur);
		/* an instance id came with protocol version 1's later servers */
		h->instance = cur.pos + 8 <= cur.len ? vp_get_u64(&cur) : 0;
		if (cur.bad || h->version != VP_VERSION || h->root != FUSE_ROOT_ID ||
		    h->max_data < 4096 || h->max_data > VP_MAX_DATA)
			rc = EPROTO;
	}
	free(body);
	return rc;
}

/* (Re)connect @c and greet the server. A server instance other than the
 * one we knew (a snapshot restore brought a new fc-volume) starts a new
 * epoch: every node is then found again by name, every handle opened
 * again, and the watcher drops the kernel's caches. */
static void conn_redial(struct pconn *c, int ms)
{
	struct fc_err e;
	struct hello h;
	int rc;

	conn_drop(c);
	c->fd = dial(ms, &e);
	if (c->fd < 0) {
		log_warn("%s", e.msg);
		return;
	}
	rc = hello_on(c, &h);
	if (rc) {
		log_warn("hello on a new connection: %s", rc < 0 ? "no answer" : strerror(rc));
		conn_drop(c);
		return;
	}
	pthread_mutex_lock(&V.lock);
	if (h.instance != V.instance) {
		uint32_t ep = ids_new_epoch();

		log_info("a new server (instance %016llx): epoch %u, nodes found again by name",
			 (unsigned long long)h.instance, ep);
		V.instance = h.instance;
		V.inval = true;
		pthread_cond_signal(&V.watch);
	}
	c->epoch = ids_epoch();
	pthread_mutex_unlock(&V.lock);
}

/* Send @s (server ids, valid in @ep) and wait for its reply: the reply's
 * err (>= 0) with its body, -ESTALE when the server is no longer the one of
 * @ep (translate again), or EIO when no connection could carry it. */
static int send_srv(const struct vp_req *s, uint32_t ep, uint8_t **body, size_t *blen)
{
	struct vp_buf frame = { 0 };
	int attempt, rc = EIO;

	*body = NULL;
	vp_req_encode(&frame, s);
	for (attempt = 0; attempt < 4; attempt++) {
		struct pconn *c = conn_take(false, 0);

		if (c->fd >= 0 && c->epoch != ids_epoch())
			conn_drop(c);	/* it reached an older server */
		if (c->fd < 0)
			conn_redial(c, V.reconnect_ms);
		if (c->fd < 0) {
			conn_give(c);
			rc = EIO;
			continue;
		}
		if (c->epoch != ep) {
			conn_give(c);
			rc = -ESTALE;
			break;
		}
		rc = exchange(c, &frame, s->op, s->id, body, blen);
		if (rc < 0)
			conn_drop(c);	/* broken: this slot is dialled again */
		conn_give(c);
		if (rc >= 0)
			break;
		rc = EIO;
	}
	vp_buf_free(&frame);
	if (rc != 0) {
		free(*body);
		*body = NULL;
	}
	return rc;
}

static int node_srv(uint64_t g, uint32_t ep, uint64_t *srv);

/* Find stale node @g again on the server of @ep: one LOOKUP per name from
 * its nearest current ancestor down. 0, -ESTALE, or a positive errno (the
 * name is gone on this server: ENOENT). */
static int resolve(uint64_t g, uint32_t ep)
{
	uint64_t *chain = xcalloc(MAX_DEPTH, sizeof(*chain));
	int n = ids_stale_chain(g, ep, chain, MAX_DEPTH), rc = 0;

	if (n < 0)
		rc = n == -ELOOP ? ELOOP : ESTALE;
	for (int i = 0; i < n && rc == 0; i++) {
		struct vp_req s = { .op = VP_LOOKUP, .id = new_id() };
		uint64_t parent;
		uint8_t *body;
		size_t blen;

		if (ids_name_of(chain[i], &parent, s.name, sizeof(s.name)) < 0 ||
		    ids_srv(parent, ep, &s.node) < 0) {
			rc = ESTALE;
			break;
		}
		rc = send_srv(&s, ep, &body, &blen);
		if (rc == 0) {
			struct vp_cur c;
			uint64_t srv;

			vp_cur_init(&c, body, blen);
			srv = vp_get_u64(&c);
			if (c.bad || srv == 0)
				rc = EIO;
			else
				ids_set(chain[i], srv, ep);
		}
		free(body);
	}
	free(chain);
	return rc;
}

/* The server id of guest node @g in @ep, found again if stale: 0, -ESTALE
 * (the epoch moved on), or a positive errno. */
static int node_srv(uint64_t g, uint32_t ep, uint64_t *srv)
{
	int rc = ids_srv(g, ep, srv);

	if (rc == -ENOENT)
		return ESTALE;
	if (rc == 0)
		return 0;
	if (ep != ids_epoch())
		return -ESTALE;
	rc = resolve(g, ep);
	if (rc)
		return rc;
	rc = ids_srv(g, ep, srv);
	return rc == -ENOENT ? ESTALE : rc;
}

static struct ghandle *handle_of(uint64_t fh)
{
	return (struct ghandle *)(uintptr_t)fh;
}

static uint64_t handle_new(uint64_t node, uint64_t srv, uint32_t ep, uint32_t flags, bool dir)
{
	struct ghandle *h = xcalloc(1, sizeof(*h));

	pthread_mutex_init(&h->lock, NULL);
	h->node = node;
	h->srv = srv;
	h->epoch = ep;
	h->flags = flags;
	h->dir = dir;
	return (uint64_t)(uintptr_t)h;
}

static void handle_free(uint64_t fh)
{
	struct ghandle *h = handle_of(fh);

	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* The server handle of @fh in @ep, opened again (same flags, without
 * O_CREAT, O_EXCL and O_TRUNC) when it was a former server's. */
static int fh_srv(uint64_t fh, uint32_t ep, uint64_t *srv)
{
	struct ghandle *h = handle_of(fh);
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	if (h->epoch != ep) {
		struct vp_req s = { .op = h->dir ? VP_OPENDIR : VP_OPEN, .id = new_id(),
				    .flags = h->flags & ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC) };
		uint8_t *body;
		size_t blen;

		rc = node_srv(h->node, ep, &s.node);
		if (rc == 0)
			rc = send_srv(&s, ep, &body, &blen);
		if (rc == 0) {
			struct vp_cur c;

			vp_cur_init(&c, body, blen);
			h->srv = vp_get_u64(&c);
			h->epoch = ep;
			if (c.bad)
				rc = EIO;
			free(body);
		}
	}
	*srv = h->srv;
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* @r with our ids replaced by the server's of @ep. */
static int to_server(const struct vp_req *r, struct vp_req *s, uint32_t ep)
{
	int rc = 0;

	*s = *r;
	switch (r->op) {
	case VP_READ: case VP_WRITE: case VP_FSYNC: case VP_FALLOCATE: case VP_READDIR:
	case VP_GETLK: case VP_SETLK: case VP_FLOCK:
		return fh_srv(r->fh, ep, &s->fh);
	case VP_SETATTR:
		if (r->fh != VP_NO_FH)
			rc = fh_srv(r->fh, ep, &s->fh);
		break;
	case VP_RENAME: case VP_LINK:
		rc = node_srv(r->node2, ep, &s->node2);
		break;
	default:
		break;
	}
	if (rc == 0)
		rc = node_srv(r->node, ep, &s->node);
	return rc;
}

/* Send @r (our ids) and wait for its reply: 0 with the body in @cur (free
 * *@body), or a positive errno. *@ep: the epoch it was answered in (to map
 * the server ids of the reply). A request whose server went (a snapshot
 * restore) is translated again and sent to the new one. */
static int rpc_ep(struct vp_req *r, uint8_t **body, struct vp_cur *cur, uint32_t *ep)
{
	size_t blen = 0;
	int rc = EIO;

	*body = NULL;
	r->id = new_id();
	for (int tries = 0; tries < 8; tries++) {
		struct vp_req s;

		*ep = ids_epoch();
		rc = to_server(r, &s, *ep);
		if (rc == 0)
			rc = send_srv(&s, *ep, body, &blen);
		if (rc != -ESTALE)
			break;
		rc = ESTALE;
	}
	if (rc == 0 && *body)
		vp_cur_init(cur, *body, blen);
	return rc;
}

static int rpc(struct vp_req *r, uint8_t **body, struct vp_cur *cur)
{
	uint32_t ep;

	return rpc_ep(r, body, cur, &ep);
}

/* Tell the server of @ep to forget @count lookups of its node @srv. */
static void forget_srv(uint64_t srv, uint64_t count, uint32_t ep)
{
	struct vp_req s = { .op = VP_FORGET, .id = new_id(), .node = srv, .len = count };
	uint8_t *body;
	size_t blen;

	send_srv(&s, ep, &body, &blen);
	free(body);
}

static void attr_to_stat(const struct vp_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = a->blksize;
	st->st_atim = (struct timespec){ a->atime, a->atime_ns };
	st->st_mtim = (struct timespec){ a->mtime, a->mtime_ns };
	st->st_ctim = (struct timespec){ a->ctime, a->ctime_ns };
}

/* The entry of a reply answered in @epoch for @name under @parent: the
 * server's node becomes one of ours (one more kernel lookup). */
static int get_entry(struct vp_cur *c, uint32_t epoch, uint64_t parent, const char *name,
		     struct fuse_entry_param *ep)
{
	struct vp_attr a;
	uint64_t srv;

	memset(ep, 0, sizeof(*ep));
	srv = vp_get_u64(c);
	vp_get_attr(c, &a);
	if (c->bad || srv == 0)
		return EIO;
	ep->ino = ids_add(parent, name, srv, epoch);
	if (!ep->ino) {
		if (epoch == ids_epoch())
			forget_srv(srv, 1, epoch);
		return ESTALE;
	}
	attr_to_stat(&a, &ep->attr);
	ep->attr_timeout = V.timeout;
	ep->entry_timeout = V.timeout;
	return 0;
}

static void copy_name(char *dst, const char *src)
{
	snprintf(dst, VP_NAME_MAX + 1, "%s", src);
}

/* Requests whose reply is an entry (lookup, mknod, mkdir, symlink, link):
 * the new name is @name under @parent. */
static void reply_entry_rpc(fuse_req_t req, struct vp_req *r, uint64_t parent, const char *name)
{
	struct fuse_entry_param ep;
	struct vp_cur c;
	uint8_t *body;
	uint32_t epoch;
	int rc = rpc_ep(r, &body, &c, &epoch);

	if (rc == 0)
		rc = get_entry(&c, epoch, parent, name, &ep);
	free(body);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_entry(req, &ep);
}

static int name_ok(fuse_req_t req, const char *name)
{
	if (strlen(name) > VP_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return 0;
	}
	return 1;
}

static void reply_plain(fuse_req_t req, struct vp_req *r)
{
	struct vp_cur c;
	uint8_t *body;
	int rc = rpc(r, &body, &c);

	free(body);
	fuse_reply_err(req, rc);
}

static void vf_init(void *ud, struct fuse_conn_info *conn)
{
	(void)ud;
	if (conn->max_write > V.max_data)
		conn->max_write = V.max_data;
	else
		conn->max_write = V.max_data < (1u << 20) ? V.max_data : (1u << 20);
	conn->want |= conn->capable & (FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS |
				       FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_READ |
				       FUSE_CAP_AUTO_INVAL_DATA);
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static void vf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vp_req r = { .op = VP_LOOKUP, .node = parent };

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	reply_entry_rpc(req, &r, parent, name);
}

/* The server learns of a forget only when the kernel has forgotten a node
 * entirely (ids_forget), of what it counted itself. */
static void forget_one(uint64_t g, uint64_t n)
{
	uint32_t ep;
	uint64_t srv, count;

	if (ids_forget(g, n, &srv, &count, &ep))
		forget_srv(srv, count, ep);
}

static void vf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	forget_one(ino, n);
	fuse_reply_none(req);
}

static void vf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		forget_one(f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void reply_attr_rpc(fuse_req_t req, struct vp_req *r)
{
	struct vp_attr a;
	struct stat st;
	struct vp_cur c;
	uint8_t *body;
	int rc = rpc(r, &body, &c);

	if (rc == 0) {
		vp_get_attr(&c, &a);
		if (c.bad)
			rc = EIO;
	}
	free(body);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, V.timeout);
}

static void vf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_GETATTR, .node = ino };

	(void)fi;
	reply_attr_rpc(req, &r);
}

static void vf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_SETATTR, .node = ino, .fh = fi ? fi->fh : VP_NO_FH };

	if (to_set & FUSE_SET_ATTR_MODE) {
		r.valid |= VP_SET_MODE;
		r.mode = attr->st_mode;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		r.valid |= VP_SET_UID;
		r.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		r.valid |= VP_SET_GID;
		r.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		r.valid |= VP_SET_SIZE;
		r.len = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		r.valid |= VP_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME) {
		r.valid |= VP_SET_ATIME;
		r.atime = attr->st_atim.tv_sec;
		r.atime_ns = (uint32_t)attr->st_atim.tv_nsec;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		r.valid |= VP_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME) {
		r.valid |= VP_SET_MTIME;
		r.mtime = attr->st_mtim.tv_sec;
		r.mtime_ns = (uint32_t)attr->st_mtim.tv_nsec;
	}
	reply_attr_rpc(req, &r);
}

static void vf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vp_req r = { .op = VP_READLINK, .node = ino };
	char buf[VP_PATH_MAX + 1];
	const uint8_t *p = NULL;
	struct vp_cur c;
	uint8_t *body;
	uint32_t n = 0;
	int rc = rpc(&r, &body, &c);

	if (rc == 0) {
		p = vp_get_blob(&c, VP_PATH_MAX, &n);
		if (!p)
			rc = EIO;
	}
	if (rc == 0) {
		memcpy(buf, p, n);
		buf[n] = '\0';
	}
	free(body);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_readlink(req, buf);
}

static void vf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vp_req r = { .op = VP_MKNOD, .node = parent, .mode = mode, .rdev = (uint32_t)rdev,
			    .uid = ctx->uid, .gid = ctx->gid };

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	reply_entry_rpc(req, &r, parent, name);
}

static void vf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vp_req r = { .op = VP_MKDIR, .node = parent, .mode = mode, .uid = ctx->uid,
			    .gid = ctx->gid };

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	reply_entry_rpc(req, &r, parent, name);
}

static void vf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vp_req r = { .op = VP_SYMLINK, .node = parent, .uid = ctx->uid, .gid = ctx->gid,
			    .data = (const uint8_t *)link, .data_len = (uint32_t)strlen(link) };

	if (!name_ok(req, name))
		return;
	if (r.data_len > VP_PATH_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	copy_name(r.name, name);
	reply_entry_rpc(req, &r, parent, name);
}

static void vf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct vp_req r = { .op = VP_LINK, .node = ino, .node2 = newparent };

	if (!name_ok(req, newname))
		return;
	copy_name(r.name2, newname);
	reply_entry_rpc(req, &r, newparent, newname);
}

/* UNLINK and RMDIR: the name is known no more. */
static void remove_name(fuse_req_t req, uint16_t op, fuse_ino_t parent, const char *name)
{
	struct vp_req r = { .op = op, .node = parent };
	struct vp_cur c;
	uint8_t *body;
	int rc;

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	rc = rpc(&r, &body, &c);
	free(body);
	if (rc == 0)
		ids_unlink(parent, name);
	fuse_reply_err(req, rc);
}

static void vf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, VP_UNLINK, parent, name);
}

static void vf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, VP_RMDIR, parent, name);
}

static void vf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct vp_req r = { .op = VP_RENAME, .node = parent, .node2 = newparent, .flags = flags };

	struct vp_cur c;
	uint8_t *body;
	int rc;

	if (!name_ok(req, name) || !name_ok(req, newname))
		return;
	copy_name(r.name, name);
	copy_name(r.name2, newname);
	rc = rpc(&r, &body, &c);
	free(body);
	if (rc == 0)
		ids_rename(parent, name, newparent, newname, flags & RENAME_EXCHANGE);
	fuse_reply_err(req, rc);
}

/* OPEN and OPENDIR: one of our handles over the server's. */
static int get_fh(struct vp_req *r, bool dir, uint64_t *fh)
{
	struct vp_cur c;
	uint8_t *body;
	uint32_t ep;
	int rc = rpc_ep(r, &body, &c, &ep);

	if (rc == 0) {
		uint64_t srv = vp_get_u64(&c);

		if (c.bad)
			rc = EIO;
		else
			*fh = handle_new(r->node, srv, ep, r->flags, dir);
	}
	free(body);
	return rc;
}

/* RELEASE and RELEASEDIR: a former server's handle went with it. */
static int release_fh(uint16_t op, uint64_t fh)
{
	struct ghandle *h = handle_of(fh);
	struct vp_req s = { .op = op, .id = new_id(), .fh = h->srv };
	uint32_t ep = h->epoch;
	uint8_t *body = NULL;
	size_t blen;
	int rc = 0;

	handle_free(fh);
	if (ep == ids_epoch())
		rc = send_srv(&s, ep, &body, &blen);
	free(body);
	return rc < 0 ? 0 : rc;
}

static void vf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_OPEN, .node = ino, .flags = (uint32_t)fi->flags };
	uint64_t fh;
	int rc = 0;

	/* A read-only open costs the server nothing until a read misses the
	 * page cache: the handle is opened there on first use (fh_srv), as
	 * after a restore. Permissions are the kernel's (default_permissions),
	 * and a node's server fd reopens its inode even once unlinked, so the
	 * open cannot fail there for a reason it could not fail here. */
	if ((fi->flags & O_ACCMODE) == O_RDONLY && !(fi->flags & O_TRUNC))
		fh = handle_new(ino, 0, 0, r.flags, false);
	else
		rc = get_fh(&r, false, &fh);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	fi->fh = fh;
	/* Cached pages stay across opens; the kernel drops them when a
	 * refreshed attribute shows a change (FUSE_CAP_AUTO_INVAL_DATA), so
	 * host changes show within --attr-timeout. */
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		release_fh(VP_RELEASE, fh);
}

static void vf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vp_req r = { .op = VP_CREATE, .node = parent, .mode = mode,
			    .flags = (uint32_t)fi->flags, .uid = ctx->uid, .gid = ctx->gid };
	struct fuse_entry_param ep;
	struct vp_cur c;
	uint8_t *body;
	uint32_t epoch;
	int rc;

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	rc = rpc_ep(&r, &body, &c, &epoch);
	if (rc == 0)
		rc = get_entry(&c, epoch, parent, name, &ep);
	if (rc == 0) {
		uint64_t srv = vp_get_u64(&c);

		if (c.bad)
			rc = EIO;
		else
			fi->fh = handle_new(ep.ino, srv, epoch, r.flags, false);
	}
	free(body);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_create(req, &ep, fi);
}

static void vf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_READ, .fh = fi->fh, .off = (uint64_t)off,
			    .size = (uint32_t)(size > V.max_data ? V.max_data : size) };
	const uint8_t *p = NULL;
	struct vp_cur c;
	uint8_t *body;
	uint32_t n = 0;
	int rc;

	(void)ino;
	rc = rpc(&r, &body, &c);
	if (rc == 0 && !(p = vp_get_blob(&c, r.size, &n)))
		rc = EIO;
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_buf(req, (const char *)p, n);
	free(body);
}

static void vf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	size_t done = 0;
	int rc = 0;

	(void)ino;
	while (done < size || size == 0) {
		size_t n = size - done > V.max_data ? V.max_data : size - done;
		struct vp_req r = { .op = VP_WRITE, .fh = fi->fh, .off = (uint64_t)off + done,
				    .data = (const uint8_t *)buf + done, .data_len = (uint32_t)n };
		struct vp_cur c;
		uint8_t *body;
		uint32_t w;

		rc = rpc(&r, &body, &c);
		if (rc == 0) {
			w = vp_get_u32(&c);
			if (c.bad || w > n)
				rc = EIO;
		}
		free(body);
		if (rc)
			break;
		done += w;
		if (w < n || size == 0)
			break;
	}
	if (rc && done == 0)
		fuse_reply_err(req, rc);
	else
		fuse_reply_write(req, done);
}

/* Nothing to do at close(): ENOSYS tells the kernel to stop sending FLUSH
 * at all (writes go through at once; locks end with RELEASE). */
static void vf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);
}

static void vf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, release_fh(VP_RELEASE, fi->fh));
}

static void vf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_FSYNC, .fh = fi->fh, .flags = datasync ? 1 : 0 };

	(void)ino;
	reply_plain(req, &r);
}

static void vf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_OPENDIR, .node = ino };
	uint64_t fh;
	int rc = get_fh(&r, true, &fh);

	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	fi->fh = fh;
	if (fuse_reply_open(req, fi) == -ENOENT)
		release_fh(VP_RELEASEDIR, fh);
}

static void vf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_READDIR, .fh = fi->fh, .off = (uint64_t)off,
			    .size = (uint32_t)(size > VP_MAX_DATA ? VP_MAX_DATA : size) };
	char *buf = xmalloc(size ? size : 1);
	size_t used = 0;
	struct vp_cur c;
	uint8_t *body;
	uint32_t count, i;
	int rc;

	(void)ino;
	rc = rpc(&r, &body, &c);
	if (rc == 0) {
		count = vp_get_u32(&c);
		for (i = 0; i < count && !c.bad; i++) {
			char name[VP_NAME_MAX + 1];
			struct stat st = { 0 };
			uint64_t dino = vp_get_u64(&c), doff = vp_get_u64(&c);
			uint32_t type = vp_get_u32(&c);
			int nl = vp_get_name(&c, name);
			size_t need;

			if (c.bad || nl <= 0 || strlen(name) != (size_t)nl || strchr(name, '/')) {
				rc = EIO;
				break;
			}
			st.st_ino = dino;
			st.st_mode = (mode_t)((type & 0xf) << 12);
			need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)doff);
			if (need > size - used)
				break;
			used += need;
		}
		if (c.bad)
			rc = EIO;
	}
	free(body);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void vf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, release_fh(VP_RELEASEDIR, fi->fh));
}

static void vf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void vf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vp_req r = { .op = VP_STATFS, .node = ino };
	struct statvfs sv = { 0 };
	struct vp_cur c;
	uint8_t *body;
	int rc = rpc(&r, &body, &c);

	if (rc == 0) {
		sv.f_bsize = vp_get_u64(&c);
		sv.f_frsize = vp_get_u64(&c);
		sv.f_blocks = vp_get_u64(&c);
		sv.f_bfree = vp_get_u64(&c);
		sv.f_bavail = vp_get_u64(&c);
		sv.f_files = vp_get_u64(&c);
		sv.f_ffree = vp_get_u64(&c);
		sv.f_namemax = vp_get_u64(&c);
		if (c.bad)
			rc = EIO;
	}
	free(body);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_statfs(req, &sv);
}

static void vf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct vp_req r = { .op = VP_SETXATTR, .node = ino, .flags = (uint32_t)flags,
			    .data = (const uint8_t *)value, .data_len = (uint32_t)size };

	if (strlen(name) > VP_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (size > VP_XATTR_MAX) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	copy_name(r.name, name);
	reply_plain(req, &r);
}

static void reply_xattr_rpc(fuse_req_t req, struct vp_req *r)
{
	const uint8_t *p = NULL;
	struct vp_cur c;
	uint8_t *body;
	uint32_t n = 0;
	int rc;

	if (r->size > VP_XATTR_MAX)
		r->size = VP_XATTR_MAX;
	rc = rpc(r, &body, &c);
	if (rc == 0 && r->size == 0) {
		n = vp_get_u32(&c);
		rc = c.bad ? EIO : 0;
		free(body);
		if (rc)
			fuse_reply_err(req, rc);
		else
			fuse_reply_xattr(req, n);
		return;
	}
	if (rc == 0 && !(p = vp_get_blob(&c, r->size, &n)))
		rc = EIO;
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_buf(req, (const char *)p, n);
	free(body);
}

static void vf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct vp_req r = { .op = VP_GETXATTR, .node = ino, .size = (uint32_t)size };

	if (strlen(name) > VP_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	copy_name(r.name, name);
	reply_xattr_rpc(req, &r);
}

static void vf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct vp_req r = { .op = VP_LISTXATTR, .node = ino, .size = (uint32_t)size };

	reply_xattr_rpc(req, &r);
}

static void vf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct vp_req r = { .op = VP_REMOVEXATTR, .node = ino };

	if (strlen(name) > VP_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	copy_name(r.name, name);
	reply_plain(req, &r);
}

static void lock_req(struct vp_req *r, struct fuse_file_info *fi, const struct flock *l)
{
	r->fh = fi->fh;
	r->owner = fi->lock_owner;
	r->flags = (uint32_t)l->l_type;
	r->off = (uint64_t)l->l_start;
	r->len = l->l_len == 0 ? UINT64_MAX : (uint64_t)(l->l_start + l->l_len - 1);
	r->pid = (uint32_t)l->l_pid;
}

static void vf_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *l)
{
	struct vp_req r = { .op = VP_GETLK };
	struct vp_cur c;
	uint8_t *body;
	int rc;

	(void)ino;
	lock_req(&r, fi, l);
	rc = rpc(&r, &body, &c);
	if (rc == 0) {
		uint64_t start, end;

		l->l_type = (short)vp_get_u32(&c);
		start = vp_get_u64(&c);
		end = vp_get_u64(&c);
		l->l_pid = (pid_t)vp_get_u32(&c);
		l->l_whence = SEEK_SET;
		l->l_start = (off_t)start;
		l->l_len = end == UINT64_MAX ? 0 : (off_t)(end - start + 1);
		if (c.bad)
			rc = EIO;
	}
	free(body);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_lock(req, l);
}

static void vf_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *l,
		     int sleep)
{
	int rc;

	(void)ino;
	/* The server never blocks: a waiting lock is retried here. */
	for (;;) {
		struct vp_req r = { .op = VP_SETLK };
		struct vp_cur c;
		uint8_t *body;

		lock_req(&r, fi, l);
		rc = rpc(&r, &body, &c);
		free(body);
		if (!sleep || (rc != EAGAIN && rc != EACCES))
			break;
		if (fuse_req_interrupted(req)) {
			rc = EINTR;
			break;
		}
		usleep(10000);
	}
	fuse_reply_err(req, rc);
}

static void vf_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	int rc;

	(void)ino;
	for (;;) {
		struct vp_req r = { .op = VP_FLOCK, .fh = fi->fh, .owner = fi->lock_owner,
				    .flags = (uint32_t)(op & ~LOCK_NB) };
		struct vp_cur c;
		uint8_t *body;

		rc = rpc(&r, &body, &c);
		free(body);
		if ((op & LOCK_NB) || rc != EWOULDBLOCK)
			break;
		if (fuse_req_interrupted(req)) {
			rc = EINTR;
			break;
		}
		usleep(10000);
	}
	fuse_reply_err(req, rc);
}

static void vf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_FALLOCATE, .fh = fi->fh, .flags = (uint32_t)mode,
			    .off = (uint64_t)off, .len = (uint64_t)len };

	(void)ino;
	reply_plain(req, &r);
}

static const struct fuse_lowlevel_ops ops = {
	.init = vf_init,
	.lookup = vf_lookup,
	.forget = vf_forget,
	.forget_multi = vf_forget_multi,
	.getattr = vf_getattr,
	.setattr = vf_setattr,
	.readlink = vf_readlink,
	.mknod = vf_mknod,
	.mkdir = vf_mkdir,
	.symlink = vf_symlink,
	.link = vf_link,
	.unlink = vf_unlink,
	.rmdir = vf_rmdir,
	.rename = vf_rename,
	.open = vf_open,
	.create = vf_create,
	.read = vf_read,
	.write = vf_write,
	.flush = vf_flush,
	.release = vf_release,
	.fsync = vf_fsync,
	.opendir = vf_opendir,
	.readdir = vf_readdir,
	.releasedir = vf_releasedir,
	.fsyncdir = vf_fsyncdir,
	.statfs = vf_statfs,
	.setxattr = vf_setxattr,
	.getxattr = vf_getxattr,
	.listxattr = vf_listxattr,
	.removexattr = vf_removexattr,
	.getlk = vf_getlk,
	.setlk = vf_setlk,
	.flock = vf_flock,
	.fallocate = vf_fallocate,
};

static int hello(struct fc_err *e)
{
	struct hello h;
	int rc = hello_on(&V.conns[0], &h);

	if (rc < 0)
		return fc_err_set(e, EPROTO, "hello: no answer");
	if (rc == EPROTO)
		return fc_err_set(e, EPROTO, "hello: the server speaks another protocol");
	if (rc)
		return fc_err_set(e, rc, "hello");
	V.max_data = h.max_data;
	V.ro = h.flags & VP_HELLO_RO;
	V.instance = h.instance;
	ids_init(h.root);
	for (unsigned i = 0; i < V.nconns; i++)
		V.conns[i].epoch = ids_epoch();
	return 0;
}

static void inval_one(uint64_t g, uint64_t parent, const char *name, void *arg)
{
	(void)arg;
	fuse_lowlevel_notify_inval_inode(V.se, g, 0, 0);
	if (name)
		fuse_lowlevel_notify_inval_entry(V.se, parent, name, strlen(name));
}

/* The watcher: an idle connection that became readable was reset (the
 * server never speaks first), as every vsock connection is by a snapshot
 * restore; it is dialled again at once, so that a new server is seen even
 * before the next request, and then the kernel's cached names, attributes
 * and pages of the former server's directory are dropped. */
static void *watcher(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec ts;
		bool inval;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&V.lock);
		if (!V.inval)
			pthread_cond_timedwait(&V.watch, &V.lock, &ts);
		inval = V.inval;
		V.inval = false;
		pthread_mutex_unlock(&V.lock);
		if (inval)
			ids_foreach(inval_one, NULL);
		for (unsigned i = 0; i < V.nconns; i++) {
			struct pconn *c = conn_take(true, i);
			struct pollfd pfd;

			if (!c)
				continue;
			pfd = (struct pollfd){ .fd = c->fd, .events = POLLIN };
			if (c->fd >= 0 && poll(&pfd, 1, 0) > 0)
				conn_redial(c, V.reconnect_ms);
			conn_give(c);
		}
	}
	return NULL;
}

static double parse_secs(const char *s, const char *what)
{
	char *end;
	double d = strtod(s, &end);

	if (*s == '\0' || *end || d < 0 || d > 3600)
		usage_err(usage_text, "invalid %s '%s': must be 0..3600 seconds", what, s);
	return d;
}

enum { O_CONNECT = 256, O_VSOCK, O_CID, O_CONNS, O_ATTR, O_RECONNECT, O_READY };

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "connect", required_argument, NULL, O_CONNECT },
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "cid", required_argument, NULL, O_CID },
		{ "connections", required_argument, NULL, O_CONNS },
		{ "attr-timeout", required_argument, NULL, O_ATTR },
		{ "reconnect-timeout", required_argument, NULL, O_RECONNECT },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *fargv[8], optbuf[1024];
	const char *extra = NULL, *mnt;
	unsigned nconns = 4, i;
	int c, fargc = 0, ready_fd = -1, rc;
	struct fuse_args args;
	struct fuse_session *se;
	struct fuse_loop_config *lc;
	struct fc_err e = { 0 };
	uint64_t n;

	log_init("fc-volfs");
	while ((c = getopt_long(argc, argv, "o:vqh", lopts, NULL)) != -1) {
		switch (c) {
		case O_CONNECT: V.unix_path = optarg; break;
		case O_VSOCK:
			if (parse_u64(optarg, 1, UINT32_MAX - 1, "--vsock", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			V.port = (unsigned)n;
			break;
		case O_CID:
			if (parse_u64(optarg, 0, UINT32_MAX - 1, "--cid", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			V.cid = (unsigned)n;
			break;
		case O_CONNS:
			if (parse_u64(optarg, 1, MAX_CONNS, "--connections", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			nconns = (unsigned)n;
			break;
		case O_ATTR: V.timeout = parse_secs(optarg, "--attr-timeout"); break;
		case O_RECONNECT:
			V.reconnect_ms = (int)(parse_secs(optarg, "--reconnect-timeout") * 1000);
			break;
		case O_READY:
			if (parse_u64(optarg, 0, 1023, "--ready-fd", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			ready_fd = (int)n;
			if (fcntl(ready_fd, F_GETFD) < 0)
				usage_err(usage_text, "--ready-fd %d is not an open descriptor", ready_fd);
			break;
		case 'o': extra = optarg; break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_err(usage_text, "bad arguments");
		}
	}
	if (!!V.unix_path == !!V.port)
		usage_err(usage_text, "exactly one of --connect and --vsock is required");
	if (optind != argc - 1)
		usage_err(usage_text, "one MOUNTPOINT is required");
	mnt = argv[optind];

	/* The first connection must work now; the others are made alongside. */
	V.nconns = nconns;
	for (i = 0; i < nconns; i++) {
		int saved = V.reconnect_ms;

		V.conns[i].fd = dial(i == 0 ? saved : 2000, &e);
		if (V.conns[i].fd < 0)
			fc_err_exit(&e, 1);
	}
	if (hello(&e) < 0)
		fc_err_exit(&e, 1);

	snprintf(optbuf, sizeof(optbuf), "default_permissions,fsname=fc-volume,subtype=fc-volume%s%s%s%s",
		 geteuid() == 0 ? ",allow_other" : "", V.ro ? ",ro" : "", extra ? "," : "",
		 extra ? extra : "");
	fargv[fargc++] = argv[0];
	fargv[fargc++] = "-o";
	fargv[fargc++] = optbuf;
	fargv[fargc] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(fargc, fargv);
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		diex("cannot start the FUSE session (options '%s')", optbuf);
	if (fuse_set_signal_handlers(se) != 0)
		diex("cannot set signal handlers");
	if (fuse_session_mount(se, mnt) != 0)
		diex("cannot mount on '%s'", mnt);
	V.se = se;
	{
		pthread_t t;

		if (pthread_create(&t, NULL, watcher, NULL) != 0)
			diex("cannot start the connection watcher");
		pthread_detach(t);
	}
	if (ready_fd >= 0) {
		dprintf(ready_fd, "ready %s\n", mnt);
		if (ready_fd > STDERR_FILENO)
			close(ready_fd);
	}
	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(lc, 64);
	fuse_loop_cfg_set_idle_threads(lc, 16);
	rc = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	/* the connections close with the process (the watcher may hold one) */
	return rc < 0 ? 1 : 0;
}
