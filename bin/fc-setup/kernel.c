/* kernel.c - "fc-setup kernel": Debian cloud kernel -> ELF vmlinux + initramfs.
 *
 * How it works:
 *  1. the .deb: --deb FILE, or apt resolves linux-image-cloud-amd64 to the
 *     real linux-image-<ver>-cloud-amd64, downloaded once into
 *     $FCVM_CACHE/debs (reused while its sha256 matches apt's);
 *  2. key = sha256(format version, deb sha256, module list, init script,
 *     busybox sha256, agent sha256): an existing kernels/<key16> is
 *     reused as is (no unpacking at all);
 *  3. under locks/kernel.lock: dpkg-deb -x into kernels/.tmp-<key16>-<pid>,
 *     decompress the bzImage payload into an ELF vmlinux (lib/kimage),
 *     resolve module dependencies from each module's .modinfo (the deb
 *     carries no modules.dep: depmod runs at install time), write the newc
 *     initramfs, the manifest, then rename the temp dir into place and
 *     repoint kernels/default.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpio.h"
#include "json.h"
#include "fsutil.h"
#include "kimage.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "setup.h"
#include "util.h"

#define KERNEL_USAGE "usage: fc-setup kernel [--deb FILE] [--agent FILE] [--busybox FILE]\n"

static const char *const guest_modules[] = {
	"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_net",
	"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
	"overlay", "fuse",
};

/* Applets the init script uses (busybox --install at boot costs time under TCG). */
static const char *const applets[] = {
	"sh", "mount", "umount", "insmod", "switch_root", "reboot", "poweroff",
	"sleep", "cat", "ls", "mkdir", "echo",
};

#define MAX_MODS 64
#define MAX_DEPS_LEN 1024

struct mod {
	char name[64];
	char *path;		/* in the unpacked deb */
	uint8_t *data;		/* uncompressed .ko */
	size_t len;
};

struct modset {
	struct mod m[MAX_MODS];
	size_t n;
	char **index_names, **index_paths;	/* every module in the deb */
	size_t nindex, capindex;
	char *builtin;		/* modules.builtin contents */
};

static struct modset *g_ms;	/* nftw has no user pointer */

static void normalize(char *name)
{
	for (char *p = name; *p; p++)
		if (*p == '-')
			*p = '_';
}

/* "dir/virtio_blk.ko.xz" -> "virtio_blk"; false if not a module file. */
static bool mod_name_of(const char *path, char *out, size_t outlen)
{
	const char *base = strrchr(path, '/');
	const char *dot;
	size_t n;

	base = base ? base + 1 : path;
	dot = strstr(base, ".ko");
	if (!dot || (dot[3] && strcmp(dot + 3, ".xz") && strcmp(dot + 3, ".zst") && strcmp(dot + 3, ".gz")))
		return false;
	n = (size_t)(dot - base);
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, base, n);
	out[n] = '\0';
	normalize(out);
	return true;
}

static int index_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	char name[64];

	(void)st;
	(void)ftw;
	if (flag != FTW_F || !mod_name_of(p, name, sizeof(name)))
		return 0;
	if (g_ms->nindex == g_ms->capindex) {
		g_ms->capindex = g_ms->capindex ? 2 * g_ms->capindex : 1024;
		g_ms->index_names = xrealloc(g_ms->index_names, g_ms->capindex * sizeof(char *));
		g_ms->index_paths = xrealloc(g_ms->index_paths, g_ms->capindex * sizeof(char *));
	}
	g_ms->index_names[g_ms->nindex] = xstrdup(name);
	g_ms->index_paths[g_ms->nindex++] = xstrdup(p);
	return 0;
}

static const char *index_find(struct modset *ms, const char *name)
{
	for (size_t i = 0; i < ms->nindex; i++)
		if (strcmp(ms->index_names[i], name) == 0)
			return ms->index_paths[i];
	return NULL;
}

