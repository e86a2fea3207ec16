/* snapshot.c - snapshot directories and their manifests (see snapshot.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "paths.h"
#include "proc.h"
#include "sha256.h"
#include "snapshot.h"
#include "util.h"

bool snapshot_valid_tag(const char *tag)
{
	return tag && fc_valid_name(tag);
}

char *snapshot_dir(const char *tag)
{
	return fc_path("snapshots/%s", tag);
}

int snapshot_begin(const char *tag, char **tmp, struct fc_err *e)
{
	_cleanup_free_ char *dir = NULL, *top = NULL;
	struct stat st;
	char *t;

	*tmp = NULL;
	if (!snapshot_valid_tag(tag))
		return fc_err_set(e, EINVAL, "invalid tag '%s': use 1-63 letters, digits, "
				  "'_', '.', '-'", tag ? tag : "");
	if (fc_root_check(e) < 0)
		return -1;
	top = fc_path("snapshots");
	if (mkdir(top, 0755) < 0 && errno != EEXIST)
		return fc_err_set(e, errno, "create '%s'", top);
	dir = snapshot_dir(tag);
	if (lstat(dir, &st) == 0)
		return fc_err_set(e, EEXIST, "snapshot '%s' already exists (%s): remove it "
				  "with 'fc-snap rm %s' or choose another tag", tag, dir, tag);
	t = fc_path("snapshots/.tmp-%s-%d", tag, (int)getpid());
	if (mkdir(t, 0700) < 0) {
		fc_err_set(e, errno, "create '%s'", t);
		free(t);
		return -1;
	}
	*tmp = t;
	return 0;
}

void snapshot_abort(const char *tmp)
{
	struct fc_err ignored;

	if (tmp)
		fc_rm_tree(tmp, &ignored);
}

static int file_entry(const char *dir, const char *name, bool hash, json_t **out,
		      struct fc_err *e)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	char hex[SHA256_HEX_LEN + 1];
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "snapshot file '%s'", path);
	if (!S_ISREG(st.st_mode))
		return fc_err_set(e, EINVAL, "snapshot file '%s' is not a regular file", path);
	if (fsync(fd) < 0)
		return fc_err_set(e, errno, "fsync '%s'", path);
	*out = json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)st.st_size);
	if (hash) {
		if (sha256_fd(fd, 0, (uint64_t)st.st_size, hex, e) < 0) {
			json_decref(*out);
			*out = NULL;
			return fc_err_wrap(e, "hash '%s'", path);
		}
		json_object_set_new(*out, "sha256", json_string(hex));
	}
	return 0;
}

int snapshot_finish(const char *tag, const char *tmp, json_t *m, struct fc_err *e)
{
	_cleanup_json_ json_t *man = json_deep_copy(m);
	_cleanup_free_ char *mpath = xasprintf("%s/" SNAPSHOT_MANIFEST, tmp);
	_cleanup_free_ char *final = snapshot_dir(tag);
	json_t *vs = NULL, *mem = NULL, *disk = NULL;
	char created[64];
	struct tm tm;
	time_t now = time(NULL);

	if (file_entry(tmp, SNAPSHOT_VMSTATE, true, &vs, e) < 0 ||
	    file_entry(tmp, SNAPSHOT_MEMORY, false, &mem, e) < 0 ||
	    file_entry(tmp, SNAPSHOT_DISK, false, &disk, e) < 0) {
		json_decref(vs);
		json_decref(mem);
		return -1;
	}
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(man, "version", json_integer(SNAPSHOT_VERSION));
	json_object_set_new(man, "tag", json_string(tag));
	json_object_set_new(man, "created", json_string(created));
	json_object_set_new(man, "files", json_pack("{s:o, s:o, s:o}", "vmstate", vs, "memory",
						    mem, "disk", disk));
	if (snapshot_check_manifest(man, tag, e) < 0)
		return fc_err_wrap(e, "the new manifest");
	if (json_write_atomic(mpath, man, e) < 0)
		return -1;
	if (fs_publish(tmp, final, false, e) < 0) {
		if (e->errnum == EEXIST)
			return fc_err_set(e, EEXIST, "snapshot '%s' already exists (%s)", tag,
					  final);
		return -1;
	}
	return 0;
}

/* ---- validation ----------------------------------------------------------- */

