/* json.h - jansson helpers: scope cleanup, bounded load, atomic write. */
#ifndef FC_JSON_H
#define FC_JSON_H

#include <jansson.h>

#include "err.h"

void cleanup_jsonp(json_t **j);
#define _cleanup_json_ __attribute__((cleanup(cleanup_jsonp)))

/* Parse @len bytes of JSON text (need not be NUL-terminated). New reference
 * or NULL with @e filled ("invalid JSON at line L: ..."). */
json_t *json_parse(const char *buf, size_t len, struct fc_err *e);

/* Load a JSON file of at most @max bytes. New reference or NULL with @e. */
json_t *json_load_path(const char *path, size_t max, struct fc_err *e);

/* Write @j to @path atomically: temp file in the same directory, fsync,
 * rename. Readers see the old or the new file, never a partial one. */
int json_write_atomic(const char *path, json_t *j, struct fc_err *e);

/* Typed field access. json_str() returns NULL when absent or not a string. */
const char *json_str(json_t *obj, const char *key);
/* Integer field in [min, max]. 1 if absent (out untouched), 0 ok, -1 bad type/range. */
int json_int(json_t *obj, const char *key, long long min, long long max,
	     long long *out, struct fc_err *e);

#endif
