/* vmowner.h - own a microVM: the engine behind fc-boot (and fc-clone).
 *
 * A VM lives exactly as long as the process that owns it, and nothing of it
 * outlives that process except what gc can find. The caller describes the
 * VM in a struct vm_spec; vmowner_own() does the rest.
 *
 * How it works, and why in this order:
 *  1. vmowner_new() validates and resolves everything - files, an ELF
 *     kernel, socket path lengths, the console path, boot arguments, the
 *     VMM program - before anything is made, so bad input leaves nothing.
 *  2. With @detach the process forks: the parent waits on a pipe for
 *     "running" and returns the owner's pid; the child carries on in its
 *     own session.
 *  3. A janitor is forked into its own session (setsid), so even a SIGKILL
 *     of the owner's whole process group does not reach it. It blocks on a
 *     pipe only the owner holds; when that closes - however the owner ends -
 *     it kills the VMM and removes the record and run/<id>/ sockets, but
 *     only while the record is still the owner's (pid and start time).
 *  4. The name is claimed under the state lock: the record is written
 *     first, then run/<id>/ and vm-disks/<id>/ are made, so whatever exists
 *     is found through the record.
 *  5. With a namespace holder (rootless networking) the owner enters its
 *     user and network namespaces first, so the VMM is born in them. The
 *     VMM is spawned with PR_SET_PDEATHSIG. Its stdout - where
 *     Firecracker (and fc-qemu) write the guest's serial console - is a
 *     pipe that the owner copies into the console log, capped at
 *     @console_max bytes and rotated once to "<console>.1", so the newest
 *     output is kept and a guest cannot fill the data root. Its stderr
 *     reaches vm-disks/<id>/vmm.log the same way, with the same cap.
 *  6. The VMM is configured through its API by a callback:
 *     vm_configure_boot() (machine config, boot source, drives, network,
 *     vsock, InstanceStart) unless the caller passes another one - a clone
 *     loads a snapshot instead.
 *  7. Status "running"; "ready <id>\n" on the ready fd; then the owner
 *     serves signals (SIGTERM/SIGINT/SIGHUP stop the VMM), the console and
 *     the VMM's exit.
 *  A failure before "running" undoes 4-6: the VMM is killed, and the
 *  record, run/<id>/ and the vm-disks/<id>/ entries this call created are
 *  removed.
 */
#ifndef FC_VMOWNER_H
#define FC_VMOWNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"
#include "fcapi.h"

#define VM_MAX_DRIVES 8
#define VM_CONSOLE_MAX_DEFAULT (1024 * 1024)
#define VM_CONSOLE_MAX_MIN 4096
#define VM_GUEST_CID 3

struct vmowner;

/* Configure the VMM behind @api (its socket answers already). 0, or -1
 * with @e. vmowner_*() accessors give the resolved description. */
typedef int (*vm_configure_fn)(struct vmowner *o, struct fcapi *api, void *arg,
			       struct fc_err *e);

struct vm_drive {
	const char *path;
	bool read_only;
};

/* What the VM is. Strings are borrowed for the call; NULL means "default"
 * where one is named. Zero-initialise and fill what you need. */
struct vm_spec {
	const char *name;		/* required: fc_valid_name() */
	const char *id;			/* NULL: a fresh "vm-<12 hex>" */
	const char *process_type;	/* NULL: "vm" ("clone" for fc-clone) */
	const char *vmm;		/* program; NULL: $FCVM_VMM, firecracker, fc-qemu */
	uint64_t cpus, memory_mib;	/* 0: 2 vCPUs, 1024 MiB */
	/* Kernel and initrd: NULL with the default configure step means
	 * $FCVM_ROOT/kernels/default/{vmlinux,initrd.img}; with another
	 * configure step, NULL means none. */
	const char *kernel, *initrd;
	const char *rootfs;		/* writable root disk (/dev/vda), or NULL */
	struct vm_drive drives[VM_MAX_DRIVES];
	int ndrives;
	const char *tap, *mac;		/* eth0, or NULL */
	const char *boot_args;		/* appended to the kernel command line */
	const char *vsock;		/* NULL: $FCVM_ROOT/run/<id>/vsock.sock */
	bool no_vsock;			/* no vsock device at all */
	const char *console;		/* NULL: $FCVM_ROOT/vm-disks/<id>/console.log */
	uint64_t console_max;		/* 0: VM_CONSOLE_MAX_DEFAULT; caps vmm.log too */
	bool detach;			/* return once running (see vm_outcome) */
	bool die_with_parent;		/* stop the VM when our parent dies */
	bool own_disk_dir;		/* vm-disks/<id>/ is made here (must not exist)
					 * and removed whole with the record, however
					 * the owner ends - the janitor too (a clone) */
	bool ready;			/* write "ready <id>\n" to @ready_fd, then close it */
	int ready_fd;
	vm_configure_fn configure;	/* NULL: vm_configure_boot */
	void *configure_arg;
	json_t *volumes;		/* borrowed, checked (volspec.h): the record's
					 * config.volumes, or NULL */
	json_t *record_extra;		/* borrowed; its fields are added to the record
					 * (a clone's "snapshot", "serve_pid") */
	/* Rootless networking: fc-net's namespace holder (pid and start time;
	 * 0: none). The owner enters its user, then network namespace (see
	 * netns.h) right before the VMM is spawned, so the VMM opens @tap
	 * (tap0) in there; @tap is then looked up inside, not on the host. */
	pid_t netns_pid;
	uint64_t netns_start;
};

struct vm_outcome {
	pid_t detached;	/* > 0: we are the --detach parent and the owner runs as this pid */
	int code;	/* exit code for main(): 0 the guest powered off, 128+N
			 * stopped by signal N, or a detached owner's failure code */
};

/* Validate @s and resolve it (absolute paths, id, sockets, console, VMM);
 * creates nothing. Returns a new owner (vmowner_free) or NULL with @e
 * naming the input and what is wrong with it. */
struct vmowner *vmowner_new(const struct vm_spec *s, struct fc_err *e);

/* Own the VM (steps 2-7 above) until it stops. 0 with *@out filled, or -1
 * with @e: a failure before "running" (everything this call made is
 * removed), or a VMM that exited with an error ("the VMM exited with
 * status N: <its last line>"). A stop signal while starting is no failure
 * (code 128+N). In the --detach parent it returns once the owner runs (or
 * has failed and said why on stderr). The calling process blocks SIGCHLD,
 * SIGTERM, SIGINT and SIGHUP (served through a signalfd) and ignores
 * SIGPIPE from here on. */
int vmowner_run(struct vmowner *o, struct vm_outcome *out, struct fc_err *e);

void vmowner_free(struct vmowner *o);

/* vmowner_new + vmowner_run + vmowner_free: main()'s one call. */
int vmowner_own(const struct vm_spec *s, struct vm_outcome *out, struct fc_err *e);

/* The resolved description, for configure callbacks. Borrowed from @o. */
const struct vm_spec *vmowner_spec(const struct vmowner *o);
/* The full kernel command line (fcvm's defaults + boot_args). */
const char *vmowner_cmdline(const struct vmowner *o);
/* The state record; fields a callback sets are saved with the next status. */
json_t *vmowner_record(struct vmowner *o);

/* The default configure step: PUT /machine-config, /boot-source,
 * /drives/rootfs, /drives/driveN, /network-interfaces/eth0, /vsock, then
 * InstanceStart. @arg is unused. */
int vm_configure_boot(struct vmowner *o, struct fcapi *api, void *arg, struct fc_err *e);

#endif
