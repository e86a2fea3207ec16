/* imgarchive.c - see imgarchive.h */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgarchive.h"
#include "json.h"
#include "sha256.h"
#include "text.h"
#include "util.h"

#define BLK 512

static int pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;	/* the file shrank under us */
			return -1;
		}
		got += n;
	}
	return 0;
}

/* Octal (NUL/space terminated) or GNU base-256 numeric field. */
static int tar_num(const uint8_t *f, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		if (f[0] != 0x80)	/* negative or absurdly large */
			return -1;
		for (i = 1; i < len; i++) {
			if (v >> 56)
				return -1;
			v = v << 8 | f[i];
		}
		*out = v;
		return 0;
	}
	while (i < len && f[i] == ' ')
		i++;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v << 3 | (f[i] - '0');
	}
	for (; i < len; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return -1;
	*out = v;
	return 0;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	while (n--)
		if (*b++)
			return false;
	return true;
}

static bool checksum_ok(const uint8_t *h)
{
	uint64_t want;
	unsigned long us = 0;
	long sg = 0;
	int i;

	if (tar_num(h + 148, 8, &want) < 0)
		return false;
	for (i = 0; i < BLK; i++) {
		uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];

		us += c;
		sg += (signed char)c;
	}
	return want == us || (long)want == sg;
}

/* Copy a fixed-width, possibly unterminated header string. */
static char *field(const uint8_t *f, size_t len)
{
	return strndup((const char *)f, len) ?: xstrdup("");
}

static char *normalise(char *name)
{
	size_t n;
	char *p = name;

	while (p[0] == '.' && p[1] == '/')
		for (p += 2; *p == '/'; p++)
			;
	memmove(name, p, strlen(p) + 1);
	n = strlen(name);
	while (n > 0 && name[n - 1] == '/')
		name[--n] = '\0';
	return name;
}

/* Parse pax extended header records "LEN key=value\n"; take path,
 * linkpath and size. */
static int pax_parse(const char *buf, size_t len, char **path, char **link,
		     uint64_t *size, bool *has_size, struct fc_err *e)
{
	size_t pos = 0;

	while (pos < len) {
		const char *rec = buf + pos, *sp, *eq;
		uint64_t rlen = 0;
		size_t i;

		for (i = 0; pos + i < len && isdigit((unsigned char)rec[i]) && i < 12; i++)
			rlen = rlen * 10 + (rec[i] - '0');
		if (i == 0 || rlen < i + 3 || rlen > len - pos || rec[rlen - 1] != '\n' ||
		    rec[i] != ' ')
			return fc_err_set(e, 0, "malformed pax header");
		sp = rec + i + 1;
		eq = memchr(sp, '=', rec + rlen - 1 - sp);
		if (!eq)
			return fc_err_set(e, 0, "malformed pax header");
		if ((size_t)(eq - sp) == 4 && !memcmp(sp, "path", 4)) {
			free(*path);
			*path = strndup(eq + 1, rec + rlen - 1 - (eq + 1));
		} else if ((size_t)(eq - sp) == 8 && !memcmp(sp, "linkpath", 8)) {
			free(*link);
			*link = strndup(eq + 1, rec + rlen - 1 - (eq + 1));
		} else if ((size_t)(eq - sp) == 4 && !memcmp(sp, "size", 4)) {
			_cleanup_free_ char *v = strndup(eq + 1, rec + rlen - 1 - (eq + 1));
			struct fc_err ign;

			if (!v || parse_u64(v, 0, UINT64_MAX / 2, "pax size", size, &ign) < 0)
				return fc_err_set(e, 0, "malformed pax size");
			*has_size = true;
		}
		pos += rlen;
	}
	return 0;
}

void tar_index_free(struct tar_index *ix)
{
	size_t i;

	for (i = 0; i < ix->n; i++) {
		free(ix->ents[i].name);
		free(ix->ents[i].link);
	}
	free(ix->ents);
	memset(ix, 0, sizeof(*ix));
}

