/* fc-clone - start a clone of a snapshot and own it. See fc-clone(1).
 *
 * How it works, and why in this order:
 *  1. snapshot_open() validates the snapshot (manifest schema, plain file
 *     names, sizes, the vmstate's sha256) before anything is made: a
 *     damaged or tampered snapshot starts nothing.
 *  2. lib/vmowner owns the clone exactly like fc-boot owns a VM (record
 *     first, janitor, VMM, capped console), with process_type "clone", the
 *     record's "snapshot" = the tag, and own_disk_dir: vm-disks/<id>/ is
 *     the clone's alone and goes with it however fc-clone ends, kill -9
 *     included (the janitor removes it).
 *  3. Its configure step, instead of a boot: a reflink copy of the
 *     snapshot's disk into vm-disks/<id>/rootfs.ext4, given as the rootfs
 *     drive override; PUT /snapshot/load with mem_backend File (the VMM
 *     maps the memory file privately: clones share its page cache) and
 *     the clone's own vsock socket, resume_vm (with --pid: mem_backend Uffd
 *     and the memory server's socket: the server copies each page in as
 *     the clone first touches it); then the agent must answer
 *     a STATUS request on the new socket (the restore reset the vsock
 *     transport; the agent keeps listening).
 *  4. The clone fix-up (MSG_CLONE, lib/clonefix.h): the guest's and the
 *     container's hostname become the clone's name, the guest RNG gets a
 *     fresh seed from the host, the guest clock the host's. Only when the
 *     agent acknowledges it is the clone "running"; a failure or a timeout
 *     fails the clone and vmowner removes everything it made.
 *  Before 2, a snapshot of a VM with a (bridged) network gets the network
 *  for clones from fc-net (clone_net_up): a namespace holding a TAP of the
 *  source's name and gateway, NAT to an address and a loopback address of
 *  the clone's own, the source's published ports (and -p) there. The owner
 *  enters that namespace before the VMM is spawned (lib/vmowner, as for
 *  rootless networking), so the restored guest keeps its IP and MAC. The
 *  network's holder lives as long as the clone's owner and removes it all
 *  when the owner is gone, however it ends (fc-net(1), clone mode).
 * --pid SERVE_PID: the live "serve" record of that pid (fc-uffd) names the
 * snapshot and the socket; the clone's record carries serve_pid and
 * serve_pid_start from the start, so a server that stops finds and stops
 * its clones, even one still loading.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "agentc.h"
#include "clonefix.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "proto.h"
#include "proc.h"
#include "snapshot.h"
#include "state.h"
#include "util.h"
#include "vmowner.h"
#include "volspec.h"

static const char usage_text[] =
	"usage: fc-clone (--snapshot TAG | --pid SERVE_PID) --name NAME [--id ID] [--console FILE]\n"
	"                [-p [HOSTIP:][HOSTPORT:]GUESTPORT[/tcp|udp]]...\n"
	"                [--agent-timeout SEC] [--volumes FILE] [--detach | --die-with-parent]\n"
	"                [--ready-fd N] [-v] [-q]\n";

static noreturn void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

/* The fix-up once the agent answers: a few syscalls in the guest, but TCG
 * guests are slow and the host may be loaded. */
#define FIXUP_MS 30000
#define CLONE_MAX_PUBLISH 64
#define CLONE_NET_TIMEOUT_MS 30000

struct clone {
	const char *tag;
	json_t *man;		/* the validated manifest */
	int agent_timeout_ms;
	const char *publish[CLONE_MAX_PUBLISH];	/* -p, checked by fc-net */
	int npublish;
	json_t *net;		/* fc-net's result for the clone, or NULL */
	pid_t serve_pid;	/* --pid: the memory server, else 0 */
	uint64_t serve_start;	/* its pid_start */
	char *uffd_sock;	/* its socket (Uffd backend), else NULL (File) */
};

static const char *file_of(json_t *man, const char *key)
{
	return json_str(json_object_get(json_object_get(man, "files"), key), "abs");
}

static int call(struct fcapi *a, const char *method, const char *path, json_t *body,
		struct fc_err *e)
{
	int r = fcapi_call(a, method, path, body, NULL, e);

	json_decref(body);
	return r;
}

