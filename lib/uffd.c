/* uffd.c - see uffd.h (the "how it works" is there). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include <jansson.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "text.h"
#include "uffd.h"
#include "util.h"

#define PAGE_4K		4096ULL
#define PAGE_2M		(2ULL << 20)
#define ADDR_LIMIT	(1ULL << 57)	/* beyond any user address (5-level paging) */
#define MAX_FDS_CMSG	8
#define PF_SLICE	(16ULL << 20)	/* prefetch bytes per client per step */
#define PF_BATCH	(4ULL << 20)	/* at most this per UFFDIO_COPY */
#define MSGS_PER_READ	64
#define WS_MAGIC	"fcvm-ws 1 "

/* ---- the handshake ----------------------------------------------------- */

static int get_u64(json_t *o, const char *key, size_t i, uint64_t *out, struct fc_err *e)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return fc_err_say(e, EINVAL, "region %zu: '%s' must be a non-negative integer", i,
				  key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int cmp_base(const void *a, const void *b)
{
	const struct uffd_region *x = a, *y = b;

	return x->base < y->base ? -1 : x->base > y->base;
}

static int cmp_off(const void *a, const void *b)
{
	const struct uffd_region *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int uffd_parse_handshake(const char *buf, size_t len, uint64_t file_size,
			 struct uffd_region *out, size_t max, size_t *n, struct fc_err *e)
{
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ struct uffd_region *sorted = NULL;
	json_error_t jerr;
	uint64_t total = 0;
	json_t *o;
	size_t i, cnt;

	if (len > UFFD_HS_MAX)
		return fc_err_say(e, EMSGSIZE, "handshake of %zu bytes (at most %d)", len,
				  UFFD_HS_MAX);
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return fc_err_say(e, EINVAL, "handshake: invalid JSON at byte %d: %s",
				  jerr.position, jerr.text);
	if (!json_is_array(j))
		return fc_err_say(e, EINVAL, "handshake: not a JSON array");
	cnt = json_array_size(j);
	if (cnt == 0 || cnt > max)
		return fc_err_say(e, EINVAL, "handshake: %zu regions (1 to %zu)", cnt, max);
	json_array_foreach(j, i, o) {
		struct uffd_region *r = &out[i];
		const char *key;
		json_t *v;
		bool old = false, neu = false;

		if (!json_is_object(o))
			return fc_err_say(e, EINVAL, "region %zu: not an object", i);
		json_object_foreach(o, key, v) {
			if (!strcmp(key, "page_size"))
				neu = true;
			else if (!strcmp(key, "page_size_kib"))
				old = true;
			else if (strcmp(key, "base_host_virt_addr") && strcmp(key, "size") &&
				 strcmp(key, "offset"))
			{
				_cleanup_free_ char *k = text_clean(key, strlen(key), 64, false);

				return fc_err_say(e, EINVAL, "region %zu: unknown key '%s'", i, k);
			}
		}
		if (!old && !neu)
			return fc_err_say(e, EINVAL, "region %zu: no page_size (or page_size_kib)",
					  i);
		if (get_u64(o, "base_host_virt_addr", i, &r->base, e) < 0 ||
		    get_u64(o, "size", i, &r->size, e) < 0 ||
		    get_u64(o, "offset", i, &r->offset, e) < 0 ||
		    get_u64(o, neu ? "page_size" : "page_size_kib", i, &r->page_size, e) < 0)
			return -1;
		if (old && neu) {
			/* Firecracker >= 1.12 sends both (the old one deprecated) */
			uint64_t kib;

			if (get_u64(o, "page_size_kib", i, &kib, e) < 0)
				return -1;
			if (kib != r->page_size)
				return fc_err_say(e, EINVAL, "region %zu: page_size %llu and "
						  "page_size_kib %llu differ", i,
						  (unsigned long long)r->page_size,
						  (unsigned long long)kib);
		}
		if (r->page_size != PAGE_4K && r->page_size != PAGE_2M)
			return fc_err_say(e, EINVAL, "region %zu: page size %llu (4096 or 2097152)",
					  i, (unsigned long long)r->page_size);
		if (r->size == 0 || r->base == 0)
			return fc_err_say(e, EINVAL, "region %zu: empty or at address 0", i);
		if ((r->base | r->size | r->offset) & (r->page_size - 1))
			return fc_err_say(e, EINVAL, "region %zu: address, size or offset not "
					  "aligned to its page size", i);
		if (r->base >= ADDR_LIMIT || r->size >= ADDR_LIMIT - r->base)
			return fc_err_say(e, EINVAL, "region %zu: beyond the address space", i);
		if (r->offset > file_size || r->size > file_size - r->offset)
			return fc_err_say(e, EINVAL, "region %zu: bytes %llu-%llu are outside the "
					  "memory file (%llu bytes)", i,
					  (unsigned long long)r->offset,
					  (unsigned long long)(r->offset + r->size),
					  (unsigned long long)file_size);
		total += r->size;	/* each <= file_size: no overflow for <= max */
	}
	sorted = xmalloc(cnt * sizeof(*sorted));
	memcpy(sorted, out, cnt * sizeof(*sorted));
	qsort(sorted, cnt, sizeof(*sorted), cmp_base);
	for (i = 1; i < cnt; i++)
		if (sorted[i - 1].base + sorted[i - 1].size > sorted[i].base)
			return fc_err_say(e, EINVAL, "handshake: regions overlap in memory");
	qsort(sorted, cnt, sizeof(*sorted), cmp_off);
	for (i = 1; i < cnt; i++)
		if (sorted[i - 1].offset + sorted[i - 1].size > sorted[i].offset)
			return fc_err_say(e, EINVAL, "handshake: regions overlap in the file");
	if (total != file_size)
		return fc_err_say(e, EINVAL, "handshake: regions cover %llu bytes, the memory "
				  "file has %llu", (unsigned long long)total,
				  (unsigned long long)file_size);
	*n = cnt;
	return 0;
}

int uffd_check_fd(int fd, struct fc_err *e)
{
	char path[64], link[64], info[512];
	_cleanup_close_ int ifd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlinkat(AT_FDCWD, path, link, sizeof(link) - 1);
	if (n < 0)
		return fc_err_set(e, errno, "readlink '%s'", path);
	link[n] = '\0';
	if (strcmp(link, "anon_inode:[userfaultfd]"))
		return fc_err_say(e, EBADF, "the fd passed is not a userfaultfd");
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	ifd = open(path, O_RDONLY | O_CLOEXEC);
	if (ifd < 0)
		return fc_err_set(e, errno, "open '%s'", path);
	n = read(ifd, info, sizeof(info) - 1);
	if (n < 0)
		return fc_err_set(e, errno, "read '%s'", path);
	info[n] = '\0';
	if (!strstr(info, "\nAPI:\t"))
		return fc_err_say(e, EBADF, "the userfaultfd passed has no API set up");
	return 0;
}

/* ---- the engine -------------------------------------------------------- */

enum { W_SOCK, W_UFFD, W_PID };

struct client;
struct watch {
	struct client *c;
	int kind;
};

struct creg {
	struct uffd_region r;
	uint64_t pages;
	uint8_t *removed;	/* bit per page */
	uint8_t *served;	/* bit per page */
};

struct client {
	struct client *next;
	struct watch w[3];
	int sock, uffd, pidfd;
	int pid;
	bool serving, dead;
	uint64_t deadline;
	char *buf;
	size_t len;
	int fds[MAX_FDS_CMSG];
	unsigned nfds;
	bool bad_cmsg;
	struct creg *reg;
	size_t nreg;
	uint64_t *retry;	/* fault addresses to copy again (EAGAIN) */
	size_t nretry, cretry;
	size_t pf_reg;		/* prefetch cursor */
	uint64_t pf_page;
	bool pf_done;
};

struct uffd_server {
	struct uffd_opts o;
	int epfd;
	struct client *clients;
	unsigned nconns;
	struct uffd_stats st;
	uint8_t *ws;		/* bit per 4 KiB page of the file */
	uint64_t ws_pages_total;
	bool ws_dirty;
	void *zero;		/* PAGE_2M of zeroes, read-only */
};

static inline bool bit(const uint8_t *m, uint64_t i)
{
	return m[i >> 3] & (1u << (i & 7));
}

static inline void set_bit(uint8_t *m, uint64_t i)
{
	m[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static inline void clear_bit(uint8_t *m, uint64_t i)
{
	m[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

struct uffd_server *uffd_server_new(const struct uffd_opts *o, struct fc_err *e)
{
	struct uffd_server *s = xcalloc(1, sizeof(*s));

	s->o = *o;
	if (!s->o.fault_around)
		s->o.fault_around = 16;
	if (s->o.fault_around > 64)
		s->o.fault_around = 64;
	if (!s->o.handshake_ms)
		s->o.handshake_ms = UFFD_HS_TIMEOUT_MS;
	if (!s->o.max_clients)
		s->o.max_clients = 1024;
	s->ws_pages_total = (o->mem_size + PAGE_4K - 1) / PAGE_4K;
	s->ws = xcalloc(1, s->ws_pages_total / 8 + 1);
	s->zero = mmap(NULL, PAGE_2M, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->zero == MAP_FAILED) {
		fc_err_set(e, errno, "map a zero page");
		free(s->ws);
		free(s);
		return NULL;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		fc_err_set(e, errno, "epoll_create1");
		munmap(s->zero, PAGE_2M);
		free(s->ws);
		free(s);
		return NULL;
	}
	return s;
}

static void client_free(struct uffd_server *s, struct client *c)
{
	unsigned i;
	size_t r;

	if (c->sock >= 0)
		close(c->sock);
	if (c->uffd >= 0)
		close(c->uffd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	for (i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	for (r = 0; r < c->nreg; r++) {
		free(c->reg[r].removed);
		free(c->reg[r].served);
	}
	free(c->reg);
	free(c->buf);
	free(c->retry);
	s->nconns--;
	free(c);
}

void uffd_server_free(struct uffd_server *s)
{
	struct client *c, *n;

	if (!s)
		return;
	for (c = s->clients; c; c = n) {
		n = c->next;
		client_free(s, c);
	}
	close(s->epfd);
	munmap(s->zero, PAGE_2M);
	free(s->ws);
	free(s);
}

int uffd_server_fd(const struct uffd_server *s)
{
	return s->epfd;
}

int uffd_server_timeout(const struct uffd_server *s)
{
	const struct client *c;
	uint64_t now = now_ms(), next = UINT64_MAX;

	for (c = s->clients; c; c = c->next) {
		if (c->dead || c->nretry || (c->serving && !c->pf_done))
			return 0;
		if (!c->serving && c->deadline < next)
			next = c->deadline;
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

static void drop(struct uffd_server *s, struct client *c, bool refused, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void drop(struct uffd_server *s, struct client *c, bool refused, const char *fmt, ...)
{
	char msg[FC_ERR_MAX];
	va_list ap;

	if (c->dead)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (refused) {
		s->st.refused++;
		log_warn("connection refused: %s", msg);
	} else {
		s->st.dropped++;
		s->st.clients--;
		if (c->pid > 0 && !strcmp(msg, "exited"))
			log_debug("client %d: %s", c->pid, msg);
		else if (c->pid > 0)
			log_warn("client %d: %s", c->pid, msg);
	}
	c->dead = true;
	/* out of epoll now: no more events for it in this or later steps */
	if (c->sock >= 0)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->sock, NULL);
	if (c->uffd >= 0)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->uffd, NULL);
	if (c->pidfd >= 0)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
}

void uffd_server_add(struct uffd_server *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	struct client *c;
	int fl;

	if (s->nconns >= s->o.max_clients) {
		s->st.refused++;
		log_warn("connection refused: %u connections already open", s->nconns);
		close(fd);
		return;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->sock = fd;
	c->uffd = c->pidfd = -1;
	c->deadline = now_ms() + (uint64_t)s->o.handshake_ms;
	c->buf = xmalloc(UFFD_HS_MAX + 1);
	for (int k = 0; k < 3; k++)
		c->w[k] = (struct watch){ c, k };
	ev.data.ptr = &c->w[W_SOCK];
	c->next = s->clients;
	s->clients = c;
	s->nconns++;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		drop(s, c, true, "epoll: %s", strerror(errno));
}

/* The handshake is complete: validate it and start serving. */
static void start_serving(struct uffd_server *s, struct client *c)
{
	struct uffd_region reg[UFFD_MAX_REGIONS];
	struct epoll_event ev = { .events = EPOLLIN };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct fc_err e;
	size_t n, i;

	if (c->bad_cmsg)
		return drop(s, c, true, "unexpected or truncated control data");
	if (c->nfds != 1)
		return drop(s, c, true, "%u file descriptors (exactly one userfaultfd)", c->nfds);
	if (uffd_parse_handshake(c->buf, c->len, s->o.mem_size, reg, UFFD_MAX_REGIONS, &n,
				 &e) < 0)
		return drop(s, c, true, "%s", e.msg);
	if (uffd_check_fd(c->fds[0], &e) < 0)
		return drop(s, c, true, "%s", e.msg);
	if (getsockopt(c->sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.pid <= 0)
		return drop(s, c, true, "no peer credentials");
	c->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (c->pidfd < 0)
		return drop(s, c, true, "pidfd_open %d: %s", (int)cred.pid, strerror(errno));
	c->pid = cred.pid;
	c->uffd = c->fds[0];
	c->nfds = 0;
	c->reg = xcalloc(n, sizeof(*c->reg));
	c->nreg = n;
	for (i = 0; i < n; i++) {
		c->reg[i].r = reg[i];
		c->reg[i].pages = reg[i].size / reg[i].page_size;
		c->reg[i].removed = xcalloc(1, c->reg[i].pages / 8 + 1);
		c->reg[i].served = xcalloc(1, c->reg[i].pages / 8 + 1);
	}
	free(c->buf);
	c->buf = NULL;
	/* The socket stays open (Firecracker keeps its end) but is not read. */
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->sock, NULL);
	ev.data.ptr = &c->w[W_UFFD];
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->uffd, &ev) < 0)
		return drop(s, c, true, "epoll: %s", strerror(errno));
	ev.data.ptr = &c->w[W_PID];
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->pidfd, &ev) < 0)
		return drop(s, c, true, "epoll: %s", strerror(errno));
	c->serving = true;
	c->pf_done = !s->o.prefetch;
	s->st.clients++;
	s->st.clients_total++;
	log_debug("client %d: serving %zu region(s)%s", c->pid, n,
		 s->o.prefetch ? ", prefetching the working set" : "");
}

static void read_handshake(struct uffd_server *s, struct client *c)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(MAX_FDS_CMSG * sizeof(int))];
	} cbuf;
	struct iovec iov;
	struct msghdr mh;
	struct cmsghdr *cm;
	json_error_t jerr;
	json_t *j;
	ssize_t r;

	for (;;) {
		if (c->len >= UFFD_HS_MAX)
			return drop(s, c, true, "handshake longer than %d bytes", UFFD_HS_MAX);
		iov = (struct iovec){ c->buf + c->len, UFFD_HS_MAX - c->len };
		mh = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
				      .msg_controllen = sizeof(cbuf.b) };
		r = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			return drop(s, c, true, "recvmsg: %s", strerror(errno));
		}
		if (mh.msg_flags & MSG_CTRUNC)
			c->bad_cmsg = true;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k, nf;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
				c->bad_cmsg = true;
				continue;
			}
			nf = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (k = 0; k < nf; k++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				if (c->nfds < MAX_FDS_CMSG)
					c->fds[c->nfds++] = fd;
				else {
					close(fd);
					c->bad_cmsg = true;
				}
			}
		}
		if (r == 0) {
			if (!c->len)
				return drop(s, c, true, "closed without a handshake");
			break;	/* judge what came */
		}
		c->len += (size_t)r;
		j = json_loadb(c->buf, c->len, JSON_REJECT_DUPLICATES, &jerr);
		if (j) {
			json_decref(j);
			break;
		}
		if (json_error_code(&jerr) != json_error_premature_end_of_input)
			break;	/* invalid: the parser says why */
	}
	start_serving(s, c);
}

