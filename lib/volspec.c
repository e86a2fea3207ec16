/* volspec.c - see volspec.h */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "json.h"
#include "volspec.h"

/* Absolute, no control character, no "." or ".." component, not "/". */
static bool path_ok(const char *p)
{
	size_t n = strlen(p);

	if (n < 2 || n > 4095 || p[0] != '/')
		return false;
	for (const char *c = p; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return false;
	for (const char *c = p; (c = strchr(c, '/')); c++) {
		size_t len = strcspn(c + 1, "/");

		if ((len == 1 && c[1] == '.') || (len == 2 && c[1] == '.' && c[2] == '.'))
			return false;
	}
	return true;
}

int volspec_check(json_t *v, struct fc_err *e)
{
	size_t i, j;
	json_t *o;

	if (!json_is_array(v) || json_array_size(v) > VOLSPEC_MAX)
		return fc_err_set(e, EINVAL, "volumes: want an array of at most %d objects",
				  VOLSPEC_MAX);
	json_array_foreach(v, i, o) {
		const char *key, *guest = json_str(o, "guest"), *host = json_str(o, "host");
		long long port = 0;
		json_t *val;

		if (!json_is_object(o))
			return fc_err_set(e, EINVAL, "volumes[%zu]: not an object", i);
		json_object_foreach(o, key, val) {
			if (strcmp(key, "port") && strcmp(key, "guest") && strcmp(key, "host") &&
			    strcmp(key, "read_only"))
				return fc_err_set(e, EINVAL, "volumes[%zu]: unknown field '%s'", i,
						  key);
		}
		if (json_int(o, "port", 1024, 65535, &port, e) != 0)
			return fc_err_set(e, EINVAL, "volumes[%zu].port: want 1024..65535", i);
		if (!guest || !path_ok(guest))
			return fc_err_set(e, EINVAL, "volumes[%zu].guest: want an absolute path", i);
		if (!host || !path_ok(host))
			return fc_err_set(e, EINVAL, "volumes[%zu].host: want an absolute path", i);
		if (!json_is_boolean(json_object_get(o, "read_only")))
			return fc_err_set(e, EINVAL, "volumes[%zu].read_only: want true or false", i);
		for (j = 0; j < i; j++) {
			json_t *p = json_array_get(v, j);

			if (json_integer_value(json_object_get(p, "port")) == port)
				return fc_err_set(e, EINVAL, "volumes[%zu].port %lld is used twice",
						  i, port);
			if (!strcmp(json_str(p, "guest"), guest))
				return fc_err_set(e, EINVAL, "volumes[%zu].guest '%s' is used twice",
						  i, guest);
		}
	}
	return 0;
}

json_t *volspec_load(const char *path, struct fc_err *e)
{
	json_t *v = json_load_path(path, 65536, e);

	if (v && volspec_check(v, e) < 0) {
		json_decref(v);
		v = NULL;
	}
	if (!v)
		fc_err_wrap(e, "'%s'", path);
	return v;
}
