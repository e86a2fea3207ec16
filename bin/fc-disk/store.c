/* store.c - the image store disk: an image archive already unpacked into
 * containers-storage's overlay layout, as a read-only ext4 that the guest's
 * podman uses as an additional image store. The guest then runs the image
 * at once instead of a "podman load" per run (seconds under emulation).
 *
 * How it works, and why in this order:
 *  1. images/<hex>.store/{store.ext4,manifest.json} exists: it only ever
 *     appears by rename, complete. It is checked against its manifest
 *     (format, image id, size, sha256 of every byte: a guest kernel will
 *     parse this file system) and used; a mismatch is refused, naming the
 *     directory to remove.
 *  2. Otherwise, under the image's lock (locks/image-<hex>.lock, the one
 *     the archive build takes), in images/.<hex>.store.tmp-PID-RAND/:
 *     a. skopeo copies the archive into tree/ as containers-storage with
 *        the guest's driver (overlay, see fc-setup's storage.conf), under a
 *        storage.conf of our own (the host's may name other options or
 *        stores), in a private mount namespace: the overlay driver
 *        bind-mounts its home onto itself and never unmounts it;
 *     b. tree/ must hold exactly our image (by id);
 *     c. mkfs.ext4 -d tree/ into store.ext4 (no journal: nothing ever
 *        writes it; sized from the tree), tree/ goes, the disk's sha256
 *        goes into manifest.json;
 *     d. the directory is published (fs_publish).
 * skopeo and podman load share their image code (containers/image), so an
 * image skopeo refuses (a layer whose digest does not match) is refused
 * here rather than in the guest. Only a host that cannot build stores at
 * all (no skopeo, no mount namespace) falls back to the archive disk.
 * A killed build leaves its temporary directory; the next build (or
 * fc-state gc) removes it once its pid is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "sha256.h"
#include "util.h"

#define STORE_FORMAT	 1
#define STORE_MANIFEST_MAX (64 * 1024)
#define STORE_BLOCK	 4096

static bool dir_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Check the published store @dir against its manifest, for image @id. */
static int store_check(const char *dir, const char *id, uint64_t *size, struct fc_err *e)
{
	_cleanup_free_ char *mpath = xasprintf("%s/manifest.json", dir);
	_cleanup_free_ char *disk = xasprintf("%s/store.ext4", dir);
	_cleanup_json_ json_t *m = NULL;
	_cleanup_close_ int fd = -1;
	char hex[SHA256_HEX_LEN + 1];
	long long ver = 0, want = -1;
	const char *s;
	struct stat st;

	m = json_load_path(mpath, STORE_MANIFEST_MAX, e);
	if (!m)
		return -1;
	if (json_int(m, "version", 0, 1000, &ver, e) != 0 || ver != STORE_FORMAT)
		return fc_err_set(e, 0, "'%s': not a version %d store manifest", mpath, STORE_FORMAT);
	if (!(s = json_str(m, "image_id")) || strcmp(s, id))
		return fc_err_set(e, 0, "'%s' is for image '%.64s', not '%s'", mpath, s ? s : "?", id);
	if (json_int(m, "size", STORE_BLOCK, INT64_MAX, &want, e) != 0)
		return fc_err_set(e, 0, "'%s': no valid 'size'", mpath);
	fd = open(disk, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "open '%s'", disk);
	if (!S_ISREG(st.st_mode) || st.st_size != want)
		return fc_err_set(e, 0, "'%s' is %lld bytes, its manifest says %lld (truncated?)", disk,
				  (long long)st.st_size, want);
	if (sha256_fd(fd, 0, st.st_size, hex, e) < 0)
		return fc_err_wrap(e, "hash '%s'", disk);
	if (!(s = json_str(m, "sha256")) || strcmp(s, hex))
		return fc_err_set(e, 0, "'%s' does not have the sha256 its manifest names (corrupt)", disk);
	*size = st.st_size;
	return 0;
}

/* What mkfs.ext4 needs for the tree (nftw has no user pointer). */
static uint64_t g_bytes, g_inodes;

static int tally(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)path, (void)type, (void)f;
	g_inodes++;
	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode))
		g_bytes += ((uint64_t)st->st_size + STORE_BLOCK - 1) / STORE_BLOCK * STORE_BLOCK +
			   STORE_BLOCK;
	return 0;
}

