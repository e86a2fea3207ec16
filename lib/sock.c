/* sock.c - see sock.h */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sock.h"
#include "util.h"

int sock_unix_addr(const char *path, struct sockaddr_un *sa, struct fc_err *e)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return fc_err_set(e, ENAMETOOLONG, "socket path '%s'", path);
	strcpy(sa->sun_path, path);
	return 0;
}

int sock_listen_unix(const char *path, int flags, int backlog, struct fc_err *e)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa;
	struct stat st;

	if (sock_unix_addr(path, &sa, e) < 0)
		return -1;
	/* like Firecracker: a stale socket file is replaced, anything else is an error */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return fc_err_set(e, EEXIST, "'%s' exists and is not a socket", path);
		if (unlink(path) < 0)
			return fc_err_set(e, errno, "remove stale socket '%s'", path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (flags & SOCK_NONBLOCK), 0);
	if (fd < 0)
		return fc_err_set(e, errno, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fc_err_set(e, errno, "bind '%s'", path);
	if (listen(fd, backlog) < 0) {
		fc_err_set(e, errno, "listen on '%s'", path);
		unlink(path);
		return -1;
	}
	return steal_fd(&fd);
}
