/* uffd-client - Firecracker's side of the Uffd backend, done for real, to
 * test fc-uffd without a VM: anonymous mappings registered with a
 * userfaultfd for MISSING faults (and EVENT_REMOVE), the handshake (one
 * message: the JSON array of regions + the uffd as SCM_RIGHTS; page_size
 * and page_size_kib both, as 1.12 and later send them, or with --old only
 * page_size_kib, as 1.10-1.11 do), then page
 * touches checked against the memory file.
 *
 *   uffd-client run SOCK MEMFILE [--old] [--regions N] [--stride K]
 *               [--remove] [--procs N] [--delay-ms D] [--die-after N]
 *               [--hold-ms D] [--memfd]
 *       every touched page must equal the file (after --remove: the
 *       removed half must read zero); exit 0 and "ok touched=N" when so.
 *   uffd-client bad KIND SOCK MEMFILE
 *       send a malformed handshake of KIND and wait (at most 15 s) for the
 *       server to close the connection: exit 0 when it did, 1 when not.
 *   uffd-client bench SOCK MEMFILE
 *       "kernel_pages_per_s=X" (first touch of a MAP_PRIVATE mapping of the
 *       file) and "uffd_pages_per_s=Y elapsed_us=Z pages=N" (through SOCK).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define PS 4096UL
#define UFFD_BIG (70 * 1024)	/* beyond fc-uffd's 64 KiB bound */

static const char *sock_path, *mem_path;
static int mem_fd = -1;
static uint64_t mem_size;

static void fail(const char *fmt, const char *a)
{
	fprintf(stderr, "uffd-client: ");
	fprintf(stderr, fmt, a);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static int make_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		fail("userfaultfd: %s", strerror(errno));
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		fail("UFFDIO_API: %s", strerror(errno));
	return fd;
}

static bool use_memfd;

/* Guest RAM as Firecracker has it (private anonymous), or with --memfd as
 * QEMU has it for vhost-user (a MAP_SHARED memfd: shmem). */
static char *map_register(int uffd, uint64_t len)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	char *p;

	if (use_memfd) {
		int mfd = memfd_create("guest-ram", MFD_CLOEXEC);

		if (mfd < 0 || ftruncate(mfd, (off_t)len) < 0)
			fail("memfd: %s", strerror(errno));
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
		close(mfd);
	} else {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	}

	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	reg.range.start = (uint64_t)(uintptr_t)p;
	reg.range.len = len;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		fail("UFFDIO_REGISTER: %s", strerror(errno));
	return p;
}

static int connect_sock(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fail("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail("connect: %s", strerror(errno));
	return fd;
}

/* One sendmsg with @nfds fds (as Firecracker does: UnixStream::send_with_fd). */
static void send_hs(int s, const char *body, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(4 * sizeof(int))];
	} c;
	struct iovec iov = { (void *)body, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(&c, 0, sizeof(c));
		m.msg_control = c.b;
		m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	if (sendmsg(s, &m, MSG_NOSIGNAL) != (ssize_t)len)
		fail("sendmsg: %s", strerror(errno));
}

static size_t region_json(char *out, size_t cap, char *const *base, const uint64_t *size,
			  const uint64_t *off, int n, bool old)
{
	size_t l = 0;
	int i;

	l += (size_t)snprintf(out + l, cap - l, "[");
	for (i = 0; i < n; i++)
		l += (size_t)snprintf(out + l, cap - l,
				      "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,"
				      "%s\"page_size_kib\":4096}",
				      i ? "," : "", (unsigned long long)(uintptr_t)base[i],
				      (unsigned long long)size[i], (unsigned long long)off[i],
				      old ? "" : "\"page_size\":4096,");
	l += (size_t)snprintf(out + l, cap - l, "]");
	return l;
}

struct runopt {
	bool old, remove;
	int regions, stride;
	long delay_ms, die_after, hold_ms;
};

