/* api.c - the Firecracker API subset fc-qemu serves.
 *
 * Every request body is checked field by field: unknown fields, wrong types
 * and out-of-range values are 400 with a fault_message, and so are fields
 * Firecracker supports but fc-qemu cannot honour when set to anything but
 * their default. Unsupported endpoints are 400 naming themselves; nothing is
 * silently accepted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fcq.h"
#include "json.h"
#include "log.h"
#include "util.h"

enum ftype { F_STR, F_BOOL, F_INT, F_OBJ };

struct fspec {
	const char *name;
	enum ftype type;
	bool required;
};

static const char *const type_names[] = { "a string", "a boolean", "an integer", "an object" };

/* Reject unknown fields, wrong types and missing required fields. */
static int check_fields(json_t *o, const struct fspec *s, size_t n, struct fc_err *e)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v) {
		size_t i;

		for (i = 0; i < n && strcmp(s[i].name, key); i++)
			;
		if (i == n)
			return fc_err_set(e, 0, "unknown field '%.64s'", key);
		if ((s[i].type == F_STR && !json_is_string(v)) ||
		    (s[i].type == F_BOOL && !json_is_boolean(v)) ||
		    (s[i].type == F_INT && !json_is_integer(v)) ||
		    (s[i].type == F_OBJ && !json_is_object(v)))
			return fc_err_set(e, 0, "field '%s' must be %s", key, type_names[s[i].type]);
	}
	for (size_t i = 0; i < n; i++)
		if (s[i].required && !json_object_get(o, s[i].name))
			return fc_err_set(e, 0, "missing required field '%s'", s[i].name);
	return 0;
}

bool fcq_valid_id(const char *s, char extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > FCQ_MAX_ID)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == extra))
			return false;
	return true;
}

/* A host path: non-empty, bounded, no control characters. */
static int check_path(const char *field, const char *p, size_t max, struct fc_err *e)
{
	size_t n = strlen(p);

	if (n == 0)
		return fc_err_set(e, 0, "'%s' must not be empty", field);
	if (n > max)
		return fc_err_set(e, 0, "'%s' is longer than %zu bytes", field, max);
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fc_err_set(e, 0, "'%s' contains a control character", field);
	return 0;
}

/* The file must exist, be a regular file or block device, and be readable
 * (and writable unless @ro) by us - as Firecracker opens it at PUT time. */
static int check_file(const char *field, const char *p, bool ro, struct fc_err *e)
{
	struct stat st;
	int fd;

	fd = open(p, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return fc_err_set(e, errno, "cannot open %s '%s'", field, p);
	if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		close(fd);
		return fc_err_set(e, 0, "%s '%s' is not a regular file or block device", field, p);
	}
	close(fd);
	return 0;
}

/* Rate limiters: only "no limit" (absent or {}) is supported. */
static int check_no_limiter(json_t *o, const char *field, struct fc_err *e)
{
	json_t *v = json_object_get(o, field);

	if (v && json_object_size(v))
		return fc_err_set(e, 0, "'%s' is not supported by fc-qemu (only no rate limit)", field);
	return 0;
}

char *api_fault(const char *msg)
{
	json_t *j = json_pack("{s:s}", "fault_message", msg);
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	return s;
}

static int fail(char **json, const struct fc_err *e)
{
	*json = api_fault(e->msg);
	return 400;
}

static int fail_msg(char **json, const char *msg)
{
	*json = api_fault(msg);
	return 400;
}

static const char *state_name(enum fcq_state s)
{
	return s == FCQ_NOT_STARTED ? "Not started" : s == FCQ_RUNNING ? "Running" : "Paused";
}

static char *dump(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (!s)
		abort();
	return s;
}

/* --- machine-config ---------------------------------------------------- */

static const struct fspec machine_fields[] = {
	{ "vcpu_count", F_INT, true },
	{ "mem_size_mib", F_INT, true },
	{ "smt", F_BOOL, false },
	{ "track_dirty_pages", F_BOOL, false },
	{ "cpu_template", F_STR, false },
	{ "huge_pages", F_STR, false },
};

