/* harden.c - what fc-vsock gives up once the front-end is connected.
 *
 * From then on it only relays between file descriptors it has, maps guest
 * memory, makes Unix sockets and removes its two socket files at exit. So:
 * PR_SET_NO_NEW_PRIVS, then a seccomp allowlist of exactly those system
 * calls (socket() only for AF_UNIX); anything else kills the process. The
 * list also holds what glibc's malloc and abort use.
 */
#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "fc-vsock.h"
#include "util.h"

int vsock_harden(struct fc_err *e);

/* No filter in sanitizer builds: LeakSanitizer stops the world with clone
 * and ptrace at exit, which no allowlist of ours should permit. */
#if defined(__SANITIZE_ADDRESS__)
#elif defined(__x86_64__)
#define FC_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FC_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef FC_AUDIT_ARCH
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
	SYS_exit, SYS_exit_group,
};
#endif

int vsock_harden(struct fc_err *e)
{
#ifdef FC_AUDIT_ARCH
	struct sock_filter f[8 + 2 * ARRAY_SIZE(allowed) + 4];
	struct sock_fprog prog;
	unsigned n = 0, i;

#define ADD(code, k, jt, jf) (f[n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf))
	ADD(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
	ADD(BPF_JMP | BPF_JEQ | BPF_K, FC_AUDIT_ARCH, 1, 0);
	ADD(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
	ADD(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
	/* x32 system calls alias the 64-bit ones with this bit set. */
	ADD(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
	ADD(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
	for (i = 0; i < ARRAY_SIZE(allowed); i++) {
		ADD(BPF_JMP | BPF_JEQ | BPF_K, allowed[i], 0, 1);
		ADD(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
	}
	/* socket(AF_UNIX, ...) only: guest connections go to "<uds>_P". */
	ADD(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 3);
	ADD(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
	ADD(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
	ADD(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
	ADD(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
#undef ADD
	prog.len = n;
	prog.filter = f;
#endif
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fc_err_set(e, errno, "PR_SET_NO_NEW_PRIVS");
#ifdef FC_AUDIT_ARCH
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		return fc_err_set(e, errno, "install the seccomp filter");
#endif
	return 0;
}
