/* record.c - fc-net's own record of what it made, net/<id>.json: see net.h
 *
 * The record is written BEFORE anything is made (status "creating"), so
 * a crash in the middle leaves something gc can find, and rewritten with
 * status "up" once everything exists. down and gc remove what the record
 * names and treat what is already gone as removed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "net.h"
#include "paths.h"
#include "proc.h"
#include "state.h"
#include "util.h"

int net_lock(struct fc_err *e)
{
	int fd;

	/* Every writer refuses a data root 'fc-setup storage' did not prepare. */
	if (fc_root_check(e) < 0)
		return -1;
	fd = fs_lock_named("net", 0, e);

	if (fd < 0)
		fc_err_wrap(e, "lock the address pool");
	return fd;
}

/* "fc" and 8 lower-case hex digits (net_derive). */
bool net_valid_tap(const char *t)
{
	size_t i;

	if (strlen(t) != 10 || strncmp(t, "fc", 2))
		return false;
	for (i = 2; i < 10; i++)
		if (!strchr("0123456789abcdef", t[i]))
			return false;
	return true;
}

static int record_check(json_t *rec, const char *id, struct fc_err *e)
{
	const char *mode, *tap, *table;
	long long v = 0;

	if (!json_is_object(rec))
		return fc_err_set(e, EINVAL, "not an object");
	if (json_int(rec, "version", 1, 1, &v, e) != 0)
		return fc_err_set(e, EINVAL, "unknown version");
	if (!json_str(rec, "id") || (id && strcmp(json_str(rec, "id"), id)))
		return fc_err_set(e, EINVAL, "'id' does not match the file name");
	mode = json_str(rec, "mode");
	if (!mode || (strcmp(mode, "bridged") && strcmp(mode, "rootless") && strcmp(mode, "clone")))
		return fc_err_set(e, EINVAL, "'mode' must be bridged, rootless or clone");
	/* down and gc act on these names: only names fc-net makes pass. */
	tap = json_str(rec, "tap");
	table = json_str(rec, "table");
	if (!strcmp(mode, "bridged")) {
		if (tap && !net_valid_tap(tap))
			return fc_err_set(e, EINVAL, "'tap' is not a name fc-net makes");
		if (table && (!tap || strncmp(table, "fcvm-", 5) || strcmp(table + 5, tap)))
			return fc_err_set(e, EINVAL, "'table' is not fcvm-<tap>");
	}
	/* A clone's TAP is inside its namespace; on the host there are its
	 * veth and its table. */
	if (!strcmp(mode, "clone")) {
		const char *veth = json_str(rec, "veth");

		if (tap && !net_valid_tap(tap))
			return fc_err_set(e, EINVAL, "'tap' is not a name fc-net makes");
		if (veth && !net_valid_tap(veth))
			return fc_err_set(e, EINVAL, "'veth' is not a name fc-net makes");
		if (table && (!veth || strncmp(table, "fcvm-", 5) || strcmp(table + 5, veth)))
			return fc_err_set(e, EINVAL, "'table' is not fcvm-<veth>");
	}
	return 0;
}

json_t *net_record_load(const char *id, struct fc_err *e)
{
	_cleanup_free_ char *path = NULL;
	json_t *rec;

	if (!fc_valid_name(id))
		return fc_err_set(e, EINVAL, "invalid id '%s'", id), NULL;
	path = fc_path("net/%s.json", id);
	rec = json_load_path(path, NET_RECORD_MAX, e);
	if (!rec)
		return NULL;
	if (record_check(rec, id, e) < 0) {
		json_decref(rec);
		fc_err_wrap(e, "record '%s'", path);
		return NULL;
	}
	return rec;
}

int net_record_save(json_t *rec, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("net");
	_cleanup_free_ char *path = NULL;

	if (mkdir_p(dir, 0755, e) < 0)
		return -1;
	path = fc_path("net/%s.json", json_str(rec, "id"));
	if (json_write_atomic(path, rec, e) < 0)
		return fc_err_wrap(e, "write record '%s'", path);
	return 0;
}

void net_record_remove(const char *id)
{
	_cleanup_free_ char *path = fc_path("net/%s.json", id);

	unlink(path);
}

static int cmp_json_id(const void *a, const void *b)
{
	return strcmp(json_str(*(json_t *const *)a, "id"), json_str(*(json_t *const *)b, "id"));
}

json_t *net_records(struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("net");
	json_t *arr = json_array(), **v = NULL;
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;

	(void)e;
	d = opendir(dir);
	if (!d)
		return arr;	/* no directory: no records */
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char id[256];
		struct fc_err e2;
		json_t *rec;

		if (len <= 5 || len >= sizeof(id) || strcmp(de->d_name + len - 5, ".json") ||
		    de->d_name[0] == '.')
			continue;
		memcpy(id, de->d_name, len - 5);
		id[len - 5] = '\0';
		if (!fc_valid_name(id))
			continue;
		rec = net_record_load(id, &e2);
		if (!rec)
			continue;
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = rec;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_json_id);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
	return arr;
}

bool net_record_live(json_t *rec)
{
	long long pid = 0, start = 0;
	struct fc_err e;
	json_t *st;
	bool live;

	if (json_int(rec, "owner_pid", 1, 1LL << 31, &pid, &e) == 0 &&
	    json_int(rec, "owner_start", 0, 1LL << 62, &start, &e) == 0 &&
	    state_pid_live((pid_t)pid, (uint64_t)start))
		return true;
	st = state_load(json_str(rec, "id"), &e);
	if (!st)
		return false;
	live = state_live(st);
	json_decref(st);
	return live;
}