static int machine_config(struct fcq *q, json_t *b, bool patch, struct fc_err *e)
{
	struct fcq_config *c = &q->cfg;
	struct fspec spec[ARRAY_SIZE(machine_fields)];
	long long vcpus = patch ? c->vcpus : 1, mem = patch ? c->mem_mib : 128;
	bool smt = patch ? c->smt : false;
	const char *s;
	json_t *v;

	memcpy(spec, machine_fields, sizeof(spec));
	if (patch)
		spec[0].required = spec[1].required = false;
	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	if (json_int(b, "vcpu_count", 1, 32, &vcpus, e) < 0 ||
	    json_int(b, "mem_size_mib", 16, 1048576, &mem, e) < 0)
		return -1;
	if ((v = json_object_get(b, "smt")))
		smt = json_is_true(v);
	if (smt && vcpus > 1 && vcpus % 2)
		return fc_err_set(e, 0, "the vCPU number can only be 1 or an even number when SMT is enabled");
	if (json_is_true(json_object_get(b, "track_dirty_pages")))
		return fc_err_set(e, 0, "'track_dirty_pages' is not supported by fc-qemu (no diff snapshots)");
	if ((s = json_str(b, "cpu_template")) && strcmp(s, "None")) {
		static const char *const known[] = { "C3", "T2", "T2S", "T2CL", "T2A", "V1N1" };

		for (size_t i = 0; i < ARRAY_SIZE(known); i++)
			if (!strcmp(s, known[i]))
				return fc_err_set(e, 0, "'cpu_template' %s is not supported by fc-qemu (only None)", s);
		return fc_err_set(e, 0, "invalid 'cpu_template' '%.32s'", s);
	}
	if ((s = json_str(b, "huge_pages")) && strcmp(s, "None")) {
		if (!strcmp(s, "2M"))
			return fc_err_set(e, 0, "'huge_pages' 2M is not supported by fc-qemu (only None)");
		return fc_err_set(e, 0, "invalid 'huge_pages' '%.32s': must be None or 2M", s);
	}
	c->vcpus = vcpus;
	c->mem_mib = mem;
	c->smt = smt;
	return 0;
}

static char *machine_json(const struct fcq_config *c)
{
	return dump(json_pack("{s:i,s:i,s:b,s:b,s:s}", "vcpu_count", (int)c->vcpus,
			      "mem_size_mib", (int)c->mem_mib, "smt", c->smt,
			      "track_dirty_pages", 0, "huge_pages", "None"));
}

/* --- boot-source, drives, network, vsock -------------------------------- */

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = s ? xstrdup(s) : NULL;
}

static int boot_source(struct fcq *q, json_t *b, struct fc_err *e)
{
	static const struct fspec spec[] = {
		{ "kernel_image_path", F_STR, true },
		{ "initrd_path", F_STR, false },
		{ "boot_args", F_STR, false },
	};
	const char *k, *i, *a;

	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	k = json_str(b, "kernel_image_path");
	i = json_str(b, "initrd_path");
	a = json_str(b, "boot_args");
	if (check_path("kernel_image_path", k, 4095, e) < 0 ||
	    check_file("kernel image", k, true, e) < 0)
		return -1;
	if (i && (check_path("initrd_path", i, 4095, e) < 0 || check_file("initrd", i, true, e) < 0))
		return -1;
	if (a && strlen(a) >= FCQ_CMDLINE_MAX)
		return fc_err_set(e, 0, "'boot_args' is longer than %d bytes", FCQ_CMDLINE_MAX - 1);
	if (a && strpbrk(a, "\n\r"))
		return fc_err_set(e, 0, "'boot_args' contains a line break");
	set_str(&q->cfg.kernel, k);
	set_str(&q->cfg.initrd, i);
	set_str(&q->cfg.boot_args, a);
	return 0;
}