static struct creg *find_reg(struct client *c, uint64_t addr)
{
	size_t i;

	for (i = 0; i < c->nreg; i++)
		if (addr >= c->reg[i].r.base && addr - c->reg[i].r.base < c->reg[i].r.size)
			return &c->reg[i];
	return NULL;
}

static void add_retry(struct client *c, uint64_t addr)
{
	if (c->nretry == c->cretry) {
		c->cretry = c->cretry ? c->cretry * 2 : 16;
		c->retry = xrealloc(c->retry, c->cretry * sizeof(*c->retry));
	}
	c->retry[c->nretry++] = addr;
}

/* UFFDIO_COPY @np pages of @g from page @p: from the file, or zeroes.
 * Returns pages copied (>= 0), or -errno; EEXIST counts as done with what
 * was copied before it (the existing page is not counted). */
static long copy_pages(struct uffd_server *s, struct client *c, struct creg *g, uint64_t p,
		       uint64_t np, bool zero, uint64_t mode)
{
	uint64_t ps = g->r.page_size, len = np * ps;
	struct uffdio_copy cp = {
		.dst = g->r.base + p * ps,
		.src = zero ? (uint64_t)(uintptr_t)s->zero
			    : (uint64_t)(uintptr_t)s->o.mem + g->r.offset + p * ps,
		.len = len,
		.mode = mode,
	};
	uint64_t i, done;

	if (zero && len > PAGE_2M)
		return -EINVAL;
	if (ioctl(c->uffd, UFFDIO_COPY, &cp) == 0) {
		done = np;
	} else {
		int err = errno;

		done = cp.copy > 0 ? (uint64_t)cp.copy / ps : 0;
		for (i = 0; i < done; i++)
			set_bit(g->served, p + i);
		if (err == EEXIST) {
			set_bit(g->served, p + done);
			return (long)done;
		}
		return -err;
	}
	for (i = 0; i < done; i++)
		set_bit(g->served, p + i);
	return (long)done;
}

