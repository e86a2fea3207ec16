/* log.h - leveled logging to stderr, tagged "tool[vm-id]:".
 *
 * Level from FCVM_LOG (error, warn, info, debug; default info) or -v/-q.
 * Colour only when stderr is a TTY. Also err(3)-style die helpers for main().
 */
#ifndef FC_LOG_H
#define FC_LOG_H

#include <stdnoreturn.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Name the tool (used in every message and by fc_err_exit). Reads FCVM_LOG. */
void log_init(const char *tool);
/* Tag later messages with a VM id or name ("fc-boot[web1]: ..."); NULL clears. */
void log_set_tag(const char *tag);
/* Raise (+1 per -v) or lower (-1 per -q) the level. */
void log_adjust(int delta);
int log_enabled(enum log_level lvl);
const char *log_tool(void);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* "tool: msg: strerror(errno)" then exit(1). */
noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "tool: msg" then exit(1). */
noreturn void diex(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "tool: msg" and the usage text to stderr, then exit(2). */
noreturn void usage_err(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
