/* image.c - "fc-disk image": an image becomes a read-only raw disk that the
 * guest agent passes to "podman load -i /dev/vdX" (a tar read from a block
 * device; the zero padding to a whole sector reads as the end of the tar).
 *
 * How it works, and why in this order:
 *  1. Find the source: an archive file, an OCI layout directory, or a name
 *     in the host's podman storage.
 *  2. Work out the cache key (the digest) as cheaply as possible:
 *       file        sha256 of the archive bytes (validated first)
 *       OCI layout  sha256 of the tar we write from it (deterministic tar:
 *                   sorted names, mtime 0, uid/gid 0), so the same layout
 *                   always gives the same digest
 *       podman      sha256 of "podman-storage\n<image id>\n<name>\n": podman
 *                   save stamps the current time into oci-archives, so its
 *                   bytes differ on every save; the image ID does not, and
 *                   this way a cached image needs no save at all
 *  3. If images/<digest>.img exists we are done: it only ever appears by
 *     rename, so it is complete.
 *  4. Otherwise take locks/image-<digest>.lock, look again (a concurrent run
 *     may have built it while we waited), build into a temporary file in
 *     images/, validate exactly the bytes we publish, pad to 512, make it
 *     0444, fsync, rename, fsync the directory.
 * Temporary files carry our pid; stale ones of dead builds are removed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk.h"
#include "fsutil.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "sha256.h"
#include "util.h"

#define PODMAN_QUERY_MS 60000
#define MAX_IMAGE_ARG 4096

enum source { SRC_FILE, SRC_LAYOUT, SRC_PODMAN };
static const char *const source_names[] = { "file", "oci-layout", "podman" };

/* The temporary file being built, removed if we are interrupted. */
static char *volatile g_tmp;

static void on_signal(int sig)
{
	if (g_tmp)
		unlink(g_tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void guard_tmp(char *tmp)
{
	struct sigaction sa = { .sa_handler = on_signal };

	g_tmp = tmp;
	if (tmp) {
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	}
}

static bool is_layout(const char *dir)
{
	_cleanup_free_ char *a = xasprintf("%s/oci-layout", dir);
	_cleanup_free_ char *b = xasprintf("%s/index.json", dir);
	struct stat st;

	return stat(a, &st) == 0 && S_ISREG(st.st_mode) && stat(b, &st) == 0 && S_ISREG(st.st_mode);
}

/* Only plain names reach podman's command line: no option lookalikes. */
static bool podman_name_ok(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n > IMG_MAX_REF || name[0] == '-')
		return false;
	for (i = 0; i < n; i++)
		if (name[i] <= ' ' || name[i] == 0x7f)
			return false;
	return true;
}

static bool podman_has(const char *name)
{
	char *argv[] = { "podman", "image", "exists", (char *)name, NULL };
	struct fc_err ign;

	return podman_name_ok(name) && run_capture(argv, NULL, 0, PODMAN_QUERY_MS, &ign) == 0;
}

static int find_source(const char *image, enum source *src, struct fc_err *e)
{
	struct stat st;

	if (strlen(image) > MAX_IMAGE_ARG)
		return fc_err_set(e, 0, "image name is longer than %d characters", MAX_IMAGE_ARG);
	if (stat(image, &st) == 0) {
		if (S_ISREG(st.st_mode)) {
			*src = SRC_FILE;
			return 0;
		}
		if (S_ISDIR(st.st_mode)) {
			if (!is_layout(image))
				return fc_err_set(e, 0, "image '%s' is a directory but not an OCI image layout (no oci-layout and index.json files)",
						  image);
			*src = SRC_LAYOUT;
			return 0;
		}
	}
	if (podman_has(image)) {
		*src = SRC_PODMAN;
		return 0;
	}
	return fc_err_set(e, 0, "image '%s' not found: not a file, an OCI layout or an image in podman storage (build it or podman load it first)",
			  image);
}

/* Remove temporaries left by builds whose process is gone: files, and the
 * directories of store builds (store.c). */
static void sweep_stale(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *p = strstr(de->d_name, ".tmp-");
		char *end;
		long pid;

		if (de->d_name[0] != '.' || !p)
			continue;
		pid = strtol(p + 5, &end, 10);
		if (end == p + 5 || *end != '-' || pid <= 0 || pid == getpid())
			continue;
		if (!proc_alive((pid_t)pid, 0)) {
			_cleanup_free_ char *p2 = xasprintf("%s/%s", dir, de->d_name);
			struct fc_err e;

			log_debug("removing stale temporary '%s'", p2);
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno == EISDIR &&
			    fc_rm_tree(p2, &e) < 0)
				log_warn("%s", e.msg);
		}
	}
	closedir(d);
}

static void hex_digest(const void *buf, size_t len, char out[72])
{
	uint8_t d[SHA256_LEN];
	char hex[SHA256_HEX_LEN + 1];
	struct sha256 s;

	sha256_init(&s);
	sha256_update(&s, buf, len);
	sha256_final(&s, d);
	sha256_hex(d, hex);
	snprintf(out, 72, "sha256:%s", hex);
}

