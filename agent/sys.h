/* sys.h - what fc-agent does as the guest's init: the mounts podman needs,
 * hostname, loopback, console, power off. None of it runs in test mode.
 */
#ifndef FC_AGENT_SYS_H
#define FC_AGENT_SYS_H

#include "err.h"

/* Point fds 0-2 at /dev/console when they are not open (the kernel gives
 * init a console, but a switch_root may not). Never fails. */
void sys_console(void);

/* Mount proc, sysfs, devtmpfs, devpts, /dev/shm, cgroup2, /run and /tmp
 * unless something of the right type is already mounted there; enable the
 * cgroup controllers for children; set PATH/HOME for podman. Failures of
 * single mounts are logged as warnings (podman reports what it then lacks)
 * and counted: returns how many steps failed. */
int sys_setup_mounts(void);

/* Hostname from "fcvm.id=<id>" on /proc/cmdline (validated as a host
 * name); leaves the default when absent. 0 or -1 with @e filled. */
int sys_set_hostname(struct fc_err *e);

/* Bring the loopback interface up. 0 or -1 with @e filled. */
int sys_loopback_up(struct fc_err *e);

/* Flush the file systems and end the VM. Does not return. */
noreturn void sys_poweroff(void);

#endif
