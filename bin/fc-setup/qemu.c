/* qemu.c - "fc-setup qemu": build fcvm's own, snapshot-capable QEMU.
 *
 * Stock QEMU refuses to migrate (so to snapshot) a VM with a
 * vhost-user-vsock device, and cannot hand its RAM to a page server.
 * fcvm's QEMU is Debian's own QEMU source package with two small patches,
 * embedded in this program and applied in this order:
 * qemu-vhost-user-vsock-migration.patch makes the device migratable like
 * vhost-vsock is; qemu-uffd-socket.patch gives memory backends a
 * "uffd-socket" property (Firecracker's Uffd backend: the RAM registered
 * with a userfaultfd that goes to a memory server such as fc-uffd).
 *
 * How it works:
 *  1. the source: --dsc FILE (a local .dsc with its tarballs beside it), or
 *     the .dsc apt would fetch for "apt-get source qemu" (its name and
 *     sha256 from --print-uris; needs a deb-src entry: "make deps" adds
 *     one);
 *  2. key = sha256(format version, .dsc name and sha256, each patch's
 *     sha256, configure flags): an existing $FCVM_CACHE/qemu/<key16> is reused as
 *     is (nothing downloaded or built);
 *  3. under $FCVM_CACHE/qemu/.lock: temporaries of dead builders
 *     (.build-* / .tmp-* whose pid is gone) are removed (also when the
 *     build exists and nobody holds the lock); the source is
 *     fetched and unpacked (dpkg-source -x applies Debian's patches) in
 *     .build-<key16>-<pid>, our patches applied, configured and built with
 *     ninja under nice; the stripped binary and a manifest go to
 *     .tmp-<key16>-<pid>, which is checked (-device help lists the device,
 *     memory-backend-memfd has uffd-socket)
 *     and then published as <key16> by one rename (fs_publish), so a
 *     partial build is never visible under its final name; "default" is
 *     repointed and the build tree removed.
 * The result, the binary's path, goes to stdout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "ownqemu.h"
#include "proc.h"
#include "setup.h"
#include "util.h"

#define QEMU_USAGE "usage: fc-setup qemu [--dsc FILE] [--jobs N] [--nice N] [--check]\n"

/* The patches, embedded at build time (see the Makefile's dependency line). */
#define EMBED(sym, file)						\
	__asm__(".section .rodata\n"					\
		".global " #sym "\n"					\
		".global " #sym "_len\n"				\
		#sym ":\n"						\
		".incbin \"" file "\"\n"				\
		#sym "_end:\n"						\
		".balign 8\n"						\
		#sym "_len:\n"						\
		".quad " #sym "_end - " #sym "\n"			\
		".previous\n")
EMBED(fcq_patch_vsock, "bin/fc-setup/qemu-vhost-user-vsock-migration.patch");
EMBED(fcq_patch_uffd, "bin/fc-setup/qemu-uffd-socket.patch");
extern const char fcq_patch_vsock[], fcq_patch_uffd[];
extern const uint64_t fcq_patch_vsock_len, fcq_patch_uffd_len;

struct qpatch {
	const char *name;
	const char *data;
	const uint64_t *len;
};

/* In the order they are applied. */
static const struct qpatch patches[] = {
	{ "qemu-vhost-user-vsock-migration.patch", fcq_patch_vsock, &fcq_patch_vsock_len },
	{ "qemu-uffd-socket.patch", fcq_patch_uffd, &fcq_patch_uffd_len },
};
#define NPATCHES ARRAY_SIZE(patches)

typedef char patch_shas[NPATCHES][SHA256_HEX_LEN + 1];

static const char *const configure_flags[] = {
	"--target-list=x86_64-softmmu",
	"--without-default-features",
	"--enable-tcg",
	"--enable-kvm",
	"--enable-vhost-user",
	"--enable-fdt=system",
	"--disable-docs",
	/* firmware (microvm's qboot, pvh.bin) from Debian's qemu-system-data */
	"--firmwarepath=/usr/share/qemu:/usr/share/seabios",
};

struct qsrc {
	char dsc_name[256];		/* qemu_7.2+dfsg-7+deb12u18.dsc */
	char version[128];		/* 7.2+dfsg-7+deb12u18 */
	char dsc_sha[SHA256_HEX_LEN + 1];
	const char *dsc_path;		/* --dsc, else NULL (apt-get source) */
};

static int version_of(struct qsrc *s, struct fc_err *e)
{
	size_t n = strlen(s->dsc_name);

	if (strncmp(s->dsc_name, "qemu_", 5) != 0 || n < 10 || strcmp(s->dsc_name + n - 4, ".dsc") != 0 ||
	    n - 9 >= sizeof(s->version))
		return fc_err_set(e, 0, "'%s' is not a qemu source package (qemu_VERSION.dsc)", s->dsc_name);
	memcpy(s->version, s->dsc_name + 5, n - 9);
	s->version[n - 9] = '\0';
	return 0;
}

