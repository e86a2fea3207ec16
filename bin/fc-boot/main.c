/* fc-boot - start a microVM through the Firecracker API and own it.
 *
 * Arguments become a struct vm_spec; lib/vmowner does the rest (validate
 * everything, claim the name, janitor, VMM, API configuration, the capped
 * console, the signal loop; see vmowner.h for the order and why).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "netns.h"
#include "paths.h"
#include "util.h"
#include "vmowner.h"
#include "volspec.h"

static const char usage_text[] =
	"usage: fc-boot --name NAME [--id ID] [--cpus N] [--memory MIB]\n"
	"               [--kernel FILE] [--initrd FILE] [--rootfs FILE] [--drive PATH[:ro]]...\n"
	"               [--tap TAP] [--mac MAC] [--netns-holder PID:START] [--network FILE]\n"
	"               [--vsock UDS | --no-vsock] [--volumes FILE]\n"
	"               [--boot-args ARGS] [--console FILE] [--console-max BYTES]\n"
	"               [--detach | --die-with-parent] [--ready-fd N] [-v] [-q]\n";

static noreturn void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

static void parse_u64_or_usage(const char *s, uint64_t min, uint64_t max, const char *what,
			       uint64_t *out)
{
	struct fc_err e;

	if (parse_u64(s, min, max, what, out, &e) < 0)
		usage_err(usage_text, "%s", e.msg);
}

/* Fills @s; @drive_buf holds the --drive paths with ":ro" cut off. */
static void parse_args(struct vm_spec *s, char drive_buf[][4096], const char **network,
		       const char **volumes, int argc, char **argv)
{
	enum { O_ID = 256, O_KERNEL, O_INITRD, O_ROOTFS, O_DRIVE, O_TAP, O_MAC, O_VSOCK,
	       O_NO_VSOCK, O_BOOT_ARGS, O_CONSOLE, O_CONSOLE_MAX, O_DETACH, O_CPUS, O_MEMORY,
	       O_DIE, O_READY_FD, O_NETNS_HOLDER, O_NETWORK, O_VOLUMES };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },   { "id", required_argument, NULL, O_ID },
		{ "cpus", required_argument, NULL, O_CPUS }, { "memory", required_argument, NULL, O_MEMORY },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "rootfs", required_argument, NULL, O_ROOTFS },
		{ "drive", required_argument, NULL, O_DRIVE }, { "tap", required_argument, NULL, O_TAP },
		{ "mac", required_argument, NULL, O_MAC }, { "vsock", required_argument, NULL, O_VSOCK },
		{ "no-vsock", no_argument, NULL, O_NO_VSOCK },
		{ "boot-args", required_argument, NULL, O_BOOT_ARGS },
		{ "console", required_argument, NULL, O_CONSOLE },
		{ "console-max", required_argument, NULL, O_CONSOLE_MAX },
		{ "detach", no_argument, NULL, O_DETACH },
		{ "die-with-parent", no_argument, NULL, O_DIE },
		{ "ready-fd", required_argument, NULL, O_READY_FD },
		{ "netns-holder", required_argument, NULL, O_NETNS_HOLDER },
		{ "network", required_argument, NULL, O_NETWORK },
		{ "volumes", required_argument, NULL, O_VOLUMES },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },	    { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t n;
	int c;

	s->cpus = 2;
	s->memory_mib = 1024;
	s->console_max = VM_CONSOLE_MAX_DEFAULT;
	while ((c = getopt_long(argc, argv, "n:vqh", opts, NULL)) != -1) {
		switch (c) {
		case 'n': s->name = optarg; break;
		case O_ID: s->id = optarg; break;
		case O_CPUS: parse_u64_or_usage(optarg, 1, 32, "--cpus", &s->cpus); break;
		case O_MEMORY:
			parse_u64_or_usage(optarg, 128, 65536, "--memory (MiB)", &s->memory_mib);
			break;
		case O_KERNEL: s->kernel = optarg; break;
		case O_INITRD: s->initrd = optarg; break;
		case O_ROOTFS: s->rootfs = optarg; break;
		case O_DRIVE: {
			size_t len = strlen(optarg);

			if (s->ndrives == VM_MAX_DRIVES)
				usage_err(usage_text, "too many --drive options (at most %d)",
					  VM_MAX_DRIVES);
			if (len >= 4096)
				usage_err(usage_text, "--drive path too long");
			memcpy(drive_buf[s->ndrives], optarg, len + 1);
			if (len > 3 && !strcmp(optarg + len - 3, ":ro")) {
				drive_buf[s->ndrives][len - 3] = '\0';
				s->drives[s->ndrives].read_only = true;
			}
			s->drives[s->ndrives].path = drive_buf[s->ndrives];
			s->ndrives++;
			break;
		}
		case O_TAP: s->tap = optarg; break;
		case O_NETNS_HOLDER: {
			struct fc_err e;

			if (netns_parse_holder(optarg, &s->netns_pid, &s->netns_start, &e) < 0)
				usage_err(usage_text, "invalid --netns-holder: %s", e.msg);
			break;
		}
		case O_NETWORK: *network = optarg; break;
		case O_VOLUMES: *volumes = optarg; break;
		case O_MAC: s->mac = optarg; break;
		case O_VSOCK: s->vsock = optarg; break;
		case O_NO_VSOCK: s->no_vsock = true; break;
		case O_BOOT_ARGS: s->boot_args = optarg; break;
		case O_CONSOLE: s->console = optarg; break;
		case O_CONSOLE_MAX:
			parse_u64_or_usage(optarg, VM_CONSOLE_MAX_MIN, UINT64_C(1) << 40,
					   "--console-max (bytes)", &s->console_max);
			break;
		case O_DETACH: s->detach = true; break;
		case O_DIE: s->die_with_parent = true; break;
		case O_READY_FD:
			parse_u64_or_usage(optarg, 0, 1023, "--ready-fd", &n);
			if (fcntl((int)n, F_GETFD) < 0)
				usage_err(usage_text, "--ready-fd %d is not an open descriptor", (int)n);
			s->ready = true;
			s->ready_fd = (int)n;
			break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': usage(0);
		default: usage(2);
		}
	}
	if (optind != argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (!s->name)
		usage_err(usage_text, "--name is required");
	if (!fc_valid_name(s->name))
		usage_err(usage_text, "invalid --name '%s': use 1-63 letters, digits, '_', '.', '-'",
			  s->name);
	/* Firecracker takes instance ids of letters, digits and '-' only. */
	if (s->id && (!fc_valid_name(s->id) ||
		      strspn(s->id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") !=
			      strlen(s->id)))
		usage_err(usage_text, "invalid --id '%s': use 1-63 letters, digits and '-'", s->id);
	if (s->detach && s->die_with_parent)
		usage_err(usage_text, "--detach and --die-with-parent exclude each other");
	if (s->vsock && s->no_vsock)
		usage_err(usage_text, "--vsock and --no-vsock exclude each other");
	if (s->mac && !s->tap)
		usage_err(usage_text, "--mac needs --tap");
	if (s->mac && (strlen(s->mac) != 17 || strspn(s->mac, "0123456789abcdefABCDEF:") != 17))
		usage_err(usage_text, "invalid --mac '%s': want xx:xx:xx:xx:xx:xx", s->mac);
	if (s->tap && (strlen(s->tap) >= 16 || !fc_valid_name(s->tap)))
		usage_err(usage_text, "invalid --tap '%s': an interface name of at most 15 characters",
			  s->tap);
	if (s->netns_pid && !s->tap)
		usage_err(usage_text, "--netns-holder needs --tap (the TAP inside, e.g. tap0)");
	if (s->boot_args && strpbrk(s->boot_args, "\n\r"))
		usage_err(usage_text, "invalid --boot-args: the kernel command line is one line "
			  "(no newline)");
}

/* The JSON object in @path (at most 64 KiB), or NULL with @e. */
static json_t *read_network(const char *path, struct fc_err *e)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	json_t *j;

	buf = read_file_max(path, 65536, &len, e);
	if (!buf)
		return fc_err_wrap(e, "--network '%s'", path), NULL;
	j = json_parse(buf, len, e);
	if (!j)
		return fc_err_wrap(e, "--network '%s'", path), NULL;
	if (!json_is_object(j)) {
		json_decref(j);
		return fc_err_set(e, EINVAL, "--network '%s': not a JSON object", path), NULL;
	}
	return j;
}

int main(int argc, char **argv)
{
	static char drive_buf[VM_MAX_DRIVES][4096];
	struct vm_spec spec = { 0 };
	struct vm_outcome out;
	struct fc_err e;
	const char *network = NULL, *volumes = NULL;
	_cleanup_json_ json_t *extra = NULL, *vols = NULL;

	log_init("fc-boot");
	parse_args(&spec, drive_buf, &network, &volumes, argc, argv);
	log_set_tag(spec.name);
	/* fc-net's result, kept as the record's "network" (fc-state, fcvm ls). */
	if (network) {
		json_t *net = read_network(network, &e);

		if (!net)
			fc_err_exit(&e, 1);
		extra = json_pack("{s:o}", "network", net);
		spec.record_extra = extra;
	}
	/* the front end's volumes, kept as config.volumes (a snapshot's too) */
	if (volumes) {
		vols = volspec_load(volumes, &e);
		if (!vols)
			fc_err_exit(&e, 1);
		spec.volumes = vols;
	}
	if (vmowner_own(&spec, &out, &e) < 0)
		fc_err_exit(&e, 1);
	if (out.detached > 0)
		printf("%d\n", (int)out.detached);
	return out.code;
}
