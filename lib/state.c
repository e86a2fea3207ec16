/* state.c - see state.h */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "paths.h"
#include "proc.h"
#include "state.h"
#include "util.h"

char *state_new_id(void)
{
	unsigned char r[6];
	size_t got = 0;

	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);

		if (n > 0)
			got += n;
		else if (errno != EINTR)
			abort();	/* getrandom cannot fail on a supported kernel */
	}
	return xasprintf("vm-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
}

int state_lock(struct fc_err *e)
{
	_cleanup_free_ char *path = fc_path("locks/state.lock");
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		return fc_err_set(e, errno, "open lock '%s'", path);
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return fc_err_set(e, errno, "lock '%s'", path);
	return steal_fd(&fd);
}

json_t *state_new(const char *id, const char *name, const char *type, const char *status)
{
	uint64_t start = 0;
	char created[32];
	time_t now = time(NULL);
	struct tm tm;

	proc_start_time(getpid(), &start, NULL);
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "version", STATE_VERSION,
			 "id", id, "name", name, "process_type", type, "pid", (json_int_t)getpid(),
			 "pid_start", (json_int_t)start, "created", created, "status", status);
}

bool state_live(json_t *rec)
{
	json_int_t pid = json_integer_value(json_object_get(rec, "pid"));
	json_int_t start = json_integer_value(json_object_get(rec, "pid_start"));

	return pid > 0 && start > 0 && proc_alive(pid, start);
}

json_t *state_load(const char *id, struct fc_err *e)
{
	_cleanup_free_ char *path = NULL;
	json_t *rec;

	if (!fc_valid_name(id)) {
		fc_err_set(e, EINVAL, "invalid VM id '%s'", id);
		return NULL;
	}
	path = fc_path("state/%s.json", id);
	rec = json_load_path(path, STATE_MAX_SIZE, e);
	if (rec && (!json_is_object(rec) || !json_str(rec, "id") || strcmp(json_str(rec, "id"), id))) {
		json_decref(rec);
		fc_err_set(e, EINVAL, "state record '%s' is malformed", path);
		return NULL;
	}
	return rec;
}

int state_foreach(int (*fn)(json_t *rec, void *arg), void *arg, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("state");
	struct dirent **names = NULL;
	int n, i, r = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		if (errno == ENOENT)
			return 0;
		return fc_err_set(e, errno, "read '%s'", dir);
	}
	for (i = 0; i < n; i++) {
		char *dot = strrchr(names[i]->d_name, '.');
		json_t *rec;
		struct fc_err ignored;

		if (r == 0 && dot && !strcmp(dot, ".json")) {
			*dot = '\0';
			/* A record half-removed by a dying owner is simply skipped. */
			rec = state_load(names[i]->d_name, &ignored);
			if (rec) {
				r = fn(rec, arg);
				json_decref(rec);
			}
		}
		free(names[i]);
	}
	free(names);
	return r;
}

struct find_ctx {
	const char *key;
	json_t *found;
};

static int find_cb(json_t *rec, void *arg)
{
	struct find_ctx *c = arg;
	const char *name = json_str(rec, "name"), *id = json_str(rec, "id");

	if (((name && !strcmp(name, c->key)) || (id && !strcmp(id, c->key))) && state_live(rec)) {
		c->found = json_incref(rec);
		return 1;
	}
	return 0;
}

json_t *state_find(const char *key, struct fc_err *e)
{
	struct find_ctx c = { key, NULL };

	if (state_foreach(find_cb, &c, e) < 0)
		return NULL;
	if (!c.found)
		fc_err_set(e, ENOENT, "no running VM named '%s'", key);
	return c.found;
}

int state_save(json_t *rec, struct fc_err *e)
{
	const char *id = json_str(rec, "id");
	_cleanup_free_ char *path = NULL, *pidpath = NULL, *tmp = NULL;
	_cleanup_close_ int fd = -1;
	char buf[32];
	int n;

	if (!id || !fc_valid_name(id))
		return fc_err_set(e, EINVAL, "state record without a valid id");
	path = fc_path("state/%s.json", id);
	if (json_write_atomic(path, rec, e) < 0)
		return -1;
	pidpath = fc_path("state/%s.pid", id);
	tmp = xasprintf("%s.tmp", pidpath);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", tmp);
	n = snprintf(buf, sizeof(buf), "%lld\n",
		     (long long)json_integer_value(json_object_get(rec, "pid")));
	if (write_full(fd, buf, n) < 0 || rename(tmp, pidpath) < 0) {
		unlink(tmp);
		return fc_err_set(e, errno, "write '%s'", pidpath);
	}
	return 0;
}

void state_remove(const char *id)
{
	_cleanup_free_ char *path = NULL, *pidpath = NULL;

	if (!fc_valid_name(id))
		return;
	path = fc_path("state/%s.json", id);
	pidpath = fc_path("state/%s.pid", id);
	unlink(path);
	unlink(pidpath);
}
