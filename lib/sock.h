/* sock.h - Unix stream sockets named by a path: the address, and a listener
 * that follows Firecracker's rule for what is already at the path.
 */
#ifndef FC_SOCK_H
#define FC_SOCK_H

#include <sys/socket.h>
#include <sys/un.h>

#include "err.h"

/* Fill @sa with AF_UNIX and @path (NUL-terminated, zeroed elsewhere).
 * Returns 0, or -1 with @e ENAMETOOLONG ("socket path '<path>'") when @path
 * does not fit sun_path. */
int sock_unix_addr(const char *path, struct sockaddr_un *sa, struct fc_err *e);

/* Listen on a new SOCK_STREAM socket bound at @path with @backlog. A socket
 * file already at @path (left by a killed process) is replaced; anything
 * else there is refused with EEXIST and left alone. @flags is 0 or
 * SOCK_NONBLOCK; the fd is always CLOEXEC. Returns the listening fd (the
 * caller closes it and unlinks @path when done), or -1 with @e filled and no
 * socket file of this call left at @path. */
int sock_listen_unix(const char *path, int flags, int backlog, struct fc_err *e);

/* Asked between connection attempts: 0 keeps waiting, -1 (with @e filled)
 * ends the wait with that error - the peer's owner died, a signal came. */
typedef int (*sock_wait_fn)(void *arg, struct fc_err *e);

/* Connect to the Unix socket at @path, retrying every 50 ms for up to
 * @timeout_ms (-1: no bound) while nothing listens there yet (ENOENT,
 * ECONNREFUSED); @give_up (may be NULL) is asked before every retry.
 * Returns a connected, blocking, CLOEXEC fd, or -1 with @e: ENAMETOOLONG
 * when @path does not fit sun_path, ETIMEDOUT at the bound, or what
 * @give_up said. */
int sock_connect_unix(const char *path, int timeout_ms, sock_wait_fn give_up, void *arg,
		      struct fc_err *e);

/* The retry loop behind sock_connect_unix and hvsock_connect: call
 * @attempt until it returns 0 (done, *@fd set) or -1 (hard error); 1 means
 * "not yet", retried after 50 ms until @timeout_ms (-1: no bound) or until
 * @give_up says stop. Returns 0 or -1 with @e. */
int sock_retry(int (*attempt)(void *ctx, int *fd, struct fc_err *e), void *ctx, int timeout_ms,
	       sock_wait_fn give_up, void *arg, int *fd, struct fc_err *e);

#endif
