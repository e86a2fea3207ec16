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
 * vsock) is reconnected for up to --reconnect-timeout seconds and the
 * request sent again; node ids and handles are the server's, so they stay
 * valid across connections to the same server.
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
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

#include "log.h"
#include "sock.h"
#include "util.h"
#include "vproto.h"

static const char usage_text[] =
	"usage: fc-volfs (--connect UNIX_PATH | --vsock PORT [--cid CID]) [--connections N]\n"
	"                [--attr-timeout SEC] [--reconnect-timeout SEC] [--ready-fd N]\n"
	"                [-o FUSE_OPTIONS] [-v] [-q] MOUNTPOINT\n";

#define MAX_CONNS 64

struct pconn {
	int fd;
	bool busy;
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
};

static struct volfs V = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.timeout = 1.0,
	.reconnect_ms = 30000,
	.cid = VMADDR_CID_HOST,
};

static int dial(struct fc_err *e)
{
	if (V.unix_path)
		return sock_connect_unix(V.unix_path, V.reconnect_ms, NULL, NULL, e);
	{
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = V.cid, .svm_port = V.port };
		uint64_t end = now_ms() + (uint64_t)V.reconnect_ms;

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

static struct pconn *conn_take(void)
{
	struct pconn *c = NULL;
	unsigned i;

	pthread_mutex_lock(&V.lock);
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

/* Send @r and wait for its reply: 0 with the body in @cur (free *@body),
 * or a positive errno. */
static int rpc(struct vp_req *r, uint8_t **body, struct vp_cur *cur)
{
	struct vp_buf frame = { 0 };
	size_t blen = 0;
	int attempt, rc = EIO;

	*body = NULL;
	r->id = new_id();
	vp_req_encode(&frame, r);
	for (attempt = 0; attempt < 3; attempt++) {
		struct pconn *c = conn_take();

		rc = exchange(c, &frame, r->op, r->id, body, &blen);
		if (rc >= 0) {
			conn_give(c);
			break;
		}
		/* Broken: reconnect this slot and send the request again. */
		if (c->fd >= 0)
			close(c->fd);
		{
			struct fc_err e;

			c->fd = dial(&e);
			if (c->fd < 0)
				log_warn("%s", e.msg);
		}
		conn_give(c);
		rc = EIO;
	}
	vp_buf_free(&frame);
	if (rc == 0 && *body)
		vp_cur_init(cur, *body, blen);
	if (rc != 0) {
		free(*body);
		*body = NULL;
	}
	return rc;
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

static int get_entry(struct vp_cur *c, struct fuse_entry_param *ep)
{
	struct vp_attr a;

	memset(ep, 0, sizeof(*ep));
	ep->ino = vp_get_u64(c);
	vp_get_attr(c, &a);
	if (c->bad || ep->ino == 0)
		return EIO;
	attr_to_stat(&a, &ep->attr);
	ep->attr_timeout = V.timeout;
	ep->entry_timeout = V.timeout;
	return 0;
}

static void copy_name(char *dst, const char *src)
{
	snprintf(dst, VP_NAME_MAX + 1, "%s", src);
}

/* Requests whose reply is an entry (lookup, mknod, mkdir, symlink, link). */
static void reply_entry_rpc(fuse_req_t req, struct vp_req *r)
{
	struct fuse_entry_param ep;
	struct vp_cur c;
	uint8_t *body;
	int rc = rpc(r, &body, &c);

	if (rc == 0)
		rc = get_entry(&c, &ep);
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
	reply_entry_rpc(req, &r);
}

static void vf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	struct vp_req r = { .op = VP_FORGET, .node = ino, .len = n };
	struct vp_cur c;
	uint8_t *body;

	rpc(&r, &body, &c);
	free(body);
	fuse_reply_none(req);
}

static void vf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	size_t i;

	for (i = 0; i < count; i++) {
		struct vp_req r = { .op = VP_FORGET, .node = f[i].ino, .len = f[i].nlookup };
		struct vp_cur c;
		uint8_t *body;

		rpc(&r, &body, &c);
		free(body);
	}
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
	reply_entry_rpc(req, &r);
}

static void vf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct vp_req r = { .op = VP_MKDIR, .node = parent, .mode = mode, .uid = ctx->uid,
			    .gid = ctx->gid };

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	reply_entry_rpc(req, &r);
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
	reply_entry_rpc(req, &r);
}

