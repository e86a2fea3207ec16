/* log.c - leveled logging: see log.h */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

static const char *tool = "fcvm";
static char tag[64];
static int level = LOG_INFO;
static int colour;

void log_init(const char *name)
{
	const char *env = getenv("FCVM_LOG");

	tool = name;
	colour = isatty(STDERR_FILENO) && !getenv("NO_COLOR");
	if (!env || !*env)
		return;
	if (!strcasecmp(env, "error"))
		level = LOG_ERROR;
	else if (!strcasecmp(env, "warn"))
		level = LOG_WARN;
	else if (!strcasecmp(env, "info"))
		level = LOG_INFO;
	else if (!strcasecmp(env, "debug"))
		level = LOG_DEBUG;
}

void log_set_tag(const char *t)
{
	snprintf(tag, sizeof(tag), "%s", t ? t : "");
}

void log_adjust(int delta)
{
	level += delta;
	if (level < LOG_ERROR)
		level = LOG_ERROR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
}

int log_enabled(enum log_level lvl)
{
	return (int)lvl <= level;
}

const char *log_tool(void)
{
	return tool;
}

static void vlog(enum log_level lvl, const char *fmt, va_list ap)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const char *const colours[] = { "\033[31m", "\033[33m", "", "\033[2m" };
	char buf[2048];
	int n;

	/* One write per line so lines of concurrent tools do not interleave. */
	n = snprintf(buf, sizeof(buf), "%s%s%s%s%s: ", colour ? colours[lvl] : "",
		     tool, *tag ? "[" : "", tag, *tag ? "]" : "");
	if (lvl != LOG_INFO && n >= 0 && (size_t)n < sizeof(buf))
		n += snprintf(buf + n, sizeof(buf) - n, "%s: ", names[lvl]);
	if (n >= 0 && (size_t)n < sizeof(buf))
		n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 8)
		n = sizeof(buf) - 8;
	n += snprintf(buf + n, sizeof(buf) - n, "%s\n", colour && *colours[lvl] ? "\033[0m" : "");
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* nowhere left to report it */
	}
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

noreturn void die(const char *fmt, ...)
{
	int saved = errno;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s: %s\n", tool, msg, strerror(saved));
	exit(1);
}

noreturn void diex(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

noreturn void usage_err(const char *usage, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", usage);
	exit(2);
}