static void wake(struct client *c, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { .start = addr, .len = len };

	ioctl(c->uffd, UFFDIO_WAKE, &r);
}

/* Serve the fault at @addr. false when the client was dropped. */
static bool serve_fault(struct uffd_server *s, struct client *c, uint64_t addr, bool retrying)
{
	struct creg *g = find_reg(c, addr);
	uint64_t p, np, ps;
	bool zero;
	long r;

	if (!g) {
		drop(s, c, false, "dropped: a fault at 0x%llx outside its regions",
		     (unsigned long long)addr);
		return false;
	}
	ps = g->r.page_size;
	p = (addr - g->r.base) / ps;
	zero = bit(g->removed, p);
	np = 1;
	if (!zero && ps == PAGE_4K)
		while (np < s->o.fault_around && p + np < g->pages && !bit(g->removed, p + np) &&
		       !bit(g->served, p + np))
			np++;
	r = copy_pages(s, c, g, p, np, zero, 0);
	if (r == -EAGAIN) {
		s->st.eagain++;
		add_retry(c, addr);
		return true;
	}
	if (r < 0) {
		drop(s, c, false, "dropped: UFFDIO_COPY at 0x%llx: %s",
		     (unsigned long long)(g->r.base + p * ps), strerror((int)-r));
		return false;
	}
	if ((uint64_t)r < np || r == 0)	/* an existing page stopped it: wake the waiter */
		wake(c, g->r.base + p * ps, ps);
	if (!retrying)
		s->st.faults++;
	if (zero)
		s->st.pages_zeroed++;
	else
		s->st.pages_copied += (uint64_t)r;
	if (!zero) {
		/* Recorded: every page copied for the fault, fault-around included
		 * (a page it brought in is never faulted on, touched or not). */
		uint64_t f = (g->r.offset + p * ps) / PAGE_4K, k, n4 = (uint64_t)r * ps / PAGE_4K;

		for (k = 0; k < n4 && f + k < s->ws_pages_total; k++)
			if (!bit(s->ws, f + k)) {
				set_bit(s->ws, f + k);
				s->st.ws_pages++;
				s->ws_dirty = true;
			}
	}
	return true;
}

