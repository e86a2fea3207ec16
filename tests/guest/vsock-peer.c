/* vsock-peer - guest side of the vsock tests (static, runs in the test initrd).
 *
 *   vsock-peer serve PORT     listen on vsock PORT; each connection is served
 *                             by a child that reads one command line:
 *     echo\n            echo everything back until EOF, then close
 *     sink\n            read to EOF, answer "<sha256 hex>\n"
 *     source N\n        send N pseudo-random bytes, then "<sha256 hex>\n", close
 *     nsink\n           read to EOF, answer "<byte count>\n" (no hashing: bench)
 *     nsource N\n       send N bytes without hashing (bench), close
 *     close\n           close at once (peer reset test)
 *     dial P\n          connect to host (cid 2) port P, answer "ok\n" or
 *                       "err <errno>\n", and serve the new connection the same way
 *
 * Build: cc -static -O2 -D_GNU_SOURCE -Ilib -o vsock-peer tests/guest/vsock-peer.c \
 *        lib/sha256.c lib/err.c lib/util.c lib/log.c  (tests/guest/vsock-initrd does it)
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "sha256.h"

#define CHUNK (64 * 1024)

static int write_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p = (const char *)p + w;
		n -= w;
	}
	return 0;
}

/* One command line, read byte by byte so nothing after it is consumed. */
static int read_line(int fd, char *buf, size_t max)
{
	size_t n = 0;

	while (n + 1 < max) {
		ssize_t r = read(fd, buf + n, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = 0;
			return 0;
		}
		n++;
	}
	return -1;
}

static void fill(uint8_t *b, size_t n, uint64_t *x)
{
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		*x ^= *x << 13;
		*x ^= *x >> 7;
		*x ^= *x << 17;
		memcpy(b + i, x, 8);
	}
}

static void serve_conn(int fd);

static void dial(int ctl, unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	char msg[32];

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(msg, sizeof(msg), "err %d\n", errno);
		write_all(ctl, msg, strlen(msg));
		return;
	}
	write_all(ctl, "ok\n", 3);
	close(ctl);
	serve_conn(fd);
}

static void serve_conn(int fd)
{
	static uint8_t buf[CHUNK];
	char line[64], hex[SHA256_HEX_LEN + 2];
	uint8_t dig[SHA256_LEN];
	struct sha256 s;
	unsigned long long n, total = 0;
	ssize_t r;

	if (read_line(fd, line, sizeof(line)) < 0)
		return;
	if (!strcmp(line, "echo")) {
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			if (write_all(fd, buf, r) < 0)
				break;
		shutdown(fd, SHUT_WR);
	} else if (!strcmp(line, "sink") || !strcmp(line, "nsink")) {
		bool hash = line[0] == 's';

		sha256_init(&s);
		while ((r = read(fd, buf, sizeof(buf))) > 0) {
			if (hash)
				sha256_update(&s, buf, r);
			total += r;
		}
		if (hash) {
			sha256_final(&s, dig);
			sha256_hex(dig, hex);
			strcat(hex, "\n");
		} else {
			snprintf(hex, sizeof(hex), "%llu\n", total);
		}
		write_all(fd, hex, strlen(hex));
	} else if (sscanf(line, "source %llu", &n) == 1 || sscanf(line, "nsource %llu", &n) == 1) {
		bool hash = line[0] == 's';
		uint64_t x = 88172645463325252ull;

		sha256_init(&s);
		memset(buf, 0x5a, sizeof(buf));
		while (n) {
			size_t k = n < sizeof(buf) ? n : sizeof(buf);

			if (hash) {
				fill(buf, sizeof(buf), &x);
				sha256_update(&s, buf, k);
			}
			if (write_all(fd, buf, k) < 0)
				return;
			n -= k;
		}
		if (hash) {
			sha256_final(&s, dig);
			sha256_hex(dig, hex);
			strcat(hex, "\n");
			write_all(fd, hex, strlen(hex));
		}
	} else if (!strcmp(line, "close")) {
		/* nothing: the caller closes */
	} else if (sscanf(line, "dial %llu", &n) == 1) {
		dial(fd, (unsigned)n);
		return;
	} else {
		write_all(fd, "unknown command\n", 16);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY };
	int lfd;

	if (argc != 3 || strcmp(argv[1], "serve")) {
		fprintf(stderr, "usage: vsock-peer serve PORT\n");
		return 2;
	}
	signal(SIGCHLD, SIG_IGN);	/* children reaped by the kernel */
	signal(SIGPIPE, SIG_IGN);
	sa.svm_port = (unsigned)strtoul(argv[2], NULL, 10);
	lfd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0) {
		perror("vsock-peer: listen");
		return 1;
	}
	printf("vsock-peer: listening on port %u\n", sa.svm_port);
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("vsock-peer: accept");
			return 1;
		}
		if (fork() == 0) {
			close(lfd);
			serve_conn(fd);
			_exit(0);
		}
		close(fd);
	}
}
