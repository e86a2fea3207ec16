/* rootfs.c - "fc-setup rootfs": a Debian root filesystem with podman and
 * fc-agent as an ext4 image.
 *
 * How it works (two cached layers, so a new agent costs seconds):
 *  1. base: debootstrap --variant=minbase with the package list, packed as
 *     $FCVM_CACHE/rootfs-base-<suite>-<basekey16>.tar.zst, keyed by (suite,
 *     packages, mirror); built under $FCVM_CACHE/rootfs-base.lock in a temp
 *     dir beside it (the cache may be shared by several data roots);
 *  2. image: the base unpacked into rootfs/.tmp-<key16>-<pid>/tree, plus
 *     fc-agent, fc-volfs (the volume FUSE client, static) and the guest
 *     configuration, made into a sparse ext4 by mkfs.ext4 -d; key =
 *     sha256(base key, agent sha256, volfs sha256, config files, size,
 *     format version). The temp dir is renamed to rootfs/<key16> when
 *     complete and rootfs/default repointed, under locks/rootfs.lock.
 * A signal at any point removes the temp dirs (see setup.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "setup.h"
#include "util.h"

#define ROOTFS_USAGE \
	"usage: fc-setup rootfs [--agent FILE] [--volfs FILE] [--suite SUITE] [--mirror URL] [--size MIB]\n"

/* netavark and aardvark-dns by name: debootstrap does not resolve podman's
 * virtual dependency container-network-stack. */
static const char packages[] =
	"podman,netavark,aardvark-dns,crun,runc,conmon,iproute2,ca-certificates,kmod,fuse3";

struct conf_file {
	const char *path;
	mode_t mode;
	const char *text;
};

/* The guest has no systemd and no journald: podman must use cgroupfs, file
 * events and k8s-file logs; crun is the runtime (the host's cgroup trouble
 * with crun does not apply inside the guest). */
static const struct conf_file conf_files[] = {
	{ "etc/containers/containers.conf", 0644,
	  "# fcvm guest: no systemd, no journald (written by fc-setup)\n"
	  "[containers]\n"
	  "log_driver = \"k8s-file\"\n"
	  "cgroups = \"enabled\"\n"
	  "default_ulimits = [\"nofile=65536:65536\"]\n"
	  "[engine]\n"
	  "runtime = \"crun\"\n"
	  "cgroup_manager = \"cgroupfs\"\n"
	  "events_logger = \"file\"\n"
	  "[network]\n"
	  "network_backend = \"netavark\"\n" },
	{ "etc/containers/storage.conf", 0644,
	  "# fcvm guest (written by fc-setup)\n"
	  "[storage]\n"
	  "driver = \"overlay\"\n"
	  "runroot = \"/run/containers/storage\"\n"
	  "graphroot = \"/var/lib/containers/storage\"\n" },
	{ "etc/hostname", 0644, "fcvm\n" },
	{ "etc/hosts", 0644, "127.0.0.1\tlocalhost fcvm\n::1\tlocalhost ip6-localhost\n" },
	{ "etc/fstab", 0644, "# fcvm: the initramfs mounts the root; fc-agent mounts the rest\n" },
	{ "etc/resolv.conf", 0644, "# fcvm: written at boot when the VM has a network\n" },
};

/* Files debootstrap or the packages leave that must not be in the guest. */
static const char *const remove_files[] = {
	"etc/cni/net.d/87-podman-bridge.conflist",	/* would make podman pick CNI */
	"etc/machine-id",
	"var/lib/dbus/machine-id",
};

static int write_text(const char *path, const char *text, mode_t mode, struct fc_err *e)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');

	if (slash) {
		*slash = '\0';
		if (mkdir_p(dir, 0755, e) < 0)
			return -1;
	}
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", path);
	if (write_full(fd, text, strlen(text)) < 0)
		return fc_err_set(e, errno, "write '%s'", path);
	if (fchmod(fd, mode) < 0)
		return fc_err_set(e, errno, "chmod '%s'", path);
	return 0;
}

static int copy_file(const char *src, const char *dst, mode_t mode, struct fc_err *e)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_close_ int fd = -1;
	size_t len;

	data = read_file_max(src, 256 << 20, &len, e);
	if (!data)
		return -1;
	unlink(dst);
	fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", dst);
	if (write_full(fd, data, len) < 0)
		return fc_err_set(e, errno, "write '%s'", dst);
	if (fchmod(fd, mode) < 0)
		return fc_err_set(e, errno, "chmod '%s'", dst);
	return 0;
}

