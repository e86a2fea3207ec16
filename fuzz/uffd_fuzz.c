/* uffd_fuzz - libFuzzer target for fc-uffd's handshake parser
 * (uffd_parse_handshake in lib/uffd.c), the first code that reads what a
 * VMM sends. The first 8 input bytes are the memory file's size (little
 * endian, cut to 40 bits), the rest the handshake body. Aborts when a
 * handshake is accepted that breaks a promise of uffd.h: 1 to max regions,
 * page size 4 KiB or 2 MiB, everything aligned, each region inside the
 * file, no two regions overlapping in memory or in the file, the file
 * covered exactly.
 *
 *   make BUILD=build fuzz && build/fuzz/uffd_fuzz -max_total_time=60 fuzz/corpus/uffd
 *
 * Without -DFC_LIBFUZZER it builds a replay program: uffd_fuzz FILE...
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uffd.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uffd_region r[8];
	struct fc_err e;
	uint64_t fsz = 0, total = 0;
	size_t n = 0, i, k, len;
	char *body;

	if (size < 8)
		return 0;
	for (i = 0; i < 8; i++)
		fsz |= (uint64_t)data[i] << (8 * i);
	fsz &= (1ULL << 40) - 1;
	len = size - 8;
	body = xmalloc(len ? len : 1);	/* exact size: ASan sees overreads */
	memcpy(body, data + 8, len);
	if (uffd_parse_handshake(body, len, fsz, r, 8, &n, &e) == 0) {
		if (n < 1 || n > 8)
			abort();
		for (i = 0; i < n; i++) {
			uint64_t ps = r[i].page_size;

			if ((ps != 4096 && ps != 2097152) || !r[i].size ||
			    ((r[i].base | r[i].size | r[i].offset) & (ps - 1)) ||
			    r[i].offset > fsz || r[i].size > fsz - r[i].offset ||
			    r[i].base + r[i].size < r[i].base)
				abort();
			total += r[i].size;
			for (k = 0; k < i; k++)
				if ((r[i].base < r[k].base + r[k].size &&
				     r[k].base < r[i].base + r[i].size) ||
				    (r[i].offset < r[k].offset + r[k].size &&
				     r[k].offset < r[i].offset + r[i].size))
					abort();
		}
		if (total != fsz)
			abort();
	} else if (!e.msg[0]) {
		abort();	/* a refusal always says why */
	}
	free(body);
	return 0;
}

#define FUZZ_NAME "uffd_fuzz"
#include "replay.h"