static bool is_builtin(struct modset *ms, const char *name)
{
	char *save = NULL, *copy, *line;
	bool found = false;
	char n[64];

	if (!ms->builtin)
		return false;
	copy = xstrdup(ms->builtin);
	for (line = strtok_r(copy, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save))
		found = mod_name_of(line, n, sizeof(n)) && strcmp(n, name) == 0;
	free(copy);
	return found;
}

/* Read a module, decompressing .xz/.zst/.gz through the matching tool. */
static uint8_t *load_ko(const char *path, const char *tmpdir, size_t *len, struct fc_err *e)
{
	const char *tool = NULL;
	size_t pl = strlen(path);

	if (pl > 6 && strcmp(path + pl - 6, ".ko.xz") == 0)
		tool = "xz";
	else if (pl > 7 && strcmp(path + pl - 7, ".ko.zst") == 0)
		tool = "zstd";
	else if (pl > 6 && strcmp(path + pl - 6, ".ko.gz") == 0)
		tool = "gzip";
	if (!tool)
		return (uint8_t *)read_file_max(path, 64 << 20, len, e);

	_cleanup_free_ char *out = xasprintf("%s/module.ko", tmpdir);
	_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char *argv[] = { (char *)tool, "-dc", NULL };

	if (in < 0 || fd < 0)
		return fc_err_set(e, errno, "open '%s'", in < 0 ? path : out), NULL;
	if (run_ok(argv, NULL, in, fd, e) < 0)
		return fc_err_wrap(e, "decompress '%s'", path), NULL;
	return (uint8_t *)read_file_max(out, 64 << 20, len, e);
}

/* Depth-first, dependencies before dependents; @depth guards against cycles. */
static int add_module(struct modset *ms, const char *name, const char *tmpdir, int depth,
		      struct fc_err *e)
{
	char deps[MAX_DEPS_LEN], *save = NULL, *d;
	const char *path;
	struct mod *m;

	for (size_t i = 0; i < ms->n; i++)
		if (strcmp(ms->m[i].name, name) == 0)
			return 0;
	if (depth > 16)
		return fc_err_set(e, 0, "module dependency chain too deep at '%s' (a cycle?)", name);
	path = index_find(ms, name);
	if (!path) {
		if (is_builtin(ms, name)) {
			log_debug("module %s is built into this kernel", name);
			return 0;
		}
		return fc_err_set(e, 0, "module '%s' is neither in the package nor built in", name);
	}
	_cleanup_free_ uint8_t *data = NULL;
	size_t len;

	data = load_ko(path, tmpdir, &len, e);
	if (!data)
		return -1;
	if (kimage_modinfo_depends(data, len, deps, sizeof(deps), e) < 0)
		return fc_err_wrap(e, "module '%s'", path);
	for (d = strtok_r(deps, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
		normalize(d);
		if (*d && add_module(ms, d, tmpdir, depth + 1, e) < 0)
			return fc_err_wrap(e, "dependency of %s", name);
	}
	if (ms->n == MAX_MODS)
		return fc_err_set(e, 0, "more than %d modules needed", MAX_MODS);
	m = &ms->m[ms->n++];
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->path = xstrdup(path);
	m->len = len;
	m->data = steal_ptr(&data);
	return 0;
}

static void modset_free(struct modset *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		free(ms->m[i].path);
		free(ms->m[i].data);
	}
	for (size_t i = 0; i < ms->nindex; i++) {
		free(ms->index_names[i]);
		free(ms->index_paths[i]);
	}
	free(ms->index_names);
	free(ms->index_paths);
	free(ms->builtin);
	free(ms);
}

struct vmlinux_info {
	enum kimage_fmt fmt;
	size_t off;
	struct kimage_elf elf;
};

static int map_file(const char *path, uint8_t **p, size_t *len, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return fc_err_set(e, errno, "open '%s'", path);
	*len = (size_t)st.st_size;
	if (*len == 0) {
		*p = NULL;
		return 0;
	}
	*p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (*p == MAP_FAILED)
		return fc_err_set(e, errno, "map '%s'", path);
	return 0;
}