int tar_scan(int fd, uint64_t file_size, struct tar_index *ix, struct fc_err *e)
{
	_cleanup_free_ char *long_name = NULL, *long_link = NULL;
	uint64_t off = 0, pax_size = 0;
	bool pax_has_size = false;
	size_t cap = 0;
	uint8_t h[BLK];

	memset(ix, 0, sizeof(*ix));
	for (;;) {
		uint64_t size, padded;
		char type;

		if (off + BLK > file_size) {
			/* GNU tar accepts a missing end marker; we want a whole
			 * archive, but an entry boundary at EOF is not damage. */
			if (off == file_size && ix->n > 0)
				break;
			fc_err_set(e, 0, ix->n ? "truncated: archive ends inside a header"
					       : "not a tar archive (too short)");
			goto fail;
		}
		if (pread_exact(fd, h, BLK, off) < 0) {
			fc_err_set(e, errno, "read tar header at %llu", (unsigned long long)off);
			goto fail;
		}
		if (all_zero(h, BLK)) {
			off += BLK;
			if (off + BLK <= file_size) {
				if (pread_exact(fd, h, BLK, off) < 0) {
					fc_err_set(e, errno, "read tar end");
					goto fail;
				}
				if (!all_zero(h, BLK)) {
					fc_err_set(e, 0, "corrupt tar: data after an empty header at %llu",
						   (unsigned long long)off);
					goto fail;
				}
				off += BLK;
			}
			if (ix->n == 0) {
				fc_err_set(e, 0, "empty tar archive");
				goto fail;
			}
			break;
		}
		if (memcmp(h + 257, "ustar", 5) != 0) {
			if (ix->n)
				fc_err_set(e, 0, "corrupt tar: bad header at offset %llu",
					   (unsigned long long)off);
			else
				fc_err_set(e, 0, "not a tar archive");
			goto fail;
		}
		if (!checksum_ok(h)) {
			fc_err_set(e, 0, "corrupt tar: header checksum mismatch at offset %llu",
				   (unsigned long long)off);
			goto fail;
		}
		if (tar_num(h + 124, 12, &size) < 0) {
			fc_err_set(e, 0, "corrupt tar: bad size field at offset %llu",
				   (unsigned long long)off);
			goto fail;
		}
		type = h[156] ? (char)h[156] : '0';
		if (pax_has_size && type != 'x' && type != 'g' && type != 'L' && type != 'K')
			size = pax_size;
		if (size > file_size) {
			fc_err_set(e, 0, "truncated: entry at offset %llu claims %llu bytes, file has %llu",
				   (unsigned long long)off, (unsigned long long)size,
				   (unsigned long long)file_size);
			goto fail;
		}
		padded = (size + BLK - 1) / BLK * BLK;
		if (off + BLK + padded > file_size) {
			fc_err_set(e, 0, "truncated: entry at offset %llu needs %llu bytes past the end of the file",
				   (unsigned long long)off,
				   (unsigned long long)(off + BLK + padded - file_size));
			goto fail;
		}

		if (type == 'x' || type == 'L' || type == 'K' || type == 'g') {
			_cleanup_free_ char *buf = NULL;

			if (size > (type == 'x' || type == 'g' ? 65536 : TAR_MAX_NAME)) {
				fc_err_set(e, 0, "corrupt tar: extended header of %llu bytes",
					   (unsigned long long)size);
				goto fail;
			}
			buf = xmalloc(size + 1);
			if (pread_exact(fd, buf, size, off + BLK) < 0) {
				fc_err_set(e, errno, "read tar extended header");
				goto fail;
			}
			buf[size] = '\0';
			if (type == 'L') {
				free(long_name);
				long_name = xstrdup(buf);
			} else if (type == 'K') {
				free(long_link);
				long_link = xstrdup(buf);
			} else if (type == 'x' &&
				   pax_parse(buf, size, &long_name, &long_link, &pax_size,
					     &pax_has_size, e) < 0) {
				goto fail;
			}
			off += BLK + padded;
			continue;
		}

		if (ix->n == TAR_MAX_ENTRIES) {
			fc_err_set(e, 0, "tar has more than %d entries", TAR_MAX_ENTRIES);
			goto fail;
		}
		if (ix->n == cap) {
			cap = cap ? cap * 2 : 64;
			ix->ents = xrealloc(ix->ents, cap * sizeof(*ix->ents));
		}
		{
			struct tar_entry *t = &ix->ents[ix->n];
			char *name;

			if (long_name) {
				name = steal_ptr(&long_name);
			} else if (!memcmp(h + 257, "ustar\0", 6) && h[345]) {
				_cleanup_free_ char *pre = field(h + 345, 155);
				_cleanup_free_ char *base = field(h, 100);

				name = xasprintf("%s/%s", pre, base);
			} else {
				name = field(h, 100);
			}
			if (strlen(name) > TAR_MAX_NAME) {
				free(name);
				fc_err_set(e, 0, "corrupt tar: name too long at offset %llu",
					   (unsigned long long)off);
				goto fail;
			}
			t->name = normalise(name);
			t->link = long_link ? steal_ptr(&long_link)
					    : (h[157] ? field(h + 157, 100) : NULL);
			t->type = type;
			t->off = off + BLK;
			t->size = size;
			ix->n++;
		}
		pax_has_size = false;
		free(steal_ptr(&long_link));
		off += BLK + padded;
	}
	ix->end = off;
	return 0;
fail:
	tar_index_free(ix);
	return -1;
}

