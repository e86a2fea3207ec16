/* http_api_fuzz - libFuzzer target for fc-qemu's API layer: bytes of one
 * connection go through lib/http.c and then api_handle() (routing, JSON
 * parsing, field validation), with the VMM stubbed out so InstanceStart
 * fails instead of spawning QEMU.
 *
 * The API opens the paths it is given (kernel, drives): the fuzzer hides
 * /dev first (see jail()), so no fuzzed path reaches a real device. Needs
 * root (a mount namespace).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFC_LIBFUZZER -D_GNU_SOURCE \
 *     -Ilib -Ibin/fc-qemu fuzz/http_api_fuzz.c bin/fc-qemu/api.c lib/http.c \
 *     lib/err.c lib/util.c lib/log.c lib/json.c -ljansson -o build/http_api_fuzz
 *   build/http_api_fuzz -max_total_time=300 fuzz/corpus/http
 *
 * Without -DFC_LIBFUZZER it builds a replay program: http_api_fuzz FILE...
 */
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "fcq.h"
#include "log.h"
#include "util.h"

/* --- the VMM, stubbed --- */
void vmm_init(struct vmm *v)
{
	memset(v, 0, sizeof(*v));
	v->qmp_fd = v->err_fd = v->vsock_out_fd = -1;
}

int vmm_start(struct vmm *v, const struct fcq_config *c, struct fc_err *e)
{
	(void)v;
	if (!c->kernel || c->vcpus < 1 || c->vcpus > 32 || c->mem_mib < 16)
		abort();	/* the API let an invalid config through */
	return fc_err_set(e, 0, "stub: no QEMU in the fuzzer");
}

int vmm_qmp(struct vmm *v, const char *cmd, struct fc_err *e)
{
	(void)v;
	return fc_err_set(e, 0, "stub: QMP %s", cmd);
}

/* snap.c (snapshots over QEMU migration) is not linked: stubbed too. */
int snap_create(struct fcq *q, json_t *body, struct fc_err *e)
{
	(void)q;
	(void)body;
	return fc_err_set(e, 0, "stub: no snapshots in the fuzzer");
}

int snap_load(struct fcq *q, json_t *body, struct fc_err *e)
{
	(void)q;
	(void)body;
	return fc_err_set(e, 0, "stub: no snapshots in the fuzzer");
}

/* The API opens whatever paths it is given (O_RDWR for drives), and opening
 * some devices has effects (a watchdog starts ticking): hide the host's /dev
 * behind an empty tmpfs in a private mount namespace. Regular files and
 * /proc stay visible (libFuzzer and LeakSanitizer need them). */
static void jail(void)
{
	static int done;

	if (done++)
		return;
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("none", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k") < 0) {
		perror("http_api_fuzz: private /dev (run as root)");
		exit(1);
	}
	log_init("http_api_fuzz");
	log_adjust(-3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = xmalloc(size ? size : 1);
	struct fcq q;
	size_t off = 0;

	jail();
	memcpy(buf, data, size);
	fcq_init(&q, "fuzz");
	while (off < size) {
		struct http_request r;
		struct fc_err e;
		char *json = NULL;
		int status;
		ssize_t n = http_parse_request(buf + off, size - off, &r, &status, &e);

		if (n <= 0)
			break;
		status = api_handle(&q, &r, &json);
		if (status != 200 && status != 204 && status != 400)
			abort();
		if ((status == 204) != !json)
			abort();	/* 204 never has a body, the others always */
		free(json);
		off += n;
	}
	fcq_free(&q);
	free(buf);
	return 0;
}

#define FUZZ_NAME "http_api_fuzz"
#include "replay.h"
