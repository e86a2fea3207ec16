/* volume.c - see volume.h */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "volume.h"

#define VOLFS_IN_GUEST "/usr/sbin/fc-volfs"
#define LOG_TAIL_MAX   4096

struct vol_proc {
	pid_t pid;
	char *dir;
};

static struct vol_proc procs[PLAN_MAX_VOLUMES];
static size_t nprocs;

/* The last non-empty line of fc-volfs's log, for an error message. */
static char *log_tail(const char *path)
{
	char buf[LOG_TAIL_MAX + 1];
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end;
	ssize_t n;
	char *s, *nl;

	if (fd < 0)
		return NULL;
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return NULL;
	n = pread(fd, buf, LOG_TAIL_MAX, end > LOG_TAIL_MAX ? end - LOG_TAIL_MAX : 0);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	nl = strrchr(buf, '\n');
	s = nl ? nl + 1 : buf;
	for (char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return *s ? xstrdup(s) : NULL;
}

static const char *volfs_path(void)
{
	/* the guest has it at VOLFS_IN_GUEST; a test-mode agent takes PATH's */
	return access(VOLFS_IN_GUEST, X_OK) == 0 ? VOLFS_IN_GUEST : "fc-volfs";
}

static pid_t spawn(char **argv, int ready, const char *logpath, struct fc_err *e)
{
	sigset_t none;
	pid_t pid = fork();

	if (pid < 0)
		return fc_err_set(e, errno, "fork");
	if (pid)
		return pid;
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	int in = open("/dev/null", O_RDONLY);
	int lg = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);

	if (in < 0 || lg < 0 || dup2(in, 0) < 0 || dup2(lg, 1) < 0 || dup2(lg, 2) < 0 ||
	    dup2(ready, 3) < 0)
		_exit(127);
	execvp(argv[0], argv);
	dprintf(2, "fc-agent: execute '%s': %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Wait for "ready ..." on @fd, at most @ms; false: EOF, error or timeout. */
static bool wait_ready(int fd, int ms)
{
	char buf[256];
	size_t len = 0;
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		uint64_t now = now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r;

		if (now >= end)
			return false;
		r = poll(&pfd, 1, (int)(end - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		if (strchr(buf, '\n') || len == sizeof(buf) - 1)
			return !strncmp(buf, "ready ", 6);
	}
}

static int mount_one(const struct plan_vol *v, size_t i, struct fc_err *e)
{
	_cleanup_free_ char *dir = xasprintf(PLAN_VOL_DIR "/%zu", i);
	_cleanup_free_ char *logpath = xasprintf(PLAN_VOL_DIR "/%zu.log", i);
	_cleanup_free_ char *port = xasprintf("%u", v->port);
	_cleanup_free_ char *conns = xasprintf("%u", v->conns);
	_cleanup_close_ int rd = -1, wr = -1;
	int fds[2], status;
	char *argv[] = { (char *)volfs_path(), "--vsock", port, "--connections", conns,
			 "--ready-fd", "3", dir, NULL };
	pid_t pid;

	if (mkdir_p(dir, 0755, e) < 0)
		return -1;
	if (pipe2(fds, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "pipe");
	rd = fds[0];
	wr = fds[1];
	log_info("volume %zu: mounting host port %u at %s for '%s'%s", i, v->port, dir, v->guest,
		 v->ro ? " (read-only)" : "");
	pid = spawn(argv, wr, logpath, e);
	if (pid < 0)
		return -1;
	close(wr);
	wr = -1;
	if (wait_ready(rd, VOL_READY_MS)) {
		procs[nprocs].pid = pid;
		procs[nprocs].dir = xstrdup(dir);
		nprocs++;
		return 0;
	}
	/* not ready: stop it (its own group) and say why */
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	umount2(dir, MNT_DETACH);
	{
		_cleanup_free_ char *why = log_tail(logpath);

		return fc_err_set(e, 0, "fc-volfs (host port %u) did not get ready within %d s: %s",
				  v->port, VOL_READY_MS / 1000, why ? why : "no message");
	}
}

int vol_mount_all(const struct plan *p, struct fc_err *e)
{
	vol_release();
	for (size_t i = 0; i < p->nvols; i++) {
		if (mount_one(&p->vols[i], i, e) < 0) {
			fc_err_wrap(e, "volume '%s'", p->vols[i].guest);
			vol_release();
			return -1;
		}
	}
	return 0;
}

void vol_release(void)
{
	for (size_t i = 0; i < nprocs; i++) {
		if (umount2(procs[i].dir, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
			log_warn("volume: umount '%s': %s", procs[i].dir, strerror(errno));
		/* fc-volfs ends when its mount goes; make sure. ev_reap() reaps it. */
		kill(procs[i].pid, SIGTERM);
		rmdir(procs[i].dir);
		free(procs[i].dir);
		procs[i].dir = NULL;
	}
	nprocs = 0;
}