/* The record's config: the source's, with the clone's own disk. */
static void record_config(struct vmowner *o, json_t *man, const char *disk)
{
	json_t *rec = vmowner_record(o);
	json_t *cfg = json_object_get(rec, "config");
	json_t *src = json_object_get(json_object_get(man, "source"), "config");
	json_t *drives = json_array(), *d;
	const char *old_root = json_str(src, "rootfs");
	size_t i;

	if (!json_is_object(cfg))
		return;
	json_array_append_new(drives, json_pack("{s:s, s:b}", "path", disk, "read_only", 0));
	json_array_foreach(json_object_get(src, "drives"), i, d) {
		const char *p = json_str(d, "path");

		if (p && (!old_root || strcmp(p, old_root)) &&
		    json_is_boolean(json_object_get(d, "read_only")))
			json_array_append_new(drives, json_pack("{s:s, s:O}", "path", p,
								"read_only",
								json_object_get(d, "read_only")));
	}
	json_object_set_new(cfg, "rootfs", json_string(disk));
	json_object_set_new(cfg, "drives", drives);
	if (json_str(src, "boot_args"))
		json_object_set_new(cfg, "boot_args", json_string(json_str(src, "boot_args")));
}

/* Until the clone's agent answers a STATUS request (at most @ms). The
 * restore resets the guest's vsock transport a moment after the resume: a
 * connection made before the guest handled that reset is dropped by it
 * without an answer, so attempts start short (0.1 s: a restored agent
 * answers within milliseconds; doubling, for a loaded host) and we try
 * again. */
static int wait_agent(const char *vsock, int ms, struct fc_err *e)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	int attempt_ms = 100;	/* doubled after each attempt, up to 4 s */

	for (int n = 1;; n++) {
		struct agentc_opts ao = AGENTC_OPTS_INIT;
		_cleanup_agentc_ struct agentc *s = NULL;
		_cleanup_free_ char *status = NULL;
		uint64_t left = end > now_ms() ? end - now_ms() : 0;

		ao.timeout_ms = (int)(left < (uint64_t)attempt_ms ? left : (uint64_t)attempt_ms);
		if (ao.timeout_ms < 1)
			ao.timeout_ms = 1;
		ao.heartbeat_ms = 0;
		s = agentc_new(&ao);
		if (agentc_connect(s, vsock, AGENT_PORT_RUN, e) == 0 &&
		    agentc_status(s, &status, e) == 0) {
			log_debug("the clone's agent answers (attempt %d): %s", n, status);
			return 0;
		}
		if (agentc_signal(s))
			return fc_err_set(e, EINTR, "interrupted while waiting for the clone's agent");
		if (now_ms() >= end)
			return fc_err_wrap(e, "the clone's agent did not answer within %d s", ms / 1000);
		log_debug("the clone's agent, attempt %d: %s", n, e->msg);
		if (attempt_ms < 4000)
			attempt_ms *= 2;
	}
}

/* The clone fix-up (see clonefix.h): the restored guest still believes it
 * is the snapshot's source - its hostname, its RNG state (every clone would
 * draw the same "random" bytes), its clock of the snapshot's moment. Tell
 * its agent who it is now, on a connection of its own once the agent has
 * answered (the vsock reset is behind us then: no retry, a failure is the
 * clone's failure). Bounded by @ms. */
static int clone_fixup(const struct vm_spec *s, int ms, struct fc_err *e)
{
	struct agentc_opts ao = AGENTC_OPTS_INIT;
	_cleanup_agentc_ struct agentc *a = NULL;
	struct clonefix f;
	struct clonefix_done d;

	ao.timeout_ms = ms;
	ao.heartbeat_ms = 0;
	a = agentc_new(&ao);
	if (agentc_connect(a, s->vsock, AGENT_PORT_RUN, e) < 0)
		return fc_err_wrap(e, "clone fix-up");
	/* (the seed and the clock as late as possible: the clock is sent) */
	if (clonefix_make(&f, s->id, s->name, e) < 0 || agentc_clone(a, &f, &d, e) < 0)
		return -1;
	explicit_bzero(f.seed, sizeof(f.seed));
	log_debug("clone fix-up: hostname '%s', %lld container(s) renamed, RNG %s, %lld "
		  "interface(s) re-announced", d.hostname, d.containers,
		  d.reseeded ? "reseeded" : "seeded (no RNDRESEEDCRNG)", d.announced);
	return 0;
}

