/* uffd.h - the memory server's engine: Firecracker's userfaultfd handshake
 * (parsed and validated) and the fault-serving loop for many clients, as a
 * library so it can be unit-tested and fuzzed (fc-uffd is its front end).
 *
 * How it works (the order matters):
 *  1. A VMM connects to the server's Unix socket and sends ONE message: a
 *     JSON array of {base_host_virt_addr, size, offset, page_size} (1.10-1.11
 *     send page_size_kib instead, in bytes despite its name; 1.12 and later
 *     send both, equal, the old one deprecated) with
 *     exactly one SCM_RIGHTS fd, its userfaultfd. Nothing is sent back.
 *     The bytes are collected (non-blocking, at most UFFD_HS_MAX, fds only
 *     with MSG_CMSG_CLOEXEC) until they form one complete JSON value, the
 *     peer closes, or the handshake timeout passes. Then everything is
 *     checked (uffd_parse_handshake, uffd_check_fd) before anything is
 *     served; a bad handshake closes the connection and nothing else.
 *  2. The peer's pid comes from SO_PEERCRED and is watched with a pidfd: a
 *     userfaultfd says nothing when its owner dies.
 *  3. MISSING faults are served with UFFDIO_COPY from a read-only mapping
 *     of the memory file, a few pages around the fault at once (never over
 *     a page already served or removed); EEXIST is success (plus a wake),
 *     EAGAIN (a remove in progress) puts the page on a retry list.
 *     UFFD_EVENT_REMOVE marks its pages removed: later faults there get
 *     zero pages, as the kernel would give them.
 *  4. Each page copied for a fault (the fault-around pages too: they are
 *     never faulted on) is recorded in the working set (one bit per 4 KiB
 *     page of the file). With prefetch on, a new client first gets the
 *     recorded set copied in large contiguous batches, a bounded amount per
 *     loop turn, so faults of other clients are never held up by it.
 *  5. A dead or misbehaving client (pidfd readable, ESRCH/ENOENT/EINVAL
 *     from a copy, a bad fault address) is dropped alone.
 */
#ifndef FC_UFFD_H
#define FC_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define UFFD_HS_MAX	(64 * 1024)	/* handshake bytes accepted */
#define UFFD_MAX_REGIONS 256
#define UFFD_HS_TIMEOUT_MS 5000

struct uffd_region {
	uint64_t base;		/* base_host_virt_addr */
	uint64_t size;
	uint64_t offset;	/* in the memory file */
	uint64_t page_size;	/* 4096 or 2097152 */
};

/* Parse and validate a handshake body of @len bytes (not NUL-terminated)
 * against a memory file of @file_size bytes: a JSON array of 1 to @max
 * objects with exactly the keys base_host_virt_addr, size, offset and
 * page_size and/or page_size_kib (equal when both; non-negative integers,
 * no other keys); page size 4 KiB or
 * 2 MiB; base, size and offset aligned to it, size > 0; no overflow; each
 * region inside the file; regions disjoint in memory and in the file; and
 * together covering the whole file. Fills @out[0..*n). 0, or -1 with @e. */
int uffd_parse_handshake(const char *buf, size_t len, uint64_t file_size,
			 struct uffd_region *out, size_t max, size_t *n, struct fc_err *e);

/* Is @fd a userfaultfd? (/proc/self/fd link "anon_inode:[userfaultfd]" and
 * its fdinfo carries the API line). 0, or -1 with @e. */
int uffd_check_fd(int fd, struct fc_err *e);

struct uffd_stats {
	uint64_t clients;		/* serving now */
	uint64_t clients_total;		/* handshakes accepted */
	uint64_t refused;		/* connections refused (bad handshake, limits) */
	uint64_t dropped;		/* clients dropped (died, misbehaved) */
	uint64_t faults;		/* page faults served */
	uint64_t pages_copied;		/* pages copied for faults (incl. fault-around) */
	uint64_t pages_zeroed;		/* removed pages served as zero */
	uint64_t pages_prefetched;	/* pages copied by prefetch */
	uint64_t removes;		/* UFFD_EVENT_REMOVE events */
	uint64_t eagain;		/* copies deferred by EAGAIN */
	uint64_t ws_pages;		/* 4 KiB pages in the working set */
};

struct uffd_opts {
	const void *mem;	/* the memory file, mapped read-only (borrowed) */
	uint64_t mem_size;
	bool prefetch;		/* copy the working set to new clients */
	unsigned fault_around;	/* pages copied per fault (1-64; 0: 16) */
	int handshake_ms;	/* 0: UFFD_HS_TIMEOUT_MS */
	unsigned max_clients;	/* connections at once (0: 1024) */
};

struct uffd_server;

/* A new engine (its epoll fd is CLOEXEC). NULL with @e. */
struct uffd_server *uffd_server_new(const struct uffd_opts *o, struct fc_err *e);
void uffd_server_free(struct uffd_server *s);

/* The engine's epoll fd: readable when uffd_server_step has work. */
int uffd_server_fd(const struct uffd_server *s);

/* How long the caller may sleep before the next uffd_server_step (ms; -1:
 * until the fd is readable): 0 while prefetch or retries are pending, else
 * until the next handshake deadline. */
int uffd_server_timeout(const struct uffd_server *s);

/* Take ownership of an accepted connection (made non-blocking here). A
 * connection over the limit is closed and counted as refused. */
void uffd_server_add(struct uffd_server *s, int conn_fd);

/* Handle what is ready (never blocks): handshakes, faults, events, dead
 * clients, expired handshakes, retries, a slice of prefetch. Problems of
 * one client drop that client and are logged at warn level, not returned;
 * -1 only when the engine itself fails (epoll). */
int uffd_server_step(struct uffd_server *s, struct fc_err *e);

void uffd_server_stats(const struct uffd_server *s, struct uffd_stats *st);

/* The pids of the clients being served: up to @max into @pids; returns the
 * count. */
size_t uffd_server_pids(const struct uffd_server *s, int *pids, size_t max);

/* The working set: one bit per 4 KiB page of the memory file, persisted as
 * "fcvm-ws 1 <file size>\n" followed by the bitmap. uffd_ws_load merges a
 * file written for the same size (a missing file is fine; one of another
 * size or shape is refused with EINVAL and ignored by the caller);
 * uffd_ws_save writes it atomically (fs_write_atomic). 0 or -1 with @e. */
int uffd_ws_load(struct uffd_server *s, const char *path, struct fc_err *e);
int uffd_ws_save(struct uffd_server *s, const char *path, struct fc_err *e);
/* True when pages were recorded since the last load/save. */
bool uffd_ws_dirty(const struct uffd_server *s);

#endif