static int only_keys(json_t *o, const char *what, const char *const *keys, struct fc_err *e)
{
	const char *k;
	json_t *v;

	if (!json_is_object(o))
		return fc_err_set(e, EINVAL, "manifest: '%s' must be an object", what);
	json_object_foreach(o, k, v) {
		size_t i;

		for (i = 0; keys[i] && strcmp(keys[i], k); i++)
			;
		if (!keys[i])
			return fc_err_set(e, EINVAL, "manifest: unknown field '%s%s%s'", what,
					  *what ? "." : "", k);
	}
	return 0;
}

static int need_str(json_t *o, const char *what, const char *key, bool nullable,
		    struct fc_err *e)
{
	json_t *v = json_object_get(o, key);

	if (nullable && (!v || json_is_null(v)))
		return 0;
	if (!json_is_string(v) || !*json_string_value(v) || json_string_length(v) > 4096)
		return fc_err_set(e, EINVAL, "manifest: '%s%s%s' must be a non-empty string",
				  what, *what ? "." : "", key);
	return 0;
}

static int need_int(json_t *o, const char *what, const char *key, long long min,
		    long long max, long long *out, struct fc_err *e)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return fc_err_set(e, EINVAL, "manifest: '%s%s%s' must be an integer in "
				  "[%lld, %lld]", what, *what ? "." : "", key, min, max);
	if (out)
		*out = json_integer_value(v);
	return 0;
}

static int check_file(json_t *files, const char *key, const char *want, bool hashed,
		      struct fc_err *e)
{
	static const char *const fk[] = { "name", "size", "sha256", NULL };
	json_t *f = json_object_get(files, key);
	_cleanup_free_ char *what = xasprintf("files.%s", key);
	const char *name, *h;

	if (!f)
		return fc_err_set(e, EINVAL, "manifest: '%s' is missing", what);
	if (only_keys(f, what, fk, e) < 0 || need_str(f, what, "name", false, e) < 0 ||
	    need_int(f, what, "size", 0, INT64_MAX, NULL, e) < 0)
		return -1;
	name = json_str(f, "name");
	/* A plain name of this snapshot's file and nothing else: never a
	 * path that leads out of the directory. */
	if (strcmp(name, want))
		return fc_err_set(e, EINVAL, "manifest: '%s.name' is '%s': a snapshot's %s is "
				  "'%s' inside its directory, nothing else", what, name, key, want);
	h = json_str(f, "sha256");
	if (hashed && (!h || strlen(h) != SHA256_HEX_LEN ||
		       strspn(h, "0123456789abcdef") != SHA256_HEX_LEN))
		return fc_err_set(e, EINVAL, "manifest: '%s.sha256' must be 64 hex digits", what);
	if (!hashed && json_object_get(f, "sha256"))
		return fc_err_set(e, EINVAL, "manifest: unknown field '%s.sha256'", what);
	return 0;
}

