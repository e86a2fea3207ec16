/* proto_fuzz - libFuzzer target for the agent channel's parsers: frame
 * headers and whole frames (lib/proto.c) and fc-agent's plan parser with
 * the argv built from it and the `podman load` output reader
 * (agent/plan.c). The first input byte picks the target:
 *   even: the rest is a byte stream read frame by frame with proto_recv
 *         and again with proto_rx_read (through a memfd), every header
 *         also through proto_decode_hdr;
 *   odd:  the rest is a plan (plan_parse, then plan_run_argv/plan_load_argv)
 *         and, as text, podman load output (plan_loaded_ref), an exec
 *         request (exec_req_parse, then exec_req_argv: the command comes
 *         last, after the container name, intact), a window size, and a
 *         clone fix-up and its answer (lib/clonefix.c: what is accepted is
 *         within bounds and re-encodes to what parses the same).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
 *     -Ilib fuzz/proto_fuzz.c agent/plan.c lib/proto.c lib/json.c lib/err.c \
 *     lib/util.c lib/log.c lib/clonefix.c lib/paths.c lib/text.c -ljansson \
 *     -o build/proto_fuzz
 *   build/proto_fuzz -max_total_time=120 fuzz/corpus/proto
 *
 * Without -DFC_LIBFUZZER it builds a replay program: proto_fuzz FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../agent/plan.h"
#include "clonefix.h"
#include "paths.h"
#include "proto.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_frames(const uint8_t *data, size_t size)
{
	struct proto_hdr h;
	struct fc_err e;
	uint8_t *payload;
	int fd;

	for (size_t off = 0; off + PROTO_HDR_LEN <= size; off += PROTO_HDR_LEN)
		proto_decode_hdr(data + off, &h, &e);
	fd = memfd_create("frames", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size && write_full(fd, data, size) < 0)
		abort();
	lseek(fd, 0, SEEK_SET);
	while (proto_recv(fd, &h, &payload, &e) == 1) {
		/* Contract: a frame's payload is h.len bytes plus a NUL. */
		if (h.len > PROTO_MAX_PAYLOAD || payload[h.len] != '\0')
			abort();
		free(payload);
	}
	/* The incremental reader must agree with the blocking one. */
	lseek(fd, 0, SEEK_SET);
	{
		struct proto_rx rx = { 0 };
		int r;

		while ((r = proto_rx_read(fd, &rx, &e)) == PROTO_RX_FRAME)
			if (rx.h.len > PROTO_MAX_PAYLOAD || rx.payload[rx.h.len] != '\0')
				abort();
		if (r == PROTO_RX_AGAIN)
			abort();	/* a memfd never says EAGAIN */
		proto_rx_reset(&rx);
	}
	close(fd);
}

static void fuzz_plan(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	struct plan p;
	struct fc_err e;
	char *ref;

	memcpy(text, data, size);
	text[size] = '\0';
	if (plan_parse(text, size, &p, &e) == 0) {
		char **a = plan_run_argv("podman", &p, p.ref ? p.ref : "img");
		char **b = plan_load_argv("podman", &p);

		/* Every string in the plan must reach argv intact and
		 * option-looking values never stand alone. */
		for (size_t i = 0; a[i]; i++)
			if (!a[i][0] && !p.cmd)
				abort();
		plan_argv_free(a);
		plan_argv_free(b);
	}
	plan_free(&p);
	{
		struct exec_req r;
		unsigned rows, cols;

		if (exec_req_parse(text, size, &r, &e) == 0) {
			char **a = exec_req_argv("podman", &r, "box", "FCVM_EXEC_ID=0");
			size_t n = 0, k = 0;

			while (a[n])
				n++;
			while (r.cmd[k])
				k++;
			if (!k || n < k + 1 || strcmp(a[n - k - 1], "box"))
				abort();
			for (size_t i = 0; i < k; i++)
				if (strcmp(a[n - k + i], r.cmd[i]))
					abort();
			plan_argv_free(a);
		}
		exec_req_free(&r);
		if (exec_winsize_parse(text, size, &rows, &cols, &e) == 0 &&
		    (!rows || !cols || rows > 65535 || cols > 65535))
			abort();
	}
	{
		struct clonefix f, g;
		struct clonefix_done d, d2;

		if (clonefix_parse(text, size, &f, &e) == 0) {
			char *again = clonefix_encode(&f);

			if (!fc_valid_name(f.id) || !fc_valid_name(f.hostname) ||
			    f.seed_len < CLONEFIX_SEED_MIN || f.seed_len > CLONEFIX_SEED_MAX ||
			    f.realtime.tv_nsec < 0 || f.realtime.tv_nsec > 999999999 ||
			    clonefix_parse(again, strlen(again), &g, &e) < 0 ||
			    memcmp(f.seed, g.seed, f.seed_len) || strcmp(f.hostname, g.hostname))
				abort();
			free(again);
		}
		if (clonefix_done_parse(text, size, &d, &e) == 0) {
			char *again = clonefix_done_encode(&d);

			if (!fc_valid_name(d.hostname) || d.containers < 0 || d.announced < 0 ||
			    clonefix_done_parse(again, strlen(again), &d2, &e) < 0)
				abort();
			free(again);
		}
	}
	ref = plan_loaded_ref(text, &e);
	if (ref && !plan_ref_ok(ref))
		abort();
	free(ref);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] & 1)
		fuzz_plan(data + 1, size - 1);
	else
		fuzz_frames(data + 1, size - 1);
	return 0;
}

#define FUZZ_NAME "proto_fuzz"
#include "replay.h"
