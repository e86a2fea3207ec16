/* vring.h - split virtqueues in guest memory shared by a vhost-user front-end.
 *
 * The guest (and the front-end that hands us its memory) is untrusted: every
 * index, address and length read from a ring is checked before use. Guest
 * addresses go through a memory table of regions the front-end gave us
 * (guest-physical and front-end virtual ranges, each backed by our own
 * mapping); anything outside a region, or straddling two, is refused.
 *
 * How a ring is used: vring_start() once the front-end has given its size,
 * addresses and base index; then repeatedly vring_pop() a descriptor chain
 * into iovecs, consume or fill it, and vring_push() it to the used ring;
 * vring_needs_interrupt() says whether to signal the guest afterwards.
 * Single-threaded: one owner touches a ring.
 */
#ifndef FC_VRING_H
#define FC_VRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "err.h"

#define VRING_MAX_REGIONS 8
#define VRING_MAX_SIZE    32768	/* virtio's limit on queue size */
#define VRING_MAX_CHAIN   64	/* descriptors we accept in one chain */
#define VRING_MAX_BYTES   (1u << 20)	/* bytes we accept in one chain */

struct vring_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;
	uint64_t uaddr;		/* the front-end's virtual address of it */
	uint8_t *host;		/* our mapping of it */
};

struct vring_mem {
	unsigned n;
	struct vring_region r[VRING_MAX_REGIONS];
};

/* Host pointer for guest-physical [gpa, gpa+len) if wholly inside one
 * region, else NULL. len 0 is refused. */
void *vring_gpa(const struct vring_mem *m, uint64_t gpa, uint64_t len);
/* The same for front-end virtual addresses (ring addresses use these). */
void *vring_uaddr(const struct vring_mem *m, uint64_t ua, uint64_t len);

struct vring {
	uint16_t num;			/* 0: not started */
	bool broken;			/* guest corrupted the ring: stop touching it */
	uint16_t last_avail;		/* next avail entry we will consume */
	uint16_t used_idx;		/* next used entry we will write */
	struct vring_desc_le *desc;
	struct vring_avail_le *avail;
	struct vring_used_le *used;
};

/* Map ring @num entries at front-end addresses (checked for size, alignment
 * and containment in @m) and start at avail index @base; the used index is
 * taken from guest memory. 0, or -1 with @e filled (ring left stopped). */
int vring_start(struct vring *vr, const struct vring_mem *m, unsigned num,
		uint64_t desc_ua, uint64_t avail_ua, uint64_t used_ua, uint16_t base,
		struct fc_err *e);

struct vring_chain {
	uint16_t head;
	unsigned n_out, n_in;		/* device-readable, then device-writable iovecs */
	size_t out_len, in_len;		/* their total bytes */
	struct iovec out[VRING_MAX_CHAIN];
	struct iovec in[VRING_MAX_CHAIN];
};

/* Take the next available chain. Returns 1 with @c filled, 0 when the ring
 * is empty (or stopped/broken), -1 when the chain is malformed (@e says why;
 * the chain was consumed and already returned to the used ring with length
 * 0, so the caller just skips it). A corrupt avail index or head marks the
 * ring broken. */
int vring_pop(struct vring *vr, const struct vring_mem *m, struct vring_chain *c,
	      struct fc_err *e);

/* Give back the chain just popped, untouched (it will be popped again). */
void vring_unpop(struct vring *vr);

/* Return chain @head to the guest with @len bytes written into it. */
void vring_push(struct vring *vr, uint16_t head, uint32_t len);

/* True unless the guest asked not to be interrupted. */
bool vring_needs_interrupt(const struct vring *vr);

/* Copy up to @len bytes starting @off bytes into @iov (n entries) to @dst /
 * from @src. Return bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src,
		    size_t len);
/* Fill @dst (room for @max) with the part of @iov starting at byte @off, at
 * most @len bytes. Returns the number of entries used. */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
		   struct iovec *dst, unsigned max);

#endif
