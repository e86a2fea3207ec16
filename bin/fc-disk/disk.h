/* disk.h - fc-disk internals shared between its source files. */
#ifndef FC_DISK_H
#define FC_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "imgarchive.h"

/* The result of "fc-disk image". Strings owned by the struct. */
struct image_disk {
	char *path;		/* $FCVM_ROOT/images/<digest>.img */
	char digest[72];	/* "sha256:<hex>" */
	char *ref;		/* image name for podman run, or NULL */
	const char *source;	/* "file", "oci-layout" or "podman" */
	uint64_t size;		/* bytes of the disk (multiple of 512) */
	struct img_info info;
};

/* Turn @image (archive file, OCI layout dir, or podman storage name - in
 * that order) into a cached read-only disk. 0 or -1 with @e filled. */
int image_disk_get(const char *image, struct image_disk *d, struct fc_err *e);
void image_disk_free(struct image_disk *d);

/* Run @argv with stdout captured into *@out (NUL-terminated, at most @max
 * bytes kept, caller frees; @out may be NULL to discard) and stderr's last
 * line kept in @e on failure. @timeout_ms -1 waits forever. Returns the
 * exit code (0..255, 128+N for a signal) or -1 when it could not run. */
int run_capture(char *const argv[], char **out, size_t max, int timeout_ms, struct fc_err *e);

#endif
