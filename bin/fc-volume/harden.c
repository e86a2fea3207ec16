/* harden.c - what fc-volume gives up once the share and the listener are
 * open: capabilities it does not use, then NO_NEW_PRIVS + a seccomp
 * allowlist, with Landlock confining file access to the share first where
 * the kernel has it (ABI >= 2, so renames within the share still work).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/landlock.h>

#include "log.h"
#include "seccomp.h"
#include "util.h"

int volume_harden(int share_fd, int sock_dir_fd, struct fc_err *e);

static const int allowed[] = {
	SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close, SYS_fcntl, SYS_lseek,
	SYS_recvfrom, SYS_sendto, SYS_accept4, SYS_shutdown, SYS_epoll_ctl, SYS_epoll_pwait,
#ifdef SYS_epoll_wait
	SYS_epoll_wait,
#endif
	SYS_openat, SYS_openat2, SYS_newfstatat, SYS_fstat, SYS_statx, SYS_fstatfs, SYS_statfs,
	SYS_fchmodat, SYS_fchownat, SYS_utimensat, SYS_mkdirat, SYS_mknodat, SYS_unlinkat,
	SYS_symlinkat, SYS_linkat, SYS_renameat2, SYS_readlinkat, SYS_ftruncate, SYS_truncate,
	SYS_fallocate, SYS_fsync, SYS_fdatasync, SYS_pread64, SYS_pwrite64, SYS_getdents64,
	SYS_setxattr, SYS_getxattr, SYS_listxattr, SYS_removexattr, SYS_flock,
	SYS_mmap, SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk, SYS_mprotect,
	SYS_clock_gettime, SYS_getpid, SYS_gettid, SYS_tgkill, SYS_rt_sigaction,
	SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack, SYS_restart_syscall,
	SYS_futex, SYS_getrandom, SYS_exit, SYS_exit_group,
#ifdef SYS_unlink
	SYS_unlink,
#endif
};

/* What a root server needs to act for any guest user on the share. */
static const int keep_caps[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
};

static int drop_caps(struct fc_err *e)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	unsigned c;
	size_t i;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return fc_err_set(e, errno, "capget");
	for (c = 0; c <= CAP_LAST_CAP; c++) {
		bool keep = false;

		for (i = 0; i < ARRAY_SIZE(keep_caps); i++)
			keep |= (int)c == keep_caps[i];
		if (!keep && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL &&
		    errno != EPERM)
			return fc_err_set(e, errno, "drop capability %u from the bounding set", c);
	}
	memset(data, 0, sizeof(data));
	for (i = 0; i < ARRAY_SIZE(keep_caps); i++) {
		data[keep_caps[i] / 32].effective |= 1u << (keep_caps[i] % 32);
		data[keep_caps[i] / 32].permitted |= 1u << (keep_caps[i] % 32);
	}
	/* Not root (a test as a user): keep what we have, drop nothing more. */
	if (geteuid() != 0)
		return 0;
	if (syscall(SYS_capset, &hdr, data) < 0)
		return fc_err_set(e, errno, "capset");
	return 0;
}

static int landlock(int share_fd, int sock_dir_fd, struct fc_err *e)
{
	struct landlock_ruleset_attr ra = { 0 };
	struct landlock_path_beneath_attr pb = { 0 };
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	int rfd;

	if (abi < 2) {
		log_debug("landlock: %s; not used",
			  abi < 0 ? strerror(errno) : "ABI 1 cannot allow renames");
		return 0;
	}
	ra.handled_access_fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
		LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
		LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
		LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
		LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
		LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER;
#ifdef LANDLOCK_ACCESS_FS_TRUNCATE
	if (abi >= 3)
		ra.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
#endif
	/* Inside the share: everything but executing, and device nodes. */
	pb.allowed_access = ra.handled_access_fs &
		~(uint64_t)(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
			    LANDLOCK_ACCESS_FS_MAKE_BLOCK);
	pb.parent_fd = share_fd;
	rfd = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra), 0);
	if (rfd < 0)
		return fc_err_set(e, errno, "landlock: create the ruleset");
	if (syscall(SYS_landlock_add_rule, rfd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) {
		close(rfd);
		return fc_err_set(e, errno, "landlock: allow the share");
	}
	/* The listener's directory: only to remove the socket at exit. */
	pb.parent_fd = sock_dir_fd;
	pb.allowed_access = LANDLOCK_ACCESS_FS_REMOVE_FILE;
	if (sock_dir_fd >= 0 &&
	    syscall(SYS_landlock_add_rule, rfd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) {
		close(rfd);
		return fc_err_set(e, errno, "landlock: allow the socket's directory");
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_landlock_restrict_self, rfd, 0) < 0) {
		close(rfd);
		return fc_err_set(e, errno, "landlock: restrict");
	}
	close(rfd);
	log_debug("landlock ABI %ld: file access confined to the share", abi);
	return 0;
}

int volume_harden(int share_fd, int sock_dir_fd, struct fc_err *e)
{
	if (drop_caps(e) < 0 || landlock(share_fd, sock_dir_fd, e) < 0)
		return -1;
	return seccomp_allow_only(allowed, ARRAY_SIZE(allowed), false, e);
}
