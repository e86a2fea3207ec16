/* fc-disk - the disks a microVM gets: a read-only disk per container image
 * (cached by digest) and a per-VM copy-on-write copy of the base rootfs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "state.h"
#include "util.h"

static const char usage_text[] =
	"usage: fc-disk image [--json] [--] IMAGE\n"
	"       fc-disk rootfs --vm ID [--base PATH] [--force]\n"
	"       fc-disk rm --vm ID\n"
	"       fc-disk -h | --help\n"
	"common options: -v (more log), -q (less log)\n";

static noreturn void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

/* Report @e and exit 1; a write that failed for lack of space says so
 * first (also when a helper - tar, podman save - hit it). */
static noreturn void fail(struct fc_err *e)
{
	if (!strstr(e->msg, "is full") &&
	    (fc_errno_full(e->errnum) || strstr(e->msg, strerror(ENOSPC))))
		fc_err_wrap(e, "data root '%s' is full", fc_root());
	fc_err_exit(e, 1);
}

struct args {
	bool json, force;
	const char *vm, *base;
	const char *operand;
};

/* Options of every subcommand; each command rejects those it does not take. */
static void parse(int argc, char **argv, struct args *a, const char *allowed)
{
	enum { O_JSON = 256, O_VM, O_BASE, O_FORCE };
	static const struct option opts[] = {
		{ "json", no_argument, NULL, O_JSON },	   { "vm", required_argument, NULL, O_VM },
		{ "base", required_argument, NULL, O_BASE }, { "force", no_argument, NULL, O_FORCE },
		{ "verbose", no_argument, NULL, 'v' },	   { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },	   { NULL, 0, NULL, 0 }
	};
	int c, idx;

	while ((c = getopt_long(argc, argv, "vqh", opts, &idx)) != -1) {
		if (c >= 256 && !strstr(allowed, opts[idx].name))
			usage_err(usage_text, "'%s' does not take --%s", argv[0], opts[idx].name);
		switch (c) {
		case O_JSON: a->json = true; break;
		case O_VM: a->vm = optarg; break;
		case O_BASE: a->base = optarg; break;
		case O_FORCE: a->force = true; break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': usage(0);
		default: usage(2);
		}
	}
	if (strstr(allowed, "operand")) {
		if (optind >= argc)
			usage_err(usage_text, "'%s' needs an IMAGE", argv[0]);
		a->operand = argv[optind++];
	}
	if (optind < argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (strstr(allowed, "vm")) {
		if (!a->vm)
			usage_err(usage_text, "'%s' needs --vm ID", argv[0]);
		if (!fc_valid_name(a->vm))
			usage_err(usage_text, "invalid --vm '%s': use 1-63 characters of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
				  a->vm);
	}
}

static int cmd_image(int argc, char **argv)
{
	struct args a = { 0 };
	struct image_disk d;
	struct fc_err e;

	parse(argc, argv, &a, "json operand");
	if (image_disk_get(a.operand, &d, &e) < 0 || image_store_get(&d, &e) < 0)
		fail(&e);
	if (a.json) {
		_cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:I, s:o, s:I, s:s, s:s, s:s, s:i}",
						     "path", d.path, "digest", d.digest, "ref", d.ref,
						     "name", d.name ? json_string(d.name) : json_null(),
						     "size", (json_int_t)d.size,
						     "store", d.store ? json_string(d.store) : json_null(),
						     "store_size", (json_int_t)d.store_size,
						     "image_id", d.info.image_id,
						     "format", img_format_name(d.info.format),
						     "source", d.source, "layers", (int)d.info.layers);
		_cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

		if (s)
			puts(s);
		else
			diex("serialise result");
	} else {
		puts(d.path);
	}
	image_disk_free(&d);
	return 0;
}

