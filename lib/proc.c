/* proc.c - see proc.h */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "util.h"

int proc_start_time(pid_t pid, uint64_t *out, struct fc_err *e)
{
	char path[64], buf[1024], *p;
	struct fc_err tmp;
	unsigned long long st;
	int fd, i;
	ssize_t n;

	if (!e)
		e = &tmp;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fc_err_set(e, errno, "open '%s'", path);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return fc_err_set(e, errno, "read '%s'", path);
	buf[n] = '\0';
	/* comm may contain spaces and parentheses: fields start after the last ')' */
	p = strrchr(buf, ')');
	if (!p)
		return fc_err_set(e, 0, "parse '%s'", path);
	for (i = 2; i < 22 && p; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &st) != 1)
		return fc_err_set(e, 0, "parse '%s'", path);
	*out = st;
	return 0;
}

bool proc_alive(pid_t pid, uint64_t start)
{
	uint64_t st;

	if (pid <= 0)
		return false;
	if (proc_start_time(pid, &st, NULL) < 0)
		return false;
	return !start || st == start;
}

pid_t spawn(char *const argv[], const struct spawn_opts *o, struct fc_err *e)
{
	int pfd[2], child_errno = 0;
	pid_t parent = getpid(), pid;
	ssize_t n;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return fc_err_set(e, errno, "pipe");
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return fc_err_set(e, errno, "fork");
	}
	if (pid == 0) {
		close(pfd[0]);
		if (o && o->die_with_parent) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
		}
		if (o && o->new_pgrp)
			setpgid(0, 0);
		if (o && o->fd_in >= 0 && dup2(o->fd_in, 0) < 0)
			goto fail;
		if (o && o->fd_out >= 0 && dup2(o->fd_out, 1) < 0)
			goto fail;
		if (o && o->fd_err >= 0 && dup2(o->fd_err, 2) < 0)
			goto fail;
		/* Keep pfd[1] (CLOEXEC) for the report; everything else goes. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != pfd[1])
				close(fd);
		/* A parent serving signals through signalfd has them blocked;
		 * the new program must start with the default mask and actions. */
		{
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			for (int s = 1; s < NSIG; s++)
				if (s != SIGKILL && s != SIGSTOP)
					signal(s, SIG_DFL);
		}
		execvp(argv[0], argv);
fail:
		child_errno = errno;
		if (write(pfd[1], &child_errno, sizeof(child_errno)) < 0) {
			/* parent sees EOF and an exit code of 127 */
		}
		_exit(127);
	}
	close(pfd[1]);
	do
		n = read(pfd[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	if (n == sizeof(child_errno)) {
		waitpid(pid, NULL, 0);
		return fc_err_set(e, child_errno, "execute '%s'", argv[0]);
	}
	return pid;
}

int wait_timeout(pid_t pid, int timeout_ms, int *status)
{
	uint64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);

	for (;;) {
		pid_t r = waitpid(pid, status, timeout_ms < 0 ? 0 : WNOHANG);

		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (timeout_ms >= 0 && now_ms() >= deadline)
			return 0;
		if (timeout_ms >= 0) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
}

void kill_wait(pid_t pid, int grace_ms)
{
	int status;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	if (wait_timeout(pid, grace_ms, &status) == 0) {
		kill(pid, SIGKILL);
		wait_timeout(pid, -1, &status);
	}
}

int exit_code_of(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

char *proc_find_tool(const char *name)
{
	char self[4096], *slash, *path, *dir, *save = NULL;
	_cleanup_free_ char *copy = NULL;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			path = xasprintf("%.*s/%s", (int)(slash - self), self, name);
			if (access(path, X_OK) == 0)
				return path;
			free(path);
		}
	}
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	copy = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/local/bin:/usr/bin:/bin");
	for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		path = xasprintf("%s/%s", *dir ? dir : ".", name);
		if (access(path, X_OK) == 0)
			return path;
		free(path);
	}
	return NULL;
}

int signalfd_for(const int *sigs, int flags, struct fc_err *e)
{
	sigset_t mask;
	int fd;

	sigemptyset(&mask);
	for (; *sigs; sigs++)
		sigaddset(&mask, *sigs);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return fc_err_set(e, errno, "block signals");
	fd = signalfd(-1, &mask, SFD_CLOEXEC | flags);
	if (fd < 0)
		return fc_err_set(e, errno, "signalfd");
	return fd;
}

int die_with_parent(int sig, struct fc_err *e)
{
	pid_t parent = getppid();

	if (prctl(PR_SET_PDEATHSIG, sig) < 0)
		return fc_err_set(e, errno, "prctl(PR_SET_PDEATHSIG)");
	/* The parent may have died before the request took effect. */
	if (getppid() != parent || parent == 1)
		return fc_err_set(e, ESRCH, "the parent process is already gone");
	return 0;
}

static int read_memfd(int fd, char **out, size_t max, struct fc_err *e)
{
	off_t len = lseek(fd, 0, SEEK_END);
	size_t n;
	char *buf;

	if (len < 0)
		return fc_err_set(e, errno, "read output");
	n = (size_t)len < max ? (size_t)len : max;
	buf = xmalloc(n + 1);
	if (pread(fd, buf, n, 0) != (ssize_t)n) {
		free(buf);
		return fc_err_set(e, errno, "read output");
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

int run_capture(char *const argv[], char **out, size_t max, int timeout_ms, struct fc_err *e)
{
	_cleanup_close_ int ofd = memfd_create("stdout", MFD_CLOEXEC);
	_cleanup_close_ int efd = memfd_create("stderr", MFD_CLOEXEC);
	_cleanup_close_ int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct spawn_opts o = { .fd_in = nul, .fd_out = ofd, .fd_err = efd, .die_with_parent = true };
	_cleanup_free_ char *err = NULL;
	int status, r, code;
	pid_t pid;

	if (ofd < 0 || efd < 0 || nul < 0)
		return fc_err_set(e, errno, "run '%s'", argv[0]);
	pid = spawn(argv, &o, e);
	if (pid < 0)
		return -1;
	r = wait_timeout(pid, timeout_ms, &status);
	if (r == 0) {
		kill_wait(pid, 1000);
		return fc_err_set(e, 0, "'%s %s' did not finish within %d s", argv[0],
				  argv[1] ? argv[1] : "", timeout_ms / 1000);
	}
	if (r < 0)
		return fc_err_set(e, errno, "wait for '%s'", argv[0]);
	code = exit_code_of(status);
	if (out && read_memfd(ofd, out, max, e) < 0)
		return -1;
	if (code != 0 && read_memfd(efd, &err, 64 * 1024, e) == 0) {
		size_t n = strlen(err);
		char *last;

		while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
			err[--n] = '\0';
		last = strrchr(err, '\n');
		fc_err_set(e, 0, "'%s %s' exited with %d%s%s", argv[0], argv[1] ? argv[1] : "",
			   code, *err ? ": " : "", last ? last + 1 : err);
	}
	return code;
}
