/* state.h - one JSON record per fcvm process under $FCVM_ROOT/state/.
 *
 * state/<id>.json is written atomically by its owner only, always through
 * state_save(), which checks it against the schema first; state/<id>.pid
 * holds the owner's own pid. A record is live when its "pid" is a running
 * process (not a zombie) that started at "pid_start" - readers never trust
 * anything else. Readers validate too: a malformed, oversized or foreign
 * file in state/ is skipped (and can be reported), never half-used.
 *
 * Schema ("version": 1), documented field by field in fc-state(1), section
 * STATE RECORD:
 *   always:  version id name process_type pid pid_start status created
 *   vm/clone once past "starting": vmm_pid vmm_pid_start config sockets
 *            console disk_dir; optional: network disks
 *   clone:   snapshot (once past "starting"), serve_pid, serve_pid_start
 *   serve:   snapshot (once past "starting"), sockets
 */
#ifndef FC_STATE_H
#define FC_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"

#define STATE_VERSION 1
#define STATE_MAX_SIZE (1024 * 1024)

/* A fresh id "vm-<12 hex>" from getrandom(); caller frees. */
char *state_new_id(void);

/* Exclusive flock on locks/state.lock (fs_lock_named), held while checking
 * and claiming a name and while gc removes records. Checks the data root
 * first (fc_root_check). Returns the lock fd (close it to release) or -1. */
int state_lock(struct fc_err *e);

/* A new record with version, id, name, process_type, pid/pid_start of
 * the caller, created (RFC 3339) and status. New reference. */
json_t *state_new(const char *id, const char *name, const char *type, const char *status);

/* True when @type is "vm", "serve" or "clone"; @status "starting",
 * "running" or "stopping". */
bool state_valid_type(const char *type);
bool state_valid_status(const char *status);

/* Check @rec against the schema: every known field has its type (and
 * range), the fields its process_type needs at its status are there, id
 * and name are valid names, version is STATE_VERSION. @strict (writers)
 * also refuses fields the schema does not know (a typo is caught where it
 * is made); readers pass false and ignore them. 0, or -1 with @e naming
 * the first bad field ("field 'config.cpus': must be an integer ..."). */
int state_validate(json_t *rec, bool strict, struct fc_err *e);

/* True when @pid runs (exists and is not a zombie) and, when @start is not
 * 0, started at @start (clock ticks since boot, /proc/PID/stat field 22).
 * The one liveness test of fcvm's records. */
bool state_pid_live(pid_t pid, uint64_t start);

/* True when the record's owner process is still the one that wrote it. */
bool state_live(json_t *rec);

/* Load and validate state/<id>.json. New reference, or NULL with @e
 * (errnum ENOENT when there is no such record, EINVAL when the file is
 * malformed, oversized, not a regular file, or its id is not @id). */
json_t *state_load(const char *id, struct fc_err *e);

/* The live record whose name or id is @key; NULL with e->errnum ENOENT
 * ("no running VM named 'KEY'") when none. Dead records are skipped. */
json_t *state_find(const char *key, struct fc_err *e);

/* The live record whose owner's "pid" is @pid (any process type); NULL
 * with e->errnum ENOENT when none. */
json_t *state_find_pid(pid_t pid, struct fc_err *e);

/* Call @fn for every valid record (live or not) in id order. Stops
 * and returns @fn's value when it returns non-zero. */
int state_foreach(int (*fn)(json_t *rec, void *arg), void *arg, struct fc_err *e);

/* Called by state_scan() for each record file it skips: @id is the file
 * name without ".json", @why the reason. */
typedef void (*state_bad_fn)(const char *id, const struct fc_err *why, void *arg);

/* state_foreach() that also reports each skipped record to @bad (may be
 * NULL). A record removed while we read it is not reported. */
int state_scan(int (*fn)(json_t *rec, void *arg), state_bad_fn bad, void *arg,
	       struct fc_err *e);

/* Validate @rec strictly (state_validate), then write state/<id>.json
 * atomically and state/<id>.pid (fs_write_atomic). The record's pid must be
 * the caller's own: only the owner writes its record. Refuses a data root
 * that is not prepared (fc_root_check). A full file system is reported as
 * such (fc_err_enospc, errnum ENOSPC). 0 or -1 with @e. */
int state_save(json_t *rec, struct fc_err *e);

/* Remove state/<id>.json and state/<id>.pid (missing is fine). */
void state_remove(const char *id);

/* Wait until the live record for @key (name or id) has status @status.
 * Never unbounded: gives up after @timeout_ms (errnum ETIMEDOUT). Fails at
 * once, naming the cause, when the owner of a record we saw dies (ESRCH),
 * when @owner_pid (0: none; @owner_start 0: any start time) is not or no
 * longer running - also before any record appeared (ESRCH) - when the
 * record we saw is removed (ENOENT), or when its status moved past @status
 * ("stopping" cannot become "running"; EINVAL). Woken by inotify on state/
 * and the owners' pidfds, with a short poll as a backstop. On success
 * *@out (if not NULL) receives the record (new reference). 0 or -1. */
int state_wait(const char *key, const char *status, int timeout_ms, pid_t owner_pid,
	       uint64_t owner_start, json_t **out, struct fc_err *e);

#endif