/* debootstrap into a temp dir in the cache, pack it, rename into place. */
static int build_base(const char *tarball, const char *suite, const char *mirror,
		      const char *key16, struct fc_err *e)
{
	_cleanup_free_ char *tmp = xasprintf("%s/.tmp-base-%s-%d", fc_cache(), key16, (int)getpid());
	_cleanup_free_ char *tree = xasprintf("%s/tree", tmp);
	_cleanup_free_ char *tmptar = xasprintf("%s/base.tar.zst", tmp);
	_cleanup_free_ char *inc = xasprintf("--include=%s", packages);
	uint64_t t0 = now_ms();

	if (mkdir_p(tree, 0755, e) < 0)
		return -1;
	tmp_register(tmp);
	log_info("debootstrap %s (minbase + %s) from %s: this takes a minute or two", suite,
		 packages, mirror);
	char *db_argv[] = { "debootstrap", "--variant=minbase", inc, (char *)suite, tree,
			    (char *)mirror, NULL };

	if (run_ok(db_argv, NULL, -1, -1, e) < 0) {
		_cleanup_free_ char *log = xasprintf("%s/debootstrap/debootstrap.log", tree);
		_cleanup_free_ char *keep = xasprintf("%s/debootstrap-failed.log", fc_cache());
		struct fc_err ce;

		/* the temp dir goes away on exit: keep the log where the user can read it */
		if (g_interrupted || copy_file(log, keep, 0644, &ce) < 0)
			return fc_err_wrap(e, "debootstrap %s", suite);
		return fc_err_wrap(e, "debootstrap %s (its log: '%s')", suite, keep);
	}
	log_info("debootstrap done in %.0f s; packing the base into the cache",
		 (double)(now_ms() - t0) / 1000);
	{
		_cleanup_free_ char *debs = xasprintf("%s/var/cache/apt/archives", tree);
		char *clean_argv[] = { "find", debs, "-name", "*.deb", "-delete", NULL };

		if (run_ok(clean_argv, NULL, -1, -1, e) < 0)
			return -1;
	}
	char *tar_argv[] = { "tar", "--zstd", "--numeric-owner", "--xattrs", "--xattrs-include=*",
			     "-C", tree, "-cf", tmptar, ".", NULL };

	if (run_ok(tar_argv, NULL, -1, -1, e) < 0)
		return fc_err_wrap(e, "pack the base root filesystem");
	if (fs_publish(tmptar, tarball, true, e) < 0)
		return -1;
	log_info("base cached as %s (%.0f s)", tarball, (double)(now_ms() - t0) / 1000);
	if (rm_tree(tmp, e) < 0)
		return -1;
	tmp_keep(tmp);
	return 0;
}

static int build_image(const char *tmp, const char *tarball, const char *agent, const char *volfs,
		       uint64_t size_mib, json_t *manifest, struct fc_err *e)
{
	_cleanup_free_ char *volfs_dst = NULL;
	_cleanup_free_ char *tree = xasprintf("%s/tree", tmp);
	_cleanup_free_ char *img = xasprintf("%s/rootfs.ext4", tmp);
	_cleanup_free_ char *agent_dst = xasprintf("%s/usr/sbin/fc-agent", tree);
	_cleanup_free_ char *size = xasprintf("%lluM", (unsigned long long)size_mib);
	_cleanup_free_ char *mpath = xasprintf("%s/manifest.json", tmp);
	uint64_t t0 = now_ms();

	if (mkdir_p(tree, 0755, e) < 0)
		return -1;
	log_info("unpacking the base root filesystem");
	char *tar_argv[] = { "tar", "--zstd", "--numeric-owner", "--xattrs", "--xattrs-include=*",
			     "-xpf", (char *)tarball, "-C", tree, NULL };

	if (run_ok(tar_argv, NULL, -1, -1, e) < 0)
		return fc_err_wrap(e, "unpack '%s' (delete it to rebuild)", tarball);
	if (copy_file(agent, agent_dst, 0755, e) < 0)
		return fc_err_wrap(e, "install fc-agent");
	volfs_dst = xasprintf("%s/usr/sbin/fc-volfs", tree);
	if (copy_file(volfs, volfs_dst, 0755, e) < 0)
		return fc_err_wrap(e, "install fc-volfs");
	for (size_t i = 0; i < ARRAY_SIZE(conf_files); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", tree, conf_files[i].path);

		if (write_text(p, conf_files[i].text, conf_files[i].mode, e) < 0)
			return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(remove_files); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", tree, remove_files[i]);

		if (unlink(p) < 0 && errno != ENOENT)
			return fc_err_set(e, errno, "remove '%s'", p);
	}
	log_info("making a %s ext4 image", size);
	/* mkfs.ext4 creates the file sparse; -d copies the tree in */
	char *mkfs_argv[] = { "mkfs.ext4", "-q", "-F", "-L", "fcvm-root", "-d", tree, img, size, NULL };

	if (run_ok(mkfs_argv, NULL, -1, -1, e) < 0)
		return fc_err_wrap(e, "make the ext4 image (too small? try --size)");
	if (rm_tree(tree, e) < 0)
		return -1;
	json_object_set_new(manifest, "build_ms", json_integer((json_int_t)(now_ms() - t0)));
	return json_write_atomic(mpath, manifest, e);
}

