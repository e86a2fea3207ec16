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
	char *ref;		/* what the guest runs: the image ID (64 hex) */
	char *name;		/* the image's name, for display (sanitised), or NULL */
	const char *source;	/* "file", "oci-layout" or "podman" */
	uint64_t size;		/* bytes of the disk (multiple of 512) */
	struct img_info info;
};

/* Turn @image (archive file, OCI layout dir, or podman storage name - in
 * that order) into a cached read-only disk. 0 or -1 with @e filled. */
int image_disk_get(const char *image, struct image_disk *d, struct fc_err *e);
void image_disk_free(struct image_disk *d);


#endif
