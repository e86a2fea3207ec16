/* mark.c - see mark.h */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mark.h"

static double marks[MARK_N];
static const char *const names[MARK_N] = {
	[MARK_AGENT] = "agent", [MARK_READY] = "ready", [MARK_CONNECTED] = "connected",
	[MARK_PLAN] = "plan", [MARK_EXEC] = "exec", [MARK_OUTPUT] = "output",
};

static double uptime(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
		return 0;
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void mark(enum mark m)
{
	if (!marks[m])
		marks[m] = uptime();
}

/* The kernel log's time (s) of the first record containing each of
 * @needles (n of them) into @t (0 when absent). /dev/kmsg gives one record
 * per read: "prio,seq,usec,flags;text". */
static void kmsg_times(const char *const *needles, double *t, int n)
{
	char rec[1024];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return;
	for (;;) {
		unsigned long long usec;
		char *text;

		len = read(fd, rec, sizeof(rec) - 1);
		if (len < 0 && errno == EPIPE)	/* overwritten records: go on */
			continue;
		if (len <= 0)
			break;
		rec[len] = '\0';
		text = strchr(rec, ';');
		if (!text || sscanf(rec, "%*u,%*u,%llu", &usec) != 1)
			continue;
		for (int i = 0; i < n; i++)
			if (!t[i] && strstr(text + 1, needles[i]))
				t[i] = usec / 1e6;
	}
	close(fd);
}

static void put(char *buf, size_t size, size_t *off, const char *name, double v)
{
	int n;

	if (*off >= size)
		return;
	n = v ? snprintf(buf + *off, size - *off, " %s=%.3f", name, v)
	      : snprintf(buf + *off, size - *off, " %s=-", name);
	if (n > 0)
		*off += n;
}

void mark_report(void)
{
	static const char *const needles[] = { "Run /init as init process",
					       "EXT4-fs (vda): mounted filesystem" };
	static int done;
	double k[2] = { 0, 0 };
	char line[512];
	size_t off = 0;

	if (done || getpid() != 1)
		return;
	done = 1;
	kmsg_times(needles, k, 2);
	put(line, sizeof(line), &off, "init", k[0]);
	put(line, sizeof(line), &off, "root", k[1]);
	for (int i = 0; i < MARK_N; i++)
		put(line, sizeof(line), &off, names[i], marks[i]);
	log_info("timing:%s (guest uptime, s)", line);
}
