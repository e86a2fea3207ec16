/* snap.c - Firecracker snapshots (PUT /snapshot/create, /snapshot/load)
 * on top of QEMU migration, with fcvm's own QEMU.
 *
 * Stock QEMU cannot migrate a VM with a vhost-user-vsock device; fcvm's
 * QEMU ("fc-setup qemu": Debian's source + one patch) can. Which binary
 * runs, and whether it can snapshot, is lib/ownqemu's rule ($FCVM_QEMU,
 * else $FCVM_CACHE/qemu/default, else stock qemu-system-x86_64). With only
 * a stock QEMU both endpoints answer 400 saying so; nothing else changes.
 *
 * How it works:
 *  - boot (snap_prepare/snap_started): with fcvm's QEMU the guest RAM is a
 *    file, "guest-ram" in the private run dir, mapped share=on. Once QEMU
 *    runs the name is unlinked (QEMU keeps its mapping, we keep an fd), so
 *    nothing is left on disk even after a SIGKILL;
 *  - create (VM paused, like Firecracker): QMP x-ignore-shared (so the
 *    shared RAM stays out of the stream), getfd + migrate "fd:" into a
 *    temporary file beside snapshot_path that starts with our own header
 *    (magic, version, the VM's configuration as JSON: QEMU's stream holds
 *    device state, not the command line that made the devices), wait for
 *    "completed", fsync, publish by rename; then the RAM file is copied to
 *    mem_file_path (reflink where the file system can, else a sparse copy)
 *    and published the same way. QEMU stays paused (postmigrate) until
 *    PATCH /vm Resumed;
 *  - load (a fresh fc-qemu, nothing configured, like Firecracker, except
 *    drives: a PUT /drives/<id> before the load overrides the path of the
 *    snapshot's drive <id>, so that clones do not share the source's disk):
 *    the header is read and every field checked as the API would check
 *    it, overrides (network_overrides, vsock_override, drives) applied; QEMU starts
 *    with the same devices, the memory file as memory-backend-file
 *    share=off (MAP_PRIVATE: clones of one snapshot share its page cache;
 *    fc-vsock then reaches guest memory through QEMU's address space),
 *    "-S -incoming defer"; QMP x-ignore-shared, getfd with the snapshot fd
 *    positioned after the header, migrate-incoming "fd:", wait until QEMU
 *    leaves "inmigrate" (a failed load makes QEMU exit; its last line is
 *    the error), then cont if resume_vm. The guest's vsock transport gets
 *    a reset event (the patch's post_load): agents reconnect.
 *  - load with mem_backend Uffd (backend_path: a memory server's socket,
 *    such as fc-uffd's): the same, except that the RAM is a fresh
 *    memory-backend-memfd share=on (so x-ignore-shared keeps it out of the
 *    stream, as with File) with fcvm's "uffd-socket" property (the second
 *    patch): once QEMU has allocated the RAM, before the incoming stream
 *    is read, it registers it with a userfaultfd for MISSING faults and
 *    hands that fd to the server with Firecracker's handshake and the
 *    real addresses. Every page the guest, QEMU or fc-vsock touches is
 *    then copied in by the server. fc-vsock runs with --memory vmm: its
 *    own mapping of the memfd would bypass the uffd and see zeros
 *    (machine-notes), QEMU's address space raises the fault. A missing
 *    socket, a refused connection or handshake ends QEMU (its message
 *    becomes the 400's fault_message); so does the server going away
 *    later, since no fault could be served again.
 * A restored VM maps its RAM privately or from a server and cannot be
 * snapshotted again (400).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fcq.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "ownqemu.h"
#include "proc.h"
#include "text.h"
#include "util.h"

#define SNAP_MAGIC		"FCQSNAP\n"
#define SNAP_VERSION		1
#define SNAP_HDR_MAX		(1u << 20)
#define MIGRATE_TIMEOUT_MS	300000
#define PATH_MAX_LEN		4095
#define COPY_BUF		(1u << 20)

struct snapvmm {
	char *qemu_bin;		/* the QEMU binary to run */
	bool capable;		/* it is fcvm's snapshot-capable QEMU */
	char why[FC_ERR_MAX];	/* why not, when not */
	char *mem_path;		/* memory-backend-file mem-path, or NULL (memfd) */
	char *uffd_sock;	/* Uffd restore: the memory server's socket, else NULL */
	bool mem_shared;	/* share=on (booted) or off (restored) */
	int mem_fd;		/* our fd on a booted VM's RAM file, else -1 */
	bool incoming;		/* -S -incoming defer */
	bool restored;		/* loaded from a snapshot: RAM mapped privately */
};

static struct snapvmm *snap_get(struct vmm *v)
{
	if (!v->snap) {
		struct fc_err why = { 0 };

		v->snap = xcalloc(1, sizeof(*v->snap));
		v->snap->mem_fd = -1;
		v->snap->qemu_bin = ownqemu_select(&v->snap->capable, &why);
		snprintf(v->snap->why, sizeof(v->snap->why), "%s", why.msg);
	}
	return v->snap;
}

