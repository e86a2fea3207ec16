/* vring.c - see vring.h */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "vring.h"

#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc_le {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail_le {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];
};

struct vring_used_elem_le {
	uint32_t id;
	uint32_t len;
};

struct vring_used_le {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem_le ring[];
};

static void *lookup(const struct vring_mem *m, uint64_t a, uint64_t len, bool phys)
{
	unsigned i;

	if (len == 0)
		return NULL;
	for (i = 0; i < m->n && i < VRING_MAX_REGIONS; i++) {
		const struct vring_region *r = &m->r[i];
		uint64_t base = phys ? r->gpa : r->uaddr;

		/* Written so that no sum can overflow. */
		if (a >= base && a - base < r->size && len <= r->size - (a - base))
			return r->host + (a - base);
	}
	return NULL;
}

void *vring_gpa(const struct vring_mem *m, uint64_t gpa, uint64_t len)
{
	return lookup(m, gpa, len, true);
}

void *vring_uaddr(const struct vring_mem *m, uint64_t ua, uint64_t len)
{
	return lookup(m, ua, len, false);
}

int vring_start(struct vring *vr, const struct vring_mem *m, unsigned num,
		uint64_t desc_ua, uint64_t avail_ua, uint64_t used_ua, uint16_t base,
		struct fc_err *e)
{
	memset(vr, 0, sizeof(*vr));
	if (num == 0 || num > VRING_MAX_SIZE || (num & (num - 1)))
		return fc_err_set(e, EINVAL, "ring size %u is not a power of two up to %u", num,
				  VRING_MAX_SIZE);
	if ((desc_ua & 15) || (avail_ua & 1) || (used_ua & 3))
		return fc_err_set(e, EINVAL, "misaligned ring address");
	vr->desc = vring_uaddr(m, desc_ua, 16ull * num);
	vr->avail = vring_uaddr(m, avail_ua, 6 + 2ull * num);
	vr->used = vring_uaddr(m, used_ua, 6 + 8ull * num);
	if (!vr->desc || !vr->avail || !vr->used) {
		memset(vr, 0, sizeof(*vr));
		return fc_err_set(e, EFAULT, "ring address outside guest memory");
	}
	vr->num = num;
	vr->last_avail = base;
	vr->used_idx = le16toh(__atomic_load_n(&vr->used->idx, __ATOMIC_ACQUIRE));
	return 0;
}

static int bad_chain(struct vring *vr, uint16_t head, struct fc_err *e, const char *why)
{
	vring_push(vr, head, 0);
	return fc_err_set(e, EINVAL, "malformed descriptor chain at head %u: %s", head, why);
}

int vring_pop(struct vring *vr, const struct vring_mem *m, struct vring_chain *c,
	      struct fc_err *e)
{
	uint16_t avail_idx, head, idx;
	unsigned count = 0;
	size_t total = 0;

	if (!vr->num || vr->broken)
		return 0;
	avail_idx = le16toh(__atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE));
	if (avail_idx == vr->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vr->last_avail) > vr->num) {
		vr->broken = true;
		return fc_err_set(e, EINVAL, "avail index %u is %u ahead of %u (ring size %u)",
				  avail_idx, (uint16_t)(avail_idx - vr->last_avail),
				  vr->last_avail, vr->num);
	}
	head = le16toh(vr->avail->ring[vr->last_avail % vr->num]);
	if (head >= vr->num) {
		vr->broken = true;
		return fc_err_set(e, EINVAL, "chain head %u outside ring of %u", head, vr->num);
	}
	vr->last_avail++;

	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	idx = head;
	for (;;) {
		struct vring_desc_le d;
		uint64_t addr;
		uint32_t len;
		uint16_t flags;
		void *p;

		/* One copy: the guest may change the descriptor while we look at it. */
		memcpy(&d, &vr->desc[idx], sizeof(d));
		addr = le64toh(d.addr);
		len = le32toh(d.len);
		flags = le16toh(d.flags);
		if (++count > VRING_MAX_CHAIN || count > vr->num)
			return bad_chain(vr, head, e, "too long or looping");
		if (flags & VRING_DESC_F_INDIRECT)
			return bad_chain(vr, head, e, "indirect descriptor not negotiated");
		if (len > VRING_MAX_BYTES - total)
			return bad_chain(vr, head, e, "too many bytes");
		total += len;
		if (len) {
			p = vring_gpa(m, addr, len);
			if (!p)
				return bad_chain(vr, head, e, "buffer outside guest memory");
			if (flags & VRING_DESC_F_WRITE) {
				c->in[c->n_in++] = (struct iovec){ p, len };
				c->in_len += len;
			} else {
				if (c->n_in)
					return bad_chain(vr, head, e,
							 "readable descriptor after writable");
				c->out[c->n_out++] = (struct iovec){ p, len };
				c->out_len += len;
			}
		}
		if (!(flags & VRING_DESC_F_NEXT))
			break;
		idx = le16toh(d.next);
		if (idx >= vr->num)
			return bad_chain(vr, head, e, "next index outside ring");
	}
	return 1;
}

void vring_unpop(struct vring *vr)
{
	vr->last_avail--;
}

void vring_push(struct vring *vr, uint16_t head, uint32_t len)
{
	struct vring_used_elem_le *u;

	if (!vr->num)
		return;
	u = &vr->used->ring[vr->used_idx % vr->num];
	u->id = htole32(head);
	u->len = htole32(len);
	vr->used_idx++;
	/* The element (and the data written into the buffers) must be visible
	 * before the guest sees the new index. */
	__atomic_store_n(&vr->used->idx, htole16(vr->used_idx), __ATOMIC_RELEASE);
}

bool vring_needs_interrupt(const struct vring *vr)
{
	if (!vr->num)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(le16toh(__atomic_load_n(&vr->avail->flags, __ATOMIC_RELAXED)) &
		 VRING_AVAIL_F_NO_INTERRUPT);
}

/* The walk both copies share: @len bytes from byte @off of @iov, into @dst
 * when it is set, else out of @src. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, void *dst,
		       const void *src, size_t len)
{
	size_t done = 0;
	unsigned i;

	for (i = 0; i < n && done < len; i++) {
		size_t l;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		l = iov[i].iov_len - off;
		if (l > len - done)
			l = len - done;
		if (dst)
			memcpy((char *)dst + done, (char *)iov[i].iov_base + off, l);
		else
			memcpy((char *)iov[i].iov_base + off, (const char *)src + done, l);
		done += l;
		off = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len)
{
	return iov_copy(iov, n, off, dst, NULL, len);
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src,
		    size_t len)
{
	return iov_copy(iov, n, off, NULL, src, len);
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
		   struct iovec *dst, unsigned max)
{
	unsigned i, k = 0;

	for (i = 0; i < n && len && k < max; i++) {
		size_t l;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		l = iov[i].iov_len - off;
		if (l > len)
			l = len;
		dst[k++] = (struct iovec){ (char *)iov[i].iov_base + off, l };
		len -= l;
		off = 0;
	}
	return k;
}
