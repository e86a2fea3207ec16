/* vring_fuzz - libFuzzer target for lib/vring.c: the input is guest memory
 * (descriptor table, avail and used rings, buffers) as a malicious guest
 * could write it. Every chain popped is read and written in full, so ASan
 * catches any iovec that escapes guest memory.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
 *     -Ilib fuzz/vring_fuzz.c lib/vring.c lib/err.c lib/util.c lib/log.c -o build/vring_fuzz
 *   build/vring_fuzz -max_total_time=120
 *
 * Without -DFC_LIBFUZZER it builds a replay program: vring_fuzz FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vring.h"

#define MEMSZ 8192u
#define GPA   0x10000ull
#define UA    0x7f0000000000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *scratch;
	uint8_t *mem;
	struct vring_mem m = { 0 };
	struct vring_chain *c;
	struct vring vr;
	struct fc_err e;
	unsigned num, i;

	if (size < 2)
		return 0;
	num = 1u << (data[0] % 7);	/* 1..64 entries */
	mem = xcalloc(1, MEMSZ);
	memcpy(mem, data + 1, size - 1 < MEMSZ ? size - 1 : MEMSZ);
	m.n = 1;
	m.r[0] = (struct vring_region){ .gpa = GPA, .size = MEMSZ, .uaddr = UA, .host = mem };
	c = xmalloc(sizeof(*c));
	if (!scratch)
		scratch = xmalloc(VRING_MAX_BYTES);
	/* Rings packed at the start so short inputs reach them. */
	if (vring_start(&vr, &m, num, UA, UA + 16 * num, UA + ((16 * num + 6 + 2 * num + 3) & ~3u),
			data[1], &e) == 0) {
		for (i = 0; i < 4 * num; i++) {
			int r = vring_pop(&vr, &m, c, &e);

			if (r == 0)
				break;
			if (r < 0)
				continue;
			iov_to_buf(c->out, c->n_out, 0, scratch, c->out_len);
			iov_from_buf(c->in, c->n_in, 0, scratch, c->in_len);
			if (i & 1) {
				vring_unpop(&vr);
				if (vring_pop(&vr, &m, c, &e) != 1)
					continue;
			}
			vring_push(&vr, c->head, (uint32_t)c->in_len);
		}
		vring_needs_interrupt(&vr);
	}
	free(c);
	free(mem);
	return 0;
}

#define FUZZ_NAME "vring_fuzz"
#include "replay.h"