static int drive(struct fcq *q, const char *id, json_t *b, struct fc_err *e)
{
	static const struct fspec spec[] = {
		{ "drive_id", F_STR, true },
		{ "is_root_device", F_BOOL, true },
		{ "path_on_host", F_STR, false },
		{ "is_read_only", F_BOOL, false },
		{ "partuuid", F_STR, false },
		{ "cache_type", F_STR, false },
		{ "io_engine", F_STR, false },
		{ "rate_limiter", F_OBJ, false },
		{ "socket", F_STR, false },
	};
	struct fcq_config *c = &q->cfg;
	struct fcq_drive *d = NULL;
	const char *path, *s, *cache = "writeback";
	bool root, ro;
	size_t i;

	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	if (strcmp(json_str(b, "drive_id"), id))
		return fc_err_set(e, 0, "the id from the path does not match the id from the body");
	if (json_object_get(b, "socket"))
		return fc_err_set(e, 0, "'socket' (vhost-user-block) is not supported by fc-qemu");
	if (json_object_get(b, "partuuid"))
		return fc_err_set(e, 0, "'partuuid' is not supported by fc-qemu (root is /dev/vda)");
	if (check_no_limiter(b, "rate_limiter", e) < 0)
		return -1;
	if ((s = json_str(b, "io_engine")) && strcmp(s, "Sync"))
		return fc_err_set(e, 0, !strcmp(s, "Async") ?
				  "'io_engine' Async is not supported by fc-qemu (only Sync)" :
				  "invalid 'io_engine': must be Sync or Async");
	if ((s = json_str(b, "cache_type"))) {
		if (!strcmp(s, "Unsafe"))
			cache = "unsafe";
		else if (strcmp(s, "Writeback"))
			return fc_err_set(e, 0, "invalid 'cache_type': must be Unsafe or Writeback");
	} else {
		cache = "unsafe";	/* Firecracker's default */
	}
	path = json_str(b, "path_on_host");
	if (!path)
		return fc_err_set(e, 0, "missing required field 'path_on_host'");
	root = json_is_true(json_object_get(b, "is_root_device"));
	ro = json_is_true(json_object_get(b, "is_read_only"));
	if (check_path("path_on_host", path, 4095, e) < 0 || check_file("drive", path, ro, e) < 0)
		return -1;
	for (i = 0; i < c->ndrives; i++) {
		if (!strcmp(c->drives[i].id, id))
			d = &c->drives[i];
		else if (root && c->drives[i].root)
			return fc_err_set(e, 0, "a root block device already exists");
	}
	if (!d) {
		if (c->ndrives == FCQ_MAX_DRIVES)
			return fc_err_set(e, 0, "at most %d drives are supported", FCQ_MAX_DRIVES);
		d = &c->drives[c->ndrives++];
		snprintf(d->id, sizeof(d->id), "%s", id);
	}
	set_str(&d->path, path);
	d->root = root;
	d->read_only = ro;
	d->cache = cache;
	return 0;
}

bool fcq_valid_mac(const char *m)
{
	if (strlen(m) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		char ch = m[i];

		if (i % 3 == 2 ? ch != ':' :
		    !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
			return false;
	}
	return true;
}

bool fcq_valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
			return false;
	return true;
}

static int net_iface(struct fcq *q, const char *id, json_t *b, struct fc_err *e)
{
	static const struct fspec spec[] = {
		{ "iface_id", F_STR, true },
		{ "host_dev_name", F_STR, true },
		{ "guest_mac", F_STR, false },
		{ "mtu", F_INT, false },
		{ "rx_rate_limiter", F_OBJ, false },
		{ "tx_rate_limiter", F_OBJ, false },
	};
	struct fcq_config *c = &q->cfg;
	struct fcq_net *n = NULL;
	const char *tap, *mac;
	long long mtu = 0;

	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	if (strcmp(json_str(b, "iface_id"), id))
		return fc_err_set(e, 0, "the id from the path does not match the id from the body");
	if (check_no_limiter(b, "rx_rate_limiter", e) < 0 ||
	    check_no_limiter(b, "tx_rate_limiter", e) < 0)
		return -1;
	if (json_int(b, "mtu", 68, 65535, &mtu, e) < 0)
		return -1;
	tap = json_str(b, "host_dev_name");
	if (!fcq_valid_ifname(tap))
		return fc_err_set(e, 0, "invalid 'host_dev_name' '%.32s': 1-15 characters of [A-Za-z0-9_.-]", tap);
	mac = json_str(b, "guest_mac");
	if (mac && !fcq_valid_mac(mac))
		return fc_err_set(e, 0, "invalid 'guest_mac' '%.32s': must be xx:xx:xx:xx:xx:xx", mac);
	for (size_t i = 0; i < c->nnets; i++) {
		if (!strcmp(c->nets[i].id, id))
			n = &c->nets[i];
		else if (!strcmp(c->nets[i].tap, tap))
			return fc_err_set(e, 0, "host device '%s' is already used by interface '%s'",
					  tap, c->nets[i].id);
		else if (mac && !strcasecmp(c->nets[i].mac, mac))
			return fc_err_set(e, 0, "guest MAC %s is already used by interface '%s'",
					  mac, c->nets[i].id);
	}
	if (!n) {
		if (c->nnets == FCQ_MAX_NETS)
			return fc_err_set(e, 0, "at most %d network interfaces are supported", FCQ_MAX_NETS);
		n = &c->nets[c->nnets++];
		snprintf(n->id, sizeof(n->id), "%s", id);
	}
	snprintf(n->tap, sizeof(n->tap), "%s", tap);
	snprintf(n->mac, sizeof(n->mac), "%s", mac ? mac : "");
	n->mtu = mtu;
	return 0;
}

