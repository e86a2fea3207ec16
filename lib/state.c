/* state.c - see state.h */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "paths.h"
#include "proc.h"
#include "state.h"
#include "util.h"

/* The poll backstop of state_wait(): inotify and pidfds wake us sooner. */
#define WAIT_TICK_MS 250

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
	if (fc_root_check(e) < 0)
		return -1;
	return fs_lock_named("state", 0, e);
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

/* ---- schema ------------------------------------------------------------ */

bool state_valid_type(const char *type)
{
	return type && (!strcmp(type, "vm") || !strcmp(type, "serve") || !strcmp(type, "clone"));
}

bool state_valid_status(const char *status)
{
	return status && (!strcmp(status, "starting") || !strcmp(status, "running") ||
			  !strcmp(status, "stopping"));
}

/* Where a status stands in its life: starting < running < stopping. */
static int status_rank(const char *status)
{
	if (!status)
		return -1;
	if (!strcmp(status, "starting"))
		return 0;
	if (!strcmp(status, "running"))
		return 1;
	if (!strcmp(status, "stopping"))
		return 2;
	return -1;
}

enum ftype {
	F_INT,		/* integer in [min, max] */
	F_BOOL,
	F_STR,		/* non-empty string */
	F_NAME,		/* fc_valid_name() string */
	F_PATH,		/* absolute path */
	F_TIME,		/* RFC 3339 UTC, "2026-12-01T21:35:00Z" */
	F_OBJ,		/* object, checked by @sub when set */
	F_ARR,		/* array, each element checked by @sub when set */
	F_ANY_OBJ,	/* free-form object (what another tool made, e.g. fc-net) */
	F_STR_ARR,	/* array of strings */
	F_ANY_ARR,	/* free-form array */
};

#define T_VM	 1u
#define T_SERVE	 2u
#define T_CLONE	 4u
#define T_ALL	 (T_VM | T_SERVE | T_CLONE)

struct field {
	const char *key;
	enum ftype type;
	unsigned types;		/* process types that may have it */
	unsigned always;	/* ... that must have it from the start */
	unsigned running;	/* ... that must have it once past "starting" */
	bool nullable;		/* JSON null allowed (= absent) */
	long long min, max;
	const struct field *sub; /* F_OBJ members / F_ARR element members */
};

#define PID_MAX_ ((1LL << 22))
#define TICKS_MAX (1LL << 62)

static const struct field drive_fields[] = {
	{ "path", F_PATH, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "read_only", F_BOOL, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, false, 0, 0, NULL },
};

static const struct field config_fields[] = {
	{ "cpus", F_INT, T_ALL, T_ALL, 0, false, 1, 256, NULL },
	{ "memory_mib", F_INT, T_ALL, T_ALL, 0, false, 1, 1LL << 24, NULL },
	{ "kernel", F_PATH, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "initrd", F_PATH, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "rootfs", F_PATH, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "drives", F_ARR, T_ALL, 0, 0, false, 0, 0, drive_fields },
	{ "tap", F_STR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "vmm", F_PATH, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "boot_args", F_STR, T_ALL, 0, 0, true, 0, 0, NULL },
	/* what the front end may record about the container (design.md) */
	{ "image", F_STR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "cmd", F_STR_ARR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "env", F_STR_ARR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "volumes", F_ANY_ARR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "ports", F_ANY_ARR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ "network_mode", F_STR, T_ALL, 0, 0, true, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, false, 0, 0, NULL },
};

static const struct field socket_fields[] = {
	{ "api", F_PATH, T_VM | T_CLONE, 0, T_VM | T_CLONE, false, 0, 0, NULL },
	{ "vsock", F_PATH, T_VM | T_CLONE, 0, 0, true, 0, 0, NULL },
	{ "uffd", F_PATH, T_SERVE, 0, 0, true, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, false, 0, 0, NULL },
};

