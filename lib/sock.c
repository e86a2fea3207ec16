/* sock.c - see sock.h */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

int sock_retry(int (*attempt)(void *ctx, int *fd, struct fc_err *e), void *ctx, int timeout_ms,
	       sock_wait_fn give_up, void *arg, int *fd, struct fc_err *e)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		int r = attempt(ctx, fd, e);

		if (r <= 0)
			return r;
		if (now_ms() >= deadline)
			return fc_err_wrap(e, "gave up after %d ms", timeout_ms);
		if (give_up && give_up(arg, e) < 0)
			return -1;
		nanosleep(&ts, NULL);
	}
}

/* One connect attempt on the address in @ctx: 1 while nobody listens yet. */
static int unix_attempt(void *ctx, int *out, struct fc_err *e)
{
	const struct sockaddr_un *sa = ctx;
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return fc_err_set(e, errno, "socket");
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		int err = errno;

		fc_err_set(e, err, "connect '%s'", sa->sun_path);
		return err == ENOENT || err == ECONNREFUSED ? 1 : -1;
	}
	*out = steal_fd(&fd);
	return 0;
}

int sock_connect_unix(const char *path, int timeout_ms, sock_wait_fn give_up, void *arg,
		      struct fc_err *e)
{
	struct sockaddr_un sa;
	int fd = -1;

	if (sock_unix_addr(path, &sa, e) < 0)
		return -1;
	if (sock_retry(unix_attempt, &sa, timeout_ms, give_up, arg, &fd, e) < 0) {
		if (e->errnum == ENOENT || e->errnum == ECONNREFUSED)
			e->errnum = ETIMEDOUT;
		return -1;
	}
	return fd;
}
