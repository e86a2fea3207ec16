/* vhost.c - the vhost-user back-end protocol (QEMU docs/interop/vhost-user.rst)
 * for a vsock device: feature negotiation, guest memory, ring setup.
 *
 * How it works: QEMU negotiates features, sends the guest memory as memfds
 * (SET_MEM_TABLE, mapped here), then per queue its size, base index and ring
 * addresses, and finally the kick eventfd, which starts the ring. A ring is
 * processed only when started and enabled (SET_VRING_ENABLE, since we offer
 * PROTOCOL_FEATURES). GET_VRING_BASE stops it and reports where we are.
 * Every message is size-checked against its request type before use.
 *
 * Snapshots: we offer VHOST_F_LOG_ALL and PROTOCOL_F_LOG_SHMFD, without
 * which QEMU refuses to migrate (fc-qemu's snapshots are migrations to a
 * file). SET_LOG_BASE maps the dirty log QEMU sends; while LOG_ALL is set
 * every byte we write to guest memory (rx buffers, used rings) is marked
 * in it. After a restore a new QEMU sets up memory and rings again from
 * the migrated base indices; the used index is read back from guest memory.
 *
 * Guest memory through the VMM (see struct dev): with --memory vmm, or
 * --memory auto (the default) when the front-end's own mapping of a region
 * is private (from its /proc/PID/maps), the regions are anonymous shadows
 * and the vq_* sync functions copy rings and buffers in and out of the
 * front-end's address space around every use. Otherwise the memory fds
 * are mapped shared and those functions do nothing (the fast path).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fc-vsock.h"
#include "log.h"
#include "util.h"

enum {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_LOG_BASE = 6,
	VU_SET_LOG_FD = 7,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_GET_CONFIG = 24,
};

#define VU_VERSION        0x1u
#define VU_FLAG_REPLY     (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
#define VU_MAX_PAYLOAD    4096
#define VU_MAX_FDS        8

#define F_LOG_ALL           (1ull << 26)
#define F_PROTOCOL_FEATURES (1ull << 30)
#define F_VERSION_1         (1ull << 32)
#define OFFERED_FEATURES    (F_VERSION_1 | F_PROTOCOL_FEATURES | F_LOG_ALL)
#define PF_LOG_SHMFD        (1ull << 1)
#define PF_REPLY_ACK        (1ull << 3)
#define PF_CONFIG           (1ull << 9)
#define OFFERED_PROTO       (PF_LOG_SHMFD | PF_REPLY_ACK | PF_CONFIG)
#define VRING_F_LOG         1u
#define LOG_PAGE_SHIFT      12
#define LOG_MAX_BYTES       (1ull << 32)	/* covers 128 TiB of guest memory */

struct vu_hdr {
	uint32_t req;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vu_state {
	uint32_t index;
	uint32_t num;
};

struct vu_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
};

struct vu_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;
	uint64_t mmap_offset;
};

struct vu_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

struct vu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t data[];
};

bool vq_ready(const struct dev *d, int i)
{
	const struct vq *q = &d->q[i];

	return q->vr.num && q->kicked && q->enabled && !q->vr.broken;
}

/* Copy @n local buffers @local from (@write: to) the front-end's address
 * space at @remote (entry by entry, same lengths). All or nothing. */
static int vmm_copy(struct dev *d, const struct iovec *local, const struct iovec *remote,
		    unsigned n, bool write, struct fc_err *e)
{
	size_t want = 0;
	ssize_t got;

	for (unsigned k = 0; k < n; k++)
		want += local[k].iov_len;
	if (!want)
		return 0;
	do
		got = write ? process_vm_writev(d->vmm_pid, local, n, remote, n, 0)
			    : process_vm_readv(d->vmm_pid, local, n, remote, n, 0);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		return fc_err_set(e, errno, "%s guest memory of pid %d", write ? "write" : "read",
				  (int)d->vmm_pid);
	if ((size_t)got != want)
		return fc_err_set(e, EFAULT, "%s guest memory of pid %d: %zd of %zu bytes",
				  write ? "write" : "read", (int)d->vmm_pid, got, want);
	return 0;
}

