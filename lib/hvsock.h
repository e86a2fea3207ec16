/* hvsock.h - the host side of Firecracker's hybrid vsock.
 *
 * The VMM exposes the guest's vsock as a Unix socket (the /vsock uds_path).
 * Host -> guest: connect to uds_path, write "CONNECT <port>\n", read
 * "OK <hostport>\n"; then the stream is the guest connection.
 * Guest -> host port P: the VMM connects to the listener "<uds_path>_P".
 */
#ifndef FC_HVSOCK_H
#define FC_HVSOCK_H

#include <stdint.h>

#include "err.h"

#include "sock.h"

/* Connect to guest @port through @uds_path, retrying for up to @timeout_ms
 * while the socket is absent or the guest does not listen yet; @give_up
 * (may be NULL) is asked between attempts, as in sock_connect_unix().
 * Returns a connected CLOEXEC fd or -1 with @e filled. */
int hvsock_connect(const char *uds_path, uint32_t port, int timeout_ms, sock_wait_fn give_up,
		   void *arg, struct fc_err *e);

/* Listen on "<uds_path>_<port>" for guest-initiated connections, as
 * sock_listen_unix() does (a stale socket file there is replaced, anything
 * else refused). Returns a blocking listening fd or -1. */
int hvsock_listen(const char *uds_path, uint32_t port, struct fc_err *e);

/* Parse a reply line "OK <n>\n" (exactly; at most 32 bytes). 0 or -1. */
int hvsock_parse_ok(const char *line, size_t len, uint32_t *hostport);

#endif
