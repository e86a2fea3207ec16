/* fs.c - the node and handle tables and the request handler (volume.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "util.h"
#include "volume.h"

#define RES_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static int openat2_beneath(int dirfd, const char *name, uint64_t flags, uint64_t mode)
{
	struct open_how how = { .flags = flags | O_CLOEXEC | O_NOFOLLOW, .mode = mode,
				.resolve = RES_FLAGS };

	return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
}

static uint32_t hash_of(dev_t dev, ino_t ino, uint32_t mask)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;

	return (uint32_t)(h >> 32) & mask;
}

static uint64_t node_id(const struct vol *v, uint32_t idx)
{
	return (uint64_t)v->nodes[idx].gen << 32 | idx;
}

static struct vnode *node_get(struct vol *v, uint64_t id)
{
	uint32_t idx = (uint32_t)id;

	if (idx == 0 || idx >= v->nnodes || v->nodes[idx].fd < 0 ||
	    v->nodes[idx].gen != (uint32_t)(id >> 32))
		return NULL;
	return &v->nodes[idx];
}

static void hash_remove(struct vol *v, uint32_t idx)
{
	struct vnode *n = &v->nodes[idx];
	uint32_t *p = &v->hash[hash_of(n->dev, n->ino, v->hash_mask)];

	while (*p && *p != idx)
		p = &v->nodes[*p].hnext;
	if (*p)
		*p = n->hnext;
	n->hnext = 0;
}

static void node_drop(struct vol *v, uint32_t idx)
{
	struct vnode *n = &v->nodes[idx];

	hash_remove(v, idx);
	close(n->fd);
	n->fd = -1;
	n->nlookup = 0;
	n->gen++;
	if (n->gen == 0)
		n->gen = 1;
	n->hnext = v->free_node;
	v->free_node = idx;
	v->used_nodes--;
}

static void attr_of(const struct stat *st, struct vp_attr *a)
{
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = (uint32_t)st->st_rdev;
	a->blksize = (uint32_t)st->st_blksize;
	a->atime = st->st_atim.tv_sec;
	a->atime_ns = (uint32_t)st->st_atim.tv_nsec;
	a->mtime = st->st_mtim.tv_sec;
	a->mtime_ns = (uint32_t)st->st_mtim.tv_nsec;
	a->ctime = st->st_ctim.tv_sec;
	a->ctime_ns = (uint32_t)st->st_ctim.tv_nsec;
}

static int stat_fd(int fd, struct stat *st)
{
	return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* Take @fd (O_PATH) as a node: the existing one for its inode, or a new
 * one. One more lookup either way. Returns the index or a negative errno
 * (the fd is closed). */
static int node_add(struct vol *v, int fd, struct stat *st)
{
	uint32_t idx, h;
	int r = stat_fd(fd, st);

	if (r < 0) {
		close(fd);
		return r;
	}
	h = hash_of(st->st_dev, st->st_ino, v->hash_mask);
	for (idx = v->hash[h]; idx; idx = v->nodes[idx].hnext) {
		if (v->nodes[idx].dev == st->st_dev && v->nodes[idx].ino == st->st_ino) {
			close(fd);
			v->nodes[idx].nlookup++;
			return (int)idx;
		}
	}
	if (v->free_node) {
		idx = v->free_node;
		v->free_node = v->nodes[idx].hnext;
	} else if (v->nnodes < v->max_nodes + 2) {
		idx = v->nnodes++;
		v->nodes[idx].gen = 1;
	} else {
		close(fd);
		return -ENFILE;
	}
	v->nodes[idx].fd = fd;
	v->nodes[idx].dev = st->st_dev;
	v->nodes[idx].ino = st->st_ino;
	v->nodes[idx].type = st->st_mode & S_IFMT;
	v->nodes[idx].nlookup = 1;
	v->nodes[idx].hnext = v->hash[h];
	v->hash[h] = idx;
	v->used_nodes++;
	return (int)idx;
}

int vol_init(struct vol *v, const char *dir, bool ro, uint32_t max_nodes, uint32_t max_handles,
	     struct fc_err *e)
{
	uint32_t hsize = 1024, i;
	struct stat st;
	int fd;