/* The region holding our [p, p+len), or NULL. */
static const struct vring_region *region_of(const struct dev *d, const void *p, size_t len)
{
	const uint8_t *b = p;

	for (unsigned i = 0; i < d->mem.n; i++) {
		const struct vring_region *r = &d->mem.r[i];

		if (b >= r->host && (uint64_t)(b - r->host) < r->size &&
		    len <= r->size - (uint64_t)(b - r->host))
			return r;
	}
	return NULL;
}

/* Front-end addresses of our buffers @iov (each inside one region, as
 * vring_pop() guarantees), at most @len bytes in all; returns entries. */
static unsigned remote_of(const struct dev *d, const struct iovec *iov, unsigned n, size_t len,
			  struct iovec *loc, struct iovec *rem)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len < len ? iov[i].iov_len : len;
		const struct vring_region *r = region_of(d, iov[i].iov_base, l);

		if (!r || !l)
			continue;
		loc[k] = (struct iovec){ iov[i].iov_base, l };
		rem[k] = (struct iovec){ (void *)(uintptr_t)(r->uaddr +
					 (uint64_t)((uint8_t *)iov[i].iov_base - r->host)), l };
		k++;
		len -= l;
	}
	return k;
}

static void log_gpa(struct dev *d, uint64_t gpa, uint64_t len)
{
	uint64_t pg, last;

	if (!d->log || !(d->features & F_LOG_ALL) || !len)
		return;
	last = (gpa + len - 1) >> LOG_PAGE_SHIFT;
	for (pg = gpa >> LOG_PAGE_SHIFT; pg <= last && pg / 8 < d->log_size; pg++)
		__atomic_fetch_or(&d->log[pg / 8], (uint8_t)(1u << (pg % 8)), __ATOMIC_RELAXED);
}

int vq_pull_rings(struct dev *d, int i, struct fc_err *e)
{
	struct vq *q = &d->q[i];
	unsigned num = q->vr.num;

	if (!d->vmm_mem || !num)
		return 0;
	/* avail (flags, idx, then the entries the guest wrote before idx),
	 * then the descriptors it wrote before those */
	struct iovec loc[2] = { { q->vr.avail, 4 + 2ull * num }, { q->vr.desc, 16ull * num } };
	struct iovec rem[2] = { { (void *)(uintptr_t)q->avail, 4 + 2ull * num },
				{ (void *)(uintptr_t)q->desc, 16ull * num } };

	return vmm_copy(d, loc, rem, 2, false, e);
}

int vq_pull_iov(struct dev *d, const struct iovec *iov, unsigned n, struct fc_err *e)
{
	struct iovec loc[VRING_MAX_CHAIN], rem[VRING_MAX_CHAIN];
	unsigned k;

	if (!d->vmm_mem)
		return 0;
	k = remote_of(d, iov, n < VRING_MAX_CHAIN ? n : VRING_MAX_CHAIN, SIZE_MAX, loc, rem);
	return vmm_copy(d, loc, rem, k, false, e);
}

int vq_wrote(struct dev *d, const struct iovec *iov, unsigned n, size_t len, struct fc_err *e)
{
	struct iovec loc[VRING_MAX_CHAIN], rem[VRING_MAX_CHAIN];
	unsigned k;

	if (!d->vmm_mem && !d->log)
		return 0;
	k = remote_of(d, iov, n < VRING_MAX_CHAIN ? n : VRING_MAX_CHAIN, len, loc, rem);
	if (d->log)
		for (unsigned j = 0; j < k; j++) {
			const struct vring_region *r = region_of(d, loc[j].iov_base, loc[j].iov_len);

			log_gpa(d, r->gpa + (uint64_t)((uint8_t *)loc[j].iov_base - r->host),
				loc[j].iov_len);
		}
	return d->vmm_mem ? vmm_copy(d, loc, rem, k, true, e) : 0;
}

