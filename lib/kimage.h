/* kimage.h - pure parsing of kernel artefacts (no I/O, no processes), kept
 * apart so unit tests can feed it crafted buffers:
 *  - find candidate compressed payloads inside an x86 bzImage,
 *  - check that a decompressed payload is a bootable ELF vmlinux,
 *  - read a kernel module's "depends=" from its .modinfo section.
 *
 * How vmlinux extraction works: a bzImage is a real-mode setup + a small
 * decompressor + the compressed ELF kernel. The setup header (at 0x1f1)
 * states where the payload starts (payload_offset, relative to the
 * protected-mode code), which is the first candidate; then every offset
 * where a known compression magic occurs follows, in file order. The caller
 * pipes each candidate's tail into the matching decompressor and accepts
 * the first output that kimage_check_elf() likes - trailing bytes after the
 * stream make decompressors complain, so their exit status is not trusted.
 */
#ifndef FC_KIMAGE_H
#define FC_KIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum kimage_fmt { KFMT_GZIP, KFMT_XZ, KFMT_ZSTD, KFMT_LZ4, KFMT_BZIP2, KFMT_LZMA, KFMT_COUNT };

struct kimage_cand {
	size_t off;
	enum kimage_fmt fmt;
};

/* Name of a format ("lz4") and the argv of its stdin->stdout decompressor
 * ({"lz4", "-dc", NULL}); both static. */
const char *kimage_fmt_name(enum kimage_fmt f);
const char *const *kimage_fmt_argv(enum kimage_fmt f);

/* Fill @out (capacity @max) with payload candidates of @img (@len bytes):
 * the setup-header payload first (if the header is valid and its payload
 * starts with a known magic), then magic matches in file order (duplicates
 * of the first skipped). Returns the number stored (0: nothing found). */
size_t kimage_find_payloads(const uint8_t *img, size_t len, struct kimage_cand *out, size_t max);

struct kimage_elf {
	uint64_t entry;		/* e_entry */
	bool pvh;		/* has the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) */
	uint64_t pvh_entry;	/* its value, when pvh */
	unsigned nphdr;
};

/* Check that @buf is an ELF64 little-endian x86-64 executable whose program
 * headers (and notes) lie inside the buffer. Fills @info. 0, or -1 with @e
 * saying what is wrong ("not an ELF file", "not x86-64", ...). */
int kimage_check_elf(const uint8_t *buf, size_t len, struct kimage_elf *info, struct fc_err *e);

/* Copy the value of "depends=" from the .modinfo section of the kernel
 * module ELF @ko into @out (comma-separated names, possibly empty).
 * 0, or -1 with @e (not an ELF module, no .modinfo, value too long). */
int kimage_modinfo_depends(const uint8_t *ko, size_t len, char *out, size_t outlen, struct fc_err *e);

#endif
