/* storage.c - "fc-setup storage": make the data root reflink-capable.
 *
 * A root already on a file system where FICLONE really works (btrfs, XFS
 * with reflink=1) is used as is. Otherwise a sparse image file is made
 * (mkfs.btrfs) and loop-mounted on the root; the loop device is set to
 * auto-clear, so unmounting the root (--unmount) also frees it. Both paths
 * end by really cloning a file on the root, so "OK" means reflink works.
 * --dir PATH prepares an existing directory where reflinks already work
 * (no image, no mount). Every way ends by writing the marker FC_ROOT_MARKER
 * (fc_root_mark), which tools check (fc_root_check) before they write, so a
 * mistyped FCVM_ROOT is refused instead of populated.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "paths.h"
#include "setup.h"
#include "util.h"

#define STORAGE_USAGE                                                         \
	"usage: fc-setup storage [--size GIB] [--image FILE] [--unmount]\n"  \
	"       fc-setup storage --dir PATH [--without-reflink]\n"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

const char *fs_type_name(long type)
{
	switch (type) {
	case BTRFS_SUPER_MAGIC: return "btrfs";
	case XFS_SUPER_MAGIC: return "xfs";
	case EXT4_SUPER_MAGIC: return "ext4";
	case TMPFS_MAGIC: return "tmpfs";
	case OVERLAYFS_SUPER_MAGIC: return "overlay";
	default: return "another file system";
	}
}

int reflink_probe(const char *dir, struct fc_err *e)
{
	_cleanup_free_ char *src = xasprintf("%s/.reflink-probe-%d", dir, (int)getpid());
	_cleanup_free_ char *dst = xasprintf("%s/.reflink-probe-%d.clone", dir, (int)getpid());
	_cleanup_close_ int fd = -1;
	char block[4096];
	int r;

	memset(block, 'f', sizeof(block));
	fd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", src);
	if (write_full(fd, block, sizeof(block)) < 0 || fsync(fd) < 0) {
		fc_err_set(e, errno, "write '%s'", src);
		unlink(src);
		return -1;
	}
	r = fs_reflink(src, dst, 0600, true, e);
	unlink(src);
	unlink(dst);
	return r;
}

static bool is_mountpoint(const char *path)
{
	_cleanup_free_ char *parent = xasprintf("%s/..", path);
	struct stat a, b;

	return stat(path, &a) == 0 && stat(parent, &b) == 0 &&
	       (a.st_dev != b.st_dev || a.st_ino == b.st_ino);
}

/* True when @dir holds nothing but (recursively) empty directories - and,
 * at the top (@top), the marker of a prepared root, which the mount hides
 * and replaces with its own. */
static bool only_empty_dirs(const char *dir, bool top)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool ok = true;

	if (!d)
		return false;
	while (ok && (de = readdir(d))) {
		_cleanup_free_ char *p = NULL;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    (top && de->d_type == DT_REG && !strcmp(de->d_name, FC_ROOT_MARKER)))
			continue;
		p = xasprintf("%s/%s", dir, de->d_name);
		ok = de->d_type == DT_DIR && only_empty_dirs(p, false);
	}
	closedir(d);
	return ok;
}

static int make_image(const char *image, uint64_t gib, struct fc_err *e)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp-%d", image, (int)getpid());
	_cleanup_free_ char *dir = xstrdup(image);
	_cleanup_close_ int fd = -1;
	char *slash = strrchr(dir, '/');

	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir_p(dir, 0755, e) < 0)
			return -1;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", tmp);
	tmp_register(tmp);
	if (ftruncate(fd, (off_t)(gib << 30)) < 0)
		return fc_err_set(e, errno, "size '%s' to %llu GiB", tmp, (unsigned long long)gib);
	log_info("formatting a sparse %llu GiB btrfs image %s", (unsigned long long)gib, image);
	char *argv[] = { "mkfs.btrfs", "-q", "-L", "fcvm-data", tmp, NULL };

	if (run_ok(argv, NULL, -1, -1, e) < 0)
		return fc_err_wrap(e, "format '%s' (install btrfs-progs)", tmp);
	if (fs_publish(tmp, image, false, e) < 0)
		return -1;
	tmp_keep(tmp);
	return 0;
}

static int unmount_root(const char *root)
{
	struct statfs sf;
	struct fc_err e;

	if (!is_mountpoint(root)) {
		log_info("%s is not a mount point: nothing to unmount", root);
		return 0;
	}
	if (statfs(root, &sf) < 0)
		die("statfs '%s'", root);
	if (sf.f_type != BTRFS_SUPER_MAGIC)
		diex("%s is a %s mount, not an fcvm btrfs image: not unmounting it", root,
		     fs_type_name(sf.f_type));
	/* the loop device was set up with autoclear: it goes with the mount */
	char *argv[] = { "umount", (char *)root, NULL };

	if (run_ok(argv, NULL, -1, -1, &e) < 0) {
		fc_err_wrap(&e, "unmount '%s' (busy? stop the VMs using it)", root);
		fc_err_exit(&e, 1);
	}
	log_info("unmounted %s", root);
	return 0;
}