/* What cmd_rootfs() hands publish_build() for build_job(). */
struct rootfs_job {
	const char *suite, *mirror, *basekey, *basekey16, *key, *agent, *agsha, *confsha;
	const char *volfs, *volsha;
	uint64_t size_mib;
};

/* The cached debootstrap base (built first if missing, under its own lock:
 * it is shared by every rootfs key), then the image from it in @tmp. */
static int build_job(const char *tmp, void *arg, struct fc_err *e)
{
	const struct rootfs_job *j = arg;
	_cleanup_free_ char *tarball = xasprintf("%s/rootfs-base-%s-%s.tar.zst", fc_cache(),
						 j->suite, j->basekey16);
	_cleanup_json_ json_t *m = json_object();
	char tsha[SHA256_HEX_LEN + 1], now[32];

	if (access(tarball, R_OK) < 0) {
		_cleanup_free_ char *baselock = xasprintf("%s/rootfs-base.lock", fc_cache());
		_cleanup_close_ int bl = -1;

		if (mkdir_p(fc_cache(), 0755, e) < 0)
			return -1;
		bl = lock_file(baselock, "the rootfs base", e);
		if (bl < 0)
			return -1;
		/* every base build holds this lock: older temporaries are stale */
		sweep_build_temps(fc_cache(), ".tmp-base-");
		if (access(tarball, R_OK) < 0 &&
		    build_base(tarball, j->suite, j->mirror, j->basekey16, e) < 0)
			return -1;
	} else {
		log_info("using cached base %s", tarball);
	}
	if (sha256_file_hex(tarball, tsha, e) < 0)
		return -1;
	iso_now(now);
	json_object_set_new(m, "version", json_integer(FORMAT_VERSION));
	json_object_set_new(m, "key", json_string(j->key));
	json_object_set_new(m, "created", json_string(now));
	json_object_set_new(m, "size_mib", json_integer((json_int_t)j->size_mib));
	json_object_set_new(m, "inputs", json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:s},s:s}",
		"suite", j->suite, "variant", "minbase", "packages", packages, "mirror", j->mirror,
		"base", "key", j->basekey, "tarball", tarball, "sha256", tsha,
		"agent", "path", j->agent, "sha256", j->agsha, "config_sha256", j->confsha));
	json_object_set_new(json_object_get(m, "inputs"), "volfs",
			    json_pack("{s:s,s:s}", "path", j->volfs, "sha256", j->volsha));
	return build_image(tmp, tarball, j->agent, j->volfs, j->size_mib, m, e);
}

