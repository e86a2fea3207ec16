/* sha256.h - SHA-256 (FIPS 180-4), streaming, no external library.
 *
 * Used to name content-addressed files (image disks) by their bytes.
 */
#ifndef FC_SHA256_H
#define FC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SHA256_LEN 32
#define SHA256_HEX_LEN 64

struct sha256 {
	uint32_t h[8];
	uint64_t len;		/* bytes hashed so far */
	uint8_t buf[64];
	size_t fill;		/* bytes pending in buf */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
/* Finish and write the digest; @s must be re-initialised before reuse. */
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
/* Digest as 64 lower-case hex digits plus NUL. */
void sha256_hex(const uint8_t d[SHA256_LEN], char out[SHA256_HEX_LEN + 1]);

/* Hash @len bytes of @fd from offset @off (pread; @fd's offset is not
 * moved). Fails with EIO-style message if the file is shorter. 0 or -1. */
int sha256_fd(int fd, uint64_t off, uint64_t len, char hex[SHA256_HEX_LEN + 1],
	      struct fc_err *e);

#endif