/* --- the VMM's side -------------------------------------------------------- */

int snap_prepare(struct vmm *v, const struct fcq_config *c, struct fc_err *e)
{
	struct snapvmm *s = snap_get(v);
	_cleanup_close_ int fd = -1;
	char *path;

	if (!s->capable || s->incoming || s->mem_path)
		return 0;
	path = xasprintf("%s/guest-ram", v->dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)c->mem_mib << 20) < 0) {
		fc_err_set(e, errno, "create guest RAM file '%s'", path);
		if (fd >= 0)
			unlink(path);
		free(path);
		return -1;
	}
	s->mem_path = path;
	s->mem_shared = true;
	s->mem_fd = steal_fd(&fd);
	return 0;
}

const char *snap_qemu_bin(const struct vmm *v)
{
	return v->snap ? v->snap->qemu_bin : "qemu-system-x86_64";
}

/* QEMU option values separate on ',': a literal comma is ",," (caller frees). */
static char *qemu_opt_escape(const char *v)
{
	char *p = xmalloc(2 * strlen(v) + 1), *o = p;

	for (const char *c = v; *c; c++) {
		*o++ = *c;
		if (*c == ',')
			*o++ = ',';
	}
	*o = '\0';
	return p;
}

char *snap_mem_object(const struct vmm *v, unsigned mem_mib)
{
	const struct snapvmm *s = v->snap;
	_cleanup_free_ char *p = NULL;

	if (s && s->uffd_sock) {
		p = qemu_opt_escape(s->uffd_sock);
		return xasprintf("memory-backend-memfd,id=mem,size=%uM,share=on,uffd-socket=%s",
				 mem_mib, p);
	}
	if (!s || !s->mem_path)
		return NULL;
	p = qemu_opt_escape(s->mem_path);
	return xasprintf("memory-backend-file,id=mem,size=%uM,mem-path=%s,share=%s", mem_mib, p,
			 s->mem_shared ? "on" : "off");
}

bool snap_vsock_via_vmm(const struct vmm *v)
{
	return v->snap && v->snap->uffd_sock;
}

bool snap_incoming(const struct vmm *v)
{
	return v->snap && v->snap->incoming;
}

void snap_started(struct vmm *v)
{
	struct snapvmm *s = v->snap;

	/* QEMU has it mapped and we hold an fd: the name is no longer needed */
	if (s && s->mem_shared && s->mem_path && s->mem_fd >= 0 && unlink(s->mem_path) < 0)
		log_warn("remove '%s': %s", s->mem_path, strerror(errno));
}

void snap_stop(struct vmm *v)
{
	struct snapvmm *s = v->snap;

	if (!s)
		return;
	if (s->mem_fd >= 0) {
		close(s->mem_fd);
		if (s->mem_shared && s->mem_path)
			unlink(s->mem_path);	/* if QEMU never got that far */
	}
	free(s->mem_path);
	free(s->uffd_sock);
	free(s->qemu_bin);
	free(s);
	v->snap = NULL;
}

/* --- QMP with arguments and a passed fd ------------------------------------ */

static int qmp_call(struct vmm *v, const char *cmd, json_t *args, int fd, json_t **ret,
		    struct fc_err *e)
{
	_cleanup_json_ json_t *m = json_pack("{s:s}", "execute", cmd);
	_cleanup_free_ char *s = NULL, *line = NULL;
	size_t len;

	if (v->qmp_fd < 0)
		return fc_err_set(e, 0, "QMP '%s': QEMU is not running", cmd);
	if (args)
		json_object_set(m, "arguments", args);
	s = json_dumps(m, JSON_COMPACT);
	if (!s)
		abort();
	line = xasprintf("%s\n", s);
	len = strlen(line);
	if (fd >= 0) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cm;
		struct iovec iov = { line, len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
				      .msg_controllen = sizeof(cm.buf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		ssize_t n;

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
		do
			n = sendmsg(v->qmp_fd, &msg, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)len)
			return fc_err_set(e, n < 0 ? errno : EIO, "QMP '%s'", cmd);
	} else if (write_full(v->qmp_fd, line, len) < 0) {
		return fc_err_set(e, errno, "QMP '%s'", cmd);
	}
	return vmm_qmp_await(v, cmd, ret, e);
}

static int qmp_simple(struct vmm *v, const char *cmd, json_t *args, struct fc_err *e)
{
	int r = qmp_call(v, cmd, args, -1, NULL, e);

	json_decref(args);
	return r;
}

static int ignore_shared(struct vmm *v, struct fc_err *e)
{
	return qmp_simple(v, "migrate-set-capabilities",
			  json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability",
				    "x-ignore-shared", "state", 1), e);
}