static int cmd_rootfs(int argc, char **argv)
{
	struct args a = { 0 };
	_cleanup_free_ char *base = NULL, *dir = NULL, *dst = NULL;
	struct fc_err e;
	struct stat st;
	bool made_dir;

	parse(argc, argv, &a, "vm base force");
	base = a.base ? xstrdup(a.base) : fc_path("rootfs/default/rootfs.ext4");
	if (stat(base, &st) < 0)
		diex("base rootfs '%s': %s%s", base, strerror(errno),
		     a.base ? "" : " (run 'fc-setup rootfs')");
	if (!S_ISREG(st.st_mode))
		diex("base rootfs '%s' is not a regular file", base);
	if (fc_root_check(&e) < 0 || fc_root_init(&e) < 0)
		fail(&e);
	dir = fc_path("vm-disks/%s", a.vm);
	dst = xasprintf("%s/rootfs.ext4", dir);
	if (!a.force && lstat(dst, &st) == 0)
		diex("'%s' already exists (use --force to replace it)", dst);
	made_dir = mkdir(dir, 0755) == 0;
	if (!made_dir && errno != EEXIST) {
		if (fc_errno_full(errno)) {
			fc_err_enospc(&e, dir);
			fail(&e);
		}
		die("create directory '%s'", dir);
	}
	if (fs_reflink(base, dst, 0644, a.force, &e) < 0) {
		if (made_dir)
			rmdir(dir);
		if (fs_reflink_unsupported(e.errnum))
			diex("%s: the data root must be on btrfs or XFS (run 'fc-setup storage')", e.msg);
		fail(&e);
	}
	puts(dst);
	return 0;
}

/* Remove vm-disks/ID unless VM ID is running (exit 1 then): its
 * non-directory entries, then the directory. Never
 * follows a symlink (the directory itself is opened O_NOFOLLOW; entries are
 * unlinked, not opened) and never recurses. */
static int cmd_rm(int argc, char **argv)
{
	struct args a = { 0 };
	_cleanup_free_ char *top = NULL, *dir = NULL;
	_cleanup_close_ int tfd = -1;
	struct dirent *de;
	DIR *d;
	int fd, bad = 0;

	parse(argc, argv, &a, "vm");
	{
		/* A running VM's disk is in use: its owner removes nothing of
		 * ours, so neither do we while it lives. */
		struct fc_err e;
		_cleanup_json_ json_t *rec = state_load(a.vm, &e);

		if (!rec && e.errnum != ENOENT)
			fail(&e);
		if (rec && state_live(rec))
			diex("VM '%s' is running (pid %lld): stop it first ('fcvm stop %s')", a.vm,
			     (long long)json_integer_value(json_object_get(rec, "pid")), a.vm);
	}
	top = fc_path("vm-disks");
	dir = fc_path("vm-disks/%s", a.vm);
	tfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0 && errno == ENOENT)
		return 0;
	if (tfd < 0)
		die("open '%s'", top);
	fd = openat(tfd, a.vm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;	/* already gone: rm is idempotent for cleanup paths */
	if (fd < 0)
		die("open '%s'", dir);
	d = fdopendir(fd);
	if (!d)
		die("read '%s'", dir);
	while ((errno = 0, de = readdir(d))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			die("stat '%s/%s'", dir, de->d_name);
		if (S_ISDIR(st.st_mode)) {
			log_error("not removing directory '%s/%s'", dir, de->d_name);
			bad = 1;
			continue;
		}
		if (unlinkat(dirfd(d), de->d_name, 0) < 0)
			die("remove '%s/%s'", dir, de->d_name);
	}
	if (errno)
		die("read '%s'", dir);
	closedir(d);
	if (bad)
		diex("remove '%s': it contains directories (remove them by hand)", dir);
	if (unlinkat(tfd, a.vm, AT_REMOVEDIR) < 0)
		die("remove '%s'", dir);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
		{ "image", cmd_image }, { "rootfs", cmd_rootfs }, { "rm", cmd_rm },
	};
	size_t i;

	log_init("fc-disk");
	if (argc < 2)
		usage_err(usage_text, "missing command");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		usage(0);
	for (i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	usage_err(usage_text, "unknown command '%s'", argv[1]);
}