static int vsock(struct fcq *q, json_t *b, struct fc_err *e)
{
	static const struct fspec spec[] = {
		{ "guest_cid", F_INT, true },
		{ "uds_path", F_STR, true },
		{ "vsock_id", F_STR, false },
	};
	long long cid;
	const char *uds;

	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	if (json_int(b, "guest_cid", 3, 0xfffffffeLL, &cid, e) < 0)
		return -1;
	uds = json_str(b, "uds_path");
	/* room for "_<port>" listeners next to it, within sun_path */
	if (check_path("uds_path", uds, 96, e) < 0)
		return -1;
	q->cfg.vsock = true;
	q->cfg.cid = cid;
	set_str(&q->cfg.uds_path, uds);
	return 0;
}

/* --- actions and state --------------------------------------------------- */

static int action(struct fcq *q, json_t *b, struct fc_err *e)
{
	static const struct fspec spec[] = { { "action_type", F_STR, true } };
	const char *a;

	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	a = json_str(b, "action_type");
	if (!strcmp(a, "InstanceStart")) {
		if (q->state != FCQ_NOT_STARTED)
			return fc_err_set(e, 0, "the microVM is already running");
		if (!q->cfg.kernel)
			return fc_err_set(e, 0, "cannot start the microVM without a kernel: PUT /boot-source first");
		if (vmm_start(&q->vmm, &q->cfg, e) < 0)
			return fc_err_wrap(e, "start microVM");
		q->state = FCQ_RUNNING;
		log_info("microVM running (QEMU pid %d, %s)", (int)q->vmm.qemu,
			 q->vmm.tcg ? "TCG" : "KVM");
		return 0;
	}
	if (!strcmp(a, "SendCtrlAltDel")) {
		if (q->state == FCQ_NOT_STARTED)
			return fc_err_set(e, 0, "SendCtrlAltDel is not supported before starting the microVM");
		/* microvm has no i8042: an ACPI power button press stands in for it */
		return vmm_qmp(&q->vmm, "system_powerdown", e);
	}
	if (!strcmp(a, "FlushMetrics"))
		return fc_err_set(e, 0, "FlushMetrics is not supported by fc-qemu (no metrics)");
	return fc_err_set(e, 0, "invalid 'action_type' '%.32s': must be InstanceStart, SendCtrlAltDel or FlushMetrics", a);
}

static int vm_state(struct fcq *q, json_t *b, struct fc_err *e)
{
	static const struct fspec spec[] = { { "state", F_STR, true } };
	const char *s;

	if (check_fields(b, spec, ARRAY_SIZE(spec), e) < 0)
		return -1;
	s = json_str(b, "state");
	if (strcmp(s, "Paused") && strcmp(s, "Resumed"))
		return fc_err_set(e, 0, "invalid 'state' '%.32s': must be Paused or Resumed", s);
	if (q->state == FCQ_NOT_STARTED)
		return fc_err_set(e, 0, "the microVM state cannot be changed before starting the microVM");
	if (!strcmp(s, "Paused")) {
		if (vmm_qmp(&q->vmm, "stop", e) < 0)
			return -1;
		q->state = FCQ_PAUSED;
	} else {
		if (vmm_qmp(&q->vmm, "cont", e) < 0)
			return -1;
		q->state = FCQ_RUNNING;
	}
	return 0;
}

/* --- routing ------------------------------------------------------------ */

/* Firecracker endpoints fc-qemu knows of but does not implement. */
static const char *const unsupported_paths[] = {
	"/balloon", "/cpu-config", "/logger", "/metrics", "/mmds", "/entropy", "/serial",
	"/hotplug", "/pmem", "/vm/config",
};

static bool path_is(const char *target, const char *prefix)
{
	size_t n = strlen(prefix);

	return !strncmp(target, prefix, n) && (target[n] == '\0' || target[n] == '/');
}

/* "/drives/<id>" -> id (validated), or NULL if @target is not below @prefix. */
static const char *sub_id(const char *target, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(target, prefix, n) || target[n] != '/')
		return NULL;
	return target + n + 1;
}

