/* fc-net - a microVM's network: a TAP, an address from a pool, NAT for
 * egress and DNAT for published ports (bridged, as root), or a user+net
 * namespace with slirp4netns (rootless), or a namespace per clone of a
 * snapshot keeping its guest's address (clone, as root); and removing
 * exactly that again.
 * Everything through netlink and nftables; no ip/nft/sysctl subprocesses.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "net.h"
#include "paths.h"
#include "proc.h"
#include "util.h"

static const char usage_text[] =
	"usage: fc-net up --vm ID [--mode bridged|rootless] [-p [HOSTIP:][HOSTPORT:]GUESTPORT[/tcp|udp]]...\n"
	"                 [--owner-pid PID[:START]] [--pool CIDR] [--tap-user UID] [--host-loopback]\n"
	"                 [--resolv-conf PATH]\n"
	"       fc-net up --vm ID --mode clone (--from-snapshot TAG | --like FILE)\n"
	"                 [-p [HOSTIP:][HOSTPORT:]GUESTPORT[/tcp|udp]]... [--owner-pid PID[:START]] [--pool CIDR]\n"
	"       fc-net down --vm ID\n"
	"       fc-net gc [-n] [--json]\n"
	"       fc-net ls [--json]\n"
	"       fc-net attach --vm ID [--netns NAME|PATH] [--ready-fd N] [-- COMMAND [ARG]...]\n"
	"       fc-net -h | --help\n"
	"common options: -v (more log), -q (less log)\n";

static noreturn void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

struct args {
	const char *vm, *mode, *pool, *netns, *owner, *resolv, *from_snapshot, *like;
	bool json, dry, host_loopback;
	long long tap_uid, ready_fd;
	struct port_map ports[NET_MAX_PORTS];
	size_t nports;
	char **cmd;
};

static long long num_arg(const char *s, uint64_t min, uint64_t max, const char *what)
{
	struct fc_err e;
	uint64_t v;

	if (parse_u64(s, min, max, what, &v, &e) < 0)
		usage_err(usage_text, "%s", e.msg);
	return (long long)v;
}

/* Options of every subcommand; each command rejects those it does not take. */
static void parse(int argc, char **argv, struct args *a, const char *allowed)
{
	enum { O_VM = 256, O_MODE, O_POOL, O_NETNS, O_OWNER, O_JSON, O_TAPUSER, O_HOSTLO, O_READY,
	       O_RESOLV, O_FROMSNAP, O_LIKE };
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, O_VM },	   { "mode", required_argument, NULL, O_MODE },
		{ "pool", required_argument, NULL, O_POOL },	   { "netns", required_argument, NULL, O_NETNS },
		{ "owner-pid", required_argument, NULL, O_OWNER }, { "json", no_argument, NULL, O_JSON },
		{ "tap-user", required_argument, NULL, O_TAPUSER },
		{ "host-loopback", no_argument, NULL, O_HOSTLO },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "resolv-conf", required_argument, NULL, O_RESOLV },
		{ "from-snapshot", required_argument, NULL, O_FROMSNAP },
		{ "like", required_argument, NULL, O_LIKE },
		{ "publish", required_argument, NULL, 'p' },	   { "dry-run", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },		   { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },		   { NULL, 0, NULL, 0 }
	};
	struct fc_err e;
	int c, idx = -1;

	a->tap_uid = -1;
	a->ready_fd = -1;
	while ((idx = -1, c = getopt_long(argc, argv, "p:nvqh", opts, &idx)) != -1) {
		const char *name = idx >= 0 ? opts[idx].name : c == 'p' ? "publish" : c == 'n' ? "dry-run" : "";

		if ((c >= 256 || c == 'p' || c == 'n') && !strstr(allowed, name))
			usage_err(usage_text, "'%s' does not take --%s", argv[0], name);
		switch (c) {
		case O_VM: a->vm = optarg; break;
		case O_MODE: a->mode = optarg; break;
		case O_POOL: a->pool = optarg; break;
		case O_NETNS: a->netns = optarg; break;
		case O_OWNER: a->owner = optarg; break;
		case O_JSON: a->json = true; break;
		case O_TAPUSER: a->tap_uid = num_arg(optarg, 0, 0xfffffffe, "--tap-user"); break;
		case O_HOSTLO: a->host_loopback = true; break;
		case O_READY: a->ready_fd = num_arg(optarg, 3, 65535, "--ready-fd"); break;
		case O_RESOLV: a->resolv = optarg; break;
		case O_FROMSNAP: a->from_snapshot = optarg; break;
		case O_LIKE: a->like = optarg; break;
		case 'p':
			if (port_parse(optarg, a->ports, &a->nports, &e) < 0)
				fc_err_exit(&e, 2);
			break;
		case 'n': a->dry = true; break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': usage(0);
		default: usage(2);
		}
	}
	if (optind < argc && strstr(allowed, "command") && !strcmp(argv[optind - 1], "--"))
		a->cmd = argv + optind;
	else if (optind < argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (strstr(allowed, "vm")) {
		if (!a->vm)
			usage_err(usage_text, "'%s' needs --vm ID", argv[0]);
		if (!fc_valid_name(a->vm))
			usage_err(usage_text, "invalid --vm '%s': use 1-63 characters of A-Z a-z 0-9 _ . - not starting with '.' or '-'",
				  a->vm);
	}
}