static const struct field record_fields[] = {
	{ "version", F_INT, T_ALL, T_ALL, 0, false, STATE_VERSION, STATE_VERSION, NULL },
	{ "id", F_NAME, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "name", F_NAME, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "process_type", F_STR, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "pid", F_INT, T_ALL, T_ALL, 0, false, 1, PID_MAX_, NULL },
	{ "pid_start", F_INT, T_ALL, T_ALL, 0, false, 0, TICKS_MAX, NULL },
	{ "status", F_STR, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "created", F_TIME, T_ALL, T_ALL, 0, false, 0, 0, NULL },
	{ "vmm_pid", F_INT, T_VM | T_CLONE, 0, T_VM | T_CLONE, false, 1, PID_MAX_, NULL },
	{ "vmm_pid_start", F_INT, T_VM | T_CLONE, 0, T_VM | T_CLONE, false, 0, TICKS_MAX, NULL },
	{ "config", F_OBJ, T_VM | T_CLONE, 0, T_VM | T_CLONE, false, 0, 0, config_fields },
	{ "sockets", F_OBJ, T_ALL, 0, T_ALL, false, 0, 0, socket_fields },
	{ "console", F_PATH, T_VM | T_CLONE, 0, T_VM | T_CLONE, false, 0, 0, NULL },
	{ "disk_dir", F_PATH, T_VM | T_CLONE, 0, T_VM | T_CLONE, false, 0, 0, NULL },
	{ "network", F_ANY_OBJ, T_VM | T_CLONE, 0, 0, true, 0, 0, NULL },
	{ "disks", F_ANY_ARR, T_VM | T_CLONE, 0, 0, true, 0, 0, NULL },
	{ "snapshot", F_NAME, T_SERVE | T_CLONE, 0, T_SERVE | T_CLONE, false, 0, 0, NULL },
	{ "serve_pid", F_INT, T_CLONE, 0, 0, true, 1, PID_MAX_, NULL },
	{ "serve_pid_start", F_INT, T_CLONE, 0, 0, true, 0, TICKS_MAX, NULL },
	{ NULL, 0, 0, 0, 0, false, 0, 0, NULL },
};

static bool valid_time(const char *s)
{
	struct tm tm = { 0 };
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

	if (!end)
		return false;
	if (*end == '.') {
		end++;
		if (!strchr("0123456789", *end) || !*end)
			return false;
		end += strspn(end, "0123456789");
	}
	return !strcmp(end, "Z");
}