	memset(v, 0, sizeof(*v));
	v->ro = ro;
	v->proc_fd = -1;
	/* HELLO's instance: tells a client that survived a snapshot restore
	 * that our node ids and handles are not its former server's. */
	if (getrandom(&v->instance, sizeof(v->instance), 0) != sizeof(v->instance))
		return fc_err_set(e, errno, "getrandom");
	fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fc_err_set(e, errno, "open the shared directory '%s'", dir);
	v->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (v->proc_fd < 0) {
		close(fd);
		return fc_err_set(e, errno, "open /proc/self/fd");
	}
	while (hsize < max_nodes && hsize < (1u << 24))
		hsize <<= 1;
	v->hash_mask = hsize - 1;
	v->hash = xcalloc(hsize, sizeof(*v->hash));
	v->max_nodes = max_nodes;
	v->nodes = xcalloc((size_t)max_nodes + 2, sizeof(*v->nodes));
	for (i = 0; i < max_nodes + 2; i++)
		v->nodes[i].fd = -1;
	v->nnodes = 1;
	v->max_handles = max_handles;
	v->handles = xcalloc(max_handles, sizeof(*v->handles));
	for (i = 0; i < max_handles; i++)
		v->handles[i].fd = -1;
	if (node_add(v, fd, &st) != VOL_ROOT)
		return fc_err_set(e, errno, "stat the shared directory '%s'", dir);
	/* The root's id is 1 (gen 0), never forgotten. */
	v->nodes[VOL_ROOT].gen = 0;
	v->nodes[VOL_ROOT].nlookup = UINT64_MAX / 2;
	return 0;
}

void vol_free(struct vol *v)
{
	uint32_t i;

	for (i = 0; i < v->max_handles; i++) {
		if (v->handles[i].dirp)
			closedir(v->handles[i].dirp);
		else if (v->handles[i].fd >= 0)
			close(v->handles[i].fd);
	}
	for (i = 1; i < v->nnodes; i++)
		if (v->nodes[i].fd >= 0)
			close(v->nodes[i].fd);
	if (v->proc_fd >= 0)
		close(v->proc_fd);
	free(v->nodes);
	free(v->hash);
	free(v->handles);
	memset(v, 0, sizeof(*v));
}

/* ---- handles ---- */

static int handle_new(struct vol *v, int fd, bool dir, void *dirp, uint64_t *fh)
{
	uint32_t i;

	for (i = 0; i < v->max_handles; i++) {
		struct vhandle *h = &v->handles[i];

		if (h->fd >= 0)
			continue;
		h->fd = fd;
		h->dir = dir;
		h->dirp = dirp;
		h->dir_pos = 0;
		if (++h->gen == 0)
			h->gen = 1;
		v->used_handles++;
		*fh = (uint64_t)h->gen << 32 | i;
		return 0;
	}
	return -EMFILE;
}

static struct vhandle *handle_get(struct vol *v, uint64_t fh, bool dir)
{
	uint32_t i = (uint32_t)fh;

	if (i >= v->max_handles || v->handles[i].fd < 0 ||
	    v->handles[i].gen != (uint32_t)(fh >> 32) || v->handles[i].dir != dir)
		return NULL;
	return &v->handles[i];
}

int vol_handle_fd(struct vol *v, uint64_t fh)
{
	struct vhandle *h = handle_get(v, fh, false);

	return h ? h->fd : -1;
}

static void handle_close(struct vol *v, struct vhandle *h)
{
	if (h->dirp)
		closedir(h->dirp);
	else
		close(h->fd);
	h->fd = -1;
	h->dirp = NULL;
	v->used_handles--;
}

/* ---- replies ---- */

void vol_reply_error(uint16_t op, uint64_t id, int err, struct vp_buf *out)
{
	if (op == VP_FORGET)
		return;
	vp_reply_finish(out, vp_reply_begin(out, op, id, err));
}

static void reply_entry(struct vol *v, uint16_t op, uint64_t id, int idx, const struct stat *st,
			struct vp_buf *out)
{
	struct vp_attr a;
	size_t s = vp_reply_begin(out, op, id, 0);

	attr_of(st, &a);
	vp_put_u64(out, node_id(v, (uint32_t)idx));
	vp_put_attr(out, &a);
	vp_reply_finish(out, s);
}