static void print_json(json_t *j)
{
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);

	if (s)
		puts(s);
	else
		diex("serialise result");
}

/* What up prints: the record without the bookkeeping fields. */
static json_t *result_of(json_t *rec)
{
	json_t *r = json_deep_copy(rec);

	json_object_del(r, "version");
	json_object_del(r, "status");
	json_object_del(r, "owner_pid");
	json_object_del(r, "owner_start");
	json_object_del(r, "created");
	return r;
}

static int cmd_up(int argc, char **argv)
{
	struct args *a = xcalloc(1, sizeof(*a));
	struct up_opts *o = xcalloc(1, sizeof(*o));
	_cleanup_json_ json_t *rec = NULL, *res = NULL;
	struct fc_err e;
	uint64_t start;
	int r;

	parse(argc, argv, a, "vm mode publish owner-pid pool tap-user host-loopback resolv-conf from-snapshot like");
	o->id = a->vm;
	o->mode = a->mode ? a->mode : (geteuid() == 0 ? "bridged" : "rootless");
	if (strcmp(o->mode, "bridged") && strcmp(o->mode, "rootless") && strcmp(o->mode, "clone"))
		usage_err(usage_text, "invalid --mode '%s': bridged, rootless or clone", o->mode);
	if (!strcmp(o->mode, "clone")) {
		if (!a->from_snapshot == !a->like)
			usage_err(usage_text, "--mode clone needs one of --from-snapshot TAG and --like FILE");
		if (a->from_snapshot && !fc_valid_name(a->from_snapshot))
			usage_err(usage_text, "invalid --from-snapshot '%s'", a->from_snapshot);
		/* The guest keeps what the source had. */
		if (a->host_loopback || a->resolv || a->tap_uid != -1)
			usage_err(usage_text, "--mode clone keeps the source's network: no --host-loopback, --resolv-conf or --tap-user");
	} else if (a->from_snapshot || a->like) {
		usage_err(usage_text, "--from-snapshot and --like are for --mode clone");
	}
	o->from_snapshot = a->from_snapshot;
	o->like = a->like;
	if (a->owner) {
		char *colon = strchr(a->owner, ':');

		if (colon)
			*colon = '\0';
		o->owner = (pid_t)num_arg(a->owner, 1, 0x7fffffff, "--owner-pid");
		if (colon)
			o->owner_start = (uint64_t)num_arg(colon + 1, 1, 1ULL << 62, "--owner-pid start time");
	} else {
		o->owner = getppid();
	}
	if (!o->owner_start && proc_start_time(o->owner, &start, &e) < 0)
		diex("owner process %d is not running", (int)o->owner);
	if (!o->owner_start)
		o->owner_start = start;
	if (!proc_alive(o->owner, o->owner_start))
		diex("owner process %d is not running", (int)o->owner);
	o->pool = a->pool;
	o->tap_uid = (uid_t)a->tap_uid;
	o->host_loopback = a->host_loopback;
	o->resolv_conf = a->resolv;
	memcpy(o->ports, a->ports, sizeof(a->ports));
	o->nports = a->nports;
	log_set_tag(o->id);
	if (!strcmp(o->mode, "bridged"))
		r = bridged_up(o, &rec, &e);
	else if (!strcmp(o->mode, "clone"))
		r = clone_up(o, &rec, &e);
	else
		r = rootless_up(o, &rec, &e);
	if (r < 0)
		fc_err_exit(&e, 1);
	res = result_of(rec);
	print_json(res);
	free(a);
	free(o);
	return 0;
}

static int cmd_down(int argc, char **argv)
{
	struct args *a = xcalloc(1, sizeof(*a));
	_cleanup_close_ int lock = -1;
	_cleanup_json_ json_t *rec = NULL;
	struct fc_err e;

	parse(argc, argv, a, "vm");
	log_set_tag(a->vm);
	lock = net_lock(&e);
	if (lock < 0)
		fc_err_exit(&e, 1);
	rec = net_record_load(a->vm, &e);
	if (!rec && e.errnum == ENOENT) {
		free(a);
		return 0;	/* nothing (left) to remove: down is idempotent */
	}
	if (!rec)
		fc_err_exit(&e, 1);
	if (net_down(rec, &e) < 0)
		fc_err_exit(&e, 1);
	free(a);
	return 0;
}