int vq_used_done(struct dev *d, int i, uint16_t from, struct fc_err *e)
{
	struct vq *q = &d->q[i];
	unsigned num = q->vr.num;
	uint16_t count;
	uint8_t *used = (uint8_t *)q->vr.used;

	if (!num)
		return 0;
	count = (uint16_t)(q->vr.used_idx - from);
	if (!count)
		return 0;
	if (q->log_used)
		log_gpa(d, q->log_addr, 6 + 8ull * num);
	if (!d->vmm_mem)
		return 0;
	{
		/* the entries first, then the index that makes them visible */
		unsigned start = from % num, n1 = count >= num ? num : count, k = 0;
		struct iovec loc[2], rem[2], il, ir;

		if (count >= num)
			start = 0;
		if (start + n1 > num) {
			loc[k] = (struct iovec){ used + 4 + 8ull * start, 8ull * (num - start) };
			rem[k] = (struct iovec){ (void *)(uintptr_t)(q->used + 4 + 8ull * start),
						 8ull * (num - start) };
			k++;
			n1 -= num - start;
			start = 0;
		}
		loc[k] = (struct iovec){ used + 4 + 8ull * start, 8ull * n1 };
		rem[k] = (struct iovec){ (void *)(uintptr_t)(q->used + 4 + 8ull * start), 8ull * n1 };
		k++;
		if (vmm_copy(d, loc, rem, k, true, e) < 0)
			return -1;
		il = (struct iovec){ used + 2, 2 };
		ir = (struct iovec){ (void *)(uintptr_t)(q->used + 2), 2 };
		return vmm_copy(d, &il, &ir, 1, true, e);
	}
}

/* True if [a, a+len) touches a page of one of our rings. */
static bool ring_page(const struct dev *d, uintptr_t a, uintptr_t len)
{
	for (int i = 0; i < NQ; i++) {
		const struct vring *vr = &d->q[i].vr;
		uintptr_t r[3][2] = {
			{ (uintptr_t)vr->desc, 16ul * vr->num },
			{ (uintptr_t)vr->avail, 6 + 2ul * vr->num },
			{ (uintptr_t)vr->used, 6 + 8ul * vr->num },
		};

		if (!vr->num)
			continue;
		for (int j = 0; j < 3; j++) {
			uintptr_t s = r[j][0] & ~4095ul, end = (r[j][0] + r[j][1] + 4095) & ~4095ul;

			if (a < end && s < a + len)
				return true;
		}
	}
	return false;
}

void vq_drop_iov(struct dev *d, const struct iovec *iov, unsigned n)
{
	if (!d->vmm_mem)
		return;
	for (unsigned i = 0; i < n; i++) {
		uintptr_t s = (uintptr_t)iov[i].iov_base & ~4095ul;
		uintptr_t end = ((uintptr_t)iov[i].iov_base + iov[i].iov_len + 4095) & ~4095ul;

		/* one chain at a time: nothing else lives in these pages that
		 * is not pulled again before use, except the rings */
		if (iov[i].iov_len && !ring_page(d, s, end - s))
			madvise((void *)s, end - s, MADV_DONTNEED);
	}
}

