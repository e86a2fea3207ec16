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
	char *store;		/* images/<hex>.store/store.ext4, or NULL: see store.c */
	uint64_t store_size;
	struct img_info info;
};

/* Turn @image (archive file, OCI layout dir, or podman storage name - in
 * that order) into a cached read-only disk. 0 or -1 with @e filled. */
int image_disk_get(const char *image, struct image_disk *d, struct fc_err *e);
void image_disk_free(struct image_disk *d);

/* The image store disk of @d (its archive published by image_disk_get):
 * built once per digest, checked on every use. Fills d->store and
 * d->store_size; leaves d->store NULL, after one warning on stderr, when
 * this host cannot build stores (no skopeo, no mount namespace) or
 * FCVM_IMAGE_STORE=0 says not to. 0, or -1 with @e (a damaged cached store,
 * an image skopeo refuses, a full data root). */
int image_store_get(struct image_disk *d, struct fc_err *e);


#endif
