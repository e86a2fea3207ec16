/* vproto.h - the volume protocol between fc-volume (host) and fc-volfs
 * (the guest's FUSE client): typed, length-prefixed, versioned frames with
 * every length and count bounded, every reply matched to its request.
 *
 * Frame (little-endian):
 *   u32 len      payload bytes after this 16-byte header (<= VP_MAX_PAYLOAD)
 *   u8  version  VP_VERSION
 *   u8  kind     VP_REQUEST or VP_REPLY
 *   u16 op       enum vp_op
 *   u64 id       chosen by the client; a reply carries its request's id and op
 * A reply's payload starts with u32 err (0, or a positive errno from the
 * host); its body follows only when err is 0. FORGET has no reply.
 * HELLO's body: u32 version, u32 flags, u64 root node, u32 max data, u64
 * instance (random per server process: ids and handles are only valid
 * with the instance that gave them).
 *
 * Inside payloads: u8/u16/u32/u64 fields in the order vp_req_encode writes
 * them; a name is u16 length + bytes (1..255, no NUL; a file name also has
 * no '/' and is not "." or ".."); a blob is u32 length + bytes, bounded per
 * op. A request must be consumed exactly: trailing bytes are an error.
 */
#ifndef FC_VPROTO_H
#define FC_VPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VP_VERSION	 1
#define VP_HDR_SIZE	 16
#define VP_MAX_DATA	 (1u << 20)		/* read/write bytes per request */
#define VP_MAX_PAYLOAD	 (VP_MAX_DATA + 4096u)	/* largest frame payload */
#define VP_NAME_MAX	 255
#define VP_PATH_MAX	 4095			/* symlink target */
#define VP_XATTR_MAX	 65536			/* xattr value / list */
#define VP_REQUEST	 0
#define VP_REPLY	 1
#define VP_NO_FH	 UINT64_MAX

enum vp_op {
	VP_HELLO = 1,
	VP_LOOKUP,
	VP_FORGET,
	VP_GETATTR,
	VP_SETATTR,
	VP_READLINK,
	VP_MKNOD,
	VP_MKDIR,
	VP_UNLINK,
	VP_RMDIR,
	VP_SYMLINK,
	VP_RENAME,
	VP_LINK,
	VP_OPEN,
	VP_CREATE,
	VP_READ,
	VP_WRITE,
	VP_RELEASE,
	VP_FSYNC,
	VP_FALLOCATE,
	VP_OPENDIR,
	VP_READDIR,
	VP_RELEASEDIR,
	VP_STATFS,
	VP_SETXATTR,
	VP_GETXATTR,
	VP_LISTXATTR,
	VP_REMOVEXATTR,
	VP_GETLK,
	VP_SETLK,
	VP_FLOCK,
	VP_OP_MAX
};

/* SETATTR valid bits. */
#define VP_SET_MODE	 0x01u
#define VP_SET_UID	 0x02u
#define VP_SET_GID	 0x04u
#define VP_SET_SIZE	 0x08u
#define VP_SET_ATIME	 0x10u
#define VP_SET_MTIME	 0x20u
#define VP_SET_ATIME_NOW 0x40u
#define VP_SET_MTIME_NOW 0x80u
#define VP_SET_ALL	 0xffu

/* HELLO reply flags. */
#define VP_HELLO_RO	 0x1u

struct vp_hdr {
	uint32_t len;
	uint8_t version;
	uint8_t kind;
	uint16_t op;
	uint64_t id;
};

/* A decoded request. Names are NUL-terminated copies; data points into the
 * frame passed to vp_req_decode (valid while that buffer is). Fields an op
 * does not carry are zero. */