static void on_remove(struct uffd_server *s, struct client *c, uint64_t start, uint64_t end)
{
	size_t i;

	s->st.removes++;
	for (i = 0; i < c->nreg; i++) {
		struct creg *g = &c->reg[i];
		uint64_t a = start > g->r.base ? start : g->r.base;
		uint64_t b = end < g->r.base + g->r.size ? end : g->r.base + g->r.size;
		uint64_t p, q;

		if (a >= b)
			continue;
		/* only whole pages are removed (the kernel rounds inwards) */
		p = (a - g->r.base + g->r.page_size - 1) / g->r.page_size;
		q = (b - g->r.base) / g->r.page_size;
		for (; p < q; p++) {
			set_bit(g->removed, p);
			clear_bit(g->served, p);
		}
	}
}

static void read_faults(struct uffd_server *s, struct client *c)
{
	struct uffd_msg m[MSGS_PER_READ];
	ssize_t r;
	size_t i, n;

	/* One read per wake-up: the fd may be blocking (the VMM chose). */
	r = read(c->uffd, m, sizeof(m));
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		return drop(s, c, false, "dropped: read userfaultfd: %s", strerror(errno));
	}
	if (r == 0 || r % (ssize_t)sizeof(m[0]))
		return drop(s, c, false, "dropped: short read from the userfaultfd");
	n = (size_t)r / sizeof(m[0]);
	for (i = 0; i < n && !c->dead; i++) {
		switch (m[i].event) {
		case UFFD_EVENT_PAGEFAULT:
			serve_fault(s, c, m[i].arg.pagefault.address, false);
			break;
		case UFFD_EVENT_REMOVE:
			on_remove(s, c, m[i].arg.remove.start, m[i].arg.remove.end);
			break;
		default:
			log_debug("client %d: userfaultfd event %u ignored", c->pid, m[i].event);
		}
	}
}

