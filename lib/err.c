/* err.c - error objects: see err.h */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

static void err_vset(struct fc_err *e, int errnum, bool cause, const char *fmt, va_list ap)
{
	int n;

	e->errnum = errnum;
	n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	if (n < 0)
		n = 0;
	if (cause && errnum && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(errnum));
}

int fc_err_set(struct fc_err *e, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_vset(e, errnum, true, fmt, ap);
	va_end(ap);
	return -1;
}

int fc_err_say(struct fc_err *e, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_vset(e, errnum, false, fmt, ap);
	va_end(ap);
	return -1;
}

int fc_err_wrap(struct fc_err *e, const char *fmt, ...)
{
	char buf[FC_ERR_MAX];
	size_t n, rest;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = r < 0 ? 0 : (size_t)r;
	if (n > sizeof(buf) - 3)
		n = sizeof(buf) - 3;
	memcpy(buf + n, ": ", 2);
	n += 2;
	/* Truncation keeps the outer context and as much of the cause as fits. */
	rest = strnlen(e->msg, sizeof(e->msg) - 1);
	if (rest > sizeof(buf) - 1 - n)
		rest = sizeof(buf) - 1 - n;
	memcpy(buf + n, e->msg, rest);
	buf[n + rest] = '\0';
	memcpy(e->msg, buf, sizeof(buf));
	return -1;
}

noreturn void fc_err_exit(const struct fc_err *e, int code)
{
	fprintf(stderr, "%s: %s\n", log_tool(), e->msg);
	exit(code);
}
