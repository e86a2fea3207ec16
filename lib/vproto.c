/* vproto.c - see vproto.h
 *
 * Each request's layout is one string of field codes (ops[] below), read by
 * both the encoder and the decoder, so the two cannot disagree:
 *   N node  P node2  F fh  O off  L len  W owner       (u64)
 *   S size  M mode  f flags  U uid  G gid  R rdev  V valid  p pid  (u32)
 *   A atime  T mtime  (i64 seconds + u32 nanoseconds)
 *   n name  m name2  (file names)   x name (an xattr name)
 *   D data (u32-length blob; bound per op in ops[].dmax)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vproto.h"

struct op_desc {
	const char *name;
	const char *fields;
	uint32_t dmax;	/* bound of D */
	uint32_t smax;	/* bound of S */
};

static const struct op_desc ops[VP_OP_MAX] = {
	[VP_HELLO] = { "hello", "S", 0, VP_MAX_DATA },
	[VP_LOOKUP] = { "lookup", "Nn", 0, 0 },
	[VP_FORGET] = { "forget", "NL", 0, 0 },
	[VP_GETATTR] = { "getattr", "N", 0, 0 },
	[VP_SETATTR] = { "setattr", "NFVMUGLAT", 0, 0 },
	[VP_READLINK] = { "readlink", "N", 0, 0 },
	[VP_MKNOD] = { "mknod", "NnMRUG", 0, 0 },
	[VP_MKDIR] = { "mkdir", "NnMUG", 0, 0 },
	[VP_UNLINK] = { "unlink", "Nn", 0, 0 },
	[VP_RMDIR] = { "rmdir", "Nn", 0, 0 },
	[VP_SYMLINK] = { "symlink", "NnUGD", VP_PATH_MAX, 0 },
	[VP_RENAME] = { "rename", "NnPmf", 0, 0 },
	[VP_LINK] = { "link", "NPm", 0, 0 },
	[VP_OPEN] = { "open", "Nf", 0, 0 },
	[VP_CREATE] = { "create", "NnMfUG", 0, 0 },
	[VP_READ] = { "read", "FOS", 0, VP_MAX_DATA },
	[VP_WRITE] = { "write", "FOD", VP_MAX_DATA, 0 },
	[VP_RELEASE] = { "release", "F", 0, 0 },
	[VP_FSYNC] = { "fsync", "Ff", 0, 0 },
	[VP_FALLOCATE] = { "fallocate", "FfOL", 0, 0 },
	[VP_OPENDIR] = { "opendir", "N", 0, 0 },
	[VP_READDIR] = { "readdir", "FOS", 0, VP_MAX_DATA },
	[VP_RELEASEDIR] = { "releasedir", "F", 0, 0 },
	[VP_STATFS] = { "statfs", "N", 0, 0 },
	[VP_SETXATTR] = { "setxattr", "NxDf", VP_XATTR_MAX, 0 },
	[VP_GETXATTR] = { "getxattr", "NxS", 0, VP_XATTR_MAX },
	[VP_LISTXATTR] = { "listxattr", "NS", 0, VP_XATTR_MAX },
	[VP_REMOVEXATTR] = { "removexattr", "Nx", 0, 0 },
	[VP_GETLK] = { "getlk", "FWfOLp", 0, 0 },
	[VP_SETLK] = { "setlk", "FWfOLpS", 0, 1 },
	[VP_FLOCK] = { "flock", "FWf", 0, 0 },
};

const char *vp_op_name(uint16_t op)
{
	return op > 0 && op < VP_OP_MAX ? ops[op].name : "unknown";
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

int vp_hdr_parse(const uint8_t *raw, uint8_t kind, struct vp_hdr *h)
{
	h->len = rd32(raw);
	h->version = raw[4];
	h->kind = raw[5];
	h->op = rd16(raw + 6);
	h->id = rd64(raw + 8);
	if (h->version != VP_VERSION || h->kind != kind || h->op == 0 || h->op >= VP_OP_MAX)
		return -EPROTO;
	if (h->len > VP_MAX_PAYLOAD)
		return -EMSGSIZE;
	return 0;
}

bool vp_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > VP_NAME_MAX || memchr(s, '\0', len) || memchr(s, '/', len))
		return false;
	return !(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.');
}

/* ---- cursor ---- */

void vp_cur_init(struct vp_cur *c, const void *p, size_t len)
{
	c->p = p;
	c->len = len;
	c->pos = 0;
	c->bad = false;
}

const uint8_t *vp_get_bytes(struct vp_cur *c, size_t n)
{
	const uint8_t *r;

	if (c->bad || n > c->len - c->pos) {
		c->bad = true;
		return NULL;
	}
	r = c->p + c->pos;
	c->pos += n;
	return r;
}

uint8_t vp_get_u8(struct vp_cur *c)
{
	const uint8_t *p = vp_get_bytes(c, 1);

	return p ? p[0] : 0;
}