static void do_retries(struct uffd_server *s, struct client *c)
{
	size_t n = c->nretry, i;
	uint64_t *list = c->retry;

	c->retry = NULL;
	c->nretry = c->cretry = 0;
	for (i = 0; i < n && !c->dead; i++)
		serve_fault(s, c, list[i], true);
	free(list);
}

/* Is page @p of @g in the working set (any of its 4 KiB pages)? */
static bool in_ws(const struct uffd_server *s, const struct creg *g, uint64_t p)
{
	uint64_t f = (g->r.offset + p * g->r.page_size) / PAGE_4K, k, n4 = g->r.page_size / PAGE_4K;

	for (k = 0; k < n4 && f + k < s->ws_pages_total; k++)
		if (bit(s->ws, f + k))
			return true;
	return false;
}

static void prefetch(struct uffd_server *s, struct client *c)
{
	uint64_t budget = PF_SLICE;

	while (!c->dead && c->pf_reg < c->nreg && budget) {
		struct creg *g = &c->reg[c->pf_reg];
		uint64_t ps = g->r.page_size, p = c->pf_page, np = 0, max;
		long r;

		while (p < g->pages && (!in_ws(s, g, p) || bit(g->served, p) || bit(g->removed, p)))
			p++;
		if (p >= g->pages) {
			c->pf_reg++;
			c->pf_page = 0;
			continue;
		}
		max = (budget < PF_BATCH ? budget : PF_BATCH) / ps;
		if (!max)
			max = 1;
		while (np < max && p + np < g->pages && in_ws(s, g, p + np) &&
		       !bit(g->served, p + np) && !bit(g->removed, p + np))
			np++;
		r = copy_pages(s, c, g, p, np, false, 0);
		if (r == -EAGAIN) {
			s->st.eagain++;
			c->pf_page = p;
			return;	/* next turn */
		}
		if (r < 0) {
			drop(s, c, false, "dropped: prefetch UFFDIO_COPY: %s", strerror((int)-r));
			return;
		}
		s->st.pages_prefetched += (uint64_t)r;
		c->pf_page = p + (uint64_t)r + ((uint64_t)r < np ? 1 : 0);
		budget -= budget < (np * ps) ? budget : np * ps;
	}
	if (c->pf_reg >= c->nreg)
		c->pf_done = true;
}