const struct tar_entry *tar_find(const struct tar_index *ix, const char *name)
{
	_cleanup_free_ char *want = normalise(xstrdup(name));
	size_t i;

	/* Later entries win, as when the tar is extracted. */
	for (i = ix->n; i-- > 0;)
		if (!strcmp(ix->ents[i].name, want))
			return &ix->ents[i];
	return NULL;
}

/* Follow symlinks/hardlinks inside the archive (bounded) to a regular file. */
static const struct tar_entry *tar_resolve(const struct tar_index *ix, const char *name)
{
	_cleanup_free_ char *cur = xstrdup(name);
	int hops;

	for (hops = 0; hops < 8; hops++) {
		const struct tar_entry *t = tar_find(ix, cur);
		char *next, *slash;

		if (!t)
			return NULL;
		if (t->type == '0' || t->type == '7')
			return t;
		if (!t->link || (t->type != '1' && t->type != '2'))
			return NULL;
		if (t->type == '2' && t->link[0] != '/' && (slash = strrchr(t->name, '/'))) {
			next = xasprintf("%.*s/%s", (int)(slash - t->name), t->name, t->link);
		} else {
			next = xstrdup(t->link[0] == '/' ? t->link + 1 : t->link);
		}
		/* collapse "dir/../x" which docker-archive symlinks use */
		for (;;) {
			char *dd = strstr(next, "/../"), *start;

			if (!dd)
				break;
			for (start = dd; start > next && start[-1] != '/'; start--)
				;
			memmove(start, dd + 4, strlen(dd + 4) + 1);
		}
		free(cur);
		cur = next;
	}
	return NULL;
}

static json_t *read_json(int fd, const struct tar_entry *t, const char *what, struct fc_err *e)
{
	_cleanup_free_ char *buf = NULL;
	json_t *j;

	if (t->size > IMG_MAX_JSON) {
		fc_err_set(e, 0, "%s is %llu bytes (limit %u)", what,
			   (unsigned long long)t->size, IMG_MAX_JSON);
		return NULL;
	}
	buf = xmalloc(t->size + 1);
	if (pread_exact(fd, buf, t->size, t->off) < 0) {
		fc_err_set(e, errno, "read %s", what);
		return NULL;
	}
	j = json_parse(buf, t->size, e);
	if (!j) {
		/* the parser quotes the text near the error: archive bytes */
		_cleanup_free_ char *m = text_clean(e->msg, strlen(e->msg), sizeof(e->msg), false);

		snprintf(e->msg, sizeof(e->msg), "%s: %s", what, m);
	}
	return j;
}

