/* fc-setup - prepare what fcvm needs on this host: guest kernel + initramfs,
 * root filesystem image, reflink-capable storage, and a preflight report.
 * Results (paths) go to stdout, progress to stderr. See fc-setup(1).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "setup.h"

#define USAGE                                                                   \
	"usage: fc-setup kernel [--deb FILE] [--agent FILE] [--busybox FILE]\n"   \
	"       fc-setup rootfs [--agent FILE] [--suite SUITE] [--mirror URL] [--size MIB]\n" \
	"       fc-setup storage [--size GIB] [--image FILE] [--unmount]\n"       \
	"       fc-setup storage --dir PATH [--without-reflink]\n"              \
	"       fc-setup preflight [--json] [--no-probe] [--probe-timeout SEC]\n"                       \
	"       fc-setup qemu [--dsc FILE] [--jobs N] [--nice N] [--check]\n"      \
	"       fc-setup -h\n"

int main(int argc, char **argv)
{
	const char *cmd;

	log_init("fc-setup");
	if (argc < 2)
		usage_err(USAGE, "missing command");
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(USAGE, stdout);
		return 0;
	}
	setup_signals();
	/* subcommands parse argv[1..] so that getopt sees the command as argv[0] */
	if (!strcmp(cmd, "kernel"))
		return cmd_kernel(argc - 1, argv + 1);
	if (!strcmp(cmd, "rootfs"))
		return cmd_rootfs(argc - 1, argv + 1);
	if (!strcmp(cmd, "storage"))
		return cmd_storage(argc - 1, argv + 1);
	if (!strcmp(cmd, "preflight"))
		return cmd_preflight(argc - 1, argv + 1);
	if (!strcmp(cmd, "qemu"))
		return cmd_qemu(argc - 1, argv + 1);
	usage_err(USAGE, "unknown command '%s'", cmd);
}
