/* vproto_fuzz - libFuzzer target for fc-volume's host side: the volume
 * protocol's request parser (lib/vproto.c) and the request handler over a
 * real scratch share (bin/fc-volume/fs.c). The first input byte picks:
 *   even: the rest is a byte stream cut into frames as the server does
 *         (vp_hdr_parse, vp_req_decode); every decoded request must hold
 *         its contract (names valid, data inside the frame and bounded)
 *         and re-encode to the same bytes;
 *   odd:  the same frames are also handled by vol_handle on a scratch
 *         share in a temporary directory next to a canary file; after each
 *         input nothing but the share and the canary may exist there and
 *         the canary must be unchanged (an escape aborts). Sizes are capped
 *         so the scratch share cannot fill the disk. The tree is
 *         /tmp/vproto-fuzz-PID; a later run removes those of dead runs.
 *
 *   make BUILD=build fuzz  ->  build/fuzz/vproto_fuzz -max_total_time=60 fuzz/corpus/vproto
 *
 * Without -DFC_LIBFUZZER it builds a replay program: vproto_fuzz FILE...
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../bin/fc-volume/volume.h"
#include "util.h"
#include "vproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char canary_text[] = "canary: must never change\n";
static char top[64];
static struct vol vol;
static bool vol_ready;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* libFuzzer leaves by _Exit: a run's scratch tree is removed by the next
 * run, found by the pid in its name. */
static void remove_stale(void)
{
	struct dirent *de;
	DIR *d = opendir("/tmp");

	while (d && (de = readdir(d))) {
		char path[300];
		int pid;

		if (sscanf(de->d_name, "vproto-fuzz-%d", &pid) != 1 || pid <= 0 ||
		    (kill(pid, 0) == 0 || errno != ESRCH))
			continue;
		snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	if (d)
		closedir(d);
}

static void setup_share(void)
{
	char path[128];
	struct fc_err e;
	int fd;

	remove_stale();
	snprintf(top, sizeof(top), "/tmp/vproto-fuzz-%d", (int)getpid());
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(top, 0700) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/share", top);
	if (mkdir(path, 0755) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/canary", top);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || write_full(fd, canary_text, sizeof(canary_text) - 1) < 0)
		abort();
	close(fd);
	snprintf(path, sizeof(path), "%s/share", top);
	if (vol_init(&vol, path, false, 256, 64, &e) < 0) {
		fprintf(stderr, "%s\n", e.msg);
		abort();
	}
	vol_ready = true;
}

/* Nothing outside the share may appear, vanish or change. */
static void check_canary(void)
{
	char path[128], buf[128];
	struct dirent *de;
	ssize_t n;
	DIR *d = opendir(top);
	int fd, count = 0;

	if (!d)
		abort();
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			count++;
	closedir(d);
	snprintf(path, sizeof(path), "%s/canary", top);
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		abort();
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (count != 2 || n != (ssize_t)sizeof(canary_text) - 1 || memcmp(buf, canary_text, (size_t)n))
		abort();
}

static void check_req(const struct vp_hdr *h, const uint8_t *p, const struct vp_req *r)
{
	struct vp_buf b = { 0 };

	if ((r->name[0] && strlen(r->name) > VP_NAME_MAX) || strlen(r->name2) > VP_NAME_MAX)
		abort();
	if (r->name2[0] && !vp_name_ok(r->name2, strlen(r->name2)))
		abort();
	if (r->data && (r->data < p || r->data + r->data_len > p + h->len))
		abort();
	if (r->data_len > VP_MAX_DATA || r->size > VP_MAX_DATA)
		abort();
	/* Decoding is exact: encoding the result gives the same frame. */
	vp_req_encode(&b, r);
	if (b.len != VP_HDR_SIZE + h->len || memcmp(b.p + VP_HDR_SIZE, p, h->len))
		abort();
	vp_buf_free(&b);
}

/* Keep the scratch share small. */
static bool too_big(const struct vp_req *r)
{
	return (r->op == VP_WRITE && r->off > (1u << 20)) ||
	       (r->op == VP_FALLOCATE && (r->off > (1u << 20) || r->len > (1u << 20))) ||
	       (r->op == VP_SETATTR && (r->valid & VP_SET_SIZE) && r->len > (1u << 20));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool handle;
	size_t off = 1;

	if (size < 1)
		return 0;
	handle = data[0] & 1;
	if (handle && !vol_ready)
		setup_share();
	while (size - off >= VP_HDR_SIZE) {
		struct vp_hdr h;
		struct vp_req r;
		const uint8_t *p;

		if (vp_hdr_parse(data + off, VP_REQUEST, &h) < 0)
			break;
		if (h.len > size - off - VP_HDR_SIZE)
			break;
		p = data + off + VP_HDR_SIZE;
		if (vp_req_decode(&h, p, h.len, &r) == 0) {
			check_req(&h, p, &r);
			if (handle && !too_big(&r)) {
				struct vp_buf out = { 0 };

				vol_handle(&vol, &r, &out);
				vp_buf_free(&out);
			}
		}
		off += VP_HDR_SIZE + h.len;
	}
	if (handle)
		check_canary();
	return 0;
}

#define FUZZ_NAME "vproto_fuzz"
#include "replay.h"