static int pass_fd(struct vmm *v, int fd, const char *name, struct fc_err *e)
{
	_cleanup_json_ json_t *a = json_pack("{s:s}", "fdname", name);

	return qmp_call(v, "getfd", a, fd, NULL, e);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* QEMU's last stderr line after it exited, as the reason. */
static int qemu_died(struct vmm *v, const char *what, struct fc_err *e)
{
	int st;

	if (v->qemu > 0 && wait_timeout(v->qemu, 3000, &st) == 1) {
		_cleanup_free_ char *line = NULL;

		v->qemu = 0;
		while (vmm_read_stderr(v) == 0)
			;
		line = text_clean(v->err_line, strlen(v->err_line), sizeof(v->err_line), false);
		return fc_err_set(e, 0, "%s: QEMU exited (%d): %s", what, exit_code_of(st),
				  *line ? line : "no message");
	}
	return fc_err_wrap(e, "%s", what);
}

/* --- checks shared with the API's rules ------------------------------------ */

static int check_path(const char *field, const char *p, struct fc_err *e)
{
	size_t n = p ? strlen(p) : 0;

	if (!p)
		return fc_err_set(e, 0, "missing required field '%s'", field);
	if (n == 0)
		return fc_err_set(e, 0, "'%s' must not be empty", field);
	if (n > PATH_MAX_LEN)
		return fc_err_set(e, 0, "'%s' is longer than %d bytes", field, PATH_MAX_LEN);
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fc_err_set(e, 0, "'%s' contains a control character", field);
	return 0;
}

/* Unknown fields of @o are an error; @names is NULL-terminated. */
static int only_fields(json_t *o, const char *const *names, struct fc_err *e)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v) {
		size_t i;

		for (i = 0; names[i] && strcmp(names[i], key); i++)
			;
		if (!names[i])
			return fc_err_set(e, 0, "unknown field '%.64s'", key);
	}
	return 0;
}

static int str_field(json_t *o, const char *key, bool required, const char **out,
		     struct fc_err *e)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v)
		return required ? fc_err_set(e, 0, "missing required field '%s'", key) : 0;
	if (!json_is_string(v))
		return fc_err_set(e, 0, "field '%s' must be a string", key);
	*out = json_string_value(v);
	return 0;
}

static int bool_field(json_t *o, const char *key, bool *out, struct fc_err *e)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fc_err_set(e, 0, "field '%s' must be a boolean", key);
	*out = json_is_true(v);
	return 0;
}

static char *dir_of(const char *path)
{
	const char *sl = strrchr(path, '/');

	if (!sl)
		return xstrdup(".");
	if (sl == path)
		return xstrdup("/");
	return xasprintf("%.*s", (int)(sl - path), path);
}

static const char *base_of(const char *path)
{
	const char *sl = strrchr(path, '/');

	return sl ? sl + 1 : path;
}

/* --- the snapshot header ---------------------------------------------------- */

