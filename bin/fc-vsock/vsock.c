/* vsock.c - virtio-vsock streams between the guest rings and host Unix
 * sockets, the way Firecracker's hybrid vsock does it.
 *
 * How it works:
 * - Host-initiated: a client connects to the UDS listener and writes
 *   "CONNECT <port>\n"; we pick a fresh local port, send REQUEST to the guest,
 *   and on RESPONSE answer "OK <local port>\n" and relay. RST closes the client.
 * - Guest-initiated: a REQUEST to host port P connects to "<uds>_P"; RESPONSE
 *   on success, RST otherwise.
 * - Guest -> host: RW payloads are written straight to the host socket; what
 *   it will not take now is kept in a per-connection buffer of exactly the
 *   credit we advertise (buf_alloc), so a guest honouring credit can never
 *   overflow it (one that does is reset). We report fwd_cnt in every packet
 *   and send CREDIT_UPDATE once a quarter of the buffer was consumed.
 * - Host -> guest: host sockets are read directly into the guest's rx
 *   buffers, never more than the guest's advertised credit, one packet per
 *   connection in turn so a busy or stalled connection cannot starve others.
 * - Host sockets are edge-triggered: can_read/can_write remember readiness
 *   until a read or write says EAGAIN.
 * Connections are freed only at the end of vsock_run (dead flag), so no
 * pointer is used after free while iterating.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "fc-vsock.h"
#include "log.h"
#include "util.h"

#define HDR_LEN sizeof(struct vsock_hdr)

#define TYPE_STREAM 1
enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE,
       OP_CREDIT_REQUEST };
#define SHUT_F_RCV  1
#define SHUT_F_SEND 2

#define CONN_BUF        (256u * 1024)	/* our buf_alloc per connection */
#define MAX_PKT_PAYLOAD (64u * 1024)
#define LINE_TIMEOUT_MS    5000
#define CONNECT_TIMEOUT_MS 2000
#define CLOSE_TIMEOUT_MS   5000
#define FIRST_LOCAL_PORT   (1u << 30)

enum cstate { C_LINE, C_CONNECTING, C_EST };

/* Pending control packets to the guest. */
#define P_REQUEST  1u
#define P_RESPONSE 2u
#define P_CREDIT   4u
#define P_SHUTDOWN 8u
#define P_RST      16u

struct conn {
	struct src src;
	int fd;
	enum cstate st;
	bool host_init;
	bool dead;
	uint32_t local_port, peer_port;
	unsigned pend;
	uint64_t deadline;		/* 0: none */

	bool can_read, can_write;
	bool host_eof;			/* read returned 0 */
	bool host_hup;			/* host peer closed both directions */
	bool host_wr_shut;		/* we shut the host socket's write side */
	bool sent_shutdown;
	uint32_t guest_shut;		/* SHUTDOWN flags received from the guest */

	/* guest -> host */
	uint8_t *buf;			/* CONN_BUF ring buffer, allocated when needed */
	uint32_t bstart, blen;
	uint32_t fwd_cnt, last_fwd_sent;

	/* host -> guest */
	uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
};

void vsock_init(struct dev *d)
{
	d->next_port = FIRST_LOCAL_PORT;
	d->chain = xcalloc(1, sizeof(*d->chain));
}

static struct conn *conn_find(struct dev *d, uint32_t local, uint32_t peer)
{
	unsigned i;

	for (i = 0; i < d->nconns; i++) {
		struct conn *c = d->conns[i];

		if (!c->dead && c->local_port == local && c->peer_port == peer &&
		    c->st != C_LINE)
			return c;
	}
	return NULL;
}

static struct conn *conn_new(struct dev *d, int fd)
{
	struct conn *c;
	struct epoll_event ev;

	if (d->nconns >= MAX_CONNS)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->src = (struct src){ .kind = SRC_CONN, .ptr = c };
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = &c->src;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_warn("watch connection: %s", strerror(errno));
		free(c);
		return NULL;
	}
	d->conns[d->nconns++] = c;
	return c;
}

static void conn_close_host(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->can_read = c->can_write = false;
}

static void conn_kill(struct conn *c)
{
	conn_close_host(c);
	c->dead = true;
}