static int cmd_ls(int argc, char **argv)
{
	struct args *a = xcalloc(1, sizeof(*a));
	_cleanup_json_ json_t *recs = NULL;
	struct fc_err e;
	json_t *r;
	size_t i;

	parse(argc, argv, a, "json");
	recs = net_records(&e);
	json_array_foreach(recs, i, r) {
		json_object_set_new(r, "live", json_boolean(net_record_live(r)));
	}
	if (a->json) {
		print_json(recs);
	} else {
		printf("%-20s %-9s %-11s %-16s %-15s %s\n", "ID", "MODE", "INTERFACE", "GUEST", "LOOPBACK",
		       "PORTS");
		json_array_foreach(recs, i, r) {
			json_t *p, *ports = json_object_get(r, "ports");
			size_t j;

			/* The host's interface: a clone's TAP is in its namespace. */
			const char *host_if = json_str(r, json_str(r, "veth") ? "veth" : "tap");

			printf("%-20s %-9s %-11s %-16s %-15s ", json_str(r, "id"), json_str(r, "mode"),
			       host_if ? host_if : "-",
			       json_str(r, "guest_ip") ? json_str(r, "guest_ip") : "-",
			       json_str(r, "loopback_ip") ? json_str(r, "loopback_ip") : "-");
			for (j = 0; j < json_array_size(ports); j++) {
				p = json_array_get(ports, j);
				printf("%s%s:%lld->%lld/%s", j ? "," : "", json_str(p, "host_ip"),
				       json_integer_value(json_object_get(p, "host_port")),
				       json_integer_value(json_object_get(p, "guest_port")),
				       json_str(p, "proto"));
			}
			printf("%s\n", json_is_true(json_object_get(r, "live")) ? "" : " (dead)");
		}
	}
	free(a);
	return 0;
}

static int cmd_gc(int argc, char **argv)
{
	struct args *a = xcalloc(1, sizeof(*a));
	_cleanup_close_ int lock = -1;
	_cleanup_json_ json_t *recs = NULL, *removed = json_array();
	struct fc_err e;
	json_t *r;
	size_t i;
	int bad = 0;

	parse(argc, argv, a, "dry-run json");
	lock = net_lock(&e);
	if (lock < 0)
		fc_err_exit(&e, 1);
	recs = net_records(&e);
	json_array_foreach(recs, i, r) {
		const char *id = json_str(r, "id");

		if (net_record_live(r))
			continue;
		if (!a->dry && net_down(r, &e) < 0) {
			log_error("%s: %s", id, e.msg);
			bad = 1;
			continue;
		}
		json_array_append_new(removed, json_string(id));
		if (!a->json)
			printf("%s %s (tap %s)\n", a->dry ? "would remove" : "removed", id,
			       json_str(r, "tap") ? json_str(r, "tap") : "-");
	}
	{
		_cleanup_json_ json_t *orph = json_array();
		json_t *t;
		/* Bridged TAPs are root's: an ordinary user's gc has none to take. */
		int n = geteuid() == 0 ? net_gc_orphans(a->dry, orph, &e) : 0;

		if (n < 0) {
			log_error("orphaned TAPs: %s", e.msg);
			bad = 1;
		}
		json_array_foreach(orph, i, t) {
			json_array_append_new(removed, json_sprintf("orphan:%s", json_string_value(t)));
			if (!a->json)
				printf("%s orphaned tap %s (its record's data root is gone)\n",
				       a->dry ? "would remove" : "removed", json_string_value(t));
		}
	}
	if (a->json)
		print_json(removed);
	free(a);
	return bad;
}

static int cmd_attach(int argc, char **argv)
{
	struct args *a = xcalloc(1, sizeof(*a));
	_cleanup_json_ json_t *rec = NULL;
	struct fc_err e;
	int code = 0;

	parse(argc, argv, a, "vm netns ready-fd command");
	if (!a->netns && !a->cmd)
		usage_err(usage_text, "'attach' needs --netns NAME or -- COMMAND");
	log_set_tag(a->vm);
	rec = net_record_load(a->vm, &e);
	if (!rec)
		fc_err_exit(&e, 1);
	if (attach_run(rec, a->netns, a->cmd, (int)a->ready_fd, &code, &e) < 0)
		fc_err_exit(&e, 1);
	free(a);
	return code;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = { { "up", cmd_up }, { "down", cmd_down }, { "gc", cmd_gc },
		     { "ls", cmd_ls }, { "attach", cmd_attach } };
	size_t i;

	log_init("fc-net");
	if (argc < 2)
		usage(2);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		usage(0);
	for (i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	usage_err(usage_text, "unknown command '%s'", argv[1]);
}