static json_t *config_json(const struct fcq_config *c, bool tcg)
{
	json_t *drives = json_array(), *nets = json_array();
	json_t *j;

	for (size_t i = 0; i < c->ndrives; i++)
		json_array_append_new(drives, json_pack("{s:s,s:s,s:b,s:b,s:s}", "id",
							c->drives[i].id, "path", c->drives[i].path,
							"root", c->drives[i].root, "read_only",
							c->drives[i].read_only, "cache",
							c->drives[i].cache));
	for (size_t i = 0; i < c->nnets; i++)
		json_array_append_new(nets, json_pack("{s:s,s:s,s:s,s:i}", "id", c->nets[i].id,
						      "tap", c->nets[i].tap, "mac", c->nets[i].mac,
						      "mtu", (int)c->nets[i].mtu));
	j = json_pack("{s:i,s:b,s:i,s:i,s:b,s:s,s:s?,s:s?,s:o,s:o}", "version", SNAP_VERSION,
		      "tcg", tcg, "vcpus", (int)c->vcpus, "mem_mib", (int)c->mem_mib, "smt", c->smt,
		      "kernel", c->kernel, "initrd", c->initrd, "boot_args", c->boot_args,
		      "drives", drives, "nets", nets);
	if (c->vsock)
		json_object_set_new(j, "vsock", json_pack("{s:I,s:s}", "cid", (json_int_t)c->cid,
							  "uds_path", c->uds_path));
	return j;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* Fill @c from a snapshot header, checking everything: the file is input. */
static int config_from_json(json_t *j, struct fcq_config *c, struct fc_err *e)
{
	static const char *const top[] = { "version", "tcg", "vcpus", "mem_mib", "smt", "kernel",
					   "initrd", "boot_args", "drives", "nets", "vsock", NULL };
	static const char *const dkeys[] = { "id", "path", "root", "read_only", "cache", NULL };
	static const char *const nkeys[] = { "id", "tap", "mac", "mtu", NULL };
	static const char *const vkeys[] = { "cid", "uds_path", NULL };
	long long ver, vcpus, mem;
	const char *k, *i, *a;
	json_t *arr, *x;
	size_t idx;
	bool root_seen = false;

	if (!json_is_object(j) || only_fields(j, top, e) < 0)
		return -1;
	if (json_int(j, "version", SNAP_VERSION, SNAP_VERSION, &ver, e) < 0 ||
	    !json_object_get(j, "version"))
		return fc_err_set(e, 0, "unsupported snapshot version");
	vcpus = 0;
	mem = 0;
	if (json_int(j, "vcpus", 1, 32, &vcpus, e) < 0 || json_int(j, "mem_mib", 16, 1048576, &mem, e) < 0)
		return -1;
	if (!vcpus || !mem)
		return fc_err_set(e, 0, "no vcpus or mem_mib");
	c->vcpus = vcpus;
	c->mem_mib = mem;
	if (bool_field(j, "smt", &c->smt, e) < 0)
		return -1;
	if (str_field(j, "kernel", true, &k, e) < 0 || check_path("kernel", k, e) < 0 ||
	    str_field(j, "initrd", false, &i, e) < 0 || (i && check_path("initrd", i, e) < 0) ||
	    str_field(j, "boot_args", false, &a, e) < 0)
		return -1;
	if (a && (strlen(a) >= FCQ_CMDLINE_MAX || strpbrk(a, "\n\r")))
		return fc_err_set(e, 0, "bad 'boot_args'");
	if (access(k, R_OK) < 0)
		return fc_err_set(e, errno, "the snapshot's kernel '%s'", k);
	if (i && access(i, R_OK) < 0)
		return fc_err_set(e, errno, "the snapshot's initrd '%s'", i);
	c->kernel = xstrdup(k);
	c->initrd = dup_or_null(i);
	c->boot_args = dup_or_null(a);

	arr = json_object_get(j, "drives");
	if (arr && (!json_is_array(arr) || json_array_size(arr) > FCQ_MAX_DRIVES))
		return fc_err_set(e, 0, "'drives' must be an array of at most %d", FCQ_MAX_DRIVES);
	json_array_foreach(arr, idx, x) {
		struct fcq_drive *d = &c->drives[c->ndrives];
		const char *id, *p, *cache;

		if (!json_is_object(x) || only_fields(x, dkeys, e) < 0 ||
		    str_field(x, "id", true, &id, e) < 0 || str_field(x, "path", true, &p, e) < 0 ||
		    str_field(x, "cache", true, &cache, e) < 0 || check_path("path", p, e) < 0 ||
		    bool_field(x, "root", &d->root, e) < 0 ||
		    bool_field(x, "read_only", &d->read_only, e) < 0)
			return fc_err_wrap(e, "drive %zu", idx);
		if (!fcq_valid_id(id, '_'))
			return fc_err_set(e, 0, "drive %zu: invalid id", idx);
		for (size_t m = 0; m < c->ndrives; m++)
			if (!strcmp(c->drives[m].id, id))
				return fc_err_set(e, 0, "drive '%s' twice", id);
		if (d->root && root_seen)
			return fc_err_set(e, 0, "two root drives");
		root_seen |= d->root;
		if (!strcmp(cache, "unsafe"))
			d->cache = "unsafe";
		else if (!strcmp(cache, "writeback"))
			d->cache = "writeback";
		else
			return fc_err_set(e, 0, "drive '%s': bad cache", id);
		snprintf(d->id, sizeof(d->id), "%s", id);
		d->path = xstrdup(p);
		c->ndrives++;
	}
	arr = json_object_get(j, "nets");
	if (arr && (!json_is_array(arr) || json_array_size(arr) > FCQ_MAX_NETS))
		return fc_err_set(e, 0, "'nets' must be an array of at most %d", FCQ_MAX_NETS);
	json_array_foreach(arr, idx, x) {
		struct fcq_net *n = &c->nets[c->nnets];
		const char *id, *tap, *mac;
		long long mtu = 0;

		if (!json_is_object(x) || only_fields(x, nkeys, e) < 0 ||
		    str_field(x, "id", true, &id, e) < 0 || str_field(x, "tap", true, &tap, e) < 0 ||
		    str_field(x, "mac", true, &mac, e) < 0 || json_int(x, "mtu", 0, 65535, &mtu, e) < 0)
			return fc_err_wrap(e, "interface %zu", idx);
		if (!fcq_valid_id(id, '_') || !fcq_valid_ifname(tap) || (*mac && !fcq_valid_mac(mac)))
			return fc_err_set(e, 0, "interface %zu: invalid id, tap or mac", idx);
		snprintf(n->id, sizeof(n->id), "%s", id);
		snprintf(n->tap, sizeof(n->tap), "%s", tap);
		snprintf(n->mac, sizeof(n->mac), "%s", mac);
		n->mtu = (unsigned)mtu;
		c->nnets++;
	}
	if ((x = json_object_get(j, "vsock"))) {
		long long cid = 0;
		const char *uds;

		if (!json_is_object(x) || only_fields(x, vkeys, e) < 0 ||
		    json_int(x, "cid", 3, 0xfffffffeLL, &cid, e) < 0 || !cid ||
		    str_field(x, "uds_path", true, &uds, e) < 0 || check_path("uds_path", uds, e) < 0 ||
		    strlen(uds) > 96)
			return fc_err_wrap(e, "vsock");
		c->vsock = true;
		c->cid = (unsigned long)cid;
		c->uds_path = xstrdup(uds);
	}
	return 0;
}

/* --- files ------------------------------------------------------------------ */

/* Copy @size bytes of @src into a new file published as @dst: a reflink
 * where the file systems allow, else data extents only (holes stay). */
static int copy_mem(int src, uint64_t size, const char *dst, struct fc_err *e)
{
	_cleanup_free_ char *dir = dir_of(dst);
	_cleanup_free_ char *tmp = fs_tmpname(dir, base_of(dst));
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	_cleanup_free_ char *buf = NULL;
	bool slow = false;

	if (fd < 0)
		return fc_err_set(e, errno, "create '%s'", tmp);
	if (ioctl(fd, FICLONE, src) < 0) {
		off_t pos = 0;

		if (!fs_reflink_unsupported(errno)) {
			fc_err_set(e, errno, "reflink guest memory to '%s'", tmp);
			goto fail;
		}
		while ((uint64_t)pos < size) {
			off_t data = lseek(src, pos, SEEK_DATA), hole, in, out;

			if (data < 0 && errno == ENXIO)
				break;
			hole = data < 0 ? -1 : lseek(src, data, SEEK_HOLE);
			if (data < 0 || hole < 0) {
				fc_err_set(e, errno, "read guest memory");
				goto fail;
			}
			in = out = data;
			while (in < hole) {
				ssize_t n = -1;

				if (!slow)
					n = copy_file_range(src, &in, fd, &out, (size_t)(hole - in), 0);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && !slow && (errno == EXDEV || errno == EOPNOTSUPP ||
						       errno == EINVAL || errno == ENOSYS)) {
					slow = true;	/* across file systems: read and write */
					continue;
				}
				if (slow) {
					size_t want = (size_t)(hole - in) < COPY_BUF ? (size_t)(hole - in) : COPY_BUF;

					if (!buf)
						buf = xmalloc(COPY_BUF);
					n = pread(src, buf, want, in);
					if (n > 0 && pwrite(fd, buf, (size_t)n, out) != n)
						n = -1;
					if (n > 0) {
						in += n;
						out += n;
					}
				}
				if (n <= 0) {
					fc_err_set(e, n < 0 ? errno : EIO, "copy guest memory to '%s'", tmp);
					goto fail;
				}
			}
			pos = hole;
		}
	}
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		fc_err_set(e, errno, "write '%s'", tmp);
		goto fail;
	}
	if (fs_publish(tmp, dst, true, e) < 0)
		goto fail;
	return 0;