/* Decompress candidate payloads of @bzimage into @out until one is a vmlinux. */
static int extract_vmlinux(const char *bzimage, const char *out, struct vmlinux_info *vi,
			   struct fc_err *e)
{
	struct kimage_cand cands[64];
	uint8_t *img, *v;
	size_t len, n, vlen;
	char why[2048] = "no compressed payload found";

	if (map_file(bzimage, &img, &len, e) < 0)
		return -1;
	n = kimage_find_payloads(img, len, cands, ARRAY_SIZE(cands));
	munmap(img, len);
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int in = open(bzimage, O_RDONLY | O_CLOEXEC);
		_cleanup_close_ int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		const char *const *argv = kimage_fmt_argv(cands[i].fmt);
		struct fc_err ce;
		int r;

		if (in < 0 || fd < 0)
			return fc_err_set(e, errno, "open '%s'", in < 0 ? bzimage : out);
		if (lseek(in, (off_t)cands[i].off, SEEK_SET) < 0)
			return fc_err_set(e, errno, "seek '%s'", bzimage);
		log_debug("trying %s payload at offset %zu", kimage_fmt_name(cands[i].fmt), cands[i].off);
		/* decompressors exit non-zero on the bytes after the stream: judge the output */
		r = run_cmd((char *const *)argv, NULL, in, fd, &ce);
		if (r < 0) {
			if (g_interrupted)
				return fc_err_set(e, 0, "%s", ce.msg);
			snprintf(why, sizeof(why), "%s (install the '%s' tool)", ce.msg, argv[0]);
			continue;
		}
		if (map_file(out, &v, &vlen, e) < 0)
			return -1;
		r = kimage_check_elf(v, vlen, &vi->elf, &ce);
		if (vlen)
			munmap(v, vlen);
		if (r == 0) {
			vi->fmt = cands[i].fmt;
			vi->off = cands[i].off;
			return 0;
		}
		snprintf(why, sizeof(why), "%s payload at offset %zu: %s",
			 kimage_fmt_name(cands[i].fmt), cands[i].off, ce.msg);
	}
	unlink(out);
	return fc_err_set(e, 0, "no ELF vmlinux in '%s' (%zu candidate(s); last: %s)", bzimage, n, why);
}

static int write_initrd(const char *path, struct modset *ms, const char *busybox,
			const char *agent, struct fc_err *e)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	_cleanup_free_ char *bb = NULL, *ag = NULL, *order = NULL;
	size_t bblen, aglen = 0, olen = 0;
	struct cpio c;
	static const char *const dirs[] = { "bin", "dev", "etc", "lib", "lib/modules", "newroot",
					    "proc", "sys", "tmp", "usr", "usr/sbin" };

	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", path);
	bb = read_file_max(busybox, 16 << 20, &bblen, e);
	if (!bb)
		return fc_err_wrap(e, "busybox (install busybox-static)");
	if (agent && !(ag = read_file_max(agent, 64 << 20, &aglen, e)))
		return -1;
	cpio_init(&c, fd);
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (cpio_dir(&c, dirs[i], 0755, e) < 0)
			return -1;
	/* the kernel opens /dev/console for init before devtmpfs is mounted */
	if (cpio_chardev(&c, "dev/console", 0600, 5, 1, e) < 0 ||
	    cpio_file(&c, "init", 0755, fcvm_init_script, strlen(fcvm_init_script), e) < 0 ||
	    cpio_file(&c, "bin/busybox", 0755, bb, bblen, e) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(applets); i++) {
		char n[64];

		snprintf(n, sizeof(n), "bin/%s", applets[i]);
		if (cpio_symlink(&c, n, "busybox", e) < 0)
			return -1;
	}
	order = xstrdup("");
	for (size_t i = 0; i < ms->n; i++) {
		char n[128];
		char *o2 = xasprintf("%s%s\n", order, ms->m[i].name);

		free(order);
		order = o2;
		snprintf(n, sizeof(n), "lib/modules/%s.ko", ms->m[i].name);
		if (cpio_file(&c, n, 0644, ms->m[i].data, ms->m[i].len, e) < 0)
			return -1;
	}
	olen = strlen(order);
	if (cpio_file(&c, "lib/modules/load.order", 0644, order, olen, e) < 0)
		return -1;
	if (ag && cpio_file(&c, "usr/sbin/fc-agent", 0755, ag, aglen, e) < 0)
		return -1;
	if (cpio_finish(&c, e) < 0)
		return -1;
	if (fsync(fd) < 0)
		return fc_err_set(e, errno, "sync '%s'", path);
	return 0;
}