static void vf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct vp_req r = { .op = VP_LINK, .node = ino, .node2 = newparent };

	if (!name_ok(req, newname))
		return;
	copy_name(r.name2, newname);
	reply_entry_rpc(req, &r);
}

static void vf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vp_req r = { .op = VP_UNLINK, .node = parent };

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	reply_plain(req, &r);
}

static void vf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vp_req r = { .op = VP_RMDIR, .node = parent };

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	reply_plain(req, &r);
}

static void vf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct vp_req r = { .op = VP_RENAME, .node = parent, .node2 = newparent, .flags = flags };

	if (!name_ok(req, name) || !name_ok(req, newname))
		return;
	copy_name(r.name, name);
	copy_name(r.name2, newname);
	reply_plain(req, &r);
}

static int get_fh(struct vp_req *r, uint64_t *fh)
{
	struct vp_cur c;
	uint8_t *body;
	int rc = rpc(r, &body, &c);

	if (rc == 0) {
		*fh = vp_get_u64(&c);
		if (c.bad)
			rc = EIO;
	}
	free(body);
	return rc;
}

static void vf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vp_req r = { .op = VP_OPEN, .node = ino, .flags = (uint32_t)fi->flags };
	uint64_t fh;
	int rc = get_fh(&r, &fh);

	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	fi->fh = fh;
	/* Cached pages stay across opens; the kernel drops them when a
	 * refreshed attribute shows a change (FUSE_CAP_AUTO_INVAL_DATA), so
	 * host changes show within --attr-timeout. */
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		struct vp_req rel = { .op = VP_RELEASE, .fh = fh };
		struct vp_cur c;
		uint8_t *body;

		rpc(&rel, &body, &c);
		free(body);
	}
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
	int rc;

	if (!name_ok(req, name))
		return;
	copy_name(r.name, name);
	rc = rpc(&r, &body, &c);
	if (rc == 0)
		rc = get_entry(&c, &ep);
	if (rc == 0) {
		fi->fh = vp_get_u64(&c);
		if (c.bad)
			rc = EIO;
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
	struct vp_req r = { .op = VP_RELEASE, .fh = fi->fh };

	(void)ino;
	reply_plain(req, &r);
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
	int rc = get_fh(&r, &fh);

	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	fi->fh = fh;
	fuse_reply_open(req, fi);
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
	struct vp_req r = { .op = VP_RELEASEDIR, .fh = fi->fh };

	(void)ino;
	reply_plain(req, &r);
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
	struct vp_req r = { .op = VP_HELLO, .size = VP_MAX_DATA };
	struct vp_cur c;
	uint8_t *body;
	uint32_t version, flags;
	uint64_t root;
	int rc = rpc(&r, &body, &c);

	if (rc)
		return fc_err_set(e, rc, "hello");
	version = vp_get_u32(&c);
	flags = vp_get_u32(&c);
	root = vp_get_u64(&c);
	V.max_data = vp_get_u32(&c);
	free(body);
	if (c.bad || version != VP_VERSION || root != FUSE_ROOT_ID || V.max_data < 4096 ||
	    V.max_data > VP_MAX_DATA)
		return fc_err_set(e, EPROTO, "hello: the server speaks another protocol");
	V.ro = flags & VP_HELLO_RO;
	return 0;
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

		V.reconnect_ms = i == 0 ? saved : 2000;
		V.conns[i].fd = dial(&e);
		V.reconnect_ms = saved;
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
	for (i = 0; i < V.nconns; i++)
		if (V.conns[i].fd >= 0)
			close(V.conns[i].fd);
	return rc < 0 ? 1 : 0;
}
