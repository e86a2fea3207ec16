/* hvsock.c - see hvsock.h */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hvsock.h"
#include "sock.h"
#include "util.h"

int hvsock_parse_ok(const char *line, size_t len, uint32_t *hostport)
{
	uint64_t v = 0;
	size_t i;

	if (len < 5 || len > 32 || memcmp(line, "OK ", 3) || line[len - 1] != '\n')
		return -1;
	for (i = 3; i < len - 1; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		v = v * 10 + (line[i] - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	if (i == 3)
		return -1;
	*hostport = v;
	return 0;
}

/* One attempt. 0 connected, 1 worth retrying, -1 fatal. */
static int try_connect(const struct sockaddr_un *sa, uint32_t port, int wait_ms,
		       int *out, struct fc_err *e)
{
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char line[33];
	size_t len = 0;
	uint32_t hostport;
	char req[32];

	if (fd < 0)
		return fc_err_set(e, errno, "socket");
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			return fc_err_set(e, errno, "connect '%s'", sa->sun_path), 1;
		return fc_err_set(e, errno, "connect '%s'", sa->sun_path);
	}
	snprintf(req, sizeof(req), "CONNECT %u\n", port);
	if (write_full(fd, req, strlen(req)) < 0)
		return fc_err_set(e, errno, "send CONNECT"), 1;
	/* Read byte by byte: what follows the newline already belongs to the guest. */
	while (len < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, wait_ms) <= 0)
			return fc_err_set(e, ETIMEDOUT, "no answer to CONNECT %u", port), 1;
		n = read(fd, line + len, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fc_err_set(e, n ? errno : ECONNRESET,
					  "guest port %u refused the connection", port), 1;
		if (line[len++] == '\n')
			break;
	}
	if (hvsock_parse_ok(line, len, &hostport) < 0)
		return fc_err_set(e, EPROTO, "bad reply to CONNECT %u", port);
	*out = steal_fd(&fd);
	return 0;
}

struct attempt {
	struct sockaddr_un sa;
	uint32_t port;
};

static int hv_attempt(void *ctx, int *fd, struct fc_err *e)
{
	const struct attempt *a = ctx;

	return try_connect(&a->sa, a->port, 2000, fd, e);
}

int hvsock_connect(const char *uds_path, uint32_t port, int timeout_ms, sock_wait_fn give_up,
		   void *arg, struct fc_err *e)
{
	struct attempt a = { .port = port };
	int fd = -1;

	if (sock_unix_addr(uds_path, &a.sa, e) < 0)
		return -1;
	if (sock_retry(hv_attempt, &a, timeout_ms, give_up, arg, &fd, e) < 0)
		return fc_err_wrap(e, "vsock port %u not reachable", port);
	return fd;
}

int hvsock_listen(const char *uds_path, uint32_t port, struct fc_err *e)
{
	_cleanup_free_ char *path = xasprintf("%s_%u", uds_path, port);

	return sock_listen_unix(path, 0, 64, e);
}