/* Reset the connection: RST to the guest (if it knows of it), host side closed now. */
static void conn_rst(struct dev *d, struct conn *c)
{
	conn_close_host(c);
	if (c->st == C_LINE || !vq_ready(d, Q_RX)) {
		conn_kill(c);
		return;
	}
	c->pend = P_RST;
	c->deadline = now_ms() + CLOSE_TIMEOUT_MS;
}

static uint32_t peer_credit(const struct conn *c)
{
	uint32_t inflight = c->tx_cnt - c->peer_fwd_cnt;

	return inflight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - inflight;
}

static void fill_hdr(const struct dev *d, const struct conn *c, struct vsock_hdr *h,
		     uint16_t op, uint32_t len, uint32_t flags)
{
	h->src_cid = htole64(VSOCK_HOST_CID);
	h->dst_cid = htole64(d->cid);
	h->src_port = htole32(c->local_port);
	h->dst_port = htole32(c->peer_port);
	h->len = htole32(len);
	h->type = htole16(TYPE_STREAM);
	h->op = htole16(op);
	h->flags = htole32(flags);
	h->buf_alloc = htole32(CONN_BUF);
	h->fwd_cnt = htole32(c->fwd_cnt);
}

/* Answer a packet that belongs to no connection with RST (bounded queue). */
static void queue_rst(struct dev *d, const struct vsock_hdr *in)
{
	struct vsock_hdr *h;

	if (le16toh(in->op) == OP_RST)
		return;
	if (d->rst_len == RST_QUEUE) {
		log_debug("RST queue full, dropping one");
		return;
	}
	h = &d->rstq[(d->rst_head + d->rst_len++) % RST_QUEUE];
	memset(h, 0, sizeof(*h));
	h->src_cid = htole64(VSOCK_HOST_CID);
	h->dst_cid = in->src_cid;
	h->src_port = in->dst_port;
	h->dst_port = in->src_port;
	h->type = htole16(TYPE_STREAM);
	h->op = htole16(OP_RST);
}

/* End of life checks once buffers drained or shutdowns arrived. */
static void conn_check_done(struct dev *d, struct conn *c)
{
	if (c->dead || c->pend & P_RST || c->st != C_EST)
		return;
	if ((c->guest_shut & SHUT_F_SEND) && !c->blen && !c->host_wr_shut && c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	/* The guest closed its socket, or both sides finished sending: done. */
	if (!c->blen && (c->guest_shut == (SHUT_F_RCV | SHUT_F_SEND) ||
			 ((c->guest_shut & SHUT_F_SEND) && c->sent_shutdown)))
		conn_rst(d, c);
}

static void maybe_credit(struct conn *c)
{
	if (c->fwd_cnt - c->last_fwd_sent >= CONN_BUF / 4)
		c->pend |= P_CREDIT;
}

/* Write buffered guest data to the host socket. */
static void conn_flush(struct dev *d, struct conn *c)
{
	while (c->blen && c->can_write && c->fd >= 0) {
		uint32_t first = CONN_BUF - c->bstart;
		struct iovec iov[2];
		int n = 1;
		ssize_t w;

		if (first >= c->blen) {
			iov[0] = (struct iovec){ c->buf + c->bstart, c->blen };
		} else {
			iov[0] = (struct iovec){ c->buf + c->bstart, first };
			iov[1] = (struct iovec){ c->buf, c->blen - first };
			n = 2;
		}
		w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->can_write = false;
				break;
			}
			if (errno == EINTR)
				continue;
			log_debug("port %u: host write: %s", c->local_port, strerror(errno));
			conn_rst(d, c);
			return;
		}
		c->bstart = (c->bstart + w) % CONN_BUF;
		c->blen -= w;
		c->fwd_cnt += w;
	}
	if (!c->blen) {
		free(c->buf);
		c->buf = NULL;
		c->bstart = 0;
	}
	maybe_credit(c);
	conn_check_done(d, c);
}