uint16_t vp_get_u16(struct vp_cur *c)
{
	const uint8_t *p = vp_get_bytes(c, 2);

	return p ? rd16(p) : 0;
}

uint32_t vp_get_u32(struct vp_cur *c)
{
	const uint8_t *p = vp_get_bytes(c, 4);

	return p ? rd32(p) : 0;
}

uint64_t vp_get_u64(struct vp_cur *c)
{
	const uint8_t *p = vp_get_bytes(c, 8);

	return p ? rd64(p) : 0;
}

const uint8_t *vp_get_blob(struct vp_cur *c, uint32_t max, uint32_t *n)
{
	uint32_t len = vp_get_u32(c);

	*n = 0;
	if (c->bad || len > max) {
		c->bad = true;
		return NULL;
	}
	*n = len;
	return vp_get_bytes(c, len);
}

int vp_get_name(struct vp_cur *c, char *out)
{
	uint16_t len = vp_get_u16(c);
	const uint8_t *p;

	out[0] = '\0';
	if (c->bad || len > VP_NAME_MAX) {
		c->bad = true;
		return -1;
	}
	p = vp_get_bytes(c, len);
	if (!p)
		return -1;
	memcpy(out, p, len);
	out[len] = '\0';
	return len;
}

void vp_get_attr(struct vp_cur *c, struct vp_attr *a)
{
	a->ino = vp_get_u64(c);
	a->size = vp_get_u64(c);
	a->blocks = vp_get_u64(c);
	a->mode = vp_get_u32(c);
	a->nlink = vp_get_u32(c);
	a->uid = vp_get_u32(c);
	a->gid = vp_get_u32(c);
	a->rdev = vp_get_u32(c);
	a->blksize = vp_get_u32(c);
	a->atime = (int64_t)vp_get_u64(c);
	a->atime_ns = vp_get_u32(c);
	a->mtime = (int64_t)vp_get_u64(c);
	a->mtime_ns = vp_get_u32(c);
	a->ctime = (int64_t)vp_get_u64(c);
	a->ctime_ns = vp_get_u32(c);
}

/* ---- buffer ---- */

uint8_t *vp_reserve(struct vp_buf *b, size_t n)
{
	uint8_t *r;

	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap - b->len < n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	r = b->p + b->len;
	b->len += n;
	return r;
}