fail:
	unlink(tmp);
	return -1;
}

/* --- PUT /snapshot/create ---------------------------------------------------- */

static int wait_migration(struct vmm *v, struct fc_err *e)
{
	uint64_t deadline = now_ms() + MIGRATE_TIMEOUT_MS;

	for (;;) {
		_cleanup_json_ json_t *r = NULL;
		const char *st;

		if (qmp_call(v, "query-migrate", NULL, -1, &r, e) < 0)
			return -1;
		st = json_str(r, "status");
		if (st && !strcmp(st, "completed"))
			return 0;
		if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"))) {
			const char *d = json_str(r, "error-desc");
			_cleanup_free_ char *desc = text_clean(d ? d : st, strlen(d ? d : st), 512, false);

			return fc_err_set(e, 0, "migration %s: %s", st, desc);
		}
		if (now_ms() > deadline)
			return fc_err_set(e, ETIMEDOUT, "migration did not complete");
		sleep_ms(5);
	}
}

int snap_create(struct fcq *q, json_t *b, struct fc_err *e)
{
	static const char *const keys[] = { "snapshot_type", "snapshot_path", "mem_file_path", NULL };
	struct vmm *v = &q->vmm;
	struct snapvmm *s;
	const char *type, *spath, *mpath;
	_cleanup_json_ json_t *hdr = NULL;
	_cleanup_free_ char *js = NULL, *dir = NULL, *tmp = NULL;
	_cleanup_close_ int fd = -1;
	uint32_t meta[2];
	uint64_t t0 = now_ms();

	if (only_fields(b, keys, e) < 0 || str_field(b, "snapshot_type", false, &type, e) < 0 ||
	    str_field(b, "snapshot_path", true, &spath, e) < 0 ||
	    str_field(b, "mem_file_path", true, &mpath, e) < 0 ||
	    check_path("snapshot_path", spath, e) < 0 || check_path("mem_file_path", mpath, e) < 0)
		return -1;
	if (type && strcmp(type, "Full")) {
		if (!strcmp(type, "Diff"))
			return fc_err_set(e, 0, "'snapshot_type' Diff is not supported by fc-qemu (only Full)");
		return fc_err_set(e, 0, "invalid 'snapshot_type' '%.32s': must be Full or Diff", type);
	}
	if (!strcmp(spath, mpath))
		return fc_err_set(e, 0, "'snapshot_path' and 'mem_file_path' are the same file");
	if (q->state == FCQ_NOT_STARTED)
		return fc_err_set(e, 0, "cannot create a snapshot before starting the microVM");
	s = snap_get(v);
	if (!s->capable)
		return fc_err_set(e, 0, "snapshots need fcvm's QEMU (fc-setup qemu): %s", s->why);
	if (s->restored)
		return fc_err_set(e, 0, "a microVM restored from a snapshot cannot be snapshotted again by fc-qemu (its memory is a private mapping or a memory server's)");
	if (s->mem_fd < 0)
		return fc_err_set(e, 0, "this microVM was not booted with its memory in a file: it cannot be snapshotted");
	if (q->state != FCQ_PAUSED)
		return fc_err_set(e, 0, "the microVM must be paused to create a snapshot (PATCH /vm {\"state\": \"Paused\"})");

	dir = dir_of(spath);
	tmp = fs_tmpname(dir, base_of(spath));
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fc_err_set(e, errno, "create snapshot file in '%s'", dir);
	hdr = config_json(&q->cfg, v->tcg);
	js = json_dumps(hdr, JSON_COMPACT);
	if (!js)
		abort();
	meta[0] = htole32(SNAP_VERSION);
	meta[1] = htole32((uint32_t)strlen(js));
	if (write_full(fd, SNAP_MAGIC, 8) < 0 || write_full(fd, meta, sizeof(meta)) < 0 ||
	    write_full(fd, js, strlen(js)) < 0) {
		fc_err_set(e, errno, "write '%s'", tmp);
		goto fail;
	}
	if (ignore_shared(v, e) < 0 || pass_fd(v, fd, "fcq-snap", e) < 0 ||
	    qmp_simple(v, "migrate", json_pack("{s:s}", "uri", "fd:fcq-snap"), e) < 0 ||
	    wait_migration(v, e) < 0) {
		fc_err_wrap(e, "save the microVM state");
		goto fail;
	}
	if (fsync(fd) < 0) {
		fc_err_set(e, errno, "write '%s'", tmp);
		goto fail;
	}
	if (fs_publish(tmp, spath, true, e) < 0)
		goto fail;
	if (copy_mem(s->mem_fd, (uint64_t)q->cfg.mem_mib << 20, mpath, e) < 0)
		return fc_err_wrap(e, "save the guest memory");
	log_info("snapshot created in %llu ms: '%s', memory '%s'",
		 (unsigned long long)(now_ms() - t0), spath, mpath);
	return 0;
fail:
	unlink(tmp);
	return -1;
}

