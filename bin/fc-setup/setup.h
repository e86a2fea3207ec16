/* setup.h - shared pieces of fc-setup: subcommands, interrupt-safe child
 * processes, temp-dir cleanup, build locks and content-addressed publishing.
 *
 * How interrupt safety works: SIGINT/SIGTERM/SIGHUP only set a flag and
 * forward SIGTERM to the running child's process group (every child runs in
 * its own group). The waiting code then sees the flag and fails with
 * "interrupted"; main() exits, and an atexit() handler unmounts anything left
 * under each registered temp dir and removes it. Finished outputs appear
 * only through rename() of a complete temp dir, so an interrupted build
 * leaves nothing half made.
 */
#ifndef FC_SETUP_H
#define FC_SETUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdnoreturn.h>

#include "err.h"
#include "sha256.h"

#define FORMAT_VERSION 1
#define STR_(x) #x
#define STR(x) STR_(x)

extern const char fcvm_init_script[];
extern volatile sig_atomic_t g_interrupted;

int cmd_kernel(int argc, char **argv);
int cmd_rootfs(int argc, char **argv);
int cmd_storage(int argc, char **argv);
int cmd_preflight(int argc, char **argv);
int cmd_qemu(int argc, char **argv);

/* Install the signal handlers and the atexit temp-dir cleanup. */
void setup_signals(void);

/* Run @argv (PATH search) in its own process group, stdin from @fd_in
 * (-1: /dev/null), stdout to @fd_out (-1: our stderr, so progress stays off
 * stdout), stderr inherited; @cwd (may be NULL) is entered first. Returns
 * the exit code (0..255, 128+signal), or -1 with @e when it could not run
 * or we were interrupted. */
int run_cmd(char *const argv[], const char *cwd, int fd_in, int fd_out, struct fc_err *e);

/* Like run_cmd, but fails unless the exit code is 0 (message names argv[0]). */
int run_ok(char *const argv[], const char *cwd, int fd_in, int fd_out, struct fc_err *e);


/* Print @e and exit: 130 after a signal, else 1. */
noreturn void setup_fail(const struct fc_err *e);

/* Fail with "interrupted" if a signal arrived. */
int check_interrupted(struct fc_err *e);

/* Remember @path (copied) for removal at exit; tmp_keep() forgets it. */
void tmp_register(const char *path);
void tmp_keep(const char *path);

/* Unmount everything below @path (deepest first), then remove the tree
 * without crossing into other file systems. 0 or -1 with @e. */
int rm_tree(const char *path, struct fc_err *e);

/* flock $FCVM_ROOT/locks/<name>.lock exclusively (fs_lock_named), waiting
 * until our SIGINT/SIGTERM ends the wait; logs once if someone else holds
 * it. With @flags FS_LOCK_NB it does not wait (errnum EWOULDBLOCK). Returns
 * the fd (keep it open) or -1. */
int lock_build(const char *name, int flags, struct fc_err *e);

/* lock_build() on the lock file @path (outside the data root: the cache);
 * @what names the build in the log line. */
int lock_file(const char *path, const char *what, struct fc_err *e);

/* Remove what interrupted builds left in the directory @dir: every entry
 * named @prefix* (".tmp-": call it holding the build lock, which each
 * builder holds while its temporary exists) and ".default.PID" links of
 * dead processes. Logs what it removed. */
void sweep_build_temps(const char *dir, const char *prefix);

/* Atomically point the symlink @dir/default at @target (a relative name). */
int point_default(const char *dir, const char *target, struct fc_err *e);

/* Fills the temp dir @tmp with a complete output; 0 or -1 with @e. */
typedef int (*build_fn)(const char *tmp, void *arg, struct fc_err *e);

/* Publish the content-addressed output $FCVM_ROOT/@subdir/@key16, point
 * @subdir/default at it and print its path on stdout (the command's result).
 * Unless it exists, @build(tmp, @arg, e) makes it in a temp dir beside it
 * (removed at exit on failure), which is then renamed into place; builds of
 * the same @what ("kernel", "rootfs": also the word in log lines) are
 * serialised with lock_build(@what). Returns 0, or -1 with @e. */
int publish_build(const char *subdir, const char *what, const char *key16, build_fn build,
		  void *arg, struct fc_err *e);

/* The directory of our own executable (/proc/self/exe), caller frees. */
char *self_dir(void);

/* The cache dir: $FCVM_CACHE or /var/cache/fcvm (not created). */
const char *fc_cache(void);

/* "2026-11-29T13:40:00Z" for manifests. */
void iso_now(char buf[32]);

/* Really clone a small file in @dir (FICLONE). 0 when reflinks work,
 * else -1 with @e (errnum: test it with fs_reflink_unsupported()). */
int reflink_probe(const char *dir, struct fc_err *e);
/* "btrfs", "xfs", "ext4", ... for a statfs f_type. */
const char *fs_type_name(long type);

/* Hex sha256 of a whole file. 0 or -1 with @e. */
int sha256_file_hex(const char *path, char hex[SHA256_HEX_LEN + 1], struct fc_err *e);
/* Finish @s into 64 hex digits. */
void sha256_final_hex(struct sha256 *s, char hex[SHA256_HEX_LEN + 1]);

/* Hash helpers for keys: "name value\n" lines. */
void key_add(struct sha256 *s, const char *name, const char *value);

#endif