/* mkfs.ext4 -d @tree into @img, sized for the tree (@scale > 1 on a retry). */
static int make_ext4(const char *tree, const char *img, unsigned scale, struct fc_err *e)
{
	_cleanup_free_ char *inodes = NULL, *size = NULL;
	uint64_t kib;
	int code;

	g_bytes = g_inodes = 0;
	if (nftw(tree, tally, 64, FTW_PHYS) != 0)
		return fc_err_set(e, errno, "walk '%s'", tree);
	/* data plus an eighth for metadata, 256-byte inodes, 4 MiB of headroom */
	kib = ((g_bytes + g_bytes / 8 + g_inodes * 512) * scale + (4u << 20)) / 1024;
	kib = (kib + 1023) / 1024 * 1024;
	size = xasprintf("%lluk", (unsigned long long)kib);
	inodes = xasprintf("%llu", (unsigned long long)((g_inodes + g_inodes / 8 + 64) * scale));
	char *argv[] = { "mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-N", inodes,
			 "-O", "^has_journal,^resize_inode", "-L", "fcvm-store", "-d", (char *)tree,
			 (char *)img, size, NULL };

	code = run_capture(argv, NULL, 0, -1, e);
	if (code != 0)
		return code < 0 ? -1 : fc_err_wrap(e, "make the store's ext4 (%s)", size);
	return 0;
}

/* The store's images.json must name exactly image @id. */
static int tree_check(const char *tree, const char *id, struct fc_err *e)
{
	_cleanup_free_ char *p = xasprintf("%s/overlay-images/images.json", tree);
	_cleanup_json_ json_t *j = json_load_path(p, IMG_MAX_JSON, e);
	const char *got;

	if (!j)
		return fc_err_wrap(e, "the store skopeo made");
	if (!json_is_array(j) || json_array_size(j) != 1)
		return fc_err_set(e, 0, "'%s' does not hold exactly one image", p);
	got = json_str(json_array_get(j, 0), "id");
	if (!got || strcmp(got, id))
		return fc_err_set(e, 0, "'%s' holds image '%.64s', not '%s'", p, got ? got : "?", id);
	return 0;
}

/* Can this host build stores at all? NULL, or why not (static text). The
 * caller then uses the archive disk. */
static const char *cannot_build(void)
{
	if (strchr(fc_root(), ':'))
		return "the data root's path contains ':', which skopeo's references cannot carry";
	/* Our own namespace, so the overlay driver's bind mount dies with us
	 * (and with skopeo): nothing is left in the host's mount table. */
	if (unshare(CLONE_NEWNS) < 0)
		return "no private mount namespace for skopeo (needs CAP_SYS_ADMIN)";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return "cannot make the mount namespace private";
	return NULL;
}

/* Step 2a-c into the temporary directory @tmp. 1: the host cannot build
 * stores (@e says why); 0 built; -1 failed. */
static int build_tree(const struct image_disk *d, const char *tmp, json_t *manifest,
		      struct fc_err *e)
{
	_cleanup_free_ char *tree = xasprintf("%s/tree", tmp);
	_cleanup_free_ char *run = xasprintf("%s/run", tmp);
	_cleanup_free_ char *conf = xasprintf("%s/storage.conf", tmp);
	_cleanup_free_ char *text = NULL, *src = NULL, *dst = NULL;
	_cleanup_free_ char *img = xasprintf("%s/store.ext4", tmp);
	const char *why;
	uint64_t t0 = now_ms();
	int code;

	if ((why = cannot_build())) {
		fc_err_set(e, 0, "%s", why);
		return 1;
	}
	text = xasprintf("# fc-disk: the guest's driver, nothing from the host\n"
			 "[storage]\ndriver = \"overlay\"\nrunroot = \"%s\"\ngraphroot = \"%s\"\n",
			 run, tree);
	if (fs_write_atomic(conf, text, strlen(text), 0644, e) < 0)
		return -1;
	setenv("CONTAINERS_STORAGE_CONF", conf, 1);
	unsetenv("STORAGE_DRIVER");
	unsetenv("STORAGE_OPTS");
	src = xasprintf("%s:%s", d->info.format == IMG_DOCKER_ARCHIVE ? "docker-archive" : "oci-archive",
			d->path);
	dst = xasprintf("containers-storage:[overlay@%s+%s]localhost/fcvm-image:%.16s", tree, run,
			d->digest + 7);
	/* no policy.json lookup: the archive is a local file fc-disk validated */
	char *argv[] = { "skopeo", "copy", "--insecure-policy", "-q", src, dst, NULL };