int api_handle(struct fcq *q, const struct http_request *req, char **json)
{
	const char *m = req->method, *t = req->target, *id;
	bool get = !strcmp(m, "GET"), put = !strcmp(m, "PUT"), patch = !strcmp(m, "PATCH");
	_cleanup_json_ json_t *body = NULL;
	struct fc_err e = { 0 };
	char msg[HTTP_MAX_TARGET + 128];
	int r;

	*json = NULL;
	if (get && !strcmp(t, "/"))
		*json = dump(json_pack("{s:s,s:s,s:s,s:s}", "id", q->cfg.id, "state",
				       state_name(q->state), "vmm_version", FCQ_VERSION,
				       "app_name", "Firecracker"));
	else if (get && !strcmp(t, "/version"))
		*json = dump(json_pack("{s:s}", "firecracker_version", FCQ_VERSION));
	else if (get && !strcmp(t, "/machine-config"))
		*json = machine_json(&q->cfg);
	if (*json)
		return 200;

	for (size_t i = 0; i < ARRAY_SIZE(unsupported_paths); i++) {
		if (path_is(t, unsupported_paths[i]) && !(patch && !strcmp(t, "/vm"))) {
			snprintf(msg, sizeof(msg), "%s %s is unsupported by fc-qemu", m, t);
			return fail_msg(json, msg);
		}
	}
	if (patch && (sub_id(t, "/drives") || sub_id(t, "/network-interfaces"))) {
		snprintf(msg, sizeof(msg), "%s %s (post-boot update) is unsupported by fc-qemu", m, t);
		return fail_msg(json, msg);
	}
	if (!((put && (!strcmp(t, "/machine-config") || !strcmp(t, "/boot-source") ||
		       !strcmp(t, "/vsock") || !strcmp(t, "/actions") ||
		       !strcmp(t, "/snapshot/create") || !strcmp(t, "/snapshot/load") ||
		       sub_id(t, "/drives") || sub_id(t, "/network-interfaces"))) ||
	      (patch && (!strcmp(t, "/machine-config") || !strcmp(t, "/vm"))))) {
		snprintf(msg, sizeof(msg),
			 "Invalid request method and/or path: %s %s (unsupported by fc-qemu)", m, t);
		return fail_msg(json, msg);
	}

	if (req->body_len == 0)
		return fail_msg(json, "the request body is empty: a JSON object is required");
	body = json_parse(req->body, req->body_len, &e);
	if (!body)
		return fail(json, &e);
	if (!json_is_object(body))
		return fail_msg(json, "the request body must be a JSON object");

	if (!strcmp(t, "/actions"))
		r = action(q, body, &e);
	else if (!strcmp(t, "/vm"))
		r = vm_state(q, body, &e);
	else if (!strcmp(t, "/snapshot/create"))	/* snap.c */
		r = snap_create(q, body, &e);
	else if (!strcmp(t, "/snapshot/load"))
		r = snap_load(q, body, &e);
	else if (q->state != FCQ_NOT_STARTED)
		return fail_msg(json, "the requested operation is not supported after starting the microVM");
	else if (!strcmp(t, "/machine-config"))
		r = machine_config(q, body, patch, &e);
	else if (!strcmp(t, "/boot-source"))
		r = boot_source(q, body, &e);
	else if (!strcmp(t, "/vsock"))
		r = vsock(q, body, &e);
	else if ((id = sub_id(t, "/drives")))
		r = fcq_valid_id(id, '_') ? drive(q, id, body, &e) :
		    fc_err_set(&e, 0, "invalid drive id '%.64s': 1-64 characters of [A-Za-z0-9_]", id);
	else if ((id = sub_id(t, "/network-interfaces")))
		r = fcq_valid_id(id, '_') ? net_iface(q, id, body, &e) :
		    fc_err_set(&e, 0, "invalid interface id '%.64s': 1-64 characters of [A-Za-z0-9_]", id);
	else
		r = fc_err_set(&e, 0, "unreachable route");
	if (r < 0)
		return fail(json, &e);
	return 204;
}

void fcq_init(struct fcq *q, const char *id)
{
	memset(q, 0, sizeof(*q));
	snprintf(q->cfg.id, sizeof(q->cfg.id), "%s", id);
	q->cfg.vcpus = 1;
	q->cfg.mem_mib = 128;
	q->state = FCQ_NOT_STARTED;
	vmm_init(&q->vmm);
}

void fcq_free(struct fcq *q)
{
	free(q->cfg.kernel);
	free(q->cfg.initrd);
	free(q->cfg.boot_args);
	free(q->cfg.uds_path);
	for (size_t i = 0; i < q->cfg.ndrives; i++)
		free(q->cfg.drives[i].path);
	memset(&q->cfg, 0, sizeof(q->cfg));
}