int uffd_server_step(struct uffd_server *s, struct fc_err *e)
{
	struct epoll_event ev[64];
	struct client *c, **pp;
	uint64_t now;
	int n, i;

	n = epoll_wait(s->epfd, ev, ARRAY_SIZE(ev), 0);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return fc_err_set(e, errno, "epoll_wait");
	}
	/* Dead clients first: a pidfd says the process is gone. */
	for (i = 0; i < n; i++) {
		struct watch *w = ev[i].data.ptr;

		if (w->kind == W_PID && !w->c->dead)
			drop(s, w->c, false, "exited");
	}
	for (i = 0; i < n; i++) {
		struct watch *w = ev[i].data.ptr;

		if (w->c->dead)
			continue;
		if (w->kind == W_SOCK)
			read_handshake(s, w->c);
		else if (w->kind == W_UFFD)
			read_faults(s, w->c);
	}
	now = now_ms();
	for (c = s->clients; c; c = c->next) {
		if (c->dead)
			continue;
		if (!c->serving && now >= c->deadline)
			drop(s, c, true, "no handshake within %d ms", s->o.handshake_ms);
		else if (c->nretry)
			do_retries(s, c);
		if (!c->dead && c->serving && !c->pf_done)
			prefetch(s, c);
	}
	for (pp = &s->clients; *pp;) {
		c = *pp;
		if (c->dead) {
			*pp = c->next;
			client_free(s, c);
		} else {
			pp = &c->next;
		}
	}
	return 0;
}