void vq_notify(struct dev *d, int i)
{
	uint64_t one = 1;

	if (d->vmm_mem && d->q[i].vr.num) {
		struct iovec l = { d->q[i].vr.avail, 2 };
		struct iovec r = { (void *)(uintptr_t)d->q[i].avail, 2 };
		struct fc_err e;

		if (vmm_copy(d, &l, &r, 1, false, &e) < 0)
			log_debug("queue %d: %s", i, e.msg);
	}
	if (d->q[i].call_fd >= 0 && vring_needs_interrupt(&d->q[i].vr))
		if (write(d->q[i].call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("interrupt queue %d: %s", i, strerror(errno));
}

void vq_drain_kick(struct dev *d, int i)
{
	uint64_t v;

	if (d->q[i].kick_fd >= 0)
		while (read(d->q[i].kick_fd, &v, sizeof(v)) == sizeof(v))
			;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void unmap_all(struct dev *d)
{
	unsigned i;

	for (i = 0; i < VRING_MAX_REGIONS; i++) {
		if (d->map_addr[i])
			munmap(d->map_addr[i], d->map_len[i]);
		d->map_addr[i] = NULL;
		d->map_len[i] = 0;
	}
	memset(&d->mem, 0, sizeof(d->mem));
	d->vmm_mem = false;
}

static void unmap_log(struct dev *d)
{
	if (d->log_map)
		munmap(d->log_map, d->log_map_len);
	d->log_map = NULL;
	d->log = NULL;
	d->log_size = 0;
	d->log_map_len = 0;
}

void vu_reset(struct dev *d)
{
	int i;

	for (i = 0; i < NQ; i++) {
		struct vq *q = &d->q[i];

		close_fd(&q->kick_fd);	/* close() also removes it from epoll */
		close_fd(&q->call_fd);
		close_fd(&q->err_fd);
		memset(q, 0, sizeof(*q));
		q->kick_fd = q->call_fd = q->err_fd = -1;
	}
	unmap_all(d);
	unmap_log(d);
	close_fd(&d->log_fd);
	d->features = d->proto = 0;
}

/* Map (or re-map after a memory change) ring @i if it has everything. */
static int vq_start(struct dev *d, int i, struct fc_err *e)
{
	struct vq *q = &d->q[i];

	if (!q->kicked || !q->addr_set || !q->num || !d->mem.n)
		return 0;
	if (d->vmm_mem) {
		/* vring_start() reads the used index: bring the rings in first
		 * (the lengths are checked by vring_start itself) */
		void *dl = vring_uaddr(&d->mem, q->desc, 16ull * q->num);
		void *al = vring_uaddr(&d->mem, q->avail, 6 + 2ull * q->num);
		void *ul = vring_uaddr(&d->mem, q->used, 6 + 8ull * q->num);

		if (dl && al && ul) {
			struct iovec loc[3] = { { ul, 6 + 8ull * q->num }, { al, 6 + 2ull * q->num },
						{ dl, 16ull * q->num } };
			struct iovec rem[3] = { { (void *)(uintptr_t)q->used, 6 + 8ull * q->num },
						{ (void *)(uintptr_t)q->avail, 6 + 2ull * q->num },
						{ (void *)(uintptr_t)q->desc, 16ull * q->num } };

			if (vmm_copy(d, loc, rem, 3, false, e) < 0)
				return fc_err_wrap(e, "start queue %d", i);
		}
	}
	if (vring_start(&q->vr, &d->mem, q->num, q->desc, q->avail, q->used, q->base, e) < 0)
		return fc_err_wrap(e, "start queue %d", i);
	log_debug("queue %d started: %u entries at base %u", i, q->num, q->base);
	return 0;
}

static void vq_stop(struct dev *d, int i)
{
	struct vq *q = &d->q[i];

	if (q->vr.num)
		q->base = q->vr.last_avail;
	memset(&q->vr, 0, sizeof(q->vr));
	q->kicked = false;
}

static int send_reply(struct dev *d, uint32_t req, const void *payload, uint32_t size,
		      struct fc_err *e)
{
	uint8_t buf[sizeof(struct vu_hdr) + VU_MAX_PAYLOAD];
	struct vu_hdr h = { req, VU_VERSION | VU_FLAG_REPLY, size };

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, size);
	if (write_full(d->vu_fd, buf, sizeof(h) + size) < 0)
		return fc_err_set(e, errno, "reply to vhost-user request %u", req);
	return 0;
}

static int reply_u64(struct dev *d, uint32_t req, uint64_t v, struct fc_err *e)
{
	return send_reply(d, req, &v, sizeof(v), e);
}

/* Does the front-end map its own address @ua privately? From its
 * /proc/PID/maps, opened before seccomp; false when unknown (no such
 * mapping, as with a fake front-end: then only our mapping exists). */
static bool frontend_private(struct dev *d, uint64_t ua)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;
	char *line, *save = NULL;

	if (d->maps_fd < 0)
		return false;
	for (;;) {
		if (cap - len < 65536) {
			if (cap >= (16u << 20))
				return false;
			cap = cap ? cap * 2 : 262144;
			buf = xrealloc(buf, cap + 1);
		}
		n = pread(d->maps_fd, buf + len, cap - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long s, end;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &s, &end, perms) != 3)
			continue;
		if (ua >= s && ua < end)
			return perms[3] == 'p';
	}
	return false;
}

