/* tty.h - the local terminal of an interactive session (fc-exec -t,
 * fc-run -t): raw mode, always restored.
 *
 * One terminal per process: tty_raw() saves the modes of @fd and makes it
 * raw (cfmakeraw: no echo, no line editing, no signals from keys, so Ctrl-C
 * and Ctrl-Z are bytes for the guest); tty_restore() puts the saved modes
 * back, and is registered with atexit() so every exit() path restores too.
 * A process killed by SIGKILL cannot restore anything: `stty sane` then.
 */
#ifndef FC_TTY_H
#define FC_TTY_H

#include "err.h"

/* 0, or -1 with @e (not a terminal, tcsetattr failed: nothing changed). */
int tty_raw(int fd, struct fc_err *e);

/* Restore what tty_raw() changed; a no-op when nothing was. */
void tty_restore(void);

#endif
