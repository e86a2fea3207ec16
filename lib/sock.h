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

#endif
