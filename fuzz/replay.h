/* replay.h - the replay main() every fuzz target has when built without
 * -DFC_LIBFUZZER (with it, libFuzzer brings its own main and this adds
 * nothing). Include it last, after LLVMFuzzerTestOneInput, with FUZZ_NAME
 * defined as the program's name for messages.
 *
 * FUZZ_NAME FILE... reads every FILE (at most 1 MiB each), then feeds each
 * to LLVMFuzzerTestOneInput in turn and prints "FILE: ok" after it. Exits 1
 * naming the first FILE it cannot read (before running any), 0 otherwise;
 * a finding aborts, as under libFuzzer.
 *
 * All files are read before the first run because a target may lock itself
 * down on its first input (http_api_fuzz hides /dev in a private mount
 * namespace), after which some paths could no longer be opened.
 */
#ifndef FC_LIBFUZZER
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including replay.h"
#endif

int main(int argc, char **argv)
{
	char **data = xcalloc(argc, sizeof(*data));
	size_t *lens = xcalloc(argc, sizeof(*lens));
	int i, status = 0;

	for (i = 1; i < argc; i++) {
		struct fc_err e;

		data[i] = read_file_max(argv[i], 1 << 20, &lens[i], &e);
		if (!data[i]) {
			fprintf(stderr, FUZZ_NAME ": %s\n", e.msg);
			status = 1;
			break;
		}
	}
	for (i = 1; i < argc && !status; i++) {
		LLVMFuzzerTestOneInput((const uint8_t *)data[i], lens[i]);
		printf("%s: ok\n", argv[i]);
	}
	/* freed even on error: LeakSanitizer would turn exit 1 into 23 */
	for (i = 1; i < argc; i++)
		free(data[i]);
	free(data);
	free(lens);
	return status;
}
#endif
