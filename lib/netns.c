/* netns.c - see netns.h */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "json.h"
#include "netns.h"
#include "proc.h"
#include "util.h"

/* Is the namespace @fd the one at @path (same device and inode)? */
static bool same_ns(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

int netns_enter_holder(pid_t pid, uint64_t start, struct fc_err *e)
{
	_cleanup_close_ int ufd = -1, nfd = -1;
	char path[64];

	if (pid <= 0 || start == 0)
		return fc_err_set(e, EINVAL, "no namespace holder given");
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	ufd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	nfd = open(path, O_RDONLY | O_CLOEXEC);
	/* Checked after opening: the fds cannot be a reused pid's. */
	if (ufd < 0 || nfd < 0 || !proc_alive(pid, start))
		return fc_err_set(e, ESRCH, "the namespace holder (pid %d) is gone", (int)pid);
	/* A root holder (fc-net's clone mode) made only a network namespace:
	 * its user namespace is ours, and setns() refuses to re-enter that. */
	if (same_ns(ufd, "/proc/self/ns/user")) {
		if (setns(nfd, CLONE_NEWNET) < 0)
			return fc_err_set(e, errno, "enter the network namespace of pid %d", (int)pid);
		return 0;
	}
	if (setns(ufd, CLONE_NEWUSER) < 0)
		return fc_err_set(e, errno, "enter the user namespace of pid %d", (int)pid);
	if (setns(nfd, CLONE_NEWNET) < 0)
		return fc_err_set(e, errno, "enter the network namespace of pid %d", (int)pid);
	return 0;
}

int netns_parse_holder(const char *s, pid_t *pid, uint64_t *start, struct fc_err *e)
{
	unsigned long long p, st = 0;
	char *end;

	errno = 0;
	p = strtoull(s, &end, 10);
	if (!errno && end != s && *end == ':' && end[1] >= '0' && end[1] <= '9')
		st = strtoull(end + 1, &end, 10);
	if (errno || *end || p == 0 || p > INT_MAX || st == 0)
		return fc_err_set(e, EINVAL, "'%s' is not PID:START", s);
	*pid = (pid_t)p;
	*start = (uint64_t)st;
	return 0;
}

int netns_enter_record(json_t *rec, struct fc_err *e)
{
	json_t *ns = json_object_get(rec, "netns");
	long long pid = 0, start = 0;

	if (json_int(ns, "pid", 1, 1LL << 31, &pid, e) != 0 ||
	    json_int(ns, "pid_start", 1, 1LL << 62, &start, e) != 0)
		return fc_err_set(e, EINVAL, "the record has no namespace holder");
	return netns_enter_holder((pid_t)pid, (uint64_t)start, e);
}
