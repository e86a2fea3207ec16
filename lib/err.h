/* err.h - error objects passed up the call chain (crun style).
 *
 * Library functions return -1 (or NULL) on failure and fill a struct fc_err;
 * each caller may prepend its own context with fc_err_wrap(). Only main()
 * prints (fc_err_exit) - never both log an error and return it.
 */
#ifndef FC_ERR_H
#define FC_ERR_H

#include <stdnoreturn.h>

#define FC_ERR_MAX 1024

struct fc_err {
	int errnum;		/* errno of the root cause, 0 if none */
	char msg[FC_ERR_MAX];	/* "context: ...: cause[: strerror]" */
};

/* Set @e from a printf format; if @errnum != 0 append ": strerror(errnum)".
 * Always returns -1 so callers can "return fc_err_set(...)". */
int fc_err_set(struct fc_err *e, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like fc_err_set, for a message that names the cause in words already:
 * @errnum is kept for callers that tell causes apart, no strerror is
 * appended ("the agent stopped answering ..."). Returns -1. */
int fc_err_say(struct fc_err *e, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "context: " to @e->msg. Returns -1. */
int fc_err_wrap(struct fc_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Print "tool: msg" to stderr and exit(@code). */
noreturn void fc_err_exit(const struct fc_err *e, int code);

#endif