static int file_digest(int fd, char out[72], struct fc_err *e)
{
	char hex[SHA256_HEX_LEN + 1];
	struct stat st;

	if (fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "stat");
	if (sha256_fd(fd, 0, st.st_size, hex, e) < 0)
		return -1;
	snprintf(out, 72, "sha256:%s", hex);
	return 0;
}

/* Copy @in into the new file @out: share extents when the file system can,
 * else copy_file_range, else read/write - copy_file_range refuses to cross
 * file systems (EXDEV) on Linux >= 5.19, and an image archive usually lives
 * on another file system than the data root. */
static int copy_fd(int in, int out, struct fc_err *e)
{
	struct stat st;
	off_t off_in = 0, left;
	bool plain = false;
	char buf[64 * 1024];

	if (ioctl(out, FICLONE, in) == 0)
		return 0;
	if (fstat(in, &st) < 0)
		return fc_err_set(e, errno, "stat");
	left = st.st_size;
	while (left > 0) {
		ssize_t n;

		if (!plain) {
			n = copy_file_range(in, &off_in, out, NULL, left, 0);
			if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS ||
				      errno == EINVAL)) {
				plain = true;
				continue;
			}
		} else {
			n = pread(in, buf, (size_t)left < sizeof(buf) ? (size_t)left : sizeof(buf), off_in);
			if (n > 0 && write_full(out, buf, n) < 0)
				return fc_err_set(e, errno, "copy");
			if (n > 0)
				off_in += n;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fc_err_set(e, errno, "copy");
		if (n == 0)
			return fc_err_set(e, 0, "copy: source ended early");
		left -= n;
	}
	return 0;
}

/* Validate, pad, seal and rename @tmp (open on @fd) to @final. */
static int publish(int fd, const char *tmp, const char *final, const char *want_digest,
		   struct fc_err *e)
{
	struct img_info info;
	char got[72];
	uint64_t size;

	if (want_digest) {
		if (file_digest(fd, got, e) < 0)
			return fc_err_wrap(e, "hash '%s'", tmp);
		if (strcmp(got, want_digest))
			return fc_err_set(e, 0, "the image changed while it was being copied (%s, then %s)",
					  want_digest, got);
	}
	if (img_archive_inspect(fd, &info, e) < 0)
		return -1;
	img_info_free(&info);
	if (fs_pad(fd, 512, &size, e) < 0 || fchmod(fd, 0444) < 0)
		return fc_err_wrap(e, "seal '%s'", tmp);
	return fs_publish(tmp, final, false, e);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Write the OCI layout @dir as a deterministic tar into the new file @tmp. */
static int tar_layout(const char *dir, const char *tmp, struct fc_err *e)
{
	char *argv[] = { "tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
			 "--numeric-owner", "--format=gnu", "--mode=u+rwX,go+rX,go-w",
			 "-C", (char *)dir, "-cf", (char *)tmp, "--", "oci-layout", "index.json",
			 "blobs", NULL };
	int code = run_capture(argv, NULL, 0, -1, e);

	if (code < 0)
		return -1;
	if (code != 0)
		return fc_err_wrap(e, "archive OCI layout '%s'", dir);
	return 0;
}

/* Steps 3-4 for a source whose bytes are produced by @build into @tmp. */
struct build_ctx {
	enum source src;
	const char *image;	/* as given */
	int src_fd;		/* SRC_FILE */
	const char *want;	/* digest the built bytes must have, or NULL */
};

static int build_locked(const struct build_ctx *b, const char *digest, const char *final,
			struct fc_err *e)
{
	_cleanup_free_ char *images = fc_path("images");
	_cleanup_free_ char *lockp = fc_path("locks/image-%s.lock", digest + 7);
	_cleanup_free_ char *tmp = fs_tmpname(images, digest + 7);
	_cleanup_close_ int lock = -1, fd = -1;
	int r = -1;

	lock = fs_lock(lockp, 0, e);
	if (lock < 0)
		return -1;
	if (exists(final)) {
		log_debug("'%s' was built while we waited for the lock", final);
		return 0;
	}
	log_debug("building '%s'", final);
	guard_tmp(tmp);
	if (b->src == SRC_PODMAN) {
		char *argv[] = { "podman", "save", "-q", "--format", "oci-archive", "-o", tmp,
				 (char *)b->image, NULL };
		int code;

		log_info("saving '%s' from podman storage", b->image);
		code = run_capture(argv, NULL, 0, -1, e);
		if (code != 0) {
			if (code > 0)
				fc_err_wrap(e, "save image '%s'", b->image);
			goto out;
		}
		fd = open(tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			fc_err_set(e, errno, "open '%s'", tmp);
			goto out;
		}
	} else {
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			fc_err_set(e, errno, "create '%s'", tmp);
			goto out;
		}
		if (copy_fd(b->src_fd, fd, e) < 0) {
			fc_err_wrap(e, "copy '%s' to '%s'", b->image, tmp);
			goto out;
		}
	}
	if (publish(fd, tmp, final, b->want, e) < 0) {
		fc_err_wrap(e, "image '%s'", b->image);
		goto out;
	}
	r = 0;
out:
	if (r < 0)
		unlink(tmp);
	guard_tmp(NULL);
	return r;
}

