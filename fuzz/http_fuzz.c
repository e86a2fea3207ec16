/* http_fuzz - libFuzzer target for lib/http.c, the parser in front of
 * fc-qemu's API socket. The input is treated as one connection's bytes:
 * requests are parsed back to back (keep-alive, pipelining) and every
 * prefix is also offered, as partial reads would.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
 *     -Ilib fuzz/http_fuzz.c lib/http.c lib/err.c lib/util.c lib/log.c -o build/http_fuzz
 *   build/http_fuzz -max_total_time=300 fuzz/corpus/http
 *
 * Without -DFC_LIBFUZZER it builds a replay program: http_fuzz FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a private copy so ASan sees reads past the end of the input */
	char *buf = xmalloc(size ? size : 1);
	size_t off = 0;

	memcpy(buf, data, size);
	while (off < size) {
		struct http_request r;
		struct fc_err e;
		int status;
		ssize_t n;

		/* a partial read of the same bytes must never be an error the
		 * whole request is not, nor consume more than it was given */
		if (size - off > 1) {
			n = http_parse_request(buf + off, (size - off) / 2, &r, &status, &e);
			if (n > (ssize_t)((size - off) / 2))
				abort();
		}
		n = http_parse_request(buf + off, size - off, &r, &status, &e);
		if (n < 0) {
			if (status < 400 || status > 599 || !e.msg[0])
				abort();
			break;
		}
		if (n == 0)
			break;
		if ((size_t)n > size - off || r.target[0] != '/' || !r.method[0] ||
		    r.body_len > HTTP_MAX_BODY || (r.body_len && r.body != buf + off + r.head_len))
			abort();
		{
			size_t len;
			char *resp = http_format_response(r.body_len ? 400 : 204, "{}", r.keep_alive, &len);

			free(resp);
		}
		off += n;
	}
	free(buf);
	return 0;
}

#define FUZZ_NAME "http_fuzz"
#include "replay.h"