/* RW payload from the guest. */
static void conn_recv(struct dev *d, struct conn *c, const struct iovec *iov, unsigned n,
		      uint32_t len)
{
	struct iovec part[VRING_MAX_CHAIN];
	size_t off = 0;
	unsigned k;

	if (c->guest_shut & SHUT_F_SEND || c->host_wr_shut || c->fd < 0) {
		conn_rst(d, c);
		return;
	}
	if (len > CONN_BUF - c->blen) {
		log_warn("guest port %u overran its credit: resetting", c->peer_port);
		conn_rst(d, c);
		return;
	}
	if (!c->blen && c->can_write) {
		k = iov_slice(iov, n, 0, len, part, VRING_MAX_CHAIN);
		for (;;) {
			ssize_t w = writev(c->fd, part, k);

			if (w >= 0) {
				off = w;
				c->fwd_cnt += w;
			} else if (errno == EINTR) {
				continue;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->can_write = false;
			} else {
				log_debug("port %u: host write: %s", c->local_port, strerror(errno));
				conn_rst(d, c);
				return;
			}
			break;
		}
	}
	if (off < len) {
		uint32_t rest = len - off, tail, first;

		if (!c->buf)
			c->buf = xmalloc(CONN_BUF);
		tail = (c->bstart + c->blen) % CONN_BUF;
		first = CONN_BUF - tail < rest ? CONN_BUF - tail : rest;
		iov_to_buf(iov, n, off, c->buf + tail, first);
		if (rest > first)
			iov_to_buf(iov, n, off + first, c->buf, rest - first);
		c->blen += rest;
	}
	maybe_credit(c);
}

static void guest_connect(struct dev *d, const struct vsock_hdr *h)
{
	uint32_t port = le32toh(h->dst_port);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct conn *c;
	int fd, n;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", d->uds_path, port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || d->nconns >= MAX_CONNS) {
		queue_rst(d, h);
		return;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_debug("guest connect to host port %u: %s", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		queue_rst(d, h);
		return;
	}
	c = conn_new(d, fd);
	if (!c) {
		close(fd);
		queue_rst(d, h);
		return;
	}
	c->st = C_EST;
	c->local_port = port;
	c->peer_port = le32toh(h->src_port);
	c->peer_buf_alloc = le32toh(h->buf_alloc);
	c->peer_fwd_cnt = le32toh(h->fwd_cnt);
	c->pend = P_RESPONSE;
	log_debug("guest port %u connected to host port %u", c->peer_port, port);
}

static void host_established(struct dev *d, struct conn *c)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "OK %u\n", c->local_port);

	/* A fresh socket has room for a dozen bytes; anything else is a dead client. */
	if (c->fd < 0 || send(c->fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		conn_rst(d, c);
		return;
	}
	c->st = C_EST;
	c->deadline = 0;
	log_debug("host port %u connected to guest port %u", c->local_port, c->peer_port);
}

static void handle_pkt(struct dev *d, const struct vring_chain *ch)
{
	struct vsock_hdr h;
	struct iovec payload[VRING_MAX_CHAIN];
	unsigned np;
	uint32_t len, flags;
	uint16_t op;
	struct conn *c;

	if (ch->out_len < HDR_LEN) {
		log_debug("tx: packet shorter than the header");
		return;
	}
	iov_to_buf(ch->out, ch->n_out, 0, &h, HDR_LEN);
	len = le32toh(h.len);
	op = le16toh(h.op);
	flags = le32toh(h.flags);
	if (le64toh(h.src_cid) != d->cid || le64toh(h.dst_cid) != VSOCK_HOST_CID) {
		log_debug("tx: packet from cid %llu to cid %llu dropped",
			  (unsigned long long)le64toh(h.src_cid),
			  (unsigned long long)le64toh(h.dst_cid));
		return;
	}
	if (len > MAX_PKT_PAYLOAD || len > ch->out_len - HDR_LEN ||
	    le16toh(h.type) != TYPE_STREAM) {
		log_debug("tx: bad packet (type %u, len %u)", le16toh(h.type), len);
		c = conn_find(d, le32toh(h.dst_port), le32toh(h.src_port));
		if (c)
			conn_rst(d, c);
		else
			queue_rst(d, &h);
		return;
	}
	c = conn_find(d, le32toh(h.dst_port), le32toh(h.src_port));
	if (op == OP_REQUEST) {
		if (c)
			conn_rst(d, c);
		else
			guest_connect(d, &h);
		return;
	}
	if (!c || c->pend & P_RST) {
		if (!c)
			queue_rst(d, &h);
		return;
	}
	c->peer_buf_alloc = le32toh(h.buf_alloc);
	c->peer_fwd_cnt = le32toh(h.fwd_cnt);
	switch (op) {
	case OP_RESPONSE:
		if (c->st == C_CONNECTING)
			host_established(d, c);
		else
			conn_rst(d, c);
		break;
	case OP_RST:
		log_debug("guest reset port %u", c->local_port);
		conn_kill(c);
		break;
	case OP_SHUTDOWN:
		if (c->st != C_EST) {
			conn_rst(d, c);
			break;
		}
		c->guest_shut |= flags & (SHUT_F_RCV | SHUT_F_SEND);
		conn_check_done(d, c);
		break;
	case OP_RW:
		if (c->st != C_EST) {
			conn_rst(d, c);
			break;
		}
		np = iov_slice(ch->out, ch->n_out, HDR_LEN, len, payload, VRING_MAX_CHAIN);
		conn_recv(d, c, payload, np, len);
		break;
	case OP_CREDIT_UPDATE:
		break;
	case OP_CREDIT_REQUEST:
		c->pend |= P_CREDIT;
		break;
	default:
		conn_rst(d, c);
		break;
	}
}