/* A .deb in $FCVM_CACHE/debs whose sha256 matched apt's is remembered in
 * "<deb>.sha256" with the file's size, mtime and inode, so a rerun need not
 * rehash 30 MB (or ask apt twice) to find its kernel is up to date. */
static char *stamp_line(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return NULL;
	return xasprintf("%lld %lld.%09ld %llu ", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
}

static bool stamp_read(const char *path, char hex[SHA256_HEX_LEN + 1])
{
	_cleanup_free_ char *stamp = xasprintf("%s.sha256", path);
	_cleanup_free_ char *line = stamp_line(path), *old = NULL;
	struct fc_err e;
	size_t n;

	if (!line || !(old = read_file_max(stamp, 512, NULL, &e)))
		return false;
	n = strlen(line);
	if (strncmp(old, line, n) != 0 || strspn(old + n, "0123456789abcdef") != SHA256_HEX_LEN)
		return false;
	memcpy(hex, old + n, SHA256_HEX_LEN);
	hex[SHA256_HEX_LEN] = '\0';
	return true;
}

static void stamp_write(const char *path, const char *hex)
{
	_cleanup_free_ char *stamp = xasprintf("%s.sha256", path);
	_cleanup_free_ char *line = stamp_line(path), *text = NULL;
	struct fc_err e;

	if (!line)
		return;
	text = xasprintf("%s%s\n", line, hex);
	/* only a cache: failing to write it costs time, not correctness */
	if (fs_write_atomic(stamp, text, strlen(text), 0644, &e) < 0)
		log_debug("%s", e.msg);
}

/* The value of field @name ("Depends") in apt-cache show output, NUL-ended
 * in @out; false when absent or too long. */
static bool deb_field(const char *text, const char *name, char *out, size_t outlen)
{
	_cleanup_free_ char *key = xasprintf("\n%s: ", name);
	const char *p = strncmp(text, key + 1, strlen(key) - 1) == 0 ? text - 1 : strstr(text, key);
	const char *end;

	if (!p)
		return false;
	p += strlen(key);
	end = strchr(p, '\n');
	end = end ? end : p + strlen(p);
	if ((size_t)(end - p) >= outlen)
		return false;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return true;
}

/* Resolve linux-image-cloud-amd64 through apt and make sure the real
 * package's .deb is in $FCVM_CACHE/debs. Returns its path (caller frees)
 * and its sha256 in @have. */
static char *fetch_deb(char have[SHA256_HEX_LEN + 1], struct fc_err *e)
{
	char *meta_argv[] = { "apt-cache", "show", "--no-all-versions", "linux-image-cloud-amd64", NULL };
	_cleanup_free_ char *meta = NULL, *show = NULL, *dir = NULL, *path = NULL;
	char deps[1024], pkg[128] = "", ver[128] = "", fname[512], want[SHA256_HEX_LEN + 1] = "";
	const char *p;
	size_t n = 0;

	if (run_capture(meta_argv, &meta, 1 << 20, -1, e) != 0)
		return fc_err_wrap(e, "resolve linux-image-cloud-amd64 (is apt configured? or pass --deb FILE)"), NULL;
	/* "Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)" */
	p = deb_field(meta, "Depends", deps, sizeof(deps)) ? strstr(deps, "linux-image-") : NULL;
	if (!p || sscanf(p, "%127[A-Za-z0-9.+_-] (= %127[A-Za-z0-9.+~:-])", pkg, ver) != 2)
		return fc_err_set(e, 0, "apt-cache: linux-image-cloud-amd64 names no linux-image package version (run 'apt-get update' or pass --deb FILE)"), NULL;
	dir = xasprintf("%s/debs", fc_cache());
	if (mkdir_p(dir, 0755, e) < 0)
		return NULL;
	/* apt-get download's name: the epoch's ':' is escaped as %3a */
	n = (size_t)snprintf(fname, sizeof(fname), "%s_", pkg);
	for (const char *v = ver; *v && n < sizeof(fname) - 16; v++)
		n += (size_t)snprintf(fname + n, sizeof(fname) - n, *v == ':' ? "%%3a" : "%c", *v);
	snprintf(fname + n, sizeof(fname) - n, "_amd64.deb");
	path = xasprintf("%s/%s", dir, fname);
	if (stamp_read(path, have)) {
		log_info("using cached %s", path);
		return steal_ptr(&path);
	}
	char *show_argv[] = { "apt-cache", "show", "--no-all-versions", pkg, NULL };

	if (run_capture(show_argv, &show, 1 << 20, -1, e) != 0)
		return NULL;
	if (!deb_field(show, "SHA256", want, sizeof(want)) ||
	    strspn(want, "0123456789abcdef") != SHA256_HEX_LEN)
		return fc_err_set(e, 0, "apt-cache show %s: no SHA256", pkg), NULL;
	if (access(path, R_OK) == 0 && sha256_file_hex(path, have, e) == 0 && !strcmp(want, have)) {
		log_info("using cached %s", path);
		stamp_write(path, have);
		return steal_ptr(&path);
	}
	log_info("downloading %s %s with apt-get into %s", pkg, ver, dir);
	char *dl_argv[] = { "apt-get", "-q", "download", pkg, NULL };

	if (run_ok(dl_argv, dir, -1, -1, e) < 0)
		return fc_err_wrap(e, "download %s (network? or pass --deb FILE)", pkg), NULL;
	if (sha256_file_hex(path, have, e) < 0)
		return fc_err_wrap(e, "after apt-get download"), NULL;
	if (strcmp(want, have) != 0)
		return fc_err_set(e, 0, "'%s': sha256 %s, apt says %s", path, have, want), NULL;
	stamp_write(path, have);
	return steal_ptr(&path);
}

static int find_vmlinuz(const char *unpacked, char **path, char *ver, size_t verlen,
			struct fc_err *e)
{
	_cleanup_free_ char *pat = xasprintf("%s/boot/vmlinuz-*", unpacked);
	glob_t g;
	const char *v;

	if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc != 1) {
		size_t n = g.gl_pathc;

		globfree(&g);
		return fc_err_set(e, 0, "expected one boot/vmlinuz-* in the package, found %zu (is it a linux-image package?)", n);
	}
	*path = xstrdup(g.gl_pathv[0]);
	globfree(&g);
	v = strrchr(*path, '/') + strlen("/vmlinuz-");
	if (strlen(v) >= verlen || strpbrk(v, "/ \n"))
		return fc_err_set(e, 0, "odd kernel version '%s'", v);
	snprintf(ver, verlen, "%s", v);
	return 0;
}