	log_debug("unpacking the image into an image store (once per image)");
	code = run_capture(argv, NULL, 0, -1, e);
	if (code < 0 && e->errnum == ENOENT) {
		fc_err_set(e, 0, "skopeo is not installed (apt-get install skopeo)");
		return 1;
	}
	if (code != 0)
		return code < 0 ? -1 : fc_err_wrap(e, "unpack the image");
	if (tree_check(tree, d->info.image_id, e) < 0)
		return -1;
	if (make_ext4(tree, img, 1, e) < 0) {
		struct fc_err first = *e;

		/* the estimate was short (many small files): once more, bigger */
		unlink(img);
		if (make_ext4(tree, img, 3, e) < 0) {
			*e = first;
			return -1;
		}
	}
	if (fc_rm_tree(tree, e) < 0 || fc_rm_tree(run, e) < 0)
		return -1;
	unlink(conf);
	{
		_cleanup_close_ int fd = open(img, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		char hex[SHA256_HEX_LEN + 1];
		struct stat st;

		if (fd < 0 || fstat(fd, &st) < 0)
			return fc_err_set(e, errno, "open '%s'", img);
		if (fsync(fd) < 0 || fchmod(fd, 0444) < 0)
			return fc_err_set(e, errno, "seal '%s'", img);
		if (sha256_fd(fd, 0, st.st_size, hex, e) < 0)
			return fc_err_wrap(e, "hash '%s'", img);
		json_object_set_new(manifest, "size", json_integer(st.st_size));
		json_object_set_new(manifest, "sha256", json_string(hex));
	}
	json_object_set_new(manifest, "build_ms", json_integer((json_int_t)(now_ms() - t0)));
	return 0;
}

int image_store_get(struct image_disk *d, struct fc_err *e)
{
	_cleanup_free_ char *images = fc_path("images");
	_cleanup_free_ char *final = xasprintf("%s/%s.store", images, d->digest + 7);
	_cleanup_free_ char *name = xasprintf("%s.store", d->digest + 7);
	_cleanup_free_ char *lockp = fc_path("locks/image-%s.lock", d->digest + 7);
	_cleanup_free_ char *tmp = NULL, *mpath = NULL;
	_cleanup_close_ int lock = -1;
	_cleanup_json_ json_t *manifest = NULL;
	const char *env = getenv("FCVM_IMAGE_STORE");
	struct fc_err why;
	int r;

	if (env && !strcmp(env, "0")) {
		log_debug("FCVM_IMAGE_STORE=0: the guest loads the archive");
		return 0;
	}
	if (!dir_exists(final)) {
		lock = fs_lock(lockp, 0, e);
		if (lock < 0)
			return -1;
	}
	if (!dir_exists(final)) {
		tmp = fs_tmpname(images, name);
		if (mkdir(tmp, 0755) < 0)
			return fc_err_set(e, errno, "create '%s'", tmp);
		manifest = json_pack("{s:i, s:s, s:s, s:s}", "version", STORE_FORMAT, "digest",
				     d->digest, "image_id", d->info.image_id, "driver", "overlay");
		r = build_tree(d, tmp, manifest, e);
		mpath = xasprintf("%s/manifest.json", tmp);
		if (r == 0 && json_write_atomic(mpath, manifest, e) == 0 &&
		    fs_publish(tmp, final, false, e) == 0) {
			log_debug("published '%s'", final);
		} else {
			if (fc_rm_tree(tmp, &why) < 0)
				log_warn("%s", why.msg);
			if (r > 0) {
				/* said once, here; the run goes on the slower way */
				log_warn("no image store (%s): the guest loads the image instead (slower)",
					 e->msg);
				return 0;
			}
			return fc_err_wrap(e, "image store for '%s'", d->path);
		}
	}
	if (store_check(final, d->info.image_id, &d->store_size, e) < 0)
		return fc_err_wrap(e, "cached image store '%s' is damaged (remove it to rebuild: rm -r '%s')",
				   final, final);
	d->store = xasprintf("%s/store.ext4", final);
	return 0;
}