/* --pid: the live memory server (process_type "serve") of @pid gives the
 * snapshot's tag and the socket to load from. 0, or -1 with @e. */
static int find_server(struct clone *c, pid_t pid, struct fc_err *e)
{
	_cleanup_json_ json_t *rec = state_find_pid(pid, e);
	const char *type, *tag, *sock, *status;
	struct stat st;

	if (!rec)
		return e->errnum == ENOENT ?
		       fc_err_set(e, ENOENT, "no memory server runs as pid %d "
				  "('fcvm snapshot serve TAG' prints a server's pid)", (int)pid) : -1;
	type = json_str(rec, "process_type");
	status = json_str(rec, "status");
	tag = json_str(rec, "snapshot");
	sock = json_str(json_object_get(rec, "sockets"), "uffd");
	if (!type || strcmp(type, "serve"))
		return fc_err_set(e, EINVAL, "pid %d is a %s, not a memory server "
				  "('fcvm snapshot serve TAG' prints a server's pid)", (int)pid,
				  type ? type : "process of unknown type");
	if (!status || strcmp(status, "running") || !tag || !sock)
		return fc_err_set(e, EAGAIN, "memory server %d is %s, not serving", (int)pid,
				  status ? status : "in an unknown state");
	if (c->tag && strcmp(c->tag, tag))
		return fc_err_set(e, EINVAL, "memory server %d serves snapshot '%s', not '%s'",
				  (int)pid, tag, c->tag);
	if (!snapshot_valid_tag(tag))
		return fc_err_set(e, EINVAL, "memory server %d: invalid snapshot tag", (int)pid);
	if (stat(sock, &st) < 0 || !S_ISSOCK(st.st_mode))
		return fc_err_set(e, errno ? errno : ENOTSOCK, "memory server %d: its socket '%s'",
				  (int)pid, sock);
	c->tag = xstrdup(tag);
	c->uffd_sock = xstrdup(sock);
	c->serve_pid = pid;
	c->serve_start = (uint64_t)json_integer_value(json_object_get(rec, "pid_start"));
	return 0;
}

/* mem_backend of the load: the server's socket, or the memory file. */
static json_t *mem_backend(const struct clone *c)
{
	if (c->uffd_sock)
		return json_pack("{s:s, s:s}", "backend_type", "Uffd", "backend_path", c->uffd_sock);
	return json_pack("{s:s, s:s}", "backend_type", "File", "backend_path",
			 file_of(c->man, "memory"));
}

static int clone_configure(struct vmowner *o, struct fcapi *api, void *arg, struct fc_err *e)
{
	struct clone *c = arg;
	const struct vm_spec *s = vmowner_spec(o);
	const char *dir = json_str(vmowner_record(o), "disk_dir");
	_cleanup_free_ char *disk = xasprintf("%s/rootfs.ext4", dir);
	uint64_t t0 = now_ms();

	if (fs_reflink(file_of(c->man, "disk"), disk, 0644, false, e) < 0)
		return fc_err_wrap(e, "the clone's disk");
	if (call(api, "PUT", "/drives/rootfs",
		 json_pack("{s:s, s:s, s:b, s:b}", "drive_id", "rootfs", "path_on_host", disk,
			   "is_root_device", 1, "is_read_only", 0), e) < 0)
		return -1;
	if (call(api, "PUT", "/snapshot/load",
		 json_pack("{s:s, s:o, s:b, s:{s:s}}", "snapshot_path",
			   file_of(c->man, "vmstate"), "mem_backend", mem_backend(c), "resume_vm", 1,
			   "vsock_override", "uds_path", s->vsock), e) < 0)
		return fc_err_wrap(e, "load snapshot '%s'", c->tag);
	log_debug("snapshot '%s' loaded and resumed in %llu ms", c->tag,
		 (unsigned long long)(now_ms() - t0));
	record_config(o, c->man, disk);
	if (wait_agent(s->vsock, c->agent_timeout_ms, e) < 0)
		return -1;
	if (clone_fixup(s, FIXUP_MS, e) < 0)
		return -1;
	log_debug("clone %s answers %llu ms after the load began", s->id,
		 (unsigned long long)(now_ms() - t0));
	return 0;
}

/* The network for a clone of a VM that had one: 'fc-net up --mode clone'
 * (fc-net is the privileged part; we parse guest input and stay apart),
 * owned by us. Its holder's namespace is where the VMM will run; its
 * result becomes the record's "network". 0 (no network: c->net stays
 * NULL) or -1 with @e. */