static int build(const char *deb, const char *debsha, const char *busybox, const char *bbsha,
		 const char *agent, const char *agsha, const char *key, const char *tmp,
		 struct fc_err *e)
{
	_cleanup_free_ char *unpacked = xasprintf("%s/deb", tmp);
	_cleanup_free_ char *vmlinuz = NULL, *moddir = NULL, *bpath = NULL;
	_cleanup_free_ char *vml = xasprintf("%s/vmlinux", tmp);
	_cleanup_free_ char *initrd = xasprintf("%s/initrd.img", tmp);
	_cleanup_free_ char *manifest = xasprintf("%s/manifest.json", tmp);
	char ver[128], vsha[SHA256_HEX_LEN + 1], isha[SHA256_HEX_LEN + 1], now[32];
	struct vmlinux_info vi;
	struct modset *ms;
	uint64_t t0 = now_ms();
	int r = -1;

	char *x_argv[] = { "dpkg-deb", "-x", (char *)deb, unpacked, NULL };

	log_info("unpacking %s", deb);
	if (run_ok(x_argv, NULL, -1, -1, e) < 0)
		return fc_err_wrap(e, "unpack '%s' (not a Debian package?)", deb);
	if (find_vmlinuz(unpacked, &vmlinuz, ver, sizeof(ver), e) < 0)
		return fc_err_wrap(e, "'%s'", deb);
	log_info("extracting vmlinux from %s", strrchr(vmlinuz, '/') + 1);
	if (extract_vmlinux(vmlinuz, vml, &vi, e) < 0)
		return -1;
	if (!vi.elf.pvh)
		log_warn("vmlinux has no PVH entry note: QEMU -M microvm cannot boot it (Firecracker can)");
	log_info("vmlinux: ELF x86-64 from %s payload at offset %zu%s", kimage_fmt_name(vi.fmt),
		 vi.off, vi.elf.pvh ? ", PVH entry" : "");