static int set_mem_table(struct dev *d, const uint8_t *p, uint32_t size, int *fds,
			 unsigned nfds, struct fc_err *e)
{
	struct vring_mem mem = { 0 };
	bool vmm = d->mem_mode == MEM_VMM;
	void *addr[VRING_MAX_REGIONS] = { 0 };
	size_t len[VRING_MAX_REGIONS] = { 0 };
	uint32_t n;
	unsigned i, j;

	if (size < 8)
		return fc_err_set(e, EINVAL, "SET_MEM_TABLE: short message");
	memcpy(&n, p, 4);
	if (n == 0 || n > VRING_MAX_REGIONS || size != 8 + n * sizeof(struct vu_region) ||
	    nfds != n)
		return fc_err_set(e, EINVAL, "SET_MEM_TABLE: %u regions, %u bytes, %u fds", n,
				  size, nfds);
	if (d->mem_mode == MEM_AUTO)
		for (i = 0; i < n && !vmm; i++) {
			struct vu_region r;

			memcpy(&r, p + 8 + i * sizeof(r), sizeof(r));
			vmm = frontend_private(d, r.uaddr);
		}
	if (vmm && d->vmm_pid <= 0)
		return fc_err_set(e, EINVAL, "SET_MEM_TABLE: guest memory through the VMM, but its pid is unknown");
	for (i = 0; i < n; i++) {
		struct vu_region r;
		struct stat st;

		memcpy(&r, p + 8 + i * sizeof(r), sizeof(r));
		if (!r.size || r.size > (1ull << 40) || r.mmap_offset > (1ull << 40) ||
		    r.gpa + r.size < r.gpa || r.uaddr + r.size < r.uaddr) {
			fc_err_set(e, EINVAL, "SET_MEM_TABLE: bad region %u", i);
			goto fail;
		}
		for (j = 0; j < i; j++) {
			const struct vring_region *o = &mem.r[j];

			if (r.gpa < o->gpa + o->size && o->gpa < r.gpa + r.size) {
				fc_err_set(e, EINVAL, "SET_MEM_TABLE: regions %u and %u overlap", j, i);
				goto fail;
			}
		}
		if (vmm) {
			/* a shadow: only what we copy in is ever touched */
			len[i] = r.size;
			addr[i] = mmap(NULL, len[i], PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		} else {
			len[i] = r.size + r.mmap_offset;
			/* Mapping past the end of the file would SIGBUS us on first touch. */
			if (fstat(fds[i], &st) < 0 || !S_ISREG(st.st_mode) ||
			    (uint64_t)st.st_size < len[i]) {
				fc_err_set(e, EINVAL, "SET_MEM_TABLE: region %u is larger than its file", i);
				goto fail;
			}
			addr[i] = mmap(NULL, len[i], PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
				       fds[i], 0);
		}
		if (addr[i] == MAP_FAILED) {
			addr[i] = NULL;
			fc_err_set(e, errno, "SET_MEM_TABLE: map region %u (%llu bytes)", i,
				   (unsigned long long)len[i]);
			goto fail;
		}
		mem.r[i] = (struct vring_region){ .gpa = r.gpa, .size = r.size, .uaddr = r.uaddr,
						  .host = (uint8_t *)addr[i] + (vmm ? 0 : r.mmap_offset) };
		mem.n = i + 1;
	}
	unmap_all(d);
	d->mem = mem;
	d->vmm_mem = vmm;
	memcpy(d->map_addr, addr, sizeof(addr));
	memcpy(d->map_len, len, sizeof(len));
	log_debug("guest memory: %u region(s), %s", n,
		  vmm ? "through the VMM's address space" : "mapped");
	for (i = 0; i < NQ; i++)
		if (d->q[i].vr.num) {
			d->q[i].base = d->q[i].vr.last_avail;
			if (vq_start(d, i, e) < 0)
				return -1;
		}
	return 0;
fail:
	for (i = 0; i < VRING_MAX_REGIONS; i++)
		if (addr[i])
			munmap(addr[i], len[i]);
	return -1;
}

/* SET_LOG_BASE: the dirty log QEMU shares (LOG_SHMFD), replacing any old one. */
static int set_log_base(struct dev *d, const uint8_t *p, uint32_t size, int *fds,
			unsigned nfds, struct fc_err *e)
{
	struct vu_log l;
	struct stat st;
	void *m;

	if (size != sizeof(l) || nfds != 1)
		return fc_err_set(e, EINVAL, "SET_LOG_BASE: %u bytes, %u fds", size, nfds);
	memcpy(&l, p, sizeof(l));
	if (!l.mmap_size || l.mmap_size > LOG_MAX_BYTES || l.mmap_offset > LOG_MAX_BYTES ||
	    fstat(fds[0], &st) < 0 || (uint64_t)st.st_size < l.mmap_size + l.mmap_offset)
		return fc_err_set(e, EINVAL, "SET_LOG_BASE: bad log of %llu bytes at %llu",
				  (unsigned long long)l.mmap_size, (unsigned long long)l.mmap_offset);
	m = mmap(NULL, l.mmap_size + l.mmap_offset, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (m == MAP_FAILED)
		return fc_err_set(e, errno, "SET_LOG_BASE: map %llu bytes",
				  (unsigned long long)(l.mmap_size + l.mmap_offset));
	unmap_log(d);
	d->log_map = m;
	d->log_map_len = l.mmap_size + l.mmap_offset;
	d->log = (uint8_t *)m + l.mmap_offset;
	d->log_size = l.mmap_size;
	log_debug("dirty log: %llu bytes", (unsigned long long)l.mmap_size);
	return 0;
}

/* SET_VRING_KICK/CALL/ERR: u64 with the queue index and a "no fd" bit. */
static int set_vring_fd(struct dev *d, uint32_t req, uint64_t u, int *fds, unsigned nfds,
			struct fc_err *e)
{
	unsigned i = u & 0xff;
	bool nofd = u & 0x100;
	struct vq *q;
	int fd = -1, *slot;

	if (i >= NQ)
		return fc_err_set(e, EINVAL, "vring fd for queue %u", i);
	if (nofd != (nfds == 0) || nfds > 1)
		return fc_err_set(e, EINVAL, "vring fd message with %u fds", nfds);
	q = &d->q[i];
	if (!nofd) {
		fd = fds[0];
		fds[0] = -1;
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	}
	slot = req == VU_SET_VRING_KICK ? &q->kick_fd :
	       req == VU_SET_VRING_CALL ? &q->call_fd : &q->err_fd;
	close_fd(slot);
	*slot = fd;
	if (req != VU_SET_VRING_KICK)
		return 0;
	if (fd < 0)
		return fc_err_set(e, EINVAL, "polling mode (no kick fd) is not supported");
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &d->s_kick[i] };

		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return fc_err_set(e, errno, "watch kick fd");
	}
	q->kicked = true;
	return vq_start(d, i, e);
}