/* The .dsc apt would fetch: "'URI' NAME SIZE SHA256:HEX" lines. */
static int apt_source(struct qsrc *s, struct fc_err *e)
{
	char *argv[] = { "apt-get", "source", "--print-uris", "-qq", "qemu", NULL };
	_cleanup_free_ char *out = NULL;
	char *line, *save = NULL;
	int r;

	r = run_capture(argv, &out, 1 << 20, 60000, e);
	if (r < 0)
		return -1;
	if (r != 0)
		return fc_err_wrap(e, "find Debian's qemu source (no deb-src entry? 'make deps' adds one; or pass --dsc FILE)");
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[256], hash[80];

		if (sscanf(line, "%*s %255s %*s %79s", name, hash) != 2)
			continue;
		if (strlen(name) < 5 || strcmp(name + strlen(name) - 4, ".dsc") != 0)
			continue;
		if (strncmp(hash, "SHA256:", 7) != 0 || strlen(hash + 7) != SHA256_HEX_LEN)
			return fc_err_set(e, 0, "apt-get source: no SHA256 for '%s'", name);
		snprintf(s->dsc_name, sizeof(s->dsc_name), "%s", name);
		memcpy(s->dsc_sha, hash + 7, SHA256_HEX_LEN + 1);
		return version_of(s, e);
	}
	return fc_err_set(e, 0, "apt-get source --print-uris qemu names no .dsc (no deb-src entry? 'make deps' adds one; or pass --dsc FILE)");
}

static int local_source(struct qsrc *s, const char *dsc, struct fc_err *e)
{
	const char *base = strrchr(dsc, '/');

	snprintf(s->dsc_name, sizeof(s->dsc_name), "%s", base ? base + 1 : dsc);
	if (version_of(s, e) < 0 || sha256_file_hex(dsc, s->dsc_sha, e) < 0)
		return -1;
	s->dsc_path = dsc;
	return 0;
}

static void make_key(const struct qsrc *s, patch_shas patch_sha, char key[SHA256_HEX_LEN + 1])
{
	struct sha256 h;

	sha256_init(&h);
	key_add(&h, "format", STR(FORMAT_VERSION));
	key_add(&h, "source", s->dsc_name);
	key_add(&h, "source-sha256", s->dsc_sha);
	for (size_t i = 0; i < NPATCHES; i++)
		key_add(&h, "patch-sha256", patch_sha[i]);
	for (size_t i = 0; i < ARRAY_SIZE(configure_flags); i++)
		key_add(&h, "configure", configure_flags[i]);
	sha256_final_hex(&h, key);
}

/* Remove .build-* / .tmp-* entries of builders that are gone. */
static void collect_stale(const char *qdir)
{
	DIR *d = opendir(qdir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *dash;
		long pid;
		char *end;

		if (strncmp(de->d_name, ".build-", 7) != 0 && strncmp(de->d_name, ".tmp-", 5) != 0)
			continue;
		dash = strrchr(de->d_name, '-');
		pid = strtol(dash + 1, &end, 10);
		if (*end || pid <= 0 || pid == getpid() || proc_alive((pid_t)pid, 0))
			continue;
		{
			_cleanup_free_ char *p = xasprintf("%s/%s", qdir, de->d_name);
			struct fc_err e;

			log_info("removing '%s' (left by dead build %ld)", p, pid);
			if (rm_tree(p, &e) < 0)
				log_warn("%s", e.msg);
		}
	}
	closedir(d);
}

static int write_manifest(const char *out, const struct qsrc *s, patch_shas patch_sha,
			  const char *qver, struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_object();
	_cleanup_free_ char *p = xasprintf("%s/manifest.json", out);
	json_t *flags = json_array(), *pl = json_array();
	char now[32];

	iso_now(now);
	for (size_t i = 0; i < ARRAY_SIZE(configure_flags); i++)
		json_array_append_new(flags, json_string(configure_flags[i]));
	json_object_set_new(j, "version", json_integer(1));
	json_object_set_new(j, "snapshot_capable", json_true());
	json_object_set_new(j, "source", json_pack("{s:s,s:s,s:s}", "dsc", s->dsc_name,
						   "version", s->version, "sha256", s->dsc_sha));
	for (size_t i = 0; i < NPATCHES; i++)
		json_array_append_new(pl, json_pack("{s:s,s:s}", "name", patches[i].name,
						    "sha256", patch_sha[i]));
	json_object_set_new(j, "patches", pl);
	json_object_set_new(j, "configure", flags);
	json_object_set_new(j, "qemu_version", json_string(qver));
	json_object_set_new(j, "created", json_string(now));
	return json_write_atomic(p, j, e);
}