	ms = xcalloc(1, sizeof(*ms));
	g_ms = ms;
	moddir = xasprintf("%s/lib/modules/%s", unpacked, ver);
	bpath = xasprintf("%s/modules.builtin", moddir);
	ms->builtin = read_file_max(bpath, 16 << 20, NULL, e);	/* optional */
	{
		_cleanup_free_ char *kdir = xasprintf("%s/kernel", moddir);

		if (nftw(kdir, index_one, 32, FTW_PHYS) < 0) {
			fc_err_set(e, errno, "list modules in '%s'", kdir);
			goto out;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(guest_modules); i++)
		if (add_module(ms, guest_modules[i], tmp, 0, e) < 0)
			goto out;
	{
		char list[1024] = "";

		for (size_t i = 0; i < ms->n; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? " " : "", ms->m[i].name);
		log_info("initramfs modules (load order): %s", list);
	}
	if (write_initrd(initrd, ms, busybox, agent, e) < 0)
		goto out;
	if (check_interrupted(e) < 0 || sha256_file_hex(vml, vsha, e) < 0 ||
	    sha256_file_hex(initrd, isha, e) < 0)
		goto out;

	{
		_cleanup_json_ json_t *j = json_object(), *mods = json_array(), *req = json_array();

		for (size_t i = 0; i < ms->n; i++)
			json_array_append_new(mods, json_string(ms->m[i].name));
		for (size_t i = 0; i < ARRAY_SIZE(guest_modules); i++)
			json_array_append_new(req, json_string(guest_modules[i]));
		iso_now(now);
		json_object_set_new(j, "version", json_integer(FORMAT_VERSION));
		json_object_set_new(j, "key", json_string(key));
		json_object_set_new(j, "kernel_version", json_string(ver));
		json_object_set_new(j, "created", json_string(now));
		json_object_set_new(j, "inputs", json_pack("{s:{s:s,s:s},s:{s:s,s:s},s:o,s:s?,s:s?}",
			"deb", "path", deb, "sha256", debsha,
			"busybox", "path", busybox, "sha256", bbsha,
			"modules", req, "agent", agent, "agent_sha256", agsha));
		json_object_set_new(j, "initrd_modules", json_incref(mods));
		json_object_set_new(j, "payload", json_pack("{s:s,s:I}", "format",
			kimage_fmt_name(vi.fmt), "offset", (json_int_t)vi.off));
		json_object_set_new(j, "pvh", json_boolean(vi.elf.pvh));
		json_object_set_new(j, "vmlinux_sha256", json_string(vsha));
		json_object_set_new(j, "initrd_sha256", json_string(isha));
		json_object_set_new(j, "initrd_compression", json_string("none"));
		json_object_set_new(j, "build_ms", json_integer((json_int_t)(now_ms() - t0)));
		if (!j || json_write_atomic(manifest, j, e) < 0)
			goto out;
	}
	r = rm_tree(unpacked, e);
out:
	modset_free(ms);
	g_ms = NULL;
	return r;
}

/* What cmd_kernel() hands publish_build() for build(). */
struct kernel_job {
	const char *deb, *debsha, *busybox, *bbsha, *agent, *agsha, *key;
};

static int build_job(const char *tmp, void *arg, struct fc_err *e)
{
	const struct kernel_job *j = arg;

	return build(j->deb, j->debsha, j->busybox, j->bbsha, j->agent, j->agsha, j->key, tmp, e);
}

int cmd_kernel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "deb", required_argument, NULL, 'd' },
		{ "agent", required_argument, NULL, 'a' },
		{ "busybox", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	_cleanup_free_ char *deb = NULL, *agent = NULL;
	const char *busybox = "/bin/busybox";
	char debsha[SHA256_HEX_LEN + 1], bbsha[SHA256_HEX_LEN + 1], agsha[SHA256_HEX_LEN + 1];
	char initsha[SHA256_HEX_LEN + 1], key[SHA256_HEX_LEN + 1], key16[17], mods[1024] = "";
	struct fc_err e;
	struct sha256 s;
	struct stat st;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': free(deb); deb = xstrdup(optarg); break;
		case 'a': free(agent); agent = xstrdup(optarg); break;
		case 'b': busybox = optarg; break;
		case 'h': fputs(KERNEL_USAGE, stdout); return 0;
		default: usage_err(KERNEL_USAGE, "unknown option");
		}
	}
	if (optind != argc)
		usage_err(KERNEL_USAGE, "unexpected argument '%s'", argv[optind]);
	if (fc_root_check(&e) < 0 || fc_root_init(&e) < 0)
		fc_err_exit(&e, 1);
	if (deb) {
		if (stat(deb, &st) < 0 || !S_ISREG(st.st_mode))
			diex("--deb '%s': %s", deb, errno ? strerror(errno) : "not a regular file");
		if (sha256_file_hex(deb, debsha, &e) < 0)
			fc_err_exit(&e, 1);
	} else if (!(deb = fetch_deb(debsha, &e))) {
		setup_fail(&e);
	}
	if (sha256_file_hex(busybox, bbsha, &e) < 0) {
		fc_err_wrap(&e, "busybox (install busybox-static or pass --busybox FILE)");
		fc_err_exit(&e, 1);
	}
	if (agent && sha256_file_hex(agent, agsha, &e) < 0)
		fc_err_exit(&e, 1);
	sha256_init(&s);
	sha256_update(&s, fcvm_init_script, strlen(fcvm_init_script));
	sha256_final_hex(&s, initsha);
	for (size_t i = 0; i < ARRAY_SIZE(guest_modules); i++)
		snprintf(mods + strlen(mods), sizeof(mods) - strlen(mods), "%s ", guest_modules[i]);
	sha256_init(&s);
	key_add(&s, "format", "fcvm-kernel-" STR(FORMAT_VERSION));
	key_add(&s, "deb", debsha);
	key_add(&s, "modules", mods);
	key_add(&s, "init", initsha);
	key_add(&s, "busybox", bbsha);
	key_add(&s, "agent", agent ? agsha : "none");
	sha256_final_hex(&s, key);
	snprintf(key16, sizeof(key16), "%.16s", key);

	struct kernel_job job = { .deb = deb, .debsha = debsha, .busybox = busybox, .bbsha = bbsha,
				  .agent = agent, .agsha = agent ? agsha : NULL, .key = key };

	if (publish_build("kernels", "kernel", key16, build_job, &job, &e) < 0)
		setup_fail(&e);
	return 0;
}