int vu_handle(struct dev *d, struct fc_err *e)
{
	struct vu_hdr h;
	uint8_t payload[VU_MAX_PAYLOAD] __attribute__((aligned(8)));
	int fds[VU_MAX_FDS];
	unsigned nfds = 0, i;
	union {
		char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			      .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *cmsg;
	bool need_reply, replied = false;
	uint64_t u64 = 0;
	ssize_t n;
	int r = 0;

	do
		n = recvmsg(d->vu_fd, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 1;
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
			unsigned k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
				if (nfds < VU_MAX_FDS)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		}
	}
	if (n < 0) {
		r = fc_err_set(e, errno, "read vhost-user message");
		goto out;
	}
	if (n != sizeof(h) || (msg.msg_flags & MSG_CTRUNC)) {
		r = fc_err_set(e, EPROTO, "short or truncated vhost-user message header");
		goto out;
	}
	if ((h.flags & 3) != VU_VERSION || h.size > VU_MAX_PAYLOAD) {
		r = fc_err_set(e, EPROTO, "vhost-user message %u: version %u, size %u", h.req,
			       h.flags & 3, h.size);
		goto out;
	}
	if (h.size && read_full(d->vu_fd, payload, h.size) != (ssize_t)h.size) {
		r = fc_err_set(e, errno ? errno : EPROTO, "read vhost-user payload");
		goto out;
	}
	need_reply = (h.flags & VU_FLAG_NEED_REPLY) && (d->proto & PF_REPLY_ACK);
	if (h.size == 8)
		memcpy(&u64, payload, 8);
	log_debug("vhost-user request %u size %u fds %u", h.req, h.size, nfds);

#define NEED_SIZE(sz)                                                                      \
	do {                                                                               \
		if (h.size != (sz)) {                                                      \
			r = fc_err_set(e, EPROTO, "vhost-user request %u: size %u, want %zu", \
				       h.req, h.size, (size_t)(sz));                       \
			goto out;                                                          \
		}                                                                          \
	} while (0)

	switch (h.req) {
	case VU_GET_FEATURES:
		r = reply_u64(d, h.req, OFFERED_FEATURES, e);
		replied = true;
		break;
	case VU_SET_FEATURES:
		NEED_SIZE(8);
		if (u64 & ~OFFERED_FEATURES) {
			r = fc_err_set(e, EPROTO, "front-end set unoffered features %#llx",
				       (unsigned long long)(u64 & ~OFFERED_FEATURES));
			break;
		}
		d->features = u64;
		/* Without PROTOCOL_FEATURES rings are enabled from the start. */
		if (!(u64 & F_PROTOCOL_FEATURES))
			for (i = 0; i < NQ; i++)
				d->q[i].enabled = true;
		break;
	case VU_GET_PROTOCOL_FEATURES:
		r = reply_u64(d, h.req, OFFERED_PROTO, e);
		replied = true;
		break;
	case VU_SET_PROTOCOL_FEATURES:
		NEED_SIZE(8);
		d->proto = u64 & OFFERED_PROTO;
		need_reply = (h.flags & VU_FLAG_NEED_REPLY) && (d->proto & PF_REPLY_ACK);
		break;
	case VU_SET_OWNER:
		break;
	case VU_RESET_OWNER:
		for (i = 0; i < NQ; i++)
			vq_stop(d, i);
		break;
	case VU_GET_QUEUE_NUM:
		r = reply_u64(d, h.req, NQ, e);
		replied = true;
		break;
	case VU_SET_MEM_TABLE:
		r = set_mem_table(d, payload, h.size, fds, nfds, e);
		break;
	case VU_SET_LOG_BASE:
		r = set_log_base(d, payload, h.size, fds, nfds, e);
		/* with LOG_SHMFD the front-end waits for a u64 0 */
		if (r == 0 && (d->proto & PF_LOG_SHMFD)) {
			r = reply_u64(d, h.req, 0, e);
			replied = true;
		}
		break;
	case VU_SET_LOG_FD:
		if (nfds != 1) {
			r = fc_err_set(e, EINVAL, "SET_LOG_FD with %u fds", nfds);
			break;
		}
		close_fd(&d->log_fd);
		d->log_fd = fds[0];
		fds[0] = -1;
		break;
	case VU_SET_VRING_NUM:
	case VU_SET_VRING_BASE:
	case VU_SET_VRING_ENABLE:
	case VU_GET_VRING_BASE: {
		struct vu_state s;

		NEED_SIZE(sizeof(s));
		memcpy(&s, payload, sizeof(s));
		if (s.index >= NQ) {
			r = fc_err_set(e, EINVAL, "vhost-user request %u for queue %u", h.req,
				       s.index);
			break;
		}
		if (h.req == VU_SET_VRING_NUM) {
			if (!s.num || s.num > VRING_MAX_SIZE || (s.num & (s.num - 1)))
				r = fc_err_set(e, EINVAL, "queue %u size %u", s.index, s.num);
			else
				d->q[s.index].num = s.num;
		} else if (h.req == VU_SET_VRING_BASE) {
			if (s.num > UINT16_MAX)
				r = fc_err_set(e, EINVAL, "queue %u base %u", s.index, s.num);
			else
				d->q[s.index].base = s.num;
		} else if (h.req == VU_SET_VRING_ENABLE) {
			d->q[s.index].enabled = s.num != 0;
		} else {
			vq_stop(d, s.index);
			s.num = d->q[s.index].base;
			r = send_reply(d, h.req, &s, sizeof(s), e);
			replied = true;
		}
		break;
	}
	case VU_SET_VRING_ADDR: {
		struct vu_addr a;

		NEED_SIZE(sizeof(a));
		memcpy(&a, payload, sizeof(a));
		if (a.index >= NQ) {
			r = fc_err_set(e, EINVAL, "SET_VRING_ADDR for queue %u", a.index);
			break;
		}
		if (a.flags & ~VRING_F_LOG) {
			r = fc_err_set(e, EINVAL, "SET_VRING_ADDR: unknown flags %#x", a.flags);
			break;
		}
		d->q[a.index].log_used = a.flags & VRING_F_LOG;
		d->q[a.index].log_addr = a.log;
		d->q[a.index].desc = a.desc;
		d->q[a.index].used = a.used;
		d->q[a.index].avail = a.avail;
		d->q[a.index].addr_set = true;
		if (d->q[a.index].vr.num) {
			d->q[a.index].base = d->q[a.index].vr.last_avail;
			r = vq_start(d, a.index, e);
		}
		break;
	}
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR:
		NEED_SIZE(8);
		r = set_vring_fd(d, h.req, u64, fds, nfds, e);
		break;
	case VU_GET_CONFIG: {
		struct vu_config *c = (struct vu_config *)payload;
		uint8_t cfg[8];
		uint64_t cid = htole64(d->cid);
		uint32_t k;

		if (h.size < sizeof(*c) || c->size > 256 || h.size != sizeof(*c) + c->size) {
			r = fc_err_set(e, EPROTO, "GET_CONFIG: size %u", h.size);
			break;
		}
		memcpy(cfg, &cid, 8);
		for (k = 0; k < c->size; k++)
			c->data[k] = (uint64_t)c->offset + k < sizeof(cfg) ? cfg[c->offset + k] : 0;
		r = send_reply(d, h.req, payload, h.size, e);
		replied = true;
		break;
	}
	default:
		if (!need_reply)
			log_warn("ignoring unsupported vhost-user request %u", h.req);
		if (need_reply) {
			r = reply_u64(d, h.req, 1, e);
			replied = true;
		}
		break;
	}
#undef NEED_SIZE
	if (need_reply && !replied) {
		struct fc_err e2;

		/* A failed request is reported to the front-end, not fatal for us. */
		if (reply_u64(d, h.req, r < 0 ? 1 : 0, &e2) < 0)
			return fc_err_set(e, e2.errnum, "%s", e2.msg);
		if (r < 0)
			log_warn("%s", e->msg);
		r = 0;
	}
out:
	for (i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r;
}