void vp_buf_free(struct vp_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void vp_put_u8(struct vp_buf *b, uint8_t v)
{
	*vp_reserve(b, 1) = v;
}

void vp_put_u16(struct vp_buf *b, uint16_t v)
{
	uint8_t *p = vp_reserve(b, 2);

	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void vp_put_u32(struct vp_buf *b, uint32_t v)
{
	uint8_t *p = vp_reserve(b, 4);
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void vp_put_u64(struct vp_buf *b, uint64_t v)
{
	vp_put_u32(b, (uint32_t)v);
	vp_put_u32(b, (uint32_t)(v >> 32));
}

void vp_put_bytes(struct vp_buf *b, const void *p, size_t n)
{
	if (n)
		memcpy(vp_reserve(b, n), p, n);
}

void vp_put_name(struct vp_buf *b, const char *s)
{
	size_t n = strnlen(s, VP_NAME_MAX);

	vp_put_u16(b, (uint16_t)n);
	vp_put_bytes(b, s, n);
}

void vp_put_blob(struct vp_buf *b, const void *p, uint32_t n)
{
	vp_put_u32(b, n);
	vp_put_bytes(b, p, n);
}

void vp_put_attr(struct vp_buf *b, const struct vp_attr *a)
{
	vp_put_u64(b, a->ino);
	vp_put_u64(b, a->size);
	vp_put_u64(b, a->blocks);
	vp_put_u32(b, a->mode);
	vp_put_u32(b, a->nlink);
	vp_put_u32(b, a->uid);
	vp_put_u32(b, a->gid);
	vp_put_u32(b, a->rdev);
	vp_put_u32(b, a->blksize);
	vp_put_u64(b, (uint64_t)a->atime);
	vp_put_u32(b, a->atime_ns);
	vp_put_u64(b, (uint64_t)a->mtime);
	vp_put_u32(b, a->mtime_ns);
	vp_put_u64(b, (uint64_t)a->ctime);
	vp_put_u32(b, a->ctime_ns);
}

static void put_hdr(struct vp_buf *b, uint8_t kind, uint16_t op, uint64_t id)
{
	vp_put_u32(b, 0);
	vp_put_u8(b, VP_VERSION);
	vp_put_u8(b, kind);
	vp_put_u16(b, op);
	vp_put_u64(b, id);
}

static void set_len(struct vp_buf *b, size_t start)
{
	uint32_t n = (uint32_t)(b->len - start - VP_HDR_SIZE);
	int i;

	for (i = 0; i < 4; i++)
		b->p[start + i] = (uint8_t)(n >> (8 * i));
}

size_t vp_reply_begin(struct vp_buf *b, uint16_t op, uint64_t id, int err)
{
	size_t start = b->len;

	put_hdr(b, VP_REPLY, op, id);
	vp_put_u32(b, (uint32_t)err);
	return start;
}

void vp_reply_finish(struct vp_buf *b, size_t start)
{
	set_len(b, start);
}

/* ---- requests ---- */

void vp_req_encode(struct vp_buf *b, const struct vp_req *r)
{
	size_t start = b->len;
	const char *f;

	put_hdr(b, VP_REQUEST, r->op, r->id);
	for (f = r->op < VP_OP_MAX ? ops[r->op].fields : ""; f && *f; f++) {
		switch (*f) {
		case 'N': vp_put_u64(b, r->node); break;
		case 'P': vp_put_u64(b, r->node2); break;
		case 'F': vp_put_u64(b, r->fh); break;
		case 'O': vp_put_u64(b, r->off); break;
		case 'L': vp_put_u64(b, r->len); break;
		case 'W': vp_put_u64(b, r->owner); break;
		case 'S': vp_put_u32(b, r->size); break;
		case 'M': vp_put_u32(b, r->mode); break;
		case 'f': vp_put_u32(b, r->flags); break;
		case 'U': vp_put_u32(b, r->uid); break;
		case 'G': vp_put_u32(b, r->gid); break;
		case 'R': vp_put_u32(b, r->rdev); break;
		case 'V': vp_put_u32(b, r->valid); break;
		case 'p': vp_put_u32(b, r->pid); break;
		case 'A': vp_put_u64(b, (uint64_t)r->atime); vp_put_u32(b, r->atime_ns); break;
		case 'T': vp_put_u64(b, (uint64_t)r->mtime); vp_put_u32(b, r->mtime_ns); break;
		case 'n': case 'x': vp_put_name(b, r->name); break;
		case 'm': vp_put_name(b, r->name2); break;
		case 'D': vp_put_blob(b, r->data, r->data_len); break;
		}
	}
	set_len(b, start);
}

int vp_req_decode(const struct vp_hdr *h, const uint8_t *payload, size_t len, struct vp_req *r)
{
	const struct op_desc *d;
	struct vp_cur c;
	const char *f;
	int n;

	memset(r, 0, sizeof(*r));
	r->op = h->op;
	r->id = h->id;
	if (h->op == 0 || h->op >= VP_OP_MAX || len != h->len)
		return -EPROTO;
	d = &ops[h->op];
	vp_cur_init(&c, payload, len);
	for (f = d->fields; *f; f++) {
		switch (*f) {
		case 'N': r->node = vp_get_u64(&c); break;
		case 'P': r->node2 = vp_get_u64(&c); break;
		case 'F': r->fh = vp_get_u64(&c); break;
		case 'O': r->off = vp_get_u64(&c); break;
		case 'L': r->len = vp_get_u64(&c); break;
		case 'W': r->owner = vp_get_u64(&c); break;
		case 'S':
			r->size = vp_get_u32(&c);
			if (r->size > d->smax)
				return -EINVAL;
			break;
		case 'M': r->mode = vp_get_u32(&c); break;
		case 'f': r->flags = vp_get_u32(&c); break;
		case 'U': r->uid = vp_get_u32(&c); break;
		case 'G': r->gid = vp_get_u32(&c); break;
		case 'R': r->rdev = vp_get_u32(&c); break;
		case 'V': r->valid = vp_get_u32(&c); break;
		case 'p': r->pid = vp_get_u32(&c); break;
		case 'A':
			r->atime = (int64_t)vp_get_u64(&c);
			r->atime_ns = vp_get_u32(&c);
			if (r->atime_ns >= 1000000000u)
				return -EINVAL;
			break;
		case 'T':
			r->mtime = (int64_t)vp_get_u64(&c);
			r->mtime_ns = vp_get_u32(&c);
			if (r->mtime_ns >= 1000000000u)
				return -EINVAL;
			break;
		case 'n':
		case 'm':
		case 'x': {
			char *out = *f == 'm' ? r->name2 : r->name;

			n = vp_get_name(&c, out);
			if (c.bad)
				return -EPROTO;
			if (*f == 'x' ? (n == 0 || memchr(out, '\0', (size_t)n) != NULL)
				      : !vp_name_ok(out, (size_t)n))
				return -EINVAL;
			/* A NUL inside would truncate the copy: refuse it. */
			if (strlen(out) != (size_t)n)
				return -EINVAL;
			break;
		}
		case 'D':
			r->data = vp_get_blob(&c, d->dmax, &r->data_len);
			if (c.bad)
				return r->data_len == 0 && c.pos + 4 <= c.len ? -EINVAL : -EPROTO;
			break;
		}
		if (c.bad)
			return -EPROTO;
	}
	if (c.pos != c.len)
		return -EPROTO;
	if (r->op == VP_SETATTR && (r->valid & ~VP_SET_ALL))
		return -EINVAL;
	if (r->op == VP_SYMLINK && (r->data_len == 0 || memchr(r->data, '\0', r->data_len)))
		return -EINVAL;
	return 0;
}