/* --dir PATH: an existing directory becomes the data root as it is. */
static int mark_dir(const char *dir, bool without_reflink)
{
	struct fc_err e;
	struct statfs sf;
	struct stat st;

	if (stat(dir, &st) < 0)
		die("--dir '%s'", dir);
	if (!S_ISDIR(st.st_mode))
		diex("--dir '%s' is not a directory", dir);
	/* the tools find the root through FCVM_ROOT: from here on it is @dir */
	if (setenv("FCVM_ROOT", dir, 1) < 0)
		die("setenv");
	if (statfs(dir, &sf) < 0)
		die("statfs '%s'", dir);
	if (reflink_probe(dir, &e) < 0) {
		if (!fs_reflink_unsupported(e.errnum))
			fc_err_exit(&e, 1);
		if (!without_reflink)
			diex("%s is on %s without reflink: use 'fc-setup storage' without --dir (a btrfs "
			     "image), or --without-reflink to prepare it anyway (fc-disk cannot copy disks there)",
			     dir, fs_type_name(sf.f_type));
		log_warn("%s is on %s without reflink: prepared anyway (--without-reflink)", dir,
			 fs_type_name(sf.f_type));
	} else {
		log_info("%s is on %s and reflinks work", dir, fs_type_name(sf.f_type));
	}
	if (fc_root_mark(&e) < 0 || fc_root_init(&e) < 0)
		fc_err_exit(&e, 1);
	printf("%s\n", dir);
	return 0;
}

int cmd_storage(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'i' },
		{ "unmount", no_argument, NULL, 'u' },
		{ "dir", required_argument, NULL, 'd' },
		{ "without-reflink", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	_cleanup_free_ char *image = NULL;
	const char *root = fc_root();
	uint64_t gib = 20, t0 = now_ms();
	bool unmount = false, without_reflink = false;
	const char *dir = NULL;
	struct fc_err e;
	struct statfs sf;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_u64(optarg, 1, 65536, "--size (GiB)", &gib, &e) < 0)
				usage_err(STORAGE_USAGE, "%s", e.msg);
			break;
		case 'i': free(image); image = xstrdup(optarg); break;
		case 'u': unmount = true; break;
		case 'd': dir = optarg; break;
		case 'w': without_reflink = true; break;
		case 'h': fputs(STORAGE_USAGE, stdout); return 0;
		default: usage_err(STORAGE_USAGE, "unknown option");
		}
	}
	if (optind != argc)
		usage_err(STORAGE_USAGE, "unexpected argument '%s'", argv[optind]);
	if (without_reflink && !dir)
		usage_err(STORAGE_USAGE, "--without-reflink goes with --dir PATH");
	if (dir && (unmount || image))
		usage_err(STORAGE_USAGE, "--dir PATH takes no --image or --unmount");
	if (dir)
		return mark_dir(dir, without_reflink);
	if (!image)
		image = xasprintf("%s/fcvm-btrfs.img", fc_cache());
	if (geteuid() != 0 && unmount)
		diex("storage --unmount: must run as root");
	if (unmount)
		return unmount_root(root);

	if (mkdir_p(root, 0755, &e) < 0)
		fc_err_exit(&e, 1);
	if (statfs(root, &sf) < 0)
		die("statfs '%s'", root);
	if (reflink_probe(root, &e) == 0) {
		log_info("%s is on %s and reflinks work", root, fs_type_name(sf.f_type));
		goto ok;
	}
	if (!fs_reflink_unsupported(e.errnum))
		fc_err_exit(&e, 1);
	if (geteuid() != 0)
		diex("%s has no reflink support and mounting a btrfs image there needs root: run 'fc-setup storage' as root",
		     root);
	log_info("%s is on %s without reflink: mounting a btrfs image on it", root,
		 fs_type_name(sf.f_type));
	if (is_mountpoint(root))
		diex("%s is already a mount point (%s) without reflink: unmount it or set FCVM_ROOT elsewhere",
		     root, fs_type_name(sf.f_type));
	if (!only_empty_dirs(root, true))
		diex("%s is not empty: mounting the btrfs image would hide its files (move them away or set FCVM_ROOT elsewhere)",
		     root);
	if (access(image, F_OK) < 0) {
		if (make_image(image, gib, &e) < 0)
			setup_fail(&e);
	} else {
		log_info("reusing image %s", image);
	}
	char *mount_argv[] = { "mount", "-o", "loop", image, (char *)root, NULL };

	if (run_ok(mount_argv, NULL, -1, -1, &e) < 0) {
		fc_err_wrap(&e, "mount '%s' on '%s' (if the image is damaged, remove it)", image, root);
		setup_fail(&e);
	}
	if (reflink_probe(root, &e) < 0) {
		char *um[] = { "umount", (char *)root, NULL };
		struct fc_err ue;

		run_cmd(um, NULL, -1, -1, &ue);
		fc_err_wrap(&e, "reflink on the mounted image");
		fc_err_exit(&e, 1);
	}
	log_info("mounted %s on %s in %.1f s; reflinks work", image, root,
		 (double)(now_ms() - t0) / 1000);
ok:
	if (fc_root_mark(&e) < 0 || fc_root_init(&e) < 0)
		fc_err_exit(&e, 1);
	printf("%s\n", root);
	return 0;
}
