/* fcq.h - fc-qemu's shared types: the VM configuration collected through
 * the Firecracker API, and the running VMM (QEMU, fc-vsock, QMP).
 */
#ifndef FCQ_H
#define FCQ_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"
#include "http.h"

#define FCQ_VERSION	"1.16.1"	/* the Firecracker API version we emulate */
#define FCQ_MAX_ID	64
#define FCQ_MAX_DRIVES	16
#define FCQ_MAX_NETS	8
#define FCQ_CMDLINE_MAX	2048		/* x86 COMMAND_LINE_SIZE, with the NUL */

struct fcq_drive {
	char id[FCQ_MAX_ID + 1];
	char *path;
	bool root, read_only;
	const char *cache;		/* QEMU cache= value */
};

struct fcq_net {
	char id[FCQ_MAX_ID + 1];
	char tap[16];
	char mac[18];			/* "" when not given */
	unsigned mtu;			/* 0 when not given */
};

struct fcq_config {
	char id[FCQ_MAX_ID + 1];
	unsigned vcpus, mem_mib;
	bool smt;
	char *kernel, *initrd, *boot_args;	/* NULL when absent */
	struct fcq_drive drives[FCQ_MAX_DRIVES];
	size_t ndrives;
	struct fcq_net nets[FCQ_MAX_NETS];
	size_t nnets;
	bool vsock;
	unsigned long cid;
	char *uds_path;
};

enum fcq_state { FCQ_NOT_STARTED, FCQ_RUNNING, FCQ_PAUSED };

/* The running VMM. pids are 0 once reaped; fds -1 when closed. */
struct vmm {
	pid_t qemu, vsock;
	int qmp_fd, err_fd, vsock_out_fd;
	char *base_dir;			/* where to make it (the API socket's dir) */
	char *dir;			/* private temp dir for our sockets */
	char *uds_path;			/* removed on stop if fc-vsock left it */
	char qmp_buf[65536];
	size_t qmp_len;
	char err_line[512];		/* QEMU's last complete stderr line */
	char err_part[512];
	size_t err_part_len;
	bool err_cont;			/* err_part continues a longer line */
	int qemu_status;
	bool backend_lost;	/* fc-vsock died under a running QEMU */
	bool tcg;
	struct snapvmm *snap;		/* snap.c's part: binary, RAM file (NULL: not yet) */
};

struct fcq {
	struct fcq_config cfg;
	enum fcq_state state;
	struct vmm vmm;
};

/* server.c: the API socket's connections (limits: see server.c and
 * fc-qemu(1) LIMITS). */
#define FCQ_MAX_CONNS	32		/* served at once (Firecracker: 10) */
#define FCQ_MAX_LINGER	8		/* refused ones being told 503 */
#define FCQ_OUT_MAX	(16 * 1024)	/* unsent answers before we stop reading */
#define FCQ_IDLE_MS	10000		/* keep-alive (or new) connection, no request */
#define FCQ_REQUEST_MS	5000		/* first byte to complete request */
#define FCQ_SEND_MS	5000		/* answer pending with no progress */
#define FCQ_LINGER_MS	1000		/* draining after a closing answer */
#define FCQ_EVICT_MS	1000		/* quiet this long: may give way to a newcomer */
#define FCQ_SERVER_FDS	(1 + FCQ_MAX_CONNS + FCQ_MAX_LINGER)

enum conn_phase { PH_IDLE, PH_REQUEST, PH_SENDING, PH_CLOSING };

struct api_conn {
	int fd;				/* -1: slot free */
	char *in;			/* CONN_BUF bytes (NULL on linger slots) */
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	size_t drained;			/* bytes dropped while closing */
	bool closing;			/* close once the output is sent */
	bool continued;			/* "100 Continue" sent for the current request */
	bool peer_done;			/* EOF read: the client sends no more */
	enum conn_phase phase;
	uint64_t since;			/* when the phase began (sending: last progress) */
};

struct api_server {
	int lfd;
	struct fcq *q;
	struct api_conn conns[FCQ_MAX_CONNS + FCQ_MAX_LINGER];	/* then linger slots */
	int polled[FCQ_MAX_CONNS + FCQ_MAX_LINGER];	/* fd each pollfd was for */
	bool warned_full;
};

