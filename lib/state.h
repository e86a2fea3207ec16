/* state.h - one JSON record per fcvm process under $FCVM_ROOT/state/.
 *
 * state/<id>.json is written atomically by its owner only; state/<id>.pid
 * holds the owner's own pid. A record is live when its "pid" exists and
 * started at "pid_start" - readers never trust anything else. Schema:
 * fcvm(1), section STATE RECORD ("version": 1).
 */
#ifndef FC_STATE_H
#define FC_STATE_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"

#define STATE_VERSION 1
#define STATE_MAX_SIZE (1024 * 1024)

/* A fresh id "vm-<12 hex>" from getrandom(); caller frees. */
char *state_new_id(void);

/* Exclusive flock on locks/state.lock, held while checking and claiming a
 * name. Returns the lock fd (close it to release) or -1. */
int state_lock(struct fc_err *e);

/* A new record with version, id, name, process_type, pid/pid_start of
 * the caller, created (RFC 3339) and status. New reference. */
json_t *state_new(const char *id, const char *name, const char *type, const char *status);

/* True when the record's owner process is still the one that wrote it. */
bool state_live(json_t *rec);

/* Load state/<id>.json. New reference, or NULL with @e (errnum ENOENT
 * when there is no such record). */
json_t *state_load(const char *id, struct fc_err *e);

/* The live record whose name or id is @key; NULL with e->errnum ENOENT
 * when none. Dead records are skipped. */
json_t *state_find(const char *key, struct fc_err *e);

/* Call @fn for every readable record (live or not) in id order. Stops
 * and returns @fn's value when it returns non-zero. */
int state_foreach(int (*fn)(json_t *rec, void *arg), void *arg, struct fc_err *e);

/* Write state/<id>.json atomically and state/<id>.pid. */
int state_save(json_t *rec, struct fc_err *e);

/* Remove state/<id>.json and state/<id>.pid (missing is fine). */
void state_remove(const char *id);

#endif