struct vp_req {
	uint16_t op;
	uint64_t id;
	uint64_t node;		/* the inode, or the parent for name ops */
	uint64_t node2;		/* RENAME/LINK: the new parent */
	uint64_t fh;
	uint64_t off;
	uint64_t len;		/* FORGET nlookup, FALLOCATE length, lock end */
	uint32_t size;		/* READ/READDIR/GETXATTR/LISTXATTR reply bound */
	uint32_t mode;
	uint32_t flags;		/* open/rename/xattr/fallocate flags, lock type */
	uint32_t uid, gid, rdev;
	uint32_t valid;		/* SETATTR */
	uint32_t pid;		/* locks */
	uint64_t owner;		/* locks: the lock owner */
	int64_t atime, mtime;
	uint32_t atime_ns, mtime_ns;
	char name[VP_NAME_MAX + 1];
	char name2[VP_NAME_MAX + 1];
	const uint8_t *data;	/* WRITE data, SYMLINK target, SETXATTR value */
	uint32_t data_len;
};

/* The attributes of an inode as the host reports them. */
struct vp_attr {
	uint64_t ino, size, blocks;
	uint32_t mode, nlink, uid, gid, rdev, blksize;
	int64_t atime, mtime, ctime;
	uint32_t atime_ns, mtime_ns, ctime_ns;
};

/* A growable output buffer (xrealloc: aborts on OOM). */
struct vp_buf {
	uint8_t *p;
	size_t len, cap;
};

/* A bounded reader over received bytes; any short read sets bad. */
struct vp_cur {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

/* Parse and check a 16-byte header: version, kind (@kind), op range and
 * len <= VP_MAX_PAYLOAD. 0, or -EPROTO (bad version/kind/op) / -EMSGSIZE. */
int vp_hdr_parse(const uint8_t *raw, uint8_t kind, struct vp_hdr *h);

/* Decode the payload of a request whose header is @h. Returns 0, or a
 * negative errno: -EPROTO (truncated, trailing bytes, bad field),
 * -ENAMETOOLONG, -EINVAL (a name with '/', NUL, ".", ".."; a bound
 * exceeded). On failure r->op and r->id are still set from @h. */
int vp_req_decode(const struct vp_hdr *h, const uint8_t *payload, size_t len, struct vp_req *r);

/* Append the frame of request @r (header included) to @b. */
void vp_req_encode(struct vp_buf *b, const struct vp_req *r);

/* A name fit for a directory entry (1..255 bytes, no '/', not . or ..). */
bool vp_name_ok(const char *s, size_t len);

/* Reply building: begin appends a header and err; finish writes the length.
 * Between them the vp_put_* functions add the body. */
size_t vp_reply_begin(struct vp_buf *b, uint16_t op, uint64_t id, int err);
void vp_reply_finish(struct vp_buf *b, size_t start);

void vp_put_u8(struct vp_buf *b, uint8_t v);
void vp_put_u16(struct vp_buf *b, uint16_t v);
void vp_put_u32(struct vp_buf *b, uint32_t v);
void vp_put_u64(struct vp_buf *b, uint64_t v);
void vp_put_bytes(struct vp_buf *b, const void *p, size_t n);
void vp_put_name(struct vp_buf *b, const char *s);	/* u16 len + bytes */
void vp_put_blob(struct vp_buf *b, const void *p, uint32_t n);	/* u32 len + bytes */
void vp_put_attr(struct vp_buf *b, const struct vp_attr *a);
/* Reserve @n bytes at the end (for a read straight into the buffer). */
uint8_t *vp_reserve(struct vp_buf *b, size_t n);
void vp_buf_free(struct vp_buf *b);

void vp_cur_init(struct vp_cur *c, const void *p, size_t len);
uint8_t vp_get_u8(struct vp_cur *c);
uint16_t vp_get_u16(struct vp_cur *c);
uint32_t vp_get_u32(struct vp_cur *c);
uint64_t vp_get_u64(struct vp_cur *c);
/* Points into the buffer; NULL (and bad) when fewer than @n bytes remain. */
const uint8_t *vp_get_bytes(struct vp_cur *c, size_t n);
/* A u32-length blob of at most @max bytes; NULL and bad otherwise. */
const uint8_t *vp_get_blob(struct vp_cur *c, uint32_t max, uint32_t *n);
void vp_get_attr(struct vp_cur *c, struct vp_attr *a);
/* A u16-length name (no NUL) copied into @out (VP_NAME_MAX + 1 bytes).
 * Returns its length or -1 (and bad). */
int vp_get_name(struct vp_cur *c, char *out);

const char *vp_op_name(uint16_t op);

#endif
