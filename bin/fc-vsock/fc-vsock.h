/* fc-vsock.h - shared state of fc-vsock: the vhost-user device (vhost.c) and
 * the hybrid-vsock connections relayed over its rings (vsock.c).
 *
 * One thread, one epoll loop (main.c). Every epoll registration carries a
 * struct src naming what woke us.
 */
#ifndef FC_VSOCK_H
#define FC_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "vring.h"

#define Q_RX 0
#define Q_TX 1
#define NQ   2

#define VSOCK_HOST_CID 2
#define MAX_CONNS      512
#define RST_QUEUE      64

enum src_kind { SRC_VU_LISTEN, SRC_VU, SRC_KICK, SRC_UDS, SRC_SIG, SRC_CONN };

struct src {
	enum src_kind kind;
	int idx;		/* queue index for SRC_KICK */
	void *ptr;		/* struct conn * for SRC_CONN */
};

struct vq {
	struct vring vr;	/* vr.num != 0 once mapped and started */
	int kick_fd, call_fd, err_fd;
	unsigned num;
	uint16_t base;
	uint64_t desc, avail, used;
	bool addr_set, kicked, enabled;
	bool log_used;		/* VHOST_VRING_F_LOG: log writes to the used ring */
	uint64_t log_addr;	/* its guest-physical address, for the log */
};

/* How guest memory is reached (--memory). */
enum mem_mode {
	MEM_AUTO,	/* map the fds, unless the VMM maps that memory privately */
	MEM_MAP,	/* always map the fds (MAP_SHARED): the fast path */
	MEM_VMM,	/* always through the VMM's address space */
};

/* The virtio-vsock packet header (little endian on the wire). */
struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));

struct conn;

struct dev {
	int epfd;
	int vu_listen, vu_fd, uds_fd, sig_fd;
	const char *vu_path, *uds_path;
	uint64_t cid;
	bool had_frontend, quit;
	bool vu_path_gone;	/* unlinked once the front-end connected */

	/* vhost-user state */
	uint64_t features, proto;
	struct vring_mem mem;
	void *map_addr[VRING_MAX_REGIONS];
	size_t map_len[VRING_MAX_REGIONS];

	/* Guest memory through the VMM: when the front-end maps guest RAM
	 * privately (MAP_PRIVATE, e.g. a clone's share=off memory file) or
	 * behind userfaultfd, our own mapping of its fd would not see what
	 * the guest wrote. Then the regions above are anonymous shadows
	 * (same layout), filled from and written back to the front-end's
	 * address space with process_vm_readv/writev around each use. */
	enum mem_mode mem_mode;
	bool vmm_mem;		/* this memory table is reached that way */
	pid_t vmm_pid;		/* the front-end (SO_PEERCRED) */
	int maps_fd;		/* its /proc/PID/maps (MEM_AUTO), opened before seccomp */

	/* dirty log (VHOST_F_LOG_ALL + LOG_SHMFD): a bit per 4 KiB guest page */
	uint8_t *log;
	uint64_t log_size;
	void *log_map;
	size_t log_map_len;
	int log_fd;		/* SET_LOG_FD eventfd (kept, unused) */
	struct vq q[NQ];
	struct src s_vu_listen, s_vu, s_kick[NQ], s_uds, s_sig;

	/* vsock state */
	struct conn *conns[MAX_CONNS];
	unsigned nconns, rr;
	uint32_t next_port;
	struct vsock_hdr rstq[RST_QUEUE];	/* RSTs for packets of no connection */
	unsigned rst_head, rst_len;
	struct vring_chain *chain;		/* scratch (large) */
};

/* vhost.c */
/* Handle one vhost-user message from the front-end. 0 ok, 1 front-end
 * gone (EOF), -1 with @e filled on a protocol error (the caller drops the
 * front-end). */
int vu_handle(struct dev *d, struct fc_err *e);
/* True when queue @i may be processed (mapped, kicked, enabled). */
bool vq_ready(const struct dev *d, int i);
/* Interrupt the guest for queue @i unless it asked not to be. */
void vq_notify(struct dev *d, int i);
/* Drain the kick eventfd of queue @i. */
void vq_drain_kick(struct dev *d, int i);
/* Forget rings and memory (front-end gone or RESET_OWNER). */
void vu_reset(struct dev *d);

/* Around every use of a ring (no-ops with mapped memory and no log):
 * vq_pull_rings() refreshes queue @i's descriptor table and avail ring
 * from the VMM before chains are popped; vq_pull_iov() fills the shadow
 * of @n device-readable buffers before they are read; vq_wrote() writes
 * the first @len bytes of device-writable buffers back to the VMM (and
 * logs them as dirty) before they are pushed; vq_used_done() publishes
 * the used-ring entries from index @from on, then the used index (and logs
 * them). 0, or -1 with @e when the VMM's memory could not be reached (the
 * caller stops touching the ring for now). */
int vq_pull_rings(struct dev *d, int i, struct fc_err *e);
int vq_pull_iov(struct dev *d, const struct iovec *iov, unsigned n, struct fc_err *e);
int vq_wrote(struct dev *d, const struct iovec *iov, unsigned n, size_t len, struct fc_err *e);
int vq_used_done(struct dev *d, int i, uint16_t from, struct fc_err *e);
/* Give the shadow pages of buffers back once a chain is done (VMM mode). */
void vq_drop_iov(struct dev *d, const struct iovec *iov, unsigned n);

/* vsock.c */
void vsock_init(struct dev *d);
/* Accept host clients on the UDS listener. */
void vsock_accept(struct dev *d);
/* An epoll event on a connection's host socket. */
void vsock_conn_event(struct dev *d, struct conn *c, uint32_t events);
/* Move everything that can move: guest tx ring, host sockets, guest rx ring,
 * timeouts. Called after every batch of events. */
void vsock_run(struct dev *d);
/* Milliseconds until the next connection deadline, -1 if none. */
int vsock_timeout(const struct dev *d);
/* Close every connection (shutdown). */
void vsock_close_all(struct dev *d);

/* connline.c */
/* Parse exactly "CONNECT <port>\n" (@len bytes including the newline,
 * decimal port without sign or leading zeros, at most 10 digits, <= 2^32-1).
 * 0 with *port set, or -1. */
int parse_connect_line(const char *s, size_t len, uint32_t *port);
#define CONNECT_LINE_MAX 32

#endif
