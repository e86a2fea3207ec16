/* seccomp.c - see seccomp.h */
#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "seccomp.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#elif defined(__x86_64__)
#define FC_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FC_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define MAX_ALLOWED 128

int seccomp_allow_only(const int *allowed, size_t count, bool unix_sockets, struct fc_err *e)
{
#ifdef FC_AUDIT_ARCH
	struct sock_filter f[8 + 2 * MAX_ALLOWED + 6];
	struct sock_fprog prog;
	unsigned n = 0;
	size_t i;

	if (count > MAX_ALLOWED)
		return fc_err_set(e, E2BIG, "seccomp allowlist of %zu calls", count);
#define ADD(code, k, jt, jf) (f[n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf))
	ADD(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
	ADD(BPF_JMP | BPF_JEQ | BPF_K, FC_AUDIT_ARCH, 1, 0);
	ADD(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
	ADD(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
	/* x32 system calls alias the 64-bit ones with this bit set. */
	ADD(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
	ADD(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
	for (i = 0; i < count; i++) {
		ADD(BPF_JMP | BPF_JEQ | BPF_K, allowed[i], 0, 1);
		ADD(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
	}
	if (unix_sockets) {
		ADD(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 3);
		ADD(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
		ADD(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
		ADD(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
	}
	ADD(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
#undef ADD
	prog.len = n;
	prog.filter = f;
#else
	(void)allowed;
	(void)count;
	(void)unix_sockets;
#endif
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fc_err_set(e, errno, "PR_SET_NO_NEW_PRIVS");
#ifdef FC_AUDIT_ARCH
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		return fc_err_set(e, errno, "install the seccomp filter");
#endif
	return 0;
}