static bool is_text(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static int check_fields(json_t *obj, const struct field *fields, unsigned type, bool past_start,
			bool strict, const char *prefix, struct fc_err *e);

static int check_value(json_t *v, const struct field *f, unsigned type, bool past_start,
		       bool strict, const char *where, struct fc_err *e)
{
	const char *s = json_string_value(v);
	json_int_t n;
	size_t i;

	switch (f->type) {
	case F_INT:
		if (!json_is_integer(v))
			return fc_err_say(e, EINVAL, "field '%s': must be an integer", where);
		n = json_integer_value(v);
		if (n < f->min || n > f->max)
			return fc_err_say(e, EINVAL, "field '%s' is %lld: must be from %lld to %lld",
					  where, (long long)n, f->min, f->max);
		return 0;
	case F_BOOL:
		if (!json_is_boolean(v))
			return fc_err_say(e, EINVAL, "field '%s': must be true or false", where);
		return 0;
	case F_STR:
	case F_NAME:
	case F_PATH:
	case F_TIME:
		if (!s)
			return fc_err_say(e, EINVAL, "field '%s': must be a string", where);
		if (!*s || strlen(s) != json_string_length(v) || strlen(s) > 4096 || !is_text(s))
			return fc_err_say(e, EINVAL,
					  "field '%s': must be a non-empty line of text (at most 4096 bytes)",
					  where);
		if (f->type == F_NAME && !fc_valid_name(s))
			return fc_err_say(e, EINVAL,
					  "field '%s': '%s' is not a valid name (1-63 of [A-Za-z0-9_.-], "
					  "not starting with '.' or '-')", where, s);
		if (f->type == F_PATH && s[0] != '/')
			return fc_err_say(e, EINVAL, "field '%s': '%s' is not an absolute path", where, s);
		if (f->type == F_TIME && !valid_time(s))
			return fc_err_say(e, EINVAL,
					  "field '%s': '%s' is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
					  where, s);
		return 0;
	case F_OBJ:
		if (!json_is_object(v))
			return fc_err_say(e, EINVAL, "field '%s': must be an object", where);
		return f->sub ? check_fields(v, f->sub, type, past_start, strict, where, e) : 0;
	case F_ANY_OBJ:
		if (!json_is_object(v))
			return fc_err_say(e, EINVAL, "field '%s': must be an object", where);
		return 0;
	case F_ARR:
	case F_STR_ARR:
	case F_ANY_ARR:
		if (!json_is_array(v))
			return fc_err_say(e, EINVAL, "field '%s': must be an array", where);
		for (i = 0; i < json_array_size(v); i++) {
			json_t *el = json_array_get(v, i);
			char at[300];

			snprintf(at, sizeof(at), "%s[%zu]", where, i);
			if (f->type == F_STR_ARR && !json_is_string(el))
				return fc_err_say(e, EINVAL, "field '%s': must be a string", at);
			if (f->type == F_ARR && !json_is_object(el))
				return fc_err_say(e, EINVAL, "field '%s': must be an object", at);
			if (f->type == F_ARR && f->sub &&
			    check_fields(el, f->sub, type, past_start, strict, at, e) < 0)
				return -1;
		}
		return 0;
	}
	return fc_err_say(e, EINVAL, "field '%s': unknown type", where);
}

static int check_fields(json_t *obj, const struct field *fields, unsigned type, bool past_start,
			bool strict, const char *prefix, struct fc_err *e)
{
	const struct field *f;
	const char *key;
	json_t *v;

	for (f = fields; f->key; f++) {
		char where[256];
		bool needed = (f->always & type) || (past_start && (f->running & type));

		snprintf(where, sizeof(where), "%s%s%s", prefix, *prefix ? "." : "", f->key);
		v = json_object_get(obj, f->key);
		if (!v || (json_is_null(v) && f->nullable)) {
			if (needed)
				return fc_err_say(e, EINVAL, "field '%s' is missing", where);
			continue;
		}
		if (!(f->types & type))
			return fc_err_say(e, EINVAL, "field '%s' does not belong in a record of this type",
					  where);
		if (check_value(v, f, type, past_start, strict, where, e) < 0)
			return -1;
	}
	if (!strict)
		return 0;
	json_object_foreach(obj, key, v) {
		for (f = fields; f->key && strcmp(f->key, key); f++)
			;
		if (!f->key)
			return fc_err_say(e, EINVAL, "field '%s%s%s' is not in the schema (version %d)",
					  prefix, *prefix ? "." : "", key, STATE_VERSION);
	}
	return 0;
}

int state_validate(json_t *rec, bool strict, struct fc_err *e)
{
	const char *type, *status;
	unsigned t;
	json_t *v;

	if (!json_is_object(rec))
		return fc_err_say(e, EINVAL, "not a JSON object");
	/* The version first: a newer schema is not ours to judge field by field. */
	v = json_object_get(rec, "version");
	if (!json_is_integer(v))
		return fc_err_say(e, EINVAL, "field 'version' is missing or not an integer");
	if (json_integer_value(v) != STATE_VERSION)
		return fc_err_say(e, EINVAL, "version %lld: this fcvm reads version %d",
				  (long long)json_integer_value(v), STATE_VERSION);
	type = json_str(rec, "process_type");
	if (!state_valid_type(type))
		return fc_err_say(e, EINVAL, "field 'process_type': must be \"vm\", \"serve\" or \"clone\"");
	status = json_str(rec, "status");
	if (!state_valid_status(status))
		return fc_err_say(e, EINVAL,
				  "field 'status': must be \"starting\", \"running\" or \"stopping\"");
	t = !strcmp(type, "vm") ? T_VM : !strcmp(type, "serve") ? T_SERVE : T_CLONE;
	return check_fields(rec, record_fields, t, status_rank(status) > 0, strict, "", e);
}

/* ---- liveness ---------------------------------------------------------- */

bool state_pid_live(pid_t pid, uint64_t start)
{
	char path[64], buf[1024], *p;
	uint64_t st;
	ssize_t n;
	int fd;

	if (pid <= 0 || proc_start_time(pid, &st, NULL) < 0 || (start && st != start))
		return false;
	/* A zombie has ended: its parent just has not reaped it yet. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X' && p[2] != 'x';
}

bool state_live(json_t *rec)
{
	json_int_t pid = json_integer_value(json_object_get(rec, "pid"));
	json_int_t start = json_integer_value(json_object_get(rec, "pid_start"));

	/* pid_start 0 would match any process: such a record is never live */
	return pid > 0 && start > 0 && state_pid_live(pid, start);
}

/* ---- reading ----------------------------------------------------------- */

/* Read state/<id>.json: a regular file (no symlink) of bounded size. */
static json_t *load_file(const char *id, struct fc_err *e)
{
	_cleanup_free_ char *path = fc_path("state/%s.json", id);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	ssize_t n;
	json_t *rec;

	if (fd < 0) {
		if (errno == ELOOP)
			fc_err_say(e, EINVAL, "state record '%s' is a symbolic link", path);
		else
			fc_err_set(e, errno, "open '%s'", path);
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		fc_err_set(e, errno, "stat '%s'", path);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		fc_err_say(e, EINVAL, "state record '%s' is not a regular file", path);
		return NULL;
	}
	if (st.st_size > STATE_MAX_SIZE) {
		fc_err_say(e, EINVAL, "state record '%s' is larger than %d bytes", path, STATE_MAX_SIZE);
		return NULL;
	}
	buf = xmalloc(st.st_size + 1);
	n = read_full(fd, buf, st.st_size + 1);
	if (n < 0) {
		fc_err_set(e, errno, "read '%s'", path);
		return NULL;
	}
	if (n > st.st_size) {	/* grew while we read: not written by lib/state */
		fc_err_say(e, EINVAL, "state record '%s' changed while read", path);
		return NULL;
	}
	rec = json_parse(buf, n, e);
	if (!rec) {
		fc_err_wrap(e, "state record '%s'", path);
		e->errnum = EINVAL;
		return NULL;
	}
	return rec;
}

json_t *state_load(const char *id, struct fc_err *e)
{
	_cleanup_json_ json_t *rec = NULL;
	const char *rid;

	if (!fc_valid_name(id)) {
		fc_err_say(e, EINVAL, "invalid VM id '%s'", id);
		return NULL;
	}
	rec = load_file(id, e);
	if (!rec)
		return NULL;
	if (state_validate(rec, false, e) < 0) {
		fc_err_wrap(e, "state record 'state/%s.json' is malformed", id);
		e->errnum = EINVAL;
		return NULL;
	}
	rid = json_str(rec, "id");
	if (strcmp(rid, id)) {
		fc_err_say(e, EINVAL, "state record 'state/%s.json' is foreign: its id is '%s'", id, rid);
		return NULL;
	}
	return steal_ptr(&rec);
}

int state_scan(int (*fn)(json_t *rec, void *arg), state_bad_fn bad, void *arg,
	       struct fc_err *e)
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
		char *name = names[i]->d_name;
		size_t len = strlen(name);
		json_t *rec;
		struct fc_err why;

		if (r == 0 && name[0] != '.' && len > 5 && !strcmp(name + len - 5, ".json")) {
			name[len - 5] = '\0';
			rec = state_load(name, &why);
			if (rec) {
				r = fn ? fn(rec, arg) : 0;
				json_decref(rec);
			} else if (why.errnum != ENOENT && bad) {
				/* ENOENT: removed by its owner while we looked */
				bad(name, &why, arg);
			}
		}
		free(names[i]);
	}
	free(names);
	return r;
}