void uffd_server_stats(const struct uffd_server *s, struct uffd_stats *st)
{
	*st = s->st;
}

size_t uffd_server_pids(const struct uffd_server *s, int *pids, size_t max)
{
	const struct client *c;
	size_t n = 0;

	for (c = s->clients; c && n < max; c = c->next)
		if (c->serving && !c->dead)
			pids[n++] = c->pid;
	return n;
}

bool uffd_ws_dirty(const struct uffd_server *s)
{
	return s->ws_dirty;
}

static size_t ws_bytes(const struct uffd_server *s)
{
	return (size_t)((s->ws_pages_total + 7) / 8);
}

int uffd_ws_load(struct uffd_server *s, const char *path, struct fc_err *e)
{
	char hdr[64];
	size_t len, hl, nb = ws_bytes(s), i;
	_cleanup_free_ char *buf = read_file_max(path, nb + sizeof(hdr), &len, e);
	const uint8_t *bits;
	uint64_t k;

	if (!buf && e->errnum == ENOENT)
		return 0;
	if (!buf && e->errnum == 0)	/* too large for this file's set */
		return fc_err_say(e, EINVAL, "working set '%s' is not one of this memory file",
				  path);
	if (!buf)
		return -1;
	hl = (size_t)snprintf(hdr, sizeof(hdr), WS_MAGIC "%llu\n",
			      (unsigned long long)s->o.mem_size);
	if (len != hl + nb || memcmp(buf, hdr, hl))
		return fc_err_say(e, EINVAL, "working set '%s' is not one of this memory file",
				  path);
	bits = (const uint8_t *)buf + hl;
	for (i = 0; i < nb; i++)
		s->ws[i] |= bits[i];
	/* bits past the last page are not ours */
	for (k = s->ws_pages_total; k < (uint64_t)nb * 8; k++)
		clear_bit(s->ws, k);
	s->st.ws_pages = 0;
	for (k = 0; k < s->ws_pages_total; k++)
		s->st.ws_pages += bit(s->ws, k);
	return 0;
}

int uffd_ws_save(struct uffd_server *s, const char *path, struct fc_err *e)
{
	char hdr[64];
	size_t hl, nb = ws_bytes(s);
	_cleanup_free_ char *buf = NULL;

	hl = (size_t)snprintf(hdr, sizeof(hdr), WS_MAGIC "%llu\n",
			      (unsigned long long)s->o.mem_size);
	buf = xmalloc(hl + nb);
	memcpy(buf, hdr, hl);
	memcpy(buf + hl, s->ws, nb);
	if (fs_write_atomic(path, buf, hl + nb, 0644, e) < 0)
		return -1;
	s->ws_dirty = false;
	return 0;
}
