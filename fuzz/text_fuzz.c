/* text_fuzz - libFuzzer target for the sanitiser of untrusted text
 * (lib/text.c). The first input byte picks the mode (bit 0: keep
 * newlines) and the cut (the rest of it: max = size * byte / 255); the
 * rest is the text. Aborts when the output is longer than what was read,
 * is not clean by text_is_clean, changes when cleaned again, holds a byte
 * that starts an escape sequence (C0 but \n and \t, DEL, a UTF-8 C1), or
 * when text_is_clean and text_clean disagree about the input.
 *
 *   make BUILD=build fuzz && build/fuzz/text_fuzz -max_total_time=60
 *
 * Without -DFC_LIBFUZZER it builds a replay program: text_fuzz FILE...
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool nl;
	size_t max, len, outlen;
	char *in, *out, *again;

	if (!size)
		return 0;
	nl = data[0] & 1;
	len = size - 1;
	max = len * (data[0] >> 1) / 127;
	in = xmalloc(len ? len : 1);	/* exact size: ASan sees overreads */
	memcpy(in, data + 1, len);
	out = text_clean(in, len, max, nl);
	outlen = strlen(out);
	if (outlen > (max < len ? max : len) || !text_is_clean(out, outlen, nl))
		abort();
	again = text_clean(out, outlen, outlen, nl);
	if (strcmp(again, out))
		abort();
	for (size_t i = 0; i < outlen; i++) {
		unsigned char c = out[i];

		if ((c < 0x20 && !(nl && (c == '\n' || c == '\t'))) || c == 0x7f)
			abort();
		if (c == 0xc2 && i + 1 < outlen && (unsigned char)out[i + 1] < 0xa0)
			abort();
	}
	/* Clean input comes out unchanged, and only clean input does. */
	if (max >= len && text_is_clean(in, len, nl) != (outlen == len && !memcmp(in, out, len)))
		abort();
	free(again);
	free(out);
	free(in);
	return 0;
}

#define FUZZ_NAME "text_fuzz"
#include "replay.h"
