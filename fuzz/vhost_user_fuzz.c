/* vhost_user_fuzz - libFuzzer target for fc-vsock's vhost-user message
 * handling (bin/fc-vsock/vhost.c): the input is the byte stream a hostile
 * front-end sends (no file descriptors), handled message by message until
 * EOF or a protocol error, exactly as fc-vsock's event loop would.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
 *     -Ilib -Ibin/fc-vsock fuzz/vhost_user_fuzz.c bin/fc-vsock/vhost.c lib/vring.c \
 *     lib/err.c lib/util.c lib/log.c -o build/vhost_user_fuzz
 *   build/vhost_user_fuzz -max_len=8192 -max_total_time=120
 *
 * Without -DFC_LIBFUZZER it builds a replay program: vhost_user_fuzz FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fc-vsock.h"
#include "log.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	struct dev d = { .vu_listen = -1, .uds_fd = -1, .sig_fd = -1, .maps_fd = -1, .log_fd = -1 };
	struct fc_err e;
	int sv[2], i, n = 0;

	if (!init) {
		log_init("vhost_user_fuzz");
		log_adjust(-3);
		init = 1;
	}
	if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	if (size && write(sv[0], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[0], SHUT_WR);
	d.vu_fd = sv[1];
	d.cid = 3;
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i < NQ; i++)
		d.q[i].kick_fd = d.q[i].call_fd = d.q[i].err_fd = -1;
	/* Each message consumes at least its 12-byte header. */
	while (n++ <= (int)size / 12 && vu_handle(&d, &e) == 0)
		;
	vu_reset(&d);
	close(d.epfd);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

#define FUZZ_NAME "vhost_user_fuzz"
#include "replay.h"
