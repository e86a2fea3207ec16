/* imgarchive.h - read and validate container image archives (tar) without
 * extracting them: an OCI image layout in a tar ("oci-archive") or a
 * "docker-archive" (docker save / podman save format).
 *
 * Everything read is bounded: entry count, name length, JSON sizes, nesting.
 * Only headers and the small JSON documents are read; layer blobs are
 * checked for presence and size, not hashed (podman load in the guest
 * verifies layer digests).
 */
#ifndef FC_IMGARCHIVE_H
#define FC_IMGARCHIVE_H

#include <stdint.h>

#include "err.h"

#define TAR_MAX_ENTRIES	 65536
#define TAR_MAX_NAME	 4096		/* pax/GNU long names */
#define IMG_MAX_JSON	 (4u << 20)	/* index.json, manifests, configs */
#define IMG_MAX_REF	 255

struct tar_entry {
	char *name;		/* normalised: no leading "./", no trailing "/" */
	char *link;		/* symlink/hardlink target or NULL */
	char type;		/* '0' file, '1' hardlink, '2' symlink, '5' dir, ... */
	uint64_t off;		/* offset of the data in the file */
	uint64_t size;
};

struct tar_index {
	struct tar_entry *ents;
	size_t n;
	uint64_t end;		/* bytes of the archive that are tar (incl. end blocks) */
};

/* Walk the tar headers of @fd (@file_size bytes; pread, offset untouched).
 * Checks magic, header checksums, sizes against the file, limits. Fills
 * @ix (free with tar_index_free) or returns -1 with @e, e.g.
 * "not a tar archive", "truncated: entry 'x' needs N bytes past the end". */
int tar_scan(int fd, uint64_t file_size, struct tar_index *ix, struct fc_err *e);
void tar_index_free(struct tar_index *ix);

/* The entry named @name ("./" prefixes ignored), or NULL. */
const struct tar_entry *tar_find(const struct tar_index *ix, const char *name);

enum img_format { IMG_OCI_ARCHIVE = 1, IMG_DOCKER_ARCHIVE };

struct img_info {
	enum img_format format;
	char *ref;		/* the name the archive gives the image, sanitised
				 * (lib/text.h) for display, or NULL; never run:
				 * it may be a bare tag ("latest") */
	char image_id[65];	/* sha256 hex of the image config = podman's image
				 * ID: what the guest runs, whatever the names say */
	uint64_t tar_size;	/* tar_index.end */
	unsigned layers;
};

/* Validate an image archive open on @fd and describe it. An archive is
 * valid when it is a tar with index.json (OCI; exactly one manifest at the
 * top, its config and layer blobs present with the sizes stated) or
 * manifest.json (docker-archive; exactly one entry, its Config and Layers
 * present). An archive of several images is refused with their names and
 * how to pick one. Every archive-derived text in @info or @e is sanitised.
 * 0, or -1 with @e. */
int img_archive_inspect(int fd, struct img_info *info, struct fc_err *e);
void img_info_free(struct img_info *info);

const char *img_format_name(enum img_format f);

#endif
