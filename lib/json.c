/* json.c - see json.h */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "util.h"

void cleanup_jsonp(json_t **j)
{
	json_decref(*j);
}

json_t *json_parse(const char *buf, size_t len, struct fc_err *e)
{
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		fc_err_set(e, 0, "invalid JSON at line %d: %s", je.line, je.text);
	return j;
}

json_t *json_load_path(const char *path, size_t max, struct fc_err *e)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	json_t *j;

	buf = read_file_max(path, max, &len, e);
	if (!buf)
		return NULL;
	j = json_parse(buf, len, e);
	if (!j)
		fc_err_wrap(e, "'%s'", path);
	return j;
}

int json_write_atomic(const char *path, json_t *j, struct fc_err *e)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	_cleanup_free_ char *line = NULL;

	if (!text)
		return fc_err_set(e, ENOMEM, "serialise '%s'", path);
	line = xasprintf("%s\n", text);
	return fs_write_atomic(path, line, strlen(line), 0644, e);
}

const char *json_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

int json_int(json_t *obj, const char *key, long long min, long long max,
	     long long *out, struct fc_err *e)
{
	json_t *v = json_object_get(obj, key);
	long long n;

	if (!v)
		return 1;
	if (!json_is_integer(v))
		return fc_err_set(e, 0, "'%s' must be an integer", key);
	n = json_integer_value(v);
	if (n < min || n > max)
		return fc_err_set(e, 0, "'%s' is %lld: must be from %lld to %lld",
				  key, n, min, max);
	*out = n;
	return 0;
}
