/* vsock_connect_fuzz - libFuzzer target for fc-vsock's "CONNECT <port>\n"
 * parser (bin/fc-vsock/connline.c). Besides memory errors it checks the
 * grammar is strict: whatever is accepted must be exactly what "CONNECT %u\n"
 * prints for the parsed port.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
 *     -Ilib -Ibin/fc-vsock fuzz/vsock_connect_fuzz.c bin/fc-vsock/connline.c \
 *     lib/err.c lib/util.c lib/log.c -o build/vsock_connect_fuzz
 *   build/vsock_connect_fuzz -max_total_time=120
 *
 * Without -DFC_LIBFUZZER it builds a replay program: vsock_connect_fuzz FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fc-vsock.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = xmalloc(size ? size : 1);	/* exact size: ASan sees overreads */
	char again[40];
	uint32_t port;

	memcpy(buf, data, size);
	if (parse_connect_line(buf, size, &port) == 0) {
		int n = snprintf(again, sizeof(again), "CONNECT %u\n", port);

		if ((size_t)n != size || memcmp(again, buf, size))
			abort();
	}
	free(buf);
	return 0;
}

#define FUZZ_NAME "vsock_connect_fuzz"
#include "replay.h"
