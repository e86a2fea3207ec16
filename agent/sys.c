/* sys.c - see sys.h */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "log.h"
#include "sys.h"
#include "util.h"

void sys_console(void)
{
	int fd;

	if (fcntl(0, F_GETFD) >= 0 && fcntl(1, F_GETFD) >= 0 && fcntl(2, F_GETFD) >= 0)
		return;
	fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_GETFD) < 0)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

struct mnt {
	const char *src, *target, *type;
	unsigned long flags;
	const char *data;
	long magic;	/* already mounted when statfs(target) says so */
};

/* Order matters: /dev before /dev/pts and /dev/shm, /sys before its cgroup. */
static const struct mnt mounts[] = {
	{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, PROC_SUPER_MAGIC },
	{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, SYSFS_MAGIC },
	{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", TMPFS_MAGIC },
	{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666",
	  DEVPTS_SUPER_MAGIC },
	{ "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", TMPFS_MAGIC },
	{ "cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
	  "nsdelegate", CGROUP2_SUPER_MAGIC },
	{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", TMPFS_MAGIC },
	{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", TMPFS_MAGIC },
};

static bool mounted_as(const char *path, long magic)
{
	struct statfs sf, parent;
	_cleanup_free_ char *up = xasprintf("%s/..", path);

	if (statfs(path, &sf) < 0 || sf.f_type != magic)
		return false;
	/* tmpfs under a tmpfs (/dev/shm inside devtmpfs) is not a mount of its own. */
	if (statfs(up, &parent) == 0 && parent.f_type == magic) {
		struct stat a, b;

		if (stat(path, &a) == 0 && stat(up, &b) == 0 && a.st_dev == b.st_dev)
			return false;
	}
	return true;
}

static int enable_controllers(void)
{
	_cleanup_free_ char *avail = NULL;
	struct fc_err e;
	char *tok, *save = NULL;
	int fails = 0;

	avail = read_file_max("/sys/fs/cgroup/cgroup.controllers", 4096, NULL, &e);
	if (!avail) {
		log_warn("%s", e.msg);
		return 1;
	}
	/* One controller per write: one the kernel refuses must not block the rest. */
	for (tok = strtok_r(avail, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		_cleanup_close_ int fd = open("/sys/fs/cgroup/cgroup.subtree_control",
					      O_WRONLY | O_CLOEXEC);
		_cleanup_free_ char *w = xasprintf("+%s", tok);

		if (fd < 0 || write(fd, w, strlen(w)) < 0) {
			log_warn("enable cgroup controller '%s': %s", tok, strerror(errno));
			fails++;
		}
	}
	return fails;
}

int sys_setup_mounts(void)
{
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },	      { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
		{ "/proc/kcore", "/dev/core" },
	};
	int fails = 0;

	umask(022);
	for (size_t i = 0; i < ARRAY_SIZE(mounts); i++) {
		const struct mnt *m = &mounts[i];

		if (mounted_as(m->target, m->magic))
			continue;
		mkdir(m->target, 0755);
		if (mount(m->src, m->target, m->type, m->flags, m->data) < 0) {
			log_warn("mount %s on '%s': %s", m->type, m->target, strerror(errno));
			fails++;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(links); i++)
		if (symlink(links[i][0], links[i][1]) < 0 && errno != EEXIST)
			log_debug("symlink '%s': %s", links[i][1], strerror(errno));
	fails += enable_controllers();
	/* The kernel starts init with almost no environment. */
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 0);
	return fails;
}

static bool hostname_ok(const char *s, size_t len)
{
	if (!len || len > 63 || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

int sys_set_hostname(struct fc_err *e)
{
	_cleanup_free_ char *cmd = read_file_max("/proc/cmdline", 4096, NULL, e);
	char *p, *end;

	if (!cmd)
		return -1;
	for (p = cmd; (p = strstr(p, "fcvm.id=")); p++) {
		if (p != cmd && p[-1] != ' ')
			continue;
		p += strlen("fcvm.id=");
		end = p + strcspn(p, " \n");
		if (!hostname_ok(p, end - p))
			return fc_err_set(e, 0, "fcvm.id is not a valid host name");
		if (sethostname(p, end - p) < 0)
			return fc_err_set(e, errno, "sethostname");
		return 0;
	}
	return 0;
}

int sys_loopback_up(struct fc_err *e)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };

	if (fd < 0)
		return fc_err_set(e, errno, "socket");
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return fc_err_set(e, errno, "get flags of 'lo'");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return fc_err_set(e, errno, "bring 'lo' up");
	return 0;
}

noreturn void sys_poweroff(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* Only reached when the kernel refused: as init, exiting panics, and
	 * panic=1 on the command line ends the VM too. */
	log_error("power off: %s", strerror(errno));
	_exit(1);
}
