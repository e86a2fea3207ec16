/* seccomp.h - give up privileges a host process no longer needs.
 *
 * For tools that handle guest-controlled bytes: once set up, they set
 * PR_SET_NO_NEW_PRIVS and install an allowlist of system calls; anything
 * else kills the process. Sanitizer builds install no filter (LeakSanitizer
 * needs clone and ptrace at exit), only NO_NEW_PRIVS.
 */
#ifndef FC_SECCOMP_H
#define FC_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Set NO_NEW_PRIVS and allow exactly the @n system call numbers in
 * @allowed, plus socket(AF_UNIX, ...) when @unix_sockets. 0 or -1 with @e. */
int seccomp_allow_only(const int *allowed, size_t n, bool unix_sockets, struct fc_err *e);

#endif