static void reply_attr(uint16_t op, uint64_t id, const struct stat *st, struct vp_buf *out)
{
	struct vp_attr a;
	size_t s = vp_reply_begin(out, op, id, 0);

	attr_of(st, &a);
	vp_put_attr(out, &a);
	vp_reply_finish(out, s);
}

static void reply_u32(uint16_t op, uint64_t id, uint32_t val, struct vp_buf *out)
{
	size_t s = vp_reply_begin(out, op, id, 0);

	vp_put_u32(out, val);
	vp_reply_finish(out, s);
}

static void reply_u64(uint16_t op, uint64_t id, uint64_t val, struct vp_buf *out)
{
	size_t s = vp_reply_begin(out, op, id, 0);

	vp_put_u64(out, val);
	vp_reply_finish(out, s);
}

/* The data replies (read, getxattr, listxattr): up to r->size bytes go
 * straight into the reply behind their u32 length, whose value is known
 * only once they are in. data_begin() makes the room, data_end() sets
 * the length from what the call got. */
struct data_reply {
	size_t start, lenpos;
};

static uint8_t *data_begin(const struct vp_req *r, struct vp_buf *out, struct data_reply *d)
{
	d->start = vp_reply_begin(out, r->op, r->id, 0);
	d->lenpos = out->len;
	vp_put_u32(out, 0);
	return vp_reserve(out, r->size);
}

/* @k: the bytes got, or < 0 with errno (the reply is dropped). Returns
 * what handle() does: 1, or -errno. */
static int data_end(const struct data_reply *d, ssize_t k, struct vp_buf *out)
{
	if (k < 0) {
		int rc = -errno;

		out->len = d->start;
		return rc;
	}
	out->len = d->lenpos + 4 + (size_t)k;
	for (int i = 0; i < 4; i++)
		out->p[d->lenpos + i] = (uint8_t)((uint32_t)k >> (8 * i));
	vp_reply_finish(out, d->start);
	return 1;
}

static void procname(char buf[16], int fd)
{
	snprintf(buf, 16, "%d", fd);
}

static void procpath(char buf[40], int fd)
{
	snprintf(buf, 40, "/proc/self/fd/%d", fd);
}

/* Look @name up below directory node @p: a new or existing node. */
static int lookup_name(struct vol *v, struct vnode *p, const char *name, struct stat *st)
{
	int fd;

	if (p->type != S_IFDIR)
		return -ENOTDIR;
	fd = openat2_beneath(p->fd, name, O_PATH, 0);
	if (fd < 0)
		return -errno;
	return node_add(v, fd, st);
}

/* A node just made for the guest belongs to the caller's uid/gid (the
 * server runs as root); a set-group-ID parent keeps its group. */