int image_disk_get(const char *image, struct image_disk *d, struct fc_err *e)
{
	_cleanup_free_ char *images = fc_path("images");
	_cleanup_free_ char *final = NULL, *layout_tmp = NULL;
	_cleanup_close_ int fd = -1;
	struct build_ctx b = { .image = image, .src_fd = -1 };
	enum source src = SRC_FILE;
	struct stat st;

	memset(d, 0, sizeof(*d));
	if (find_source(image, &src, e) < 0)
		return -1;
	if (fc_root_check(e) < 0 || fc_root_init(e) < 0)
		return -1;
	sweep_stale(images);
	b.src = src;

	switch (src) {
	case SRC_FILE: {
		struct img_info info;

		fd = open(image, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fc_err_set(e, errno, "open image '%s'", image);
		if (img_archive_inspect(fd, &info, e) < 0)
			return fc_err_wrap(e, "image '%s'", image);
		img_info_free(&info);
		if (file_digest(fd, d->digest, e) < 0)
			return fc_err_wrap(e, "hash image '%s'", image);
		b.src_fd = fd;
		b.want = d->digest;
		break;
	}
	case SRC_LAYOUT: {
		layout_tmp = fs_tmpname(images, "layout");
		guard_tmp(layout_tmp);
		if (tar_layout(image, layout_tmp, e) < 0)
			goto layout_fail;
		fd = open(layout_tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			fc_err_set(e, errno, "open '%s'", layout_tmp);
			goto layout_fail;
		}
		if (file_digest(fd, d->digest, e) < 0)
			goto layout_fail;
		break;
layout_fail:
		unlink(layout_tmp);
		guard_tmp(NULL);
		return -1;
	}
	case SRC_PODMAN: {
		char *argv[] = { "podman", "image", "inspect", "--format", "{{.Id}}", (char *)image, NULL };
		_cleanup_free_ char *id = NULL, *key = NULL;
		int code = run_capture(argv, &id, 256, PODMAN_QUERY_MS, e);

		if (code != 0)
			return code < 0 ? -1 : fc_err_wrap(e, "inspect image '%s'", image);
		id[strcspn(id, "\n")] = '\0';
		if (strlen(id) != 64 || strspn(id, "0123456789abcdef") != 64)
			return fc_err_set(e, 0, "podman gave image '%s' an unexpected id '%s'", image, id);
		key = xasprintf("podman-storage\n%s\n%s\n", id, image);
		hex_digest(key, strlen(key), d->digest);
		break;
	}
	}

	final = xasprintf("%s/%s.img", images, d->digest + 7);
	if (src == SRC_LAYOUT) {
		/* The tar is already built: publish it unless someone else did. */
		_cleanup_free_ char *lockp = fc_path("locks/image-%s.lock", d->digest + 7);
		_cleanup_close_ int lock = fs_lock(lockp, 0, e);
		int r = 0;

		if (lock < 0 || (!exists(final) && publish(fd, layout_tmp, final, NULL, e) < 0))
			r = -1;
		if (r < 0 && lock >= 0)
			fc_err_wrap(e, "image '%s'", image);
		if (r < 0 || exists(layout_tmp))
			unlink(layout_tmp);
		guard_tmp(NULL);
		if (r < 0)
			return -1;
	} else if (!exists(final)) {
		if (build_locked(&b, d->digest, final, e) < 0)
			return -1;
	} else {
		log_debug("'%s' is cached", final);
	}

	/* Describe what is published, whichever run built it. */
	{
		_cleanup_close_ int ifd = open(final, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

		if (ifd < 0)
			return fc_err_set(e, errno, "open '%s'", final);
		if (fstat(ifd, &st) < 0)
			return fc_err_set(e, errno, "stat '%s'", final);
		if (img_archive_inspect(ifd, &d->info, e) < 0)
			return fc_err_wrap(e, "cached image disk '%s' (remove it to rebuild)", final);
	}
	d->path = steal_ptr(&final);
	d->size = st.st_size;
	d->source = source_names[src];
	/* The guest runs what it loaded by its ID: names in archives may be a
	 * bare tag ("latest") or missing, and podman would not find those. */
	d->ref = xstrdup(d->info.image_id);
	if (src == SRC_PODMAN)
		d->name = xstrdup(image);
	else if (d->info.ref)
		d->name = xstrdup(d->info.ref);
	return 0;
}

void image_disk_free(struct image_disk *d)
{
	free(d->path);
	free(d->ref);
	free(d->name);
	free(d->store);
	img_info_free(&d->info);
	memset(d, 0, sizeof(*d));
}