static int build(const char *work, const char *out, const struct qsrc *s, patch_shas patch_sha,
		 unsigned jobs, struct fc_err *e)
{
	_cleanup_free_ char *src = xasprintf("%s/src", work);
	_cleanup_free_ char *bld = xasprintf("%s/build", work);
	_cleanup_free_ char *dsc = s->dsc_path ? xstrdup(s->dsc_path) : xasprintf("%s/%s", work, s->dsc_name);
	_cleanup_free_ char *bin = xasprintf("%s/bin", out);
	_cleanup_free_ char *dst = xasprintf("%s/bin/qemu-system-x86_64", out);
	_cleanup_free_ char *built = xasprintf("%s/build/qemu-system-x86_64", work);
	_cleanup_free_ char *jarg = xasprintf("-j%u", jobs);
	_cleanup_free_ char *help = NULL, *ver = NULL, *props = NULL;
	char *args[ARRAY_SIZE(configure_flags) + 2];
	char *nl;
	uint64_t t0 = now_ms();

	if (!s->dsc_path) {
		char *get[] = { "apt-get", "source", "--download-only", "-q", "qemu", NULL };

		log_info("fetching Debian's qemu source %s", s->version);
		if (run_ok(get, work, -1, -1, e) < 0)
			return fc_err_wrap(e, "apt-get source qemu");
		char have[SHA256_HEX_LEN + 1];

		if (sha256_file_hex(dsc, have, e) < 0)
			return -1;
		if (strcmp(have, s->dsc_sha) != 0)
			return fc_err_set(e, 0, "'%s': sha256 %s, apt said %s", dsc, have, s->dsc_sha);
	}
	{
		char *x[] = { "dpkg-source", "--no-check", "-x", dsc, src, NULL };

		log_info("unpacking %s", s->dsc_name);
		if (run_ok(x, work, -1, -1, e) < 0)
			return fc_err_wrap(e, "unpack '%s'", dsc);
	}
	for (size_t i = 0; i < NPATCHES; i++) {
		_cleanup_free_ char *patch = xasprintf("%s/%s", work, patches[i].name);
		char *p[] = { "patch", "-p1", "--batch", "--forward", "-i", patch, NULL };

		if (fs_write_atomic(patch, patches[i].data, (size_t)*patches[i].len, 0644, e) < 0)
			return -1;
		log_info("applying %s", patches[i].name);
		if (run_ok(p, src, -1, -1, e) < 0)
			return fc_err_wrap(e, "apply %s to %s", patches[i].name, s->version);
	}
	if (mkdir(bld, 0755) < 0)
		return fc_err_set(e, errno, "create '%s'", bld);
	args[0] = "../src/configure";
	for (size_t i = 0; i < ARRAY_SIZE(configure_flags); i++)
		args[i + 1] = (char *)configure_flags[i];
	args[ARRAY_SIZE(configure_flags) + 1] = NULL;
	log_info("configuring QEMU %s", s->version);
	if (run_ok(args, bld, -1, -1, e) < 0)
		return fc_err_wrap(e, "configure QEMU");
	{
		char *n[] = { "ninja", jarg, "qemu-system-x86_64", NULL };

		log_info("building QEMU with %u jobs (about 8 minutes on 2 idle cores)", jobs);
		if (run_ok(n, bld, -1, -1, e) < 0)
			return fc_err_wrap(e, "build QEMU");
	}
	if (mkdir(bin, 0755) < 0)
		return fc_err_set(e, errno, "create '%s'", bin);
	{
		char *in[] = { "install", "-s", "-m", "0755", built, dst, NULL };

		if (run_ok(in, NULL, -1, -1, e) < 0)
			return fc_err_wrap(e, "install '%s'", built);
	}
	/* check what we made: it runs and has the device */
	{
		char *v[] = { dst, "--version", NULL };
		char *d[] = { dst, "-device", "help", NULL };
		char *m[] = { dst, "-object", "memory-backend-memfd,help", NULL };

		if (run_capture(v, &ver, 4096, 30000, e) != 0)
			return fc_err_wrap(e, "run the new QEMU");
		if (run_capture(d, &help, 1 << 20, 30000, e) != 0)
			return fc_err_wrap(e, "run the new QEMU");
		if (!strstr(help, "vhost-user-vsock-device"))
			return fc_err_set(e, 0, "the new QEMU has no vhost-user-vsock-device");
		if (run_capture(m, &props, 1 << 20, 30000, e) != 0)
			return fc_err_wrap(e, "run the new QEMU");
		if (!strstr(props, "uffd-socket"))
			return fc_err_set(e, 0, "the new QEMU's memory backends have no uffd-socket");
	}
	if ((nl = strchr(ver, '\n')))
		*nl = '\0';
	if (write_manifest(out, s, patch_sha, ver, e) < 0)
		return -1;
	log_info("QEMU built in %.0f s: %s", (double)(now_ms() - t0) / 1000, ver);
	return 0;
}