static bool valid_hex64(const char *s)
{
	return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Archive text (names, paths) as it may be shown: sanitised and bounded
 * (lib/text.h). Caller frees. */
static char *shown(const char *s)
{
	return text_clean(s, strlen(s), IMG_MAX_REF, false);
}

/* The name an OCI descriptor's annotations give the image, sanitised, or
 * NULL. containerd's full name wins over ref.name, which skopeo and podman
 * may fill with the tag alone ("latest"). Only ever shown, never run:
 * what the guest runs is the image ID. */
static char *oci_name(json_t *desc)
{
	json_t *ann = json_object_get(desc, "annotations");
	const char *n;

	if (!json_is_object(ann))
		return NULL;
	n = json_str(ann, "io.containerd.image.name");
	if (!n || !*n)
		n = json_str(ann, "org.opencontainers.image.ref.name");
	return n && *n ? shown(n) : NULL;
}

/* "more than one image" with the names the archive gives them. @names
 * holds @n sanitised strings (NULL for an unnamed image). */
static int many_images(size_t n, char **names, const char *transport, struct fc_err *e)
{
	char list[512] = "";
	size_t i, used = 0;

	for (i = 0; i < n && i < 8; i++) {
		int w = snprintf(list + used, sizeof(list) - used, "%s'%s'", i ? ", " : "",
				 names[i] ? names[i] : "(no name)");

		if (w < 0 || (size_t)w >= sizeof(list) - used)
			break;
		used += w;
	}
	return fc_err_set(e, 0, "the archive holds %zu images (%s%s); a VM runs one: copy the one you want into its own archive, e.g. 'skopeo copy %s:ARCHIVE:NAME oci-archive:ONE.tar'",
			  n, list, n > 8 ? ", ..." : "", transport);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The blob a "sha256:<hex>" descriptor names, checked for presence and size. */
static const struct tar_entry *oci_blob(const struct tar_index *ix, json_t *desc,
					const char *what, struct fc_err *e)
{
	const char *dg = json_str(desc, "digest");
	const struct tar_entry *t;
	long long want = -1;
	_cleanup_free_ char *path = NULL;

	if (!json_is_object(desc) || !dg || strncmp(dg, "sha256:", 7) || !valid_hex64(dg + 7)) {
		fc_err_set(e, 0, "%s: missing or unsupported digest (need sha256:<64 hex>)", what);
		return NULL;
	}
	if (json_int(desc, "size", 0, INT64_MAX, &want, e) < 0) {
		fc_err_wrap(e, "%s", what);
		return NULL;
	}
	path = xasprintf("blobs/sha256/%s", dg + 7);
	t = tar_resolve(ix, path);
	if (!t) {
		fc_err_set(e, 0, "%s: blob '%s' missing from the archive", what, path);
		return NULL;
	}
	if (want >= 0 && (uint64_t)want != t->size) {
		fc_err_set(e, 0, "%s: blob '%s' is %llu bytes, descriptor says %lld", what, path,
			   (unsigned long long)t->size, want);
		return NULL;
	}
	return t;
}

static int config_id(int fd, const struct tar_entry *t, char id[65], struct fc_err *e)
{
	_cleanup_json_ json_t *cfg = NULL;

	/* parse to reject garbage; the ID is the hash of the exact bytes */
	cfg = read_json(fd, t, "image config", e);
	if (!cfg)
		return -1;
	if (!json_is_object(cfg))
		return fc_err_set(e, 0, "image config is not a JSON object");
	return sha256_fd(fd, t->off, t->size, id, e);
}

static int inspect_oci(int fd, const struct tar_index *ix, const struct tar_entry *idx,
		       struct img_info *info, struct fc_err *e)
{
	_cleanup_json_ json_t *top = read_json(fd, idx, "index.json", e);
	json_t *cur = top, *desc, *layers, *l, *top_ms;
	_cleanup_json_ json_t *man = NULL;
	const struct tar_entry *t;
	size_t i;
	int depth;

	if (!top)
		return -1;
	/* One image per archive: podman load refuses an oci-archive with more
	 * ("more than one image in oci, choose an image"), so say it here. */
	top_ms = json_object_get(top, "manifests");
	if (json_is_array(top_ms) && json_array_size(top_ms) > 1) {
		size_t n = json_array_size(top_ms);
		char **names = xcalloc(n, sizeof(*names));

		for (i = 0; i < n; i++)
			names[i] = oci_name(json_array_get(top_ms, i));
		many_images(n, names, "oci-archive", e);
		free_names(names, n);
		return -1;
	}
	/* Follow first descriptors through nested indexes down to a manifest. */
	for (depth = 0;; depth++) {
		json_t *ms = json_object_get(cur, "manifests");
		json_t *next;

		if (depth == 4)
			return fc_err_set(e, 0, "index.json: image indexes nested too deep");
		if (!json_is_array(ms) || json_array_size(ms) == 0)
			return fc_err_set(e, 0, "%s: no manifests", depth ? "nested index" : "index.json");
		desc = json_array_get(ms, 0);
		if (!info->ref)
			info->ref = oci_name(desc);
		t = oci_blob(ix, desc, "index.json manifest", e);
		if (!t)
			return -1;
		next = read_json(fd, t, "image manifest", e);
		if (!next)
			return -1;
		json_decref(man);
		man = next;
		if (!json_is_object(man))
			return fc_err_set(e, 0, "image manifest is not a JSON object");
		if (!json_object_get(man, "manifests"))
			break;
		cur = man;
	}
	t = oci_blob(ix, json_object_get(man, "config"), "manifest config", e);
	if (!t || config_id(fd, t, info->image_id, e) < 0)
		return -1;
	layers = json_object_get(man, "layers");
	if (!json_is_array(layers))
		return fc_err_set(e, 0, "image manifest: 'layers' must be an array");
	json_array_foreach(layers, i, l) {
		char what[32];

		snprintf(what, sizeof(what), "layer %zu", i);
		if (!oci_blob(ix, l, what, e))
			return -1;
	}
	info->layers = json_array_size(layers);
	info->format = IMG_OCI_ARCHIVE;
	return 0;
}

static int inspect_docker(int fd, const struct tar_index *ix, const struct tar_entry *mt,
			  struct img_info *info, struct fc_err *e)
{
	_cleanup_json_ json_t *top = read_json(fd, mt, "manifest.json", e);
	json_t *m, *tags, *layers, *l;
	const struct tar_entry *t;
	const char *cfg;
	size_t i;

	if (!top)
		return -1;
	if (!json_is_array(top) || json_array_size(top) == 0)
		return fc_err_set(e, 0, "manifest.json: expected a non-empty array");
	if (json_array_size(top) > 1) {
		size_t n = json_array_size(top);
		char **names = xcalloc(n, sizeof(*names));

		for (i = 0; i < n; i++) {
			const char *tag = json_string_value(
				json_array_get(json_object_get(json_array_get(top, i), "RepoTags"), 0));

			names[i] = tag && *tag ? shown(tag) : NULL;
		}
		many_images(n, names, "docker-archive", e);
		free_names(names, n);
		return -1;
	}
	m = json_array_get(top, 0);
	cfg = json_str(m, "Config");
	if (!cfg)
		return fc_err_set(e, 0, "manifest.json: missing 'Config'");
	t = tar_resolve(ix, cfg);
	if (!t) {
		_cleanup_free_ char *c = shown(cfg);

		return fc_err_set(e, 0, "manifest.json: config '%s' missing from the archive", c);
	}
	if (config_id(fd, t, info->image_id, e) < 0)
		return -1;
	tags = json_object_get(m, "RepoTags");
	if (json_is_array(tags) && json_array_size(tags) > 0) {
		const char *ref = json_string_value(json_array_get(tags, 0));

		if (!ref)
			return fc_err_set(e, 0, "manifest.json: RepoTags must hold strings");
		if (*ref)
			info->ref = shown(ref);
	}
	layers = json_object_get(m, "Layers");
	if (!json_is_array(layers))
		return fc_err_set(e, 0, "manifest.json: 'Layers' must be an array");
	json_array_foreach(layers, i, l) {
		const char *name = json_string_value(l);

		if (!name)
			return fc_err_set(e, 0, "manifest.json: Layers must hold strings");
		if (!tar_resolve(ix, name)) {
			_cleanup_free_ char *n = shown(name);

			return fc_err_set(e, 0, "manifest.json: layer '%s' missing from the archive", n);
		}
	}
	info->layers = json_array_size(layers);
	info->format = IMG_DOCKER_ARCHIVE;
	return 0;
}

int img_archive_inspect(int fd, struct img_info *info, struct fc_err *e)
{
	struct tar_index ix;
	const struct tar_entry *t;
	struct stat st;
	int r;

	memset(info, 0, sizeof(*info));
	if (fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "stat");
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return fc_err_set(e, 0, "not a regular file");
	if (tar_scan(fd, st.st_size, &ix, e) < 0)
		return -1;
	if ((t = tar_find(&ix, "index.json")) && t->type == '0')
		r = inspect_oci(fd, &ix, t, info, e);
	else if ((t = tar_find(&ix, "manifest.json")) && t->type == '0')
		r = inspect_docker(fd, &ix, t, info, e);
	else
		r = fc_err_set(e, 0, "not an image archive: no index.json (oci-archive) or manifest.json (docker-archive)");
	info->tar_size = ix.end;
	tar_index_free(&ix);
	if (r < 0)
		img_info_free(info);
	return r;
}

void img_info_free(struct img_info *info)
{
	free(info->ref);
	info->ref = NULL;
}

const char *img_format_name(enum img_format f)
{
	return f == IMG_DOCKER_ARCHIVE ? "docker-archive" : "oci-archive";
}