/* --- PUT /snapshot/load ------------------------------------------------------ */

/* Drives may be given before a load (fcvm's extension, see below). */
static bool configured(const struct fcq_config *c)
{
	return c->kernel || c->nnets || c->vsock;
}

static int wait_incoming(struct vmm *v, struct fc_err *e)
{
	uint64_t deadline = now_ms() + MIGRATE_TIMEOUT_MS;

	for (;;) {
		_cleanup_json_ json_t *r = NULL;
		const char *st;

		if (qmp_call(v, "query-status", NULL, -1, &r, e) < 0)
			return qemu_died(v, "load the microVM state", e);
		st = json_str(r, "status");
		if (st && strcmp(st, "inmigrate") != 0)
			return 0;
		if (now_ms() > deadline)
			return fc_err_set(e, ETIMEDOUT, "loading the microVM state did not complete");
		sleep_ms(5);
	}
}

int snap_load(struct fcq *q, json_t *b, struct fc_err *e)
{
	static const char *const keys[] = { "snapshot_path", "mem_backend", "mem_file_path",
					    "enable_diff_snapshots", "track_dirty_pages",
					    "resume_vm", "network_overrides", "vsock_override",
					    "clock_realtime", NULL };
	static const char *const mkeys[] = { "backend_type", "backend_path", NULL };
	static const char *const okeys[] = { "iface_id", "host_dev_name", NULL };
	static const char *const vkeys[] = { "uds_path", NULL };
	struct vmm *v = &q->vmm;
	struct snapvmm *s;
	const char *spath, *mpath = NULL, *btype = NULL;
	bool diff = false, dirty = false, resume = false, realtime = false, uffd = false;
	json_t *mb, *ov, *vo, *x;
	_cleanup_json_ json_t *hdr = NULL;
	_cleanup_free_ char *js = NULL;
	_cleanup_close_ int fd = -1;
	struct fcq_config c = { 0 };
	char magic[8];
	uint32_t meta[2];
	struct stat st;
	size_t idx;
	uint64_t t0 = now_ms();

	if (only_fields(b, keys, e) < 0 || str_field(b, "snapshot_path", true, &spath, e) < 0 ||
	    check_path("snapshot_path", spath, e) < 0 ||
	    bool_field(b, "enable_diff_snapshots", &diff, e) < 0 ||
	    bool_field(b, "track_dirty_pages", &dirty, e) < 0 ||
	    bool_field(b, "resume_vm", &resume, e) < 0 ||
	    bool_field(b, "clock_realtime", &realtime, e) < 0)
		return -1;
	mb = json_object_get(b, "mem_backend");
	if (mb) {
		if (json_object_get(b, "mem_file_path"))
			return fc_err_set(e, 0, "only one of 'mem_backend' and 'mem_file_path' may be given");
		if (!json_is_object(mb) || only_fields(mb, mkeys, e) < 0 ||
		    str_field(mb, "backend_type", true, &btype, e) < 0 ||
		    str_field(mb, "backend_path", true, &mpath, e) < 0)
			return fc_err_wrap(e, "mem_backend");
		if (strcmp(btype, "File") && strcmp(btype, "Uffd"))
			return fc_err_set(e, 0, "invalid 'backend_type' '%.32s': must be File or Uffd", btype);
		uffd = !strcmp(btype, "Uffd");
	} else if (str_field(b, "mem_file_path", false, &mpath, e) < 0) {
		return -1;
	}
	if (!mpath)
		return fc_err_set(e, 0, "one of 'mem_backend' and 'mem_file_path' is required");
	if (check_path("backend_path", mpath, e) < 0)
		return -1;
	if (diff || dirty)
		return fc_err_set(e, 0, "dirty page tracking is not supported by fc-qemu (no diff snapshots)");
	if (realtime)
		return fc_err_set(e, 0, "'clock_realtime' is not supported by fc-qemu");
	ov = json_object_get(b, "network_overrides");
	if (ov && !json_is_array(ov))
		return fc_err_set(e, 0, "field 'network_overrides' must be an array");
	vo = json_object_get(b, "vsock_override");
	if (vo && (!json_is_object(vo) || only_fields(vo, vkeys, e) < 0))
		return vo && !json_is_object(vo) ? fc_err_set(e, 0, "field 'vsock_override' must be an object") :
		       fc_err_wrap(e, "vsock_override");
	if (q->state != FCQ_NOT_STARTED || configured(&q->cfg))
		return fc_err_set(e, 0, "loading a snapshot is only allowed on a fresh microVM, before configuring any resource");
	s = snap_get(v);
	if (!s->capable)
		return fc_err_set(e, 0, "snapshots need fcvm's QEMU (fc-setup qemu): %s", s->why);

	/* the state file: our header, then QEMU's stream */
	fd = open(spath, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fc_err_set(e, errno, "open snapshot '%s'", spath);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return fc_err_set(e, 0, "snapshot '%s' is not a regular file", spath);
	if (read_full(fd, magic, 8) != 8 || memcmp(magic, SNAP_MAGIC, 8) ||
	    read_full(fd, meta, sizeof(meta)) != sizeof(meta))
		return fc_err_set(e, 0, "'%s' is not an fc-qemu snapshot", spath);
	if (le32toh(meta[0]) != SNAP_VERSION)
		return fc_err_set(e, 0, "snapshot '%s' has version %u, fc-qemu reads %u", spath,
				  le32toh(meta[0]), SNAP_VERSION);
	if (le32toh(meta[1]) == 0 || le32toh(meta[1]) > SNAP_HDR_MAX ||
	    (uint64_t)st.st_size < 16 + (uint64_t)le32toh(meta[1]))
		return fc_err_set(e, 0, "snapshot '%s': bad header length", spath);
	js = xmalloc(le32toh(meta[1]));
	if (read_full(fd, js, le32toh(meta[1])) != (ssize_t)le32toh(meta[1]))
		return fc_err_set(e, errno ? errno : EIO, "read snapshot '%s'", spath);
	hdr = json_parse(js, le32toh(meta[1]), e);
	if (!hdr)
		return fc_err_wrap(e, "snapshot '%s'", spath);
	snprintf(c.id, sizeof(c.id), "%s", q->cfg.id);
	if (config_from_json(hdr, &c, e) < 0) {
		fc_err_wrap(e, "snapshot '%s'", spath);
		goto fail;
	}
	/* overrides */
	json_array_foreach(ov, idx, x) {
		const char *id, *tap;
		size_t k;

		if (!json_is_object(x) || only_fields(x, okeys, e) < 0 ||
		    str_field(x, "iface_id", true, &id, e) < 0 ||
		    str_field(x, "host_dev_name", true, &tap, e) < 0) {
			fc_err_wrap(e, "network_overrides[%zu]", idx);
			goto fail;
		}
		for (k = 0; k < c.nnets && strcmp(c.nets[k].id, id); k++)
			;
		if (k == c.nnets) {
			fc_err_set(e, 0, "network_overrides: the snapshot has no interface '%.64s'", id);
			goto fail;
		}
		if (!fcq_valid_ifname(tap)) {
			fc_err_set(e, 0, "invalid 'host_dev_name' '%.32s': 1-15 characters of [A-Za-z0-9_.-]", tap);
			goto fail;
		}
		snprintf(c.nets[k].tap, sizeof(c.nets[k].tap), "%s", tap);
	}
	/* Drive overrides (an fcvm extension; Firecracker has none): a drive
	 * PUT before the load replaces the path of the snapshot's drive of
	 * the same id, so that each clone writes its own copy of the disk. */
	for (size_t i = 0; i < q->cfg.ndrives; i++) {
		const struct fcq_drive *o = &q->cfg.drives[i];
		size_t k;

		for (k = 0; k < c.ndrives && strcmp(c.drives[k].id, o->id); k++)
			;
		if (k == c.ndrives) {
			fc_err_set(e, 0, "drive '%s' overrides nothing: the snapshot has no such drive", o->id);
			goto fail;
		}
		if (c.drives[k].root != o->root) {
			fc_err_set(e, 0, "drive '%s': is_root_device differs from the snapshot's", o->id);
			goto fail;
		}
		free(c.drives[k].path);
		c.drives[k].path = xstrdup(o->path);
	}
	if (vo) {
		const char *uds;

		if (str_field(vo, "uds_path", true, &uds, e) < 0 || check_path("uds_path", uds, e) < 0)
			goto fail;
		if (strlen(uds) > 96) {
			fc_err_set(e, 0, "'uds_path' is longer than 96 bytes");
			goto fail;
		}
		if (!c.vsock) {
			fc_err_set(e, 0, "vsock_override: the snapshot has no vsock device");
			goto fail;
		}
		free(c.uds_path);
		c.uds_path = xstrdup(uds);
	}
	/* Uffd: a memory server must listen there (QEMU connects; whether it
	 * accepts the handshake shows when QEMU loads the state) */
	if (uffd) {
		struct stat ss;

		if (stat(mpath, &ss) < 0) {
			fc_err_set(e, errno, "the memory server's socket '%s' (is 'fc-uffd serve' running?)", mpath);
			goto fail;
		}
		if (!S_ISSOCK(ss.st_mode)) {
			fc_err_set(e, 0, "'backend_path' '%s' is not a socket: backend_type Uffd needs a memory server's socket (File takes a memory file)", mpath);
			goto fail;
		}
	}
	/* the memory file: exactly the VM's RAM */
	if (!uffd) {
		struct stat ms;

		if (stat(mpath, &ms) < 0) {
			fc_err_set(e, errno, "memory file '%s'", mpath);
			goto fail;
		}
		if (!S_ISREG(ms.st_mode) || (uint64_t)ms.st_size != (uint64_t)c.mem_mib << 20) {
			fc_err_set(e, 0, "memory file '%s' is %lld bytes, the snapshot's microVM has %u MiB",
				   mpath, (long long)ms.st_size, c.mem_mib);
			goto fail;
		}
	}

	fcq_free(q);
	q->cfg = c;
	memset(&c, 0, sizeof(c));
	if (uffd) {
		s->uffd_sock = xstrdup(mpath);
	} else {
		s->mem_path = xstrdup(mpath);
		s->mem_shared = false;
	}
	s->incoming = true;
	if (vmm_start(v, &q->cfg, e) < 0)
		return fc_err_wrap(e, "start QEMU for the snapshot");
	/* vmm_stop() on failure forgets v->snap: take it again */
	s = v->snap;
	if (ignore_shared(v, e) < 0 || pass_fd(v, fd, "fcq-load", e) < 0 ||
	    qmp_simple(v, "migrate-incoming", json_pack("{s:s}", "uri", "fd:fcq-load"), e) < 0 ||
	    wait_incoming(v, e) < 0) {
		fc_err_wrap(e, "load snapshot '%s'", spath);
		vmm_stop(v);
		return -1;
	}
	s->restored = true;
	s->incoming = false;
	q->state = FCQ_PAUSED;
	if (resume) {
		if (vmm_qmp(v, "cont", e) < 0) {
			vmm_stop(v);
			return fc_err_wrap(e, "resume the restored microVM");
		}
		q->state = FCQ_RUNNING;
	}
	log_info("snapshot '%s' loaded in %llu ms (QEMU pid %d, memory %s '%s')%s", spath,
		 (unsigned long long)(now_ms() - t0), (int)v->qemu, uffd ? "served by" : "file",
		 mpath, resume ? ", resumed" : "");
	return 0;
fail:
	{
		struct fcq tmpq = { .cfg = c };

		fcq_free(&tmpq);
	}
	return -1;
}