static int run_one(const struct runopt *o, bool quiet)
{
	char *base[64] = { 0 };
	uint64_t size[64] = { 0 }, off[64] = { 0 }, touched = 0, bad = 0, i;
	static char json[64 * 200];
	char *want = malloc(PS);
	int uffd = make_uffd(), s, r, n = o->regions;
	uint64_t per = (mem_size / PS / (uint64_t)n) * PS;

	for (r = 0; r < n; r++) {
		off[r] = per * (uint64_t)r;
		size[r] = r == n - 1 ? mem_size - off[r] : per;
		base[r] = map_register(uffd, size[r]);
	}
	s = connect_sock();
	send_hs(s, json, region_json(json, sizeof(json), base, size, off, n, o->old), &uffd, 1);
	if (o->delay_ms)
		usleep((useconds_t)o->delay_ms * 1000);
	for (r = 0; r < n; r++) {
		for (i = 0; i < size[r]; i += PS * (uint64_t)o->stride) {
			volatile char c = base[r][i];	/* the fault */

			(void)c;
			if (pread(mem_fd, want, PS, (off_t)(off[r] + i)) != (ssize_t)PS)
				fail("pread: %s", strerror(errno));
			if (memcmp(base[r] + i, want, PS)) {
				if (bad++ < 5)
					fprintf(stderr, "uffd-client: page at file offset %llu differs\n",
						(unsigned long long)(off[r] + i));
			}
			touched++;
			if (o->die_after && (long)touched == o->die_after)
				kill(getpid(), SIGKILL);
		}
	}
	if (o->remove) {
		/* The first half of region 0 goes away: it must come back zero. */
		uint64_t half = (size[0] / 2) & ~(PS - 1);

		if (madvise(base[0], half, MADV_DONTNEED) < 0)
			fail("madvise: %s", strerror(errno));
		for (i = 0; i < size[0]; i += PS) {
			bool z = i < half;
			uint64_t k;

			if (z) {
				for (k = 0; k < PS; k++)
					if (base[0][i + k]) {
						if (bad++ < 5)
							fprintf(stderr, "uffd-client: removed page at "
								"%llu is not zero\n",
								(unsigned long long)i);
						break;
					}
			} else {
				if (pread(mem_fd, want, PS, (off_t)(off[0] + i)) != (ssize_t)PS)
					fail("pread: %s", strerror(errno));
				if (memcmp(base[0] + i, want, PS) && bad++ < 5)
					fprintf(stderr, "uffd-client: kept page at %llu differs\n",
						(unsigned long long)i);
			}
		}
	}
	if (o->hold_ms)
		usleep((useconds_t)o->hold_ms * 1000);
	if (!quiet || bad)
		printf("%s touched=%llu bad=%llu\n", bad ? "FAIL" : "ok",
		       (unsigned long long)touched, (unsigned long long)bad);
	close(s);
	free(want);
	return bad ? 1 : 0;
}

static int wait_closed(int s)
{
	struct pollfd p = { .fd = s, .events = POLLIN };
	char b[16];
	int r = poll(&p, 1, 15000);

	if (r == 1 && (read(s, b, sizeof(b)) <= 0)) {
		printf("closed\n");
		return 0;
	}
	printf("still open\n");
	return 1;
}

static int bad(const char *kind)
{
	static char json[UFFD_BIG];
	char *base[2];
	uint64_t size[2], off[2];
	int uffd = make_uffd(), s, fds[2], n = 1;
	size_t len;

	base[0] = map_register(uffd, mem_size);
	size[0] = mem_size;
	off[0] = 0;
	s = connect_sock();
	if (!strcmp(kind, "silent"))
		return wait_closed(s);
	if (!strcmp(kind, "badjson")) {
		send_hs(s, "[{\"base_host_virt_addr\":", 24, &uffd, 1);
		shutdown(s, SHUT_WR);
		return wait_closed(s);
	}
	if (!strcmp(kind, "garbage")) {
		send_hs(s, "hello\x01\x02", 7, &uffd, 1);
		return wait_closed(s);
	}
	if (!strcmp(kind, "notarray")) {
		send_hs(s, "{}", 2, &uffd, 1);
		return wait_closed(s);
	}
	if (!strcmp(kind, "oversized")) {
		len = sizeof(json);
		memset(json, ' ', len);
		json[0] = '[';
		/* the server may close before all is sent: that is the point */
		send(s, json, len, MSG_NOSIGNAL);
		return wait_closed(s);
	}
	if (!strcmp(kind, "sizes"))
		size[0] = mem_size + PS;
	else if (!strcmp(kind, "short"))
		size[0] = mem_size - PS;
	else if (!strcmp(kind, "unaligned"))
		base[0] += 1;
	else if (!strcmp(kind, "overlap")) {
		size[0] = size[1] = mem_size / 2;
		off[1] = mem_size / 2;
		base[1] = base[0] + PS;
		n = 2;
	}
	len = region_json(json, sizeof(json), base, size, off, n, false);
	if (!strcmp(kind, "pagesize")) {
		char *p;

		while ((p = strstr(json, ":4096")))
			memcpy(p, ":8192", 5);
	}
	if (!strcmp(kind, "unknownkey")) {
		json[len - 2] = ',';
		len = (size_t)snprintf(json + len - 1, sizeof(json) - len, "\"x\":1}]") + len - 1;
	}
	if (!strcmp(kind, "nofd")) {
		send_hs(s, json, len, NULL, 0);
	} else if (!strcmp(kind, "twofds")) {
		fds[0] = uffd;
		fds[1] = dup(uffd);
		send_hs(s, json, len, fds, 2);
	} else if (!strcmp(kind, "notuffd")) {
		fds[0] = eventfd(0, EFD_CLOEXEC);
		send_hs(s, json, len, fds, 1);
	} else if (!strcmp(kind, "sizes") || !strcmp(kind, "short") ||
		   !strcmp(kind, "unaligned") || !strcmp(kind, "overlap") ||
		   !strcmp(kind, "pagesize") || !strcmp(kind, "unknownkey")) {
		send_hs(s, json, len, &uffd, 1);
	} else {
		fail("unknown kind '%s'", kind);
	}
	return wait_closed(s);
}

