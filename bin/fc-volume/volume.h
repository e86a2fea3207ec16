/* volume.h - fc-volume's server: the node and handle tables over one shared
 * directory, and the request handler.
 *
 * How it works: the guest never names a host path. It names nodes (ids this
 * server handed out from LOOKUP, MKDIR, CREATE, ...) and single file names
 * checked by vproto (no '/', not "." or ".."). Each node holds an O_PATH fd
 * of its inode, opened with openat2(parent fd, name, RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | O_NOFOLLOW), so every
 * resolution is one component below a directory already inside the share:
 * no "..", absolute path, symlink or /proc path is ever walked on the
 * guest's behalf, and a rename race can only move things within the share.
 * Operations on a node go through its fd (fstatat AT_EMPTY_PATH, *at calls
 * on the parent fd) or through our own /proc/self/fd/N of it (reopen,
 * chmod, xattrs), which names exactly that inode. Device nodes are neither
 * created nor opened; FIFOs and sockets are never opened (the guest kernel
 * serves those itself). With --ro every mutating request gets EROFS here.
 * Node and handle tables are bounded; past the bound a request gets ENFILE
 * / EMFILE.
 */
#ifndef FC_VOLUME_H
#define FC_VOLUME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "vproto.h"

struct vnode {
	int fd;			/* O_PATH, -1 when free */
	dev_t dev;
	ino_t ino;
	mode_t type;		/* S_IFMT bits */
	uint64_t nlookup;
	uint32_t gen;
	uint32_t hnext;		/* hash chain (index, 0 = end) */
};

struct vhandle {
	int fd;			/* -1 when free */
	bool dir;
	void *dirp;		/* DIR * for directories */
	uint64_t dir_pos;	/* the offset the DIR stream is at */
	uint32_t gen;
};

struct vol {
	bool ro;
	uint64_t instance;	/* random, per server process */
	int proc_fd;		/* /proc/self/fd */
	struct vnode *nodes;	/* index 0 unused, 1 = the root */
	uint32_t nnodes, max_nodes, free_node;
	uint32_t *hash;
	uint32_t hash_mask;
	struct vhandle *handles;
	uint32_t max_handles, used_handles;
	uint32_t used_nodes;
};

/* Open @dir as the share (it must be a directory; a symlink is refused).
 * 0 or -1 with @e. */
int vol_init(struct vol *v, const char *dir, bool ro, uint32_t max_nodes, uint32_t max_handles,
	     struct fc_err *e);
void vol_free(struct vol *v);

/* Handle one decoded request, appending its reply (if any) to @out. A
 * request that failed to decode is answered by vol_reply_error. */
void vol_handle(struct vol *v, const struct vp_req *r, struct vp_buf *out);
void vol_reply_error(uint16_t op, uint64_t id, int err, struct vp_buf *out);

/* The descriptor behind file handle @fh (still owned by the table), or -1. */
int vol_handle_fd(struct vol *v, uint64_t fh);

/* The root node's id. */
#define VOL_ROOT 1

#endif
