/* util.h - allocation that aborts on OOM, scope-bound cleanup, ownership
 * transfer, bounded number parsing and full-length I/O.
 */
#ifndef FC_UTIL_H
#define FC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Out of memory is not recoverable here: these abort instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void cleanup_freep(void *p);
void cleanup_closep(int *fd);
#define _cleanup_free_  __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_ __attribute__((cleanup(cleanup_closep)))

/* Take ownership out of a cleanup-bound variable (it becomes -1 / NULL). */
static inline int steal_fd(int *fd)
{
	int r = *fd;

	*fd = -1;
	return r;
}

static inline void *steal_ptr(void *pp)
{
	void **p = pp;
	void *r = *p;

	*p = NULL;
	return r;
}

/* Parse a decimal unsigned integer in [min, max] (whole string, no sign).
 * On failure fill @e with "invalid WHAT 'S': must be MIN..MAX" and return -1. */
int parse_u64(const char *s, uint64_t min, uint64_t max, const char *what,
	      uint64_t *out, struct fc_err *e);

/* write(2)/read(2) until done, retrying EINTR. read_full returns bytes read
 * (< len only at EOF) or -1. write_full returns 0 or -1 (errno set). */
int write_full(int fd, const void *buf, size_t len);
ssize_t read_full(int fd, void *buf, size_t len);

/* Read a whole file of at most @max bytes into a NUL-terminated buffer
 * (caller frees). Returns NULL and fills @e on error or when too large. */
char *read_file_max(const char *path, size_t max, size_t *len, struct fc_err *e);

/* mkdir -p with @mode for each created component. 0 or -1 with @e filled. */
int mkdir_p(const char *path, mode_t mode, struct fc_err *e);

/* Monotonic clock in milliseconds. */
uint64_t now_ms(void);

#endif
