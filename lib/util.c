/* util.c - see util.h */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void *oom(void *p)
{
	if (!p) {
		static const char m[] = "fcvm: out of memory\n";

		if (write(STDERR_FILENO, m, sizeof(m) - 1) < 0) {
			/* aborting anyway */
		}
		abort();
	}
	return p;
}

void *xmalloc(size_t n)
{
	return oom(malloc(n ? n : 1));
}

void *xcalloc(size_t n, size_t size)
{
	return oom(calloc(n ? n : 1, size ? size : 1));
}

void *xrealloc(void *p, size_t n)
{
	return oom(realloc(p, n ? n : 1));
}

char *xstrdup(const char *s)
{
	return oom(strdup(s));
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return oom(r < 0 ? NULL : s);
}

void cleanup_freep(void *p)
{
	free(*(void **)p);
}

void cleanup_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;

		close(*fd);
		errno = saved;
	}
	/* Also when called by hand: a second call, or a later poll() on
	 * the number, must not touch a descriptor someone else now owns. */
	*fd = -1;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, const char *what,
	      uint64_t *out, struct fc_err *e)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (!s || *s < '0' || *s > '9')
		goto bad;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	return fc_err_set(e, 0, "invalid %s '%s': must be a number from %llu to %llu",
			  what, s ? s : "", (unsigned long long)min,
			  (unsigned long long)max);
}

int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += n;
	}
	return got;
}

char *read_file_max(const char *path, size_t max, size_t *len, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	if (fd < 0) {
		fc_err_set(e, errno, "open '%s'", path);
		return NULL;
	}
	buf = xmalloc(max + 1);
	n = read_full(fd, buf, max + 1);
	if (n < 0) {
		fc_err_set(e, errno, "read '%s'", path);
		return NULL;
	}
	if ((size_t)n > max) {
		fc_err_set(e, 0, "read '%s': larger than %zu bytes", path, max);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return steal_ptr(&buf);
}

int mkdir_p(const char *path, mode_t mode, struct fc_err *e)
{
	_cleanup_free_ char *p = xstrdup(path);
	char *s = p;

	for (;;) {
		s = strchr(s + 1, '/');
		if (s)
			*s = '\0';
		if (*p && mkdir(p, mode) < 0 && errno != EEXIST)
			return fc_err_set(e, errno, "create directory '%s'", p);
		if (!s)
			return 0;
		*s = '/';
	}
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