static bool process_tx(struct dev *d)
{
	struct vq *q = &d->q[Q_TX];
	bool used = false;
	struct fc_err e;
	uint16_t from;
	int r;

	if (!vq_ready(d, Q_TX))
		return false;
	from = q->vr.used_idx;
	if (vq_pull_rings(d, Q_TX, &e) < 0) {
		log_warn("tx queue: %s", e.msg);
		return false;
	}
	while ((r = vring_pop(&q->vr, &d->mem, d->chain, &e)) != 0) {
		used = true;
		if (r < 0) {
			log_warn("tx queue: %s", e.msg);
			continue;
		}
		if (vq_pull_iov(d, d->chain->out, d->chain->n_out, &e) < 0) {
			log_warn("tx queue: %s", e.msg);
			vring_push(&q->vr, d->chain->head, 0);
			break;
		}
		handle_pkt(d, d->chain);
		vring_push(&q->vr, d->chain->head, 0);
		vq_drop_iov(d, d->chain->out, d->chain->n_out);
	}
	if (used && vq_used_done(d, Q_TX, from, &e) < 0)
		log_warn("tx queue: %s", e.msg);
	return used;
}

static bool conn_wants_rx(const struct conn *c)
{
	if (c->dead || c->st == C_LINE)
		return false;
	if (c->pend)
		return true;
	return c->st == C_EST && c->can_read && !c->host_eof && !(c->guest_shut & SHUT_F_RCV) &&
	       peer_credit(c) > 0;
}

/* Put one packet of @c into rx chain @ch. Returns bytes written into the
 * chain; 0 when no packet was produced but the connection's state moved (EOF
 * seen, read would block, reset): look at it again; -1 when it could do
 * nothing with this chain. For 0 and -1 the chain is to be given back. */
static int conn_fill(struct dev *d, struct conn *c, const struct vring_chain *ch)
{
	struct vsock_hdr h;

	if (c->pend & P_RST) {
		fill_hdr(d, c, &h, OP_RST, 0, 0);
		conn_kill(c);
		goto ctrl;
	}
	if (c->pend & P_REQUEST) {
		c->pend &= ~P_REQUEST;
		fill_hdr(d, c, &h, OP_REQUEST, 0, 0);
		goto ctrl;
	}
	if (c->pend & P_RESPONSE) {
		c->pend &= ~P_RESPONSE;
		fill_hdr(d, c, &h, OP_RESPONSE, 0, 0);
		goto ctrl;
	}
	if (c->st == C_EST && c->can_read && !c->host_eof && !(c->guest_shut & SHUT_F_RCV) &&
	    c->fd >= 0) {
		uint32_t room = ch->in_len - HDR_LEN, credit = peer_credit(c);
		struct iovec part[VRING_MAX_CHAIN];
		unsigned k;
		ssize_t n;

		if (room > credit)
			room = credit;
		if (room > MAX_PKT_PAYLOAD)
			room = MAX_PKT_PAYLOAD;
		if (room) {
			k = iov_slice(ch->in, ch->n_in, HDR_LEN, room, part, VRING_MAX_CHAIN);
			do
				n = readv(c->fd, part, k);
			while (n < 0 && errno == EINTR);
			if (n > 0) {
				c->tx_cnt += n;
				c->last_fwd_sent = c->fwd_cnt;
				c->pend &= ~P_CREDIT;
				fill_hdr(d, c, &h, OP_RW, n, 0);
				iov_from_buf(ch->in, ch->n_in, 0, &h, HDR_LEN);
				return HDR_LEN + n;
			}
			if (n == 0) {
				c->host_eof = true;
				c->pend |= P_SHUTDOWN;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->can_read = false;
			} else {
				log_debug("port %u: host read: %s", c->local_port, strerror(errno));
				conn_rst(d, c);
			}
			return 0;
		}
	}
	if (c->pend & P_CREDIT) {
		c->pend &= ~P_CREDIT;
		c->last_fwd_sent = c->fwd_cnt;
		fill_hdr(d, c, &h, OP_CREDIT_UPDATE, 0, 0);
		goto ctrl;
	}
	if (c->pend & P_SHUTDOWN) {
		uint32_t fl = SHUT_F_SEND | (c->host_hup ? SHUT_F_RCV : 0);

		c->pend &= ~P_SHUTDOWN;
		c->sent_shutdown = true;
		if (c->host_hup)
			c->deadline = now_ms() + CLOSE_TIMEOUT_MS;
		fill_hdr(d, c, &h, OP_SHUTDOWN, 0, fl);
		iov_from_buf(ch->in, ch->n_in, 0, &h, HDR_LEN);
		conn_check_done(d, c);
		return HDR_LEN;
	}
	return -1;
ctrl:
	iov_from_buf(ch->in, ch->n_in, 0, &h, HDR_LEN);
	return HDR_LEN;
}