int snapshot_check_manifest(json_t *m, const char *tag, struct fc_err *e)
{
	static const char *const top[] = { "version", "tag", "created", "source", "machine",
					   "vmm", "backends", "files", "network", "dir", NULL };
	static const char *const src[] = { "id", "name", "config", "network", NULL };
	static const char *const mach[] = { "cpus", "memory_mib", "vsock_cid", NULL };
	static const char *const vmm[] = { "program", "version", "qemu", NULL };
	static const char *const files[] = { "vmstate", "memory", "disk", NULL };
	json_t *s, *b, *f, *v;
	long long ver, mib;
	size_t i;

	if (only_keys(m, "", top, e) < 0 || need_int(m, "", "version", 0, INT32_MAX, &ver, e) < 0)
		return -1;
	if (ver != SNAPSHOT_VERSION)
		return fc_err_set(e, EINVAL, "manifest: version %lld, this fcvm reads %d", ver,
				  SNAPSHOT_VERSION);
	if (need_str(m, "", "tag", false, e) < 0 || need_str(m, "", "created", false, e) < 0)
		return -1;
	if (tag && strcmp(json_str(m, "tag"), tag))
		return fc_err_set(e, EINVAL, "manifest: tag '%s' in the directory of '%s'",
				  json_str(m, "tag"), tag);
	s = json_object_get(m, "source");
	if (only_keys(s, "source", src, e) < 0 || need_str(s, "source", "id", false, e) < 0 ||
	    need_str(s, "source", "name", false, e) < 0)
		return -1;
	if (!json_is_object(json_object_get(s, "config")))
		return fc_err_set(e, EINVAL, "manifest: 'source.config' must be an object");
	v = json_object_get(s, "network");
	if (v && !json_is_null(v) && !json_is_object(v))
		return fc_err_set(e, EINVAL, "manifest: 'source.network' must be an object or null");
	v = json_object_get(m, "network");
	if (v && !json_is_null(v) && !json_is_object(v))
		return fc_err_set(e, EINVAL, "manifest: 'network' must be an object or null");
	s = json_object_get(m, "machine");
	if (only_keys(s, "machine", mach, e) < 0 ||
	    need_int(s, "machine", "cpus", 1, 32, NULL, e) < 0 ||
	    need_int(s, "machine", "memory_mib", 16, 65536, &mib, e) < 0 ||
	    need_int(s, "machine", "vsock_cid", 3, UINT32_MAX, NULL, e) < 0)
		return -1;
	s = json_object_get(m, "vmm");
	if (only_keys(s, "vmm", vmm, e) < 0 || need_str(s, "vmm", "program", false, e) < 0 ||
	    need_str(s, "vmm", "version", true, e) < 0 ||
	    need_str(s, "vmm", "qemu", true, e) < 0)
		return -1;
	b = json_object_get(m, "backends");
	if (!json_is_array(b) || json_array_size(b) == 0 || json_array_size(b) > 4)
		return fc_err_set(e, EINVAL, "manifest: 'backends' must be a list of 1-4 names");
	json_array_foreach(b, i, v) {
		const char *n = json_string_value(v);

		if (!n || (strcmp(n, "File") && strcmp(n, "Uffd")))
			return fc_err_set(e, EINVAL, "manifest: 'backends' holds only \"File\" "
					  "and \"Uffd\"");
	}
	f = json_object_get(m, "files");
	if (only_keys(f, "files", files, e) < 0 ||
	    check_file(f, "vmstate", SNAPSHOT_VMSTATE, true, e) < 0 ||
	    check_file(f, "memory", SNAPSHOT_MEMORY, false, e) < 0 ||
	    check_file(f, "disk", SNAPSHOT_DISK, false, e) < 0)
		return -1;
	if (json_integer_value(json_object_get(json_object_get(f, "memory"), "size")) !=
	    (json_int_t)mib << 20)
		return fc_err_set(e, EINVAL, "manifest: the memory file's size is not "
				  "machine.memory_mib (%lld MiB)", mib);
	return 0;
}

/* Open @name in @dfd: a regular file of the recorded size (and hash). */
static int verify_file(int dfd, const char *dir, json_t *f, const char *key, struct fc_err *e)
{
	const char *name = json_str(f, "name"), *want = json_str(f, "sha256");
	json_int_t size = json_integer_value(json_object_get(f, "size"));
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	char hex[SHA256_HEX_LEN + 1];
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "snapshot %s '%s/%s'", key, dir, name);
	if (!S_ISREG(st.st_mode))
		return fc_err_set(e, EINVAL, "snapshot %s '%s/%s' is not a regular file", key, dir,
				  name);
	if (st.st_size != size)
		return fc_err_set(e, EINVAL, "snapshot %s '%s/%s' has %lld bytes, the manifest "
				  "says %lld: the snapshot is damaged", key, dir, name,
				  (long long)st.st_size, (long long)size);
	if (want) {
		if (sha256_fd(fd, 0, (uint64_t)size, hex, e) < 0)
			return fc_err_wrap(e, "hash '%s/%s'", dir, name);
		if (strcmp(hex, want))
			return fc_err_set(e, EINVAL, "snapshot %s '%s/%s': sha256 mismatch (the "
					  "file changed since the snapshot was made)", key, dir,
					  name);
	}
	json_object_set_new(f, "abs", json_sprintf("%s/%s", dir, name));
	return 0;
}

