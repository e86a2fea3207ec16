/* harden.c - what fc-vsock gives up once the front-end is connected.
 *
 * From then on it only relays between file descriptors it has, maps guest
 * memory (or copies it in and out of the VMM's address space with
 * process_vm_readv/writev, and rereads the VMM's /proc/PID/maps through an
 * fd opened before), makes Unix sockets and removes its two socket files
 * at exit. So:
 * PR_SET_NO_NEW_PRIVS, then a seccomp allowlist of exactly those system
 * calls (socket() only for AF_UNIX); anything else kills the process. The
 * list also holds what glibc's malloc and abort use.
 */
#include <sys/syscall.h>

#include "fc-vsock.h"
#include "seccomp.h"
#include "util.h"

int vsock_harden(struct fc_err *e);

static const int allowed[] = {
	SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close, SYS_fcntl,
	SYS_recvfrom, SYS_sendto, SYS_recvmsg, SYS_sendmsg, SYS_accept4, SYS_connect,
	SYS_shutdown, SYS_epoll_ctl, SYS_epoll_pwait,
#ifdef SYS_epoll_wait
	SYS_epoll_wait,
#endif
	SYS_mmap, SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk, SYS_mprotect,
	SYS_clock_gettime, SYS_getpid, SYS_gettid, SYS_tgkill, SYS_rt_sigaction,
	SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack, SYS_restart_syscall,
	SYS_futex, SYS_sched_yield, SYS_newfstatat, SYS_fstat, SYS_unlinkat,
#ifdef SYS_unlink
	SYS_unlink,
#endif
	SYS_process_vm_readv, SYS_process_vm_writev, SYS_pread64,
	SYS_exit, SYS_exit_group,
};

int vsock_harden(struct fc_err *e)
{
	/* socket() for AF_UNIX only: guest connections go to "<uds>_P". */
	return seccomp_allow_only(allowed, ARRAY_SIZE(allowed), true, e);
}