int cmd_qemu(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dsc", required_argument, NULL, 'd' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "nice", required_argument, NULL, 'n' },
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *dsc = NULL;
	uint64_t jobs = 0, niceness = 10;
	bool check = false;
	struct fc_err e;
	struct qsrc s = { 0 };
	struct sha256 h;
	patch_shas patch_sha;
	char key[SHA256_HEX_LEN + 1], key16[17];
	_cleanup_free_ char *qdir = xasprintf("%s/qemu", ownqemu_cache());
	_cleanup_free_ char *final = NULL, *bin = NULL, *lockp = NULL, *work = NULL, *out = NULL;
	_cleanup_close_ int lock = -1;
	struct stat st;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dsc = optarg;
			break;
		case 'j':
			if (parse_u64(optarg, 1, 256, "--jobs", &jobs, &e) < 0)
				usage_err(QEMU_USAGE, "%s", e.msg);
			break;
		case 'n':
			if (parse_u64(optarg, 0, 19, "--nice", &niceness, &e) < 0)
				usage_err(QEMU_USAGE, "%s", e.msg);
			break;
		case 'c':
			check = true;
			break;
		case 'h':
			fputs(QEMU_USAGE, stdout);
			return 0;
		default:
			usage_err(QEMU_USAGE, NULL);
		}
	}
	if (optind != argc)
		usage_err(QEMU_USAGE, "unexpected argument '%s'", argv[optind]);
	if (!jobs) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		jobs = n > 0 ? (uint64_t)n : 1;
	}

	for (size_t i = 0; i < NPATCHES; i++) {
		sha256_init(&h);
		sha256_update(&h, patches[i].data, (size_t)*patches[i].len);
		sha256_final_hex(&h, patch_sha[i]);
	}
	if ((dsc ? local_source(&s, dsc, &e) : apt_source(&s, &e)) < 0)
		setup_fail(&e);
	make_key(&s, patch_sha, key);
	memcpy(key16, key, 16);
	key16[16] = '\0';
	final = xasprintf("%s/%s", qdir, key16);
	bin = xasprintf("%s/bin/qemu-system-x86_64", final);

	if (stat(final, &st) < 0) {
		if (check) {
			fc_err_set(&e, 0, "fcvm's QEMU for %s is not built (run 'fc-setup qemu')", s.version);
			setup_fail(&e);
		}
		lockp = xasprintf("%s/.lock", qdir);
		if (mkdir_p(qdir, 0755, &e) < 0)
			setup_fail(&e);
		lock = fs_lock(lockp, FS_LOCK_NB, &e);
		if (lock < 0 && e.errnum == EWOULDBLOCK) {
			log_info("another fc-setup is building QEMU; waiting for it");
			lock = fs_lock(lockp, FS_LOCK_EINTR, &e);
		}
		if (lock < 0) {
			if (check_interrupted(&e) < 0)
				setup_fail(&e);
			setup_fail(&e);
		}
	}
	/* again: whoever held the lock may have just built it */
	if (stat(final, &st) == 0) {
		log_info("QEMU %s (%s) is up to date", s.version, key16);
		/* tidy up after builders that died, unless one is building now */
		if (lock < 0) {
			_cleanup_free_ char *lp = xasprintf("%s/.lock", qdir);

			lock = fs_lock(lp, FS_LOCK_NB, &e);
		}
		if (lock >= 0)
			collect_stale(qdir);
	} else {
		collect_stale(qdir);
		work = xasprintf("%s/.build-%s-%d", qdir, key16, (int)getpid());
		out = xasprintf("%s/.tmp-%s-%d", qdir, key16, (int)getpid());
		if (mkdir(work, 0755) < 0 || mkdir(out, 0755) < 0) {
			fc_err_set(&e, errno, "create a build dir in '%s'", qdir);
			setup_fail(&e);
		}
		tmp_register(work);
		tmp_register(out);
		if (setpriority(PRIO_PROCESS, 0, (int)niceness) < 0)
			log_warn("nice %d: %s", (int)niceness, strerror(errno));
		if (build(work, out, &s, patch_sha, (unsigned)jobs, &e) < 0 || check_interrupted(&e) < 0)
			setup_fail(&e);
		if (fs_publish(out, final, false, &e) < 0)
			setup_fail(&e);
		tmp_keep(out);
		if (rm_tree(work, &e) < 0)
			log_warn("%s", e.msg);
		tmp_keep(work);
	}
	if (point_default(qdir, key16, &e) < 0)
		setup_fail(&e);
	printf("%s\n", bin);
	return 0;
}