/* Empty server on the listening socket @lfd (not owned). */
void server_init(struct api_server *s, int lfd);
/* Fill @p (FCQ_SERVER_FDS entries) with what to poll; returns the count. */
int server_fill(struct api_server *s, struct pollfd *p);
/* Milliseconds until the next connection deadline; -1 for none. */
int server_timeout(const struct api_server *s);
/* Serve what poll reported in @p (as filled by server_fill), expire
 * connections past their deadline, accept newcomers. */
void server_events(struct api_server *s, const struct pollfd *p);
/* Open connections on the served slots (not the linger ones). */
int server_count(const struct api_server *s);
/* Close every connection (not the listener). */
void server_close(struct api_server *s);

/* api.c: answer one request. Returns the HTTP status; *@json is a malloc'd
 * response body or NULL (caller frees). Starts/controls the VMM as asked. */
int api_handle(struct fcq *q, const struct http_request *req, char **json);
/* {"fault_message": @msg} as a malloc'd string. */
char *api_fault(const char *msg);
/* Firecracker's id rule: 1..FCQ_MAX_ID ASCII letters, digits and @extra
 * ('_' in resource ids such as drive_id, '-' in the instance id). */
bool fcq_valid_id(const char *s, char extra);
void fcq_init(struct fcq *q, const char *id);
void fcq_free(struct fcq *q);

/* snap.c: snapshots under QEMU migration (see its header). The VMM's
 * hooks: snap_prepare() before QEMU is spawned (chooses the binary, makes
 * the RAM file), snap_qemu_bin()/snap_mem_object() (NULL: the default
 * memfd)/snap_incoming() for its command line, snap_started() once it runs,
 * snap_stop() from vmm_stop(). The endpoints fill @e on a 400. */
int snap_prepare(struct vmm *v, const struct fcq_config *c, struct fc_err *e);
const char *snap_qemu_bin(const struct vmm *v);
char *snap_mem_object(const struct vmm *v, unsigned mem_mib);
/* fc-vsock must reach guest memory through QEMU (--memory vmm): a Uffd
 * restore, where its own mapping would bypass the userfaultfd. */
bool snap_vsock_via_vmm(const struct vmm *v);
bool snap_incoming(const struct vmm *v);
void snap_started(struct vmm *v);
void snap_stop(struct vmm *v);
int snap_create(struct fcq *q, json_t *body, struct fc_err *e);
int snap_load(struct fcq *q, json_t *body, struct fc_err *e);

/* vmm.c */
/* The next QMP message, waiting up to @timeout_ms (events included). */
json_t *vmm_qmp_next(struct vmm *v, int timeout_ms, struct fc_err *e);

/* After a command was written: wait for its answer (events on the way are
 * dropped). *@ret (if not NULL) gets the "return" value (new reference);
 * a QMP error is returned in @e, sanitised. 0 or -1. */
int vmm_qmp_await(struct vmm *v, const char *cmd, json_t **ret, struct fc_err *e);

/* A host interface name: 1-15 of [A-Za-z0-9_.-]. */
bool fcq_valid_ifname(const char *s);

/* A MAC address "xx:xx:xx:xx:xx:xx" (hex digits, either case). */
bool fcq_valid_mac(const char *m);
/* Reset @v; base_dir is kept (the caller sets it before or after). */
void vmm_init(struct vmm *v);
/* Spawn fc-vsock (if configured) and QEMU; return once QEMU runs and QMP
 * answered query-status. On failure everything started is stopped, -1 and
 * @e filled (with QEMU's last stderr line when it exited). */
int vmm_start(struct vmm *v, const struct fcq_config *c, struct fc_err *e);
/* Run one QMP command without arguments; 0 when it returned, -1 with @e. */
int vmm_qmp(struct vmm *v, const char *cmd, struct fc_err *e);
/* Drain QEMU's stderr (forwarded to ours). -1 at EOF. */
int vmm_read_stderr(struct vmm *v);
/* Drain QMP events. -1 at EOF (QEMU is going away). */
int vmm_read_qmp(struct vmm *v);
/* Drain fc-vsock's stdout (its ready fd). -1 at EOF. */
int vmm_read_vsock(struct vmm *v);
/* Reap exited children without blocking. Returns 1 once QEMU has exited. */
int vmm_reap(struct vmm *v);
/* Stop QEMU and fc-vsock (SIGTERM, then SIGKILL), remove our sockets and
 * the temp dir. Safe to call more than once. */
void vmm_stop(struct vmm *v);

#endif