static bool process_rx(struct dev *d)
{
	struct vq *q = &d->q[Q_RX];
	struct vring_chain *ch = d->chain;
	bool used = false;
	struct fc_err e;
	unsigned idle = 0;
	uint16_t from;
	int r;

	if (!vq_ready(d, Q_RX))
		return false;
	from = q->vr.used_idx;
	if (vq_pull_rings(d, Q_RX, &e) < 0) {
		log_warn("rx queue: %s", e.msg);
		return false;
	}
	for (;;) {
		struct conn *c = NULL;
		int n;

		if (!d->rst_len) {
			/* Round robin: the next connection with something to send. */
			for (; idle < d->nconns; idle++) {
				c = d->conns[d->rr++ % d->nconns];
				if (conn_wants_rx(c))
					break;
				c = NULL;
			}
			if (!c)
				break;
		}
		r = vring_pop(&q->vr, &d->mem, ch, &e);
		if (r == 0)
			break;
		used = true;
		if (r < 0) {
			log_warn("rx queue: %s", e.msg);
			continue;
		}
		if (ch->in_len < HDR_LEN || ch->n_out) {
			log_warn("rx queue: buffer of %zu bytes is unusable", ch->in_len);
			vring_push(&q->vr, ch->head, 0);
			continue;
		}
		if (!c) {
			iov_from_buf(ch->in, ch->n_in, 0, &d->rstq[d->rst_head], HDR_LEN);
			d->rst_head = (d->rst_head + 1) % RST_QUEUE;
			d->rst_len--;
			if (vq_wrote(d, ch->in, ch->n_in, HDR_LEN, &e) < 0)
				log_warn("rx queue: %s", e.msg);
			vring_push(&q->vr, ch->head, HDR_LEN);
			vq_drop_iov(d, ch->in, ch->n_in);
			continue;
		}
		n = conn_fill(d, c, ch);
		if (n > 0) {
			if (vq_wrote(d, ch->in, ch->n_in, (size_t)n, &e) < 0)
				log_warn("rx queue: %s", e.msg);
			vring_push(&q->vr, ch->head, n);
			vq_drop_iov(d, ch->in, ch->n_in);
			idle = 0;
		} else {
			vring_unpop(&q->vr);
			/* Turn back to a connection whose state just moved (it may
			 * now owe a SHUTDOWN or RST); one that can do nothing counts
			 * as idle so it cannot keep us here. */
			if (n == 0) {
				d->rr--;
				idle = 0;
			} else {
				idle++;
			}
		}
	}
	if (used && vq_used_done(d, Q_RX, from, &e) < 0)
		log_warn("rx queue: %s", e.msg);
	return used;
}