int cmd_rootfs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "volfs", required_argument, NULL, 'V' },
		{ "suite", required_argument, NULL, 's' },
		{ "mirror", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	_cleanup_free_ char *agent = NULL, *volfs = NULL;
	char volsha[SHA256_HEX_LEN + 1];
	const char *suite = "bookworm", *mirror = "http://deb.debian.org/debian";
	char basekey[SHA256_HEX_LEN + 1], key[SHA256_HEX_LEN + 1], agsha[SHA256_HEX_LEN + 1];
	char confsha[SHA256_HEX_LEN + 1], key16[17], basekey16[17];
	uint64_t size_mib = 2048;
	struct fc_err e;
	struct sha256 s;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': free(agent); agent = xstrdup(optarg); break;
		case 'V': free(volfs); volfs = xstrdup(optarg); break;
		case 's': suite = optarg; break;
		case 'm': mirror = optarg; break;
		case 'S':
			if (parse_u64(optarg, 256, 1 << 20, "--size (MiB)", &size_mib, &e) < 0)
				usage_err(ROOTFS_USAGE, "%s", e.msg);
			break;
		case 'h': fputs(ROOTFS_USAGE, stdout); return 0;
		default: usage_err(ROOTFS_USAGE, "unknown option");
		}
	}
	if (optind != argc)
		usage_err(ROOTFS_USAGE, "unexpected argument '%s'", argv[optind]);
	if (geteuid() != 0)
		diex("rootfs: must run as root (debootstrap and root-owned files in the image)");
	if (!fc_valid_name(suite))
		usage_err(ROOTFS_USAGE, "invalid --suite '%s'", suite);
	if (strncmp(mirror, "http://", 7) && strncmp(mirror, "https://", 8) &&
	    strncmp(mirror, "file:/", 6))
		usage_err(ROOTFS_USAGE, "invalid --mirror '%s': must be an http(s):// or file:/ URL", mirror);
	if (!agent) {
		_cleanup_free_ char *d = self_dir();

		agent = xasprintf("%s/fc-agent", d);
		if (access(agent, R_OK) < 0)
			diex("no fc-agent next to fc-setup ('%s'): run 'make' first or pass --agent FILE",
			     agent);
	}
	if (sha256_file_hex(agent, agsha, &e) < 0) {
		fc_err_wrap(&e, "--agent");
		fc_err_exit(&e, 1);
	}
	if (!volfs) {
		_cleanup_free_ char *d = self_dir();

		volfs = xasprintf("%s/fc-volfs", d);
		if (access(volfs, R_OK) < 0)
			diex("no fc-volfs next to fc-setup ('%s'): run 'make' first or pass --volfs FILE",
			     volfs);
	}
	if (sha256_file_hex(volfs, volsha, &e) < 0) {
		fc_err_wrap(&e, "--volfs");
		fc_err_exit(&e, 1);
	}
	if (fc_root_check(&e) < 0 || fc_root_init(&e) < 0)
		fc_err_exit(&e, 1);

	sha256_init(&s);
	key_add(&s, "format", "fcvm-rootfs-base-" STR(FORMAT_VERSION));
	key_add(&s, "suite", suite);
	key_add(&s, "variant", "minbase");
	key_add(&s, "packages", packages);
	key_add(&s, "mirror", mirror);
	sha256_final_hex(&s, basekey);
	snprintf(basekey16, sizeof(basekey16), "%.16s", basekey);

	sha256_init(&s);
	for (size_t i = 0; i < ARRAY_SIZE(conf_files); i++) {
		key_add(&s, "file", conf_files[i].path);
		key_add(&s, "text", conf_files[i].text);
	}
	for (size_t i = 0; i < ARRAY_SIZE(remove_files); i++)
		key_add(&s, "remove", remove_files[i]);
	sha256_final_hex(&s, confsha);

	sha256_init(&s);
	key_add(&s, "format", "fcvm-rootfs-" STR(FORMAT_VERSION));
	key_add(&s, "base", basekey);
	key_add(&s, "agent", agsha);
	key_add(&s, "volfs", volsha);
	key_add(&s, "config", confsha);
	{
		char sz[32];

		snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size_mib);
		key_add(&s, "size_mib", sz);
	}
	sha256_final_hex(&s, key);
	snprintf(key16, sizeof(key16), "%.16s", key);

	struct rootfs_job job = { .suite = suite, .mirror = mirror, .basekey = basekey,
				  .basekey16 = basekey16, .key = key, .agent = agent, .agsha = agsha,
				  .confsha = confsha, .volfs = volfs, .volsha = volsha,
				  .size_mib = size_mib };

	if (publish_build("rootfs", "rootfs", key16, build_job, &job, &e) < 0)
		setup_fail(&e);
	return 0;
}