static void own_new(struct vol *v, struct vnode *p, int idx, const struct vp_req *r, struct stat *st)
{
	struct stat ps;
	gid_t gid = r->gid;
	int fd = v->nodes[idx].fd;

	if (stat_fd(p->fd, &ps) == 0 && (ps.st_mode & S_ISGID))
		gid = (gid_t)-1;
	if (st->st_uid == r->uid && (gid == (gid_t)-1 || st->st_gid == gid))
		return;
	if (fchownat(fd, "", r->uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0)
		stat_fd(fd, st);
}

static bool mutating(uint16_t op)
{
	switch (op) {
	case VP_SETATTR: case VP_MKNOD: case VP_MKDIR: case VP_UNLINK: case VP_RMDIR:
	case VP_SYMLINK: case VP_RENAME: case VP_LINK: case VP_CREATE: case VP_WRITE:
	case VP_FALLOCATE: case VP_SETXATTR: case VP_REMOVEXATTR:
		return true;
	}
	return false;
}

static int do_setattr(struct vol *v, struct vnode *n, const struct vp_req *r)
{
	char pn[16], pp[40];

	procname(pn, n->fd);
	procpath(pp, n->fd);
	if (r->valid & VP_SET_MODE) {
		if (n->type == S_IFLNK)
			return -EOPNOTSUPP;
		if (fchmodat(v->proc_fd, pn, r->mode & 07777, 0) < 0)
			return -errno;
	}
	if (r->valid & (VP_SET_UID | VP_SET_GID)) {
		uid_t u = r->valid & VP_SET_UID ? r->uid : (uid_t)-1;
		gid_t g = r->valid & VP_SET_GID ? r->gid : (gid_t)-1;

		if (fchownat(n->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (r->valid & VP_SET_SIZE) {
		struct vhandle *h = r->fh != VP_NO_FH ? handle_get(v, r->fh, false) : NULL;

		if (r->len > INT64_MAX)
			return -EFBIG;
		if (h) {
			if (ftruncate(h->fd, (off_t)r->len) < 0)
				return -errno;
		} else {
			if (n->type == S_IFDIR)
				return -EISDIR;
			if (n->type != S_IFREG)
				return -EINVAL;
			if (truncate(pp, (off_t)r->len) < 0)
				return -errno;
		}
	}
	if (r->valid & (VP_SET_ATIME | VP_SET_MTIME | VP_SET_ATIME_NOW | VP_SET_MTIME_NOW)) {
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } };

		if (r->valid & VP_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (r->valid & VP_SET_ATIME)
			ts[0] = (struct timespec){ r->atime, r->atime_ns };
		if (r->valid & VP_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (r->valid & VP_SET_MTIME)
			ts[1] = (struct timespec){ r->mtime, r->mtime_ns };
		if (utimensat(n->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	return 0;
}

#define OPEN_KEEP (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC | O_NOATIME | O_DIRECT)

static int do_readdir(struct vhandle *h, const struct vp_req *r, struct vp_buf *out)
{
	DIR *d = h->dirp;
	size_t s = vp_reply_begin(out, r->op, r->id, 0), cpos, used = 4;
	uint32_t count = 0;

	if (r->off != h->dir_pos) {
		if (r->off == 0)
			rewinddir(d);
		else
			seekdir(d, (long)r->off);
		h->dir_pos = r->off;
	}
	cpos = out->len;
	vp_put_u32(out, 0);
	for (;;) {
		long before = telldir(d);
		struct dirent *de;
		size_t nl, need;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno) {
				out->len = s;
				vol_reply_error(r->op, r->id, errno, out);
				return 0;
			}
			break;
		}
		nl = strlen(de->d_name);
		need = 8 + 8 + 4 + 2 + nl;
		if (used + need > r->size) {
			seekdir(d, before);
			break;
		}
		used += need;
		vp_put_u64(out, de->d_ino);
		vp_put_u64(out, (uint64_t)de->d_off);
		vp_put_u32(out, de->d_type);
		vp_put_name(out, de->d_name);
		h->dir_pos = (uint64_t)de->d_off;
		count++;
	}
	for (int i = 0; i < 4; i++)
		out->p[cpos + i] = (uint8_t)(count >> (8 * i));
	vp_reply_finish(out, s);
	return 0;
}

static int do_lock(struct vhandle *h, const struct vp_req *r, struct vp_buf *out)
{
	struct flock fl = { 0 };
	size_t s;

	if (r->op == VP_FLOCK) {
		int op = r->flags & (LOCK_SH | LOCK_EX | LOCK_UN);

		if (op != LOCK_SH && op != LOCK_EX && op != LOCK_UN)
			return -EINVAL;
		return flock(h->fd, op | LOCK_NB) < 0 ? -errno : 0;
	}
	if (r->flags != F_RDLCK && r->flags != F_WRLCK && r->flags != F_UNLCK)
		return -EINVAL;
	if (r->off > INT64_MAX || r->len < r->off)
		return -EINVAL;
	fl.l_type = (short)r->flags;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)r->off;
	fl.l_len = r->len >= INT64_MAX ? 0 : (off_t)(r->len - r->off + 1);
	if (r->op == VP_SETLK)
		return fcntl(h->fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
	if (fcntl(h->fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	s = vp_reply_begin(out, r->op, r->id, 0);
	vp_put_u32(out, (uint32_t)fl.l_type);
	vp_put_u64(out, (uint64_t)fl.l_start);
	vp_put_u64(out, fl.l_len == 0 ? UINT64_MAX : (uint64_t)(fl.l_start + fl.l_len - 1));
	vp_put_u32(out, (uint32_t)fl.l_pid);
	vp_reply_finish(out, s);
	return 1;
}

static int handle(struct vol *v, const struct vp_req *r, struct vp_buf *out)
{
	struct vnode *n = NULL, *p2 = NULL;
	struct vhandle *h = NULL;
	struct stat st;
	char pn[16], pp[40];
	size_t s;
	int idx, fd, rc;

	if (v->ro && mutating(r->op))
		return -EROFS;
	switch (r->op) {
	case VP_HELLO: case VP_LOOKUP: case VP_FORGET: case VP_GETATTR: case VP_SETATTR:
	case VP_READLINK: case VP_MKNOD: case VP_MKDIR: case VP_UNLINK: case VP_RMDIR:
	case VP_SYMLINK: case VP_RENAME: case VP_LINK: case VP_OPEN: case VP_CREATE:
	case VP_OPENDIR: case VP_STATFS: case VP_SETXATTR: case VP_GETXATTR: case VP_LISTXATTR:
	case VP_REMOVEXATTR:
		if (r->op != VP_HELLO && !(n = node_get(v, r->node)))
			return -ESTALE;
		break;
	case VP_READ: case VP_WRITE: case VP_RELEASE: case VP_FSYNC: case VP_FALLOCATE:
	case VP_GETLK: case VP_SETLK: case VP_FLOCK:
		if (!(h = handle_get(v, r->fh, false)))
			return -EBADF;
		break;
	case VP_READDIR: case VP_RELEASEDIR:
		if (!(h = handle_get(v, r->fh, true)))
			return -EBADF;
		break;
	default:
		return -ENOSYS;
	}
	if (r->op == VP_RENAME || r->op == VP_LINK) {
		if (!(p2 = node_get(v, r->node2)))
			return -ESTALE;
		if (p2->type != S_IFDIR)
			return -ENOTDIR;
	}
	if (n) {
		procname(pn, n->fd);
		procpath(pp, n->fd);
	}
	switch (r->op) {
	case VP_HELLO:
		s = vp_reply_begin(out, r->op, r->id, 0);
		vp_put_u32(out, VP_VERSION);
		vp_put_u32(out, v->ro ? VP_HELLO_RO : 0);
		vp_put_u64(out, VOL_ROOT);
		vp_put_u32(out, r->size && r->size < VP_MAX_DATA ? r->size : VP_MAX_DATA);
		vp_put_u64(out, v->instance);
		vp_reply_finish(out, s);
		return 1;
	case VP_LOOKUP:
		idx = lookup_name(v, n, r->name, &st);
		if (idx < 0)
			return idx;
		reply_entry(v, r->op, r->id, idx, &st, out);
		return 1;
	case VP_FORGET: {
		uint32_t i = (uint32_t)r->node;

		if (i == VOL_ROOT)
			return 1;
		if (n->nlookup <= r->len)
			node_drop(v, i);
		else
			n->nlookup -= r->len;
		return 1;
	}
	case VP_GETATTR:
		if ((rc = stat_fd(n->fd, &st)) < 0)
			return rc;
		reply_attr(r->op, r->id, &st, out);
		return 1;
	case VP_SETATTR:
		if ((rc = do_setattr(v, n, r)) < 0)
			return rc;
		if ((rc = stat_fd(n->fd, &st)) < 0)
			return rc;
		reply_attr(r->op, r->id, &st, out);
		return 1;
	case VP_READLINK: {
		char buf[VP_PATH_MAX + 1];
		ssize_t k;

		if (n->type != S_IFLNK)
			return -EINVAL;
		k = readlinkat(n->fd, "", buf, sizeof(buf));
		if (k < 0)
			return -errno;
		if ((size_t)k > VP_PATH_MAX)
			return -ENAMETOOLONG;
		s = vp_reply_begin(out, r->op, r->id, 0);
		vp_put_blob(out, buf, (uint32_t)k);
		vp_reply_finish(out, s);
		return 1;
	}
	case VP_MKNOD:
	case VP_MKDIR:
	case VP_SYMLINK:
		if (n->type != S_IFDIR)
			return -ENOTDIR;
		if (r->op == VP_MKNOD) {
			mode_t t = r->mode & S_IFMT;

			/* No device nodes: the guest must not reach host devices. */
			if (t != S_IFIFO && t != S_IFSOCK && t != S_IFREG && t != 0)
				return -EPERM;
			rc = mknodat(n->fd, r->name, r->mode & (S_IFMT | 07777), 0);
		} else if (r->op == VP_MKDIR) {
			rc = mkdirat(n->fd, r->name, r->mode & 07777);
		} else {
			char target[VP_PATH_MAX + 1];

			memcpy(target, r->data, r->data_len);
			target[r->data_len] = '\0';
			rc = symlinkat(target, n->fd, r->name);
		}
		if (rc < 0)
			return -errno;
		idx = lookup_name(v, n, r->name, &st);
		if (idx < 0)
			return idx;
		own_new(v, n, idx, r, &st);
		reply_entry(v, r->op, r->id, idx, &st, out);
		return 1;
	case VP_UNLINK:
	case VP_RMDIR:
		if (n->type != S_IFDIR)
			return -ENOTDIR;
		return unlinkat(n->fd, r->name, r->op == VP_RMDIR ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	case VP_RENAME:
		if (n->type != S_IFDIR)
			return -ENOTDIR;
		if (r->flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
			return -EINVAL;
		return syscall(SYS_renameat2, n->fd, r->name, p2->fd, r->name2, r->flags) < 0 ? -errno : 0;
	case VP_LINK:
		if (n->type == S_IFDIR)
			return -EPERM;
		if (linkat(v->proc_fd, pn, p2->fd, r->name2, AT_SYMLINK_FOLLOW) < 0)
			return -errno;
		if ((rc = stat_fd(n->fd, &st)) < 0)
			return rc;
		n->nlookup++;
		reply_entry(v, r->op, r->id, (int)(uint32_t)r->node, &st, out);
		return 1;
	case VP_OPEN: {
		int fl = (int)(r->flags & OPEN_KEEP);
		uint64_t fh;

		if (n->type != S_IFREG && n->type != S_IFDIR)
			return -EACCES;
		if (v->ro && ((fl & O_ACCMODE) != O_RDONLY || (fl & O_TRUNC)))
			return -EROFS;
		fd = openat(v->proc_fd, pn, fl | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return -errno;
		if ((rc = handle_new(v, fd, false, NULL, &fh)) < 0) {
			close(fd);
			return rc;
		}
		reply_u64(r->op, r->id, fh, out);
		return 1;
	}
	case VP_CREATE: {
		int fl = (int)(r->flags & OPEN_KEEP), pfd;
		bool made = true;
		uint64_t fh;

		if (n->type != S_IFDIR)
			return -ENOTDIR;
		fd = openat2_beneath(n->fd, r->name, (uint64_t)(fl | O_CREAT | O_EXCL | O_NOCTTY),
				     r->mode & 07777);
		if (fd < 0 && errno == EEXIST && !(r->flags & O_EXCL)) {
			/* Open what is there only if it is a regular file: a FIFO
			 * would block the server, a device must not be opened. The
			 * type is checked first, and O_NONBLOCK covers a swap. */
			struct stat ls;
			int lfd = openat2_beneath(n->fd, r->name, O_PATH, 0);

			made = false;
			if (lfd < 0)
				return -errno;
			rc = stat_fd(lfd, &ls);
			close(lfd);
			if (rc < 0)
				return rc;
			if (!S_ISREG(ls.st_mode))
				return S_ISDIR(ls.st_mode) ? -EISDIR : -EACCES;
			fd = openat2_beneath(n->fd, r->name, (uint64_t)(fl | O_NOCTTY | O_NONBLOCK), 0);
		}
		if (fd < 0)
			return -errno;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			return -EACCES;
		}
		if (!made && !(fl & O_NONBLOCK) &&
		    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
		procname(pn, fd);
		pfd = openat(v->proc_fd, pn, O_PATH | O_CLOEXEC);
		if (pfd < 0 || (idx = node_add(v, pfd, &st)) < 0) {
			rc = pfd < 0 ? -errno : idx;
			close(fd);
			return rc;
		}
		if ((rc = handle_new(v, fd, false, NULL, &fh)) < 0) {
			close(fd);
			if (--v->nodes[idx].nlookup == 0)
				node_drop(v, (uint32_t)idx);
			return rc;
		}
		if (made)
			own_new(v, n, idx, r, &st);
		s = vp_reply_begin(out, r->op, r->id, 0);
		{
			struct vp_attr a;

			attr_of(&st, &a);
			vp_put_u64(out, node_id(v, (uint32_t)idx));
			vp_put_attr(out, &a);
		}
		vp_put_u64(out, fh);
		vp_reply_finish(out, s);
		return 1;
	}
	case VP_READ: {
		struct data_reply d;
		uint8_t *p;
		ssize_t k;

		if (r->off > INT64_MAX)
			return -EINVAL;
		p = data_begin(r, out, &d);
		k = pread(h->fd, p, r->size, (off_t)r->off);
		return data_end(&d, k, out);
	}
	case VP_WRITE: {
		ssize_t k;

		if (r->off > INT64_MAX)
			return -EINVAL;
		k = pwrite(h->fd, r->data, r->data_len, (off_t)r->off);
		if (k < 0)
			return -errno;
		reply_u32(r->op, r->id, (uint32_t)k, out);
		return 1;
	}
	case VP_RELEASE:
	case VP_RELEASEDIR:
		handle_close(v, h);
		return 0;
	case VP_FSYNC:
		return ((r->flags & 1) ? fdatasync(h->fd) : fsync(h->fd)) < 0 ? -errno : 0;
	case VP_FALLOCATE:
		if (r->off > INT64_MAX || r->len > INT64_MAX)
			return -EINVAL;
		return fallocate(h->fd, (int)r->flags, (off_t)r->off, (off_t)r->len) < 0 ? -errno : 0;
	case VP_OPENDIR: {
		DIR *d;
		uint64_t fh;

		if (n->type != S_IFDIR)
			return -ENOTDIR;
		fd = openat(v->proc_fd, pn, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (!(d = fdopendir(fd))) {
			rc = -errno;
			close(fd);
			return rc;
		}
		if ((rc = handle_new(v, fd, true, d, &fh)) < 0) {
			closedir(d);
			return rc;
		}
		reply_u64(r->op, r->id, fh, out);
		return 1;
	}
	case VP_READDIR:
		return do_readdir(h, r, out) < 0 ? -EIO : 1;
	case VP_STATFS: {
		struct statvfs sv;

		if (fstatvfs(n->fd, &sv) < 0)
			return -errno;
		s = vp_reply_begin(out, r->op, r->id, 0);
		vp_put_u64(out, sv.f_bsize);
		vp_put_u64(out, sv.f_frsize);
		vp_put_u64(out, sv.f_blocks);
		vp_put_u64(out, sv.f_bfree);
		vp_put_u64(out, sv.f_bavail);
		vp_put_u64(out, sv.f_files);
		vp_put_u64(out, sv.f_ffree);
		vp_put_u64(out, sv.f_namemax);
		vp_reply_finish(out, s);
		return 1;
	}
	case VP_SETXATTR:
	case VP_REMOVEXATTR:
		/* Through /proc/self/fd/N a symlink's attributes are not ours to
		 * reach safely (and user.* is refused on symlinks anyway). */
		if (n->type == S_IFLNK)
			return -EPERM;
		if (r->op == VP_REMOVEXATTR)
			return removexattr(pp, r->name) < 0 ? -errno : 0;
		if (r->flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE))
			return -EINVAL;
		return setxattr(pp, r->name, r->data, r->data_len, (int)r->flags) < 0 ? -errno : 0;
	case VP_GETXATTR:
	case VP_LISTXATTR: {
		struct data_reply d;
		uint8_t *p;
		ssize_t k;

		if (n->type == S_IFLNK)
			return -EOPNOTSUPP;
		if (r->size == 0) {
			k = r->op == VP_GETXATTR ? getxattr(pp, r->name, NULL, 0) : listxattr(pp, NULL, 0);
			if (k < 0)
				return -errno;
			reply_u32(r->op, r->id, (uint32_t)k, out);
			return 1;
		}
		p = data_begin(r, out, &d);
		k = r->op == VP_GETXATTR ? getxattr(pp, r->name, p, r->size)
					 : listxattr(pp, (char *)p, r->size);
		return data_end(&d, k, out);
	}
	case VP_GETLK:
	case VP_SETLK:
	case VP_FLOCK:
		return do_lock(h, r, out);
	}
	return -ENOSYS;
}

void vol_handle(struct vol *v, const struct vp_req *r, struct vp_buf *out)
{
	int rc = handle(v, r, out);

	if (r->op == VP_FORGET)
		return;
	if (rc <= 0)
		vol_reply_error(r->op, r->id, rc < 0 ? -rc : 0, out);
}