void vsock_accept(struct dev *d)
{
	for (;;) {
		int fd = accept4(d->uds_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("accept on '%s': %s", d->uds_path, strerror(errno));
			return;
		}
		c = conn_new(d, fd);
		if (!c) {
			log_warn("too many connections: refusing one");
			close(fd);
			continue;
		}
		c->st = C_LINE;
		c->host_init = true;
		c->deadline = now_ms() + LINE_TIMEOUT_MS;
	}
}

static uint32_t fresh_port(struct dev *d)
{
	for (;;) {
		uint32_t p = d->next_port++;
		unsigned i;
		bool used = false;

		if (d->next_port < FIRST_LOCAL_PORT)
			d->next_port = FIRST_LOCAL_PORT;
		for (i = 0; i < d->nconns && !used; i++)
			used = !d->conns[i]->dead && d->conns[i]->local_port == p;
		if (!used)
			return p;
	}
}

/* Read the "CONNECT <port>\n" line without consuming what follows it. */
static void read_connect_line(struct dev *d, struct conn *c)
{
	char line[CONNECT_LINE_MAX];
	uint32_t port;
	ssize_t n;
	char *nl;

	n = recv(c->fd, line, sizeof(line), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_kill(c);
		return;
	}
	nl = memchr(line, '\n', n);
	if (!nl) {
		if (n == sizeof(line)) {
			log_warn("host client sent no CONNECT line: closing it");
			conn_kill(c);
		}
		return;
	}
	if (parse_connect_line(line, nl - line + 1, &port) < 0) {
		log_warn("bad CONNECT line from host client: closing it");
		conn_kill(c);
		return;
	}
	if (recv(c->fd, line, nl - line + 1, 0) != nl - line + 1) {
		conn_kill(c);
		return;
	}
	c->peer_port = port;
	c->local_port = fresh_port(d);
	c->st = C_CONNECTING;
	c->pend = P_REQUEST;
	c->peer_buf_alloc = 0;
	c->deadline = now_ms() + CONNECT_TIMEOUT_MS;
	c->can_read = true;	/* data may already follow the line */
}

void vsock_conn_event(struct dev *d, struct conn *c, uint32_t events)
{
	if (c->dead || c->fd < 0)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->can_read = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->can_write = true;
	if (events & (EPOLLHUP | EPOLLERR))
		c->host_hup = true;
	if (c->st == C_LINE)
		read_connect_line(d, c);
	else
		conn_flush(d, c);
}

static void sweep(struct dev *d)
{
	uint64_t now = now_ms();
	unsigned i, j;

	for (i = 0; i < d->nconns; i++) {
		struct conn *c = d->conns[i];

		if (c->dead || !c->deadline || now < c->deadline)
			continue;
		if (c->st == C_LINE) {
			log_warn("host client sent no CONNECT line in time: closing it");
			conn_kill(c);
		} else if (c->pend & P_RST) {
			conn_kill(c);
		} else {
			log_debug("port %u: guest port %u did not answer in time: resetting",
				  c->local_port, c->peer_port);
			conn_rst(d, c);
		}
	}
	for (i = j = 0; i < d->nconns; i++) {
		struct conn *c = d->conns[i];

		if (c->dead) {
			conn_close_host(c);
			free(c->buf);
			free(c);
		} else {
			d->conns[j++] = c;
		}
	}
	d->nconns = j;
}

void vsock_run(struct dev *d)
{
	bool tx, rx;
	unsigned i;

	tx = process_tx(d);
	for (i = 0; i < d->nconns; i++)
		if (!d->conns[i]->dead && d->conns[i]->st == C_EST)
			conn_flush(d, d->conns[i]);
	rx = process_rx(d);
	if (tx)
		vq_notify(d, Q_TX);
	if (rx)
		vq_notify(d, Q_RX);
	sweep(d);
}

int vsock_timeout(const struct dev *d)
{
	uint64_t now = now_ms(), next = UINT64_MAX;
	unsigned i;

	for (i = 0; i < d->nconns; i++)
		if (d->conns[i]->deadline && d->conns[i]->deadline < next)
			next = d->conns[i]->deadline;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now < 60000 ? next - now : 60000);
}

void vsock_close_all(struct dev *d)
{
	unsigned i;

	for (i = 0; i < d->nconns; i++)
		conn_kill(d->conns[i]);
	sweep(d);
	free(d->chain);
	d->chain = NULL;
}