static int bench(void)
{
	struct runopt o = { .regions = 1, .stride = 1 };
	char *p = mmap(NULL, mem_size, PROT_READ, MAP_PRIVATE, mem_fd, 0);
	uint64_t t0, t1, i, sum = 0;
	char *base;
	static char json[512];
	int uffd, s;

	(void)o;
	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	t0 = now_us();
	for (i = 0; i < mem_size; i += PS)
		sum += (unsigned char)((volatile char *)p)[i];
	t1 = now_us();
	printf("kernel_pages_per_s=%.0f kernel_us_per_page=%.3f pages=%llu\n",
	       (double)(mem_size / PS) * 1e6 / (double)(t1 - t0 ? t1 - t0 : 1),
	       (double)(t1 - t0) / (double)(mem_size / PS), (unsigned long long)(mem_size / PS));
	munmap(p, mem_size);

	uffd = make_uffd();
	base = map_register(uffd, mem_size);
	{
		char *b[1] = { base };
		uint64_t sz[1] = { mem_size }, of[1] = { 0 };

		s = connect_sock();
		send_hs(s, json, region_json(json, sizeof(json), b, sz, of, 1, false), &uffd, 1);
	}
	if (getenv("BENCH_DELAY_MS"))
		usleep((useconds_t)atoi(getenv("BENCH_DELAY_MS")) * 1000);
	t0 = now_us();
	for (i = 0; i < mem_size; i += PS)
		sum += (unsigned char)((volatile char *)base)[i];
	t1 = now_us();
	printf("uffd_pages_per_s=%.0f uffd_us_per_page=%.3f elapsed_us=%llu pages=%llu sum=%llu\n",
	       (double)(mem_size / PS) * 1e6 / (double)(t1 - t0 ? t1 - t0 : 1),
	       (double)(t1 - t0) / (double)(mem_size / PS), (unsigned long long)(t1 - t0),
	       (unsigned long long)(mem_size / PS), (unsigned long long)(sum & 1));
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	struct runopt o = { .regions = 1, .stride = 1 };
	struct stat st;
	int a, procs = 1, fails = 0, i;
	const char *cmd;

	if (argc < 4)
		fail("%s", "usage: uffd-client run|bad|bench ...");
	cmd = argv[1];
	a = 2;
	if (!strcmp(cmd, "bad"))
		a = 3;
	sock_path = argv[a];
	mem_path = argv[a + 1];
	mem_fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	if (mem_fd < 0 || fstat(mem_fd, &st) < 0)
		fail("open memory file: %s", strerror(errno));
	mem_size = (uint64_t)st.st_size;
	for (a += 2; a < argc; a++) {
		const char *v = a + 1 < argc ? argv[a + 1] : "0";

		if (!strcmp(argv[a], "--old"))
			o.old = true;
		else if (!strcmp(argv[a], "--memfd"))
			use_memfd = true;
		else if (!strcmp(argv[a], "--remove"))
			o.remove = true;
		else if (!strcmp(argv[a], "--regions"))
			o.regions = atoi(v), a++;
		else if (!strcmp(argv[a], "--stride"))
			o.stride = atoi(v), a++;
		else if (!strcmp(argv[a], "--procs"))
			procs = atoi(v), a++;
		else if (!strcmp(argv[a], "--delay-ms"))
			o.delay_ms = atol(v), a++;
		else if (!strcmp(argv[a], "--die-after"))
			o.die_after = atol(v), a++;
		else if (!strcmp(argv[a], "--hold-ms"))
			o.hold_ms = atol(v), a++;
		else
			fail("unknown option '%s'", argv[a]);
	}
	if (o.regions < 1 || o.regions > 64 || o.stride < 1 || procs < 1 || procs > 256)
		fail("%s", "bad --regions, --stride or --procs");
	if (!strcmp(cmd, "bad"))
		return bad(argv[2]);
	if (!strcmp(cmd, "bench"))
		return bench();
	if (strcmp(cmd, "run"))
		fail("unknown command '%s'", cmd);
	if (procs == 1)
		return run_one(&o, false);
	for (i = 0; i < procs; i++) {
		pid_t p = fork();

		if (p == 0)
			_exit(run_one(&o, true));
		if (p < 0)
			fail("fork: %s", strerror(errno));
	}
	for (i = 0; i < procs; i++) {
		int stt;

		if (wait(&stt) < 0 || !WIFEXITED(stt) || WEXITSTATUS(stt))
			fails++;
	}
	printf("%s procs=%d failed=%d\n", fails ? "FAIL" : "ok", procs, fails);
	return fails ? 1 : 0;
}