static int clone_net_up(struct clone *c, struct vm_spec *spec, struct fc_err *e)
{
	json_t *src = json_object_get(json_object_get(c->man, "source"), "network");
	_cleanup_free_ char *fcnet = NULL, *out = NULL;
	char owner[32];
	char *argv[16 + 2 * CLONE_MAX_PUBLISH];
	long long pid = 0, start = 0;
	json_t *ns;
	int n = 0, i;

	if (!json_is_object(src)) {
		if (c->npublish)
			return fc_err_set(e, EINVAL, "-p needs a network: the source of snapshot '%s' had none",
					  c->tag);
		return 0;
	}
	fcnet = proc_find_tool("fc-net");
	if (!fcnet)
		return fc_err_set(e, ENOENT, "fc-net not found: the clone of a VM with a network needs it");
	snprintf(owner, sizeof(owner), "%d", (int)getpid());
	argv[n++] = fcnet;
	argv[n++] = "up";
	argv[n++] = "-q";
	argv[n++] = "--vm";
	argv[n++] = (char *)spec->id;
	argv[n++] = "--mode";
	argv[n++] = "clone";
	argv[n++] = "--from-snapshot";
	argv[n++] = (char *)c->tag;
	argv[n++] = "--owner-pid";
	argv[n++] = owner;
	for (i = 0; i < c->npublish; i++) {
		argv[n++] = "-p";
		argv[n++] = (char *)c->publish[i];
	}
	argv[n] = NULL;
	if (run_capture(argv, &out, 256 * 1024, CLONE_NET_TIMEOUT_MS, e) != 0)
		return fc_err_wrap(e, "the clone's network");
	c->net = json_loads(out, 0, NULL);
	ns = json_object_get(c->net, "netns");
	if (!json_is_object(c->net) || !json_str(c->net, "tap") ||
	    json_int(ns, "pid", 1, 1LL << 31, &pid, e) != 0 ||
	    json_int(ns, "pid_start", 1, 1LL << 62, &start, e) != 0)
		return fc_err_set(e, EPROTO, "the clone's network: fc-net gave no usable result");
	spec->tap = json_str(c->net, "tap");
	spec->netns_pid = (pid_t)pid;
	spec->netns_start = (uint64_t)start;
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_SNAPSHOT = 256, O_PID, O_ID, O_CONSOLE, O_DETACH, O_DIE, O_READY_FD, O_AGENT_TIMEOUT,
	       O_VOLUMES };
	static const struct option opts[] = {
		{ "snapshot", required_argument, NULL, O_SNAPSHOT },
		{ "pid", required_argument, NULL, O_PID },
		{ "name", required_argument, NULL, 'n' },
		{ "id", required_argument, NULL, O_ID },
		{ "console", required_argument, NULL, O_CONSOLE },
		{ "agent-timeout", required_argument, NULL, O_AGENT_TIMEOUT },
		{ "volumes", required_argument, NULL, O_VOLUMES },
		{ "publish", required_argument, NULL, 'p' },
		{ "detach", no_argument, NULL, O_DETACH },
		{ "die-with-parent", no_argument, NULL, O_DIE },
		{ "ready-fd", required_argument, NULL, O_READY_FD },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct clone c = { .tag = NULL, .man = NULL, .agent_timeout_ms = 60000 };
	_cleanup_free_ char *new_id = NULL;
	pid_t serve_pid = 0;
	struct vm_spec spec = { 0 };
	struct vm_outcome out;
	_cleanup_json_ json_t *extra = NULL, *vols = NULL;
	const char *volumes = NULL;
	_cleanup_free_ char *srv_tag = NULL, *srv_sock = NULL;
	json_t *mach;
	struct fc_err e;
	uint64_t n;
	int opt;

	log_init("fc-clone");
	while ((opt = getopt_long(argc, argv, ":n:p:vqh", opts, NULL)) != -1) {
		switch (opt) {
		case O_SNAPSHOT: c.tag = optarg; break;
		case O_PID:
			if (parse_u64(optarg, 1, INT32_MAX, "--pid", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			serve_pid = (pid_t)n;
			break;
		case 'n': spec.name = optarg; break;
		case O_ID: spec.id = optarg; break;
		case O_CONSOLE: spec.console = optarg; break;
		case O_VOLUMES: volumes = optarg; break;
		case O_AGENT_TIMEOUT:
			if (parse_u64(optarg, 1, 3600, "--agent-timeout (s)", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			c.agent_timeout_ms = (int)n * 1000;
			break;
		case O_DETACH: spec.detach = true; break;
		case O_DIE: spec.die_with_parent = true; break;
		case O_READY_FD:
			if (parse_u64(optarg, 0, 1023, "--ready-fd", &n, &e) < 0)
				usage_err(usage_text, "%s", e.msg);
			if (fcntl((int)n, F_GETFD) < 0)
				usage_err(usage_text, "--ready-fd %d is not an open descriptor", (int)n);
			spec.ready = true;
			spec.ready_fd = (int)n;
			break;
		case 'p':
			if (c.npublish == CLONE_MAX_PUBLISH)
				usage_err(usage_text, "more than %d -p", CLONE_MAX_PUBLISH);
			c.publish[c.npublish++] = optarg;
			break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': usage(0);
		case ':': usage_err(usage_text, "option '%s' needs a value", argv[optind - 1]);
		default: usage_err(usage_text, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (!c.tag && !serve_pid)
		usage_err(usage_text, "--snapshot or --pid is required");
	if (c.tag && !snapshot_valid_tag(c.tag))
		usage_err(usage_text, "invalid --snapshot '%s'", c.tag);
	if (!spec.name)
		usage_err(usage_text, "--name is required");
	if (!fc_valid_name(spec.name))
		usage_err(usage_text, "invalid --name '%s': use 1-63 letters, digits, '_', '.', '-'",
			  spec.name);
	if (spec.id && (!fc_valid_name(spec.id) ||
			strspn(spec.id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					"0123456789-") != strlen(spec.id)))
		usage_err(usage_text, "invalid --id '%s': use 1-63 letters, digits and '-'",
			  spec.id);
	if (spec.detach && spec.die_with_parent)
		usage_err(usage_text, "--detach and --die-with-parent exclude each other");
	log_set_tag(spec.name);

	/* the servers the front end started for this clone, kept as its
	 * config.volumes */
	if (volumes && !(vols = volspec_load(volumes, &e)))
		fc_err_exit(&e, 1);
	spec.volumes = vols;
	if (serve_pid && find_server(&c, serve_pid, &e) < 0)
		fc_err_exit(&e, 1);
	/* find_server's copies: ours to free however main returns */
	srv_tag = serve_pid ? (char *)c.tag : NULL;
	srv_sock = c.uffd_sock;
	c.man = snapshot_open(c.tag, &e);
	if (!c.man)
		fc_err_exit(&e, 1);
	/* The network needs the clone's id before the owner exists. */
	if (!spec.id)
		spec.id = new_id = state_new_id();
	if (clone_net_up(&c, &spec, &e) < 0) {
		json_decref(c.man);
		fc_err_exit(&e, 1);
	}
	mach = json_object_get(c.man, "machine");
	spec.process_type = "clone";
	spec.cpus = (uint64_t)json_integer_value(json_object_get(mach, "cpus"));
	spec.memory_mib = (uint64_t)json_integer_value(json_object_get(mach, "memory_mib"));
	/* The record names the source's kernel and initrd (the clone runs them). */
	spec.kernel = json_str(json_object_get(json_object_get(c.man, "source"), "config"), "kernel");
	spec.initrd = json_str(json_object_get(json_object_get(c.man, "source"), "config"), "initrd");
	spec.own_disk_dir = true;
	spec.configure = clone_configure;
	spec.configure_arg = &c;
	extra = json_pack("{s:s}", "snapshot", c.tag);
	if (c.net)
		json_object_set(extra, "network", c.net);
	if (c.serve_pid) {
		json_object_set_new(extra, "serve_pid", json_integer(c.serve_pid));
		json_object_set_new(extra, "serve_pid_start", json_integer((json_int_t)c.serve_start));
	}
	spec.record_extra = extra;
	if (vmowner_own(&spec, &out, &e) < 0) {
		json_decref(c.man);
		json_decref(c.net);
		fc_err_exit(&e, 1);
	}
	json_decref(c.man);
	json_decref(c.net);
	if (out.detached > 0)
		printf("%d\n", (int)out.detached);
	return out.code;
}