json_t *snapshot_open(const char *tag, struct fc_err *e)
{
	_cleanup_free_ char *dir = NULL, *mpath = NULL;
	_cleanup_close_ int dfd = -1, mfd = -1;
	_cleanup_free_ char *buf = NULL;
	_cleanup_json_ json_t *m = NULL;
	json_t *files;
	struct stat st;
	ssize_t n;

	if (!snapshot_valid_tag(tag)) {
		fc_err_set(e, EINVAL, "invalid tag '%s'", tag ? tag : "");
		return NULL;
	}
	dir = snapshot_dir(tag);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		if (errno == ENOENT)
			fc_err_set(e, ENOENT, "no snapshot '%s' (%s)", tag, dir);
		else
			fc_err_set(e, errno, "snapshot '%s'", dir);
		return NULL;
	}
	mfd = openat(dfd, SNAPSHOT_MANIFEST, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (mfd < 0 || fstat(mfd, &st) < 0) {
		fc_err_set(e, errno, "snapshot '%s': manifest", dir);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > SNAPSHOT_MANIFEST_MAX) {
		fc_err_set(e, EINVAL, "snapshot '%s': the manifest is not a regular file of at "
			   "most %d bytes", dir, SNAPSHOT_MANIFEST_MAX);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read_full(mfd, buf, (size_t)st.st_size);
	if (n != st.st_size) {
		fc_err_set(e, n < 0 ? errno : EIO, "snapshot '%s': read the manifest", dir);
		return NULL;
	}
	m = json_parse(buf, (size_t)n, e);
	if (!m || snapshot_check_manifest(m, tag, e) < 0) {
		fc_err_wrap(e, "snapshot '%s'", tag);
		return NULL;
	}
	if (json_object_get(m, "dir")) {
		fc_err_set(e, EINVAL, "snapshot '%s': manifest: unknown field 'dir'", tag);
		return NULL;
	}
	files = json_object_get(m, "files");
	if (verify_file(dfd, dir, json_object_get(files, "memory"), "memory", e) < 0 ||
	    verify_file(dfd, dir, json_object_get(files, "disk"), "disk", e) < 0 ||
	    verify_file(dfd, dir, json_object_get(files, "vmstate"), "vmstate", e) < 0)
		return NULL;
	json_object_set_new(m, "dir", json_string(dir));
	return steal_ptr(&m);
}

/* ---- list, remove, gc ----------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *snapshot_list(struct fc_err *e)
{
	_cleanup_free_ char *top = fc_path("snapshots");
	json_t *arr = json_array();
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	DIR *d = opendir(top);

	if (!d) {
		if (errno == ENOENT)
			return arr;
		json_decref(arr);
		fc_err_set(e, errno, "open '%s'", top);
		return NULL;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !snapshot_valid_tag(de->d_name))
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n)	/* qsort of NULL, even for 0, is undefined */
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		struct fc_err why;
		json_t *m = snapshot_open(names[i], &why);

		if (!m)
			m = json_pack("{s:s, s:s}", "tag", names[i], "error", why.msg);
		json_array_append_new(arr, m);
		free(names[i]);
	}
	free(names);
	return arr;
}

int snapshot_remove(const char *tag, struct fc_err *e)
{
	_cleanup_free_ char *dir = NULL, *tmp = NULL;

	if (!snapshot_valid_tag(tag))
		return fc_err_set(e, EINVAL, "invalid tag '%s'", tag ? tag : "");
	dir = snapshot_dir(tag);
	tmp = fc_path("snapshots/.tmp-rm-%s-%d", tag, (int)getpid());
	if (rename(dir, tmp) < 0) {
		if (errno == ENOENT)
			return fc_err_set(e, ENOENT, "no snapshot '%s'", tag);
		return fc_err_set(e, errno, "rename '%s'", dir);
	}
	return fc_rm_tree(tmp, e);
}

int snapshot_gc(void (*fn)(const char *path, void *arg), void *arg)
{
	_cleanup_free_ char *top = fc_path("snapshots");
	struct dirent *de;
	DIR *d = opendir(top);
	int count = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		const char *dash;
		char *end;
		long pid;

		if (strncmp(de->d_name, ".tmp-", 5) || !(dash = strrchr(de->d_name, '-')))
			continue;
		pid = strtol(dash + 1, &end, 10);
		if (*end || pid <= 0 || pid == getpid() || proc_alive((pid_t)pid, 0))
			continue;
		{
			_cleanup_free_ char *p = xasprintf("%s/%s", top, de->d_name);
			struct fc_err ignored;

			if (fc_rm_tree(p, &ignored) == 0) {
				count++;
				if (fn)
					fn(p, arg);
			}
		}
	}
	closedir(d);
	return count;
}