int state_foreach(int (*fn)(json_t *rec, void *arg), void *arg, struct fc_err *e)
{
	return state_scan(fn, NULL, arg, e);
}

struct find_ctx {
	const char *key;
	json_t *found;
};

static bool rec_matches(json_t *rec, const char *key)
{
	const char *name = json_str(rec, "name"), *id = json_str(rec, "id");

	return (name && !strcmp(name, key)) || (id && !strcmp(id, key));
}

static int find_cb(json_t *rec, void *arg)
{
	struct find_ctx *c = arg;

	if (rec_matches(rec, c->key) && state_live(rec)) {
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
		fc_err_say(e, ENOENT, "no running VM named '%s'", key);
	return c.found;
}

struct pid_ctx {
	pid_t pid;
	json_t *found;
};

static int pid_cb(json_t *rec, void *arg)
{
	struct pid_ctx *c = arg;

	if (json_integer_value(json_object_get(rec, "pid")) == c->pid && state_live(rec)) {
		c->found = json_incref(rec);
		return 1;
	}
	return 0;
}

json_t *state_find_pid(pid_t pid, struct fc_err *e)
{
	struct pid_ctx c = { pid, NULL };

	if (state_foreach(pid_cb, &c, e) < 0)
		return NULL;
	if (!c.found)
		fc_err_say(e, ENOENT, "no running fcvm process has pid %d", (int)pid);
	return c.found;
}

/* ---- writing ----------------------------------------------------------- */

/* fc_root_check() once per process and root: state_save runs on every
 * status change. */
static int root_checked(struct fc_err *e)
{
	static char *checked;

	if (checked && !strcmp(checked, fc_root()))
		return 0;
	if (fc_root_check(e) < 0)
		return -1;
	free(checked);
	checked = xstrdup(fc_root());
	return 0;
}

static int write_or_full(const char *path, const void *buf, size_t len, struct fc_err *e)
{
	if (fs_write_atomic(path, buf, len, 0644, e) < 0)
		return fc_errno_full(e->errnum) ? fc_err_enospc(e, path) : -1;
	return 0;
}

int state_save(json_t *rec, struct fc_err *e)
{
	const char *id = json_str(rec, "id");
	_cleanup_free_ char *path = NULL, *pidpath = NULL, *text = NULL, *line = NULL;
	json_int_t pid;
	char buf[32];
	int n;

	if (state_validate(rec, true, e) < 0)
		return fc_err_wrap(e, "refusing to save state record '%s'",
				   id && fc_valid_name(id) ? id : "(no valid id)");
	pid = json_integer_value(json_object_get(rec, "pid"));
	if (pid != getpid())
		return fc_err_say(e, EPERM,
				  "refusing to save state record '%s': its pid %lld is not the writer's "
				  "(%d): only the owner writes its record", id, (long long)pid,
				  (int)getpid());
	if (root_checked(e) < 0)
		return -1;
	path = fc_path("state/%s.json", id);
	text = json_dumps(rec, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		return fc_err_set(e, ENOMEM, "serialise '%s'", path);
	line = xasprintf("%s\n", text);
	if (strlen(line) > STATE_MAX_SIZE)
		return fc_err_say(e, EINVAL, "state record '%s' is larger than %d bytes", id,
				  STATE_MAX_SIZE);
	if (write_or_full(path, line, strlen(line), e) < 0)
		return -1;
	pidpath = fc_path("state/%s.pid", id);
	n = snprintf(buf, sizeof(buf), "%lld\n", (long long)pid);
	return write_or_full(pidpath, buf, n, e);
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

/* ---- waiting ----------------------------------------------------------- */

static int pidfd_for(pid_t pid)
{
#ifdef SYS_pidfd_open
	if (pid > 0)
		return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
#endif
	return -1;
}

struct wait_ctx {
	const char *key;
	pid_t owner_pid;
	json_t *live;		/* the live record for key, if any */
	json_t *dead;		/* a dead record that is surely this VM's */
};

static int wait_cb(json_t *rec, void *arg)
{
	struct wait_ctx *c = arg;
	const char *id = json_str(rec, "id");

	if (!rec_matches(rec, c->key))
		return 0;
	if (state_live(rec)) {
		c->live = json_incref(rec);
		return 1;
	}
	/* A name may be reused, so a dead record by name alone may be an
	 * older VM's; by id, or written by the owner we watch, it is ours. */
	if (!c->dead && (!strcmp(id, c->key) ||
			 (c->owner_pid > 0 &&
			  json_integer_value(json_object_get(rec, "pid")) == c->owner_pid)))
		c->dead = json_incref(rec);
	return 0;
}

int state_wait(const char *key, const char *status, int timeout_ms, pid_t owner_pid,
	       uint64_t owner_start, json_t **out, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("state");
	_cleanup_free_ char *seen_id = NULL, *last_status = NULL;
	_cleanup_close_ int ino = -1, owner_fd = -1, rec_fd = -1;
	uint64_t deadline = now_ms() + (timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
	pid_t rec_pid = 0;
	int want = status_rank(status);

	if (out)
		*out = NULL;
	if (want < 0)
		return fc_err_say(e, EINVAL, "invalid status '%s': must be starting, running or stopping",
				  status);
	if (!fc_valid_name(key))
		return fc_err_say(e, EINVAL, "invalid VM name '%s'", key);
	ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ino < 0)
		return fc_err_set(e, errno, "inotify");
	if (inotify_add_watch(ino, dir, IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
					    IN_CLOSE_WRITE | IN_DELETE_SELF) < 0)
		return fc_err_set(e, errno, "watch '%s'", dir);
	if (owner_pid > 0)
		owner_fd = pidfd_for(owner_pid);	/* -1 is fine: the poll tick covers it */

	for (;;) {
		struct wait_ctx c = { key, owner_pid, NULL, NULL };
		_cleanup_json_ json_t *rec = NULL, *dead = NULL;
		struct pollfd pfd[3];
		uint64_t now;
		int nfd = 0, tick;
		char drain[4096];

		/* Watch first, then look: no change can fall in between. */
		if (state_foreach(wait_cb, &c, e) < 0)
			return -1;
		rec = c.live;
		dead = c.dead;
		if (!rec && dead)
			return fc_err_say(e, ESRCH, "the owner of VM '%s' (pid %lld) is dead; it was '%s'", key,
					  (long long)json_integer_value(json_object_get(dead, "pid")),
					  json_str(dead, "status"));
		if (rec) {
			const char *st = json_str(rec, "status");
			pid_t p = (pid_t)json_integer_value(json_object_get(rec, "pid"));

			if (!strcmp(st, status)) {
				if (out)
					*out = steal_ptr(&rec);
				return 0;
			}
			if (status_rank(st) > want)
				return fc_err_say(e, EINVAL, "VM '%s' is already '%s': it will not become '%s'",
						  key, st, status);
			if (!seen_id || strcmp(seen_id, json_str(rec, "id"))) {
				free(seen_id);
				seen_id = xstrdup(json_str(rec, "id"));
			}
			free(last_status);
			last_status = xstrdup(st);
			if (p != rec_pid) {
				if (rec_fd >= 0)
					close(rec_fd);
				rec_pid = p;
				rec_fd = pidfd_for(p);
			}
		}
		if (owner_pid > 0 && !state_pid_live(owner_pid, owner_start)) {
			if (seen_id)
				return fc_err_say(e, ESRCH, "the owner of VM '%s' (pid %d) exited while it was '%s'",
						  key, (int)owner_pid, last_status);
			return fc_err_say(e, ESRCH, "the owner of VM '%s' (pid %d) exited before it made a record",
					  key, (int)owner_pid);
		}
		if (!rec && seen_id) {
			/* The record we saw is gone, or its owner died. */
			struct fc_err why;
			_cleanup_json_ json_t *old = state_load(seen_id, &why);

			if (old)
				return fc_err_say(e, ESRCH, "the owner of VM '%s' (pid %lld) died while it was '%s'",
						  key, (long long)json_integer_value(json_object_get(old, "pid")),
						  last_status);
			if (why.errnum != ENOENT)
				return fc_err_say(e, EINVAL, "VM '%s': its record became unreadable while it was '%s': %s",
						  key, last_status, why.msg);
			return fc_err_say(e, ENOENT, "VM '%s' stopped while it was '%s' (its record was removed)",
					  key, last_status);
		}
		now = now_ms();
		if (now >= deadline) {
			if (seen_id)
				return fc_err_say(e, ETIMEDOUT,
						  "VM '%s' did not become '%s' within %d s (it is '%s')", key,
						  status, timeout_ms / 1000, last_status);
			return fc_err_say(e, ETIMEDOUT, "no VM named '%s' appeared within %d s", key,
					  timeout_ms / 1000);
		}
		pfd[nfd++] = (struct pollfd){ .fd = ino, .events = POLLIN };
		if (owner_fd >= 0)
			pfd[nfd++] = (struct pollfd){ .fd = owner_fd, .events = POLLIN };
		if (rec_fd >= 0)
			pfd[nfd++] = (struct pollfd){ .fd = rec_fd, .events = POLLIN };
		tick = deadline - now < WAIT_TICK_MS ? (int)(deadline - now) : WAIT_TICK_MS;
		if (poll(pfd, nfd, tick) < 0 && errno != EINTR)
			return fc_err_set(e, errno, "poll");
		while (read(ino, drain, sizeof(drain)) > 0)
			;
	}
}
