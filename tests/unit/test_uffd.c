/* test_uffd - lib/uffd: the handshake parser (both JSON versions, every
 * refusal), the working-set file, and the engine in one process: a thread
 * touches a registered mapping while the main thread steps the server
 * over a socketpair (SO_PEERCRED names ourselves).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "check.h"
#include "uffd.h"
#include "util.h"

#define MB (1ULL << 20)

static int parse(const char *json, uint64_t fsz, size_t *n, struct fc_err *e)
{
	struct uffd_region r[UFFD_MAX_REGIONS];

	*n = 0;
	return uffd_parse_handshake(json, strlen(json), fsz, r, UFFD_MAX_REGIONS, n, e);
}

static int refused(const char *json, uint64_t fsz, const char *needle)
{
	struct fc_err e = { 0 };
	size_t n;

	if (parse(json, fsz, &n, &e) == 0)
		return 0;
	if (!strstr(e.msg, needle)) {
		printf("# message: %s\n", e.msg);
		return 0;
	}
	return 1;
}

static void test_parser(void)
{
	struct fc_err e;
	size_t n;
	char big[UFFD_HS_MAX + 16];

	CHECK(parse("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096}]",
		    8192, &n, &e) == 0 && n == 1, "page_size (Firecracker >= 1.12)");
	CHECK(parse("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size_kib\":4096}]",
		    8192, &n, &e) == 0 && n == 1, "page_size_kib, in bytes (1.10-1.11)");
	CHECK(parse("[{\"base_host_virt_addr\":2097152,\"size\":2097152,\"offset\":2097152,\"page_size\":2097152},"
		    "{\"base_host_virt_addr\":8388608,\"size\":2097152,\"offset\":0,\"page_size\":4096}]",
		    4 * MB, &n, &e) == 0 && n == 2, "two regions, 2 MiB pages, file order differs");
	CHECK(refused("", 8192, "invalid JSON"), "empty");
	CHECK(refused("{}", 8192, "not a JSON array"), "an object");
	CHECK(refused("[]", 8192, "0 regions"), "no regions");
	CHECK(refused("[1]", 8192, "not an object"), "a number");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0}]", 8192,
		      "no page_size"), "no page size");
	CHECK(parse("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
		    "\"page_size_kib\":4096}]", 8192, &n, &e) == 0 && n == 1,
	      "both page sizes, equal (Firecracker >= 1.12 serializes both)");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
		      "\"page_size_kib\":4}]", 8192, "differ"), "both page sizes, different");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
		      "\"evil\\u001b[2J\":1}]", 8192, "unknown key 'evil?[2J'"),
	      "an unknown key, named cleaned");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
		      "\"size\":8192}]", 8192, "invalid JSON"), "a duplicate key");
	CHECK(refused("[{\"base_host_virt_addr\":-4096,\"size\":8192,\"offset\":0,\"page_size\":4096}]",
		      8192, "non-negative"), "a negative address");
	CHECK(refused("[{\"base_host_virt_addr\":\"4096\",\"size\":8192,\"offset\":0,\"page_size\":4096}]",
		      8192, "non-negative integer"), "a string address");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":8192}]",
		      8192, "page size 8192"), "8 KiB pages");
	CHECK(refused("[{\"base_host_virt_addr\":4097,\"size\":8192,\"offset\":0,\"page_size\":4096}]",
		      8192, "not aligned"), "an unaligned address");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":2097152}]",
		      8192, "not aligned"), "4 KiB aligned is not 2 MiB aligned");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0,\"page_size\":4096}]",
		      8192, "empty"), "size 0");
	CHECK(refused("[{\"base_host_virt_addr\":9223372036854771712,\"size\":8192,\"offset\":0,"
		      "\"page_size\":4096}]", 8192, "address space"), "beyond the address space");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":4096,\"page_size\":4096}]",
		      8192, "outside the memory file"), "past the file's end");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
		      8192, "cover 4096 bytes"), "not the whole file");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096},"
		      "{\"base_host_virt_addr\":8192,\"size\":8192,\"offset\":8192,\"page_size\":4096}]",
		      16384, "overlap in memory"), "overlapping in memory");
	CHECK(refused("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096},"
		      "{\"base_host_virt_addr\":65536,\"size\":8192,\"offset\":4096,\"page_size\":4096}]",
		      16384, "overlap in the file"), "overlapping in the file");
	memset(big, ' ', sizeof(big));
	big[0] = '[';
	CHECK(uffd_parse_handshake(big, sizeof(big), 8192, NULL, 1, &n, &e) < 0 &&
	      e.errnum == EMSGSIZE, "longer than UFFD_HS_MAX");
}

struct toucher {
	char *p;
	size_t len;
	int done;
};

static void *touch(void *arg)
{
	struct toucher *t = arg;
	size_t i;

	for (i = 0; i < t->len; i += 4096)
		(void)*(volatile char *)(t->p + i);
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_engine(void)
{
	size_t len = 4 * MB, i;
	char *mem = malloc(len), json[256], path[] = "/tmp/test_uffd.XXXXXX";
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffd_opts o = { .mem = mem, .mem_size = len, .prefetch = true };
	struct toucher t;
	struct uffd_stats st;
	struct fc_err e;
	struct uffd_server *s;
	pthread_t th;
	int uffd, sv[2], wfd;
	uint64_t until;

	for (i = 0; i < len; i++)
		mem[i] = (char)(i * 7 + i / 4096);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (!CHECK(uffd >= 0 && ioctl(uffd, UFFDIO_API, &api) == 0, "a userfaultfd")) {
		printf("# %s (skipping the engine test)\n", strerror(errno));
		return;
	}
	CHECK(uffd_check_fd(uffd, &e) == 0, "uffd_check_fd takes a userfaultfd");
	CHECK(uffd_check_fd(0, &e) < 0, "uffd_check_fd refuses stdin");
	t.p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t.len = len;
	t.done = 0;
	reg.range.start = (uint64_t)(uintptr_t)t.p;
	reg.range.len = len;
	CHECK(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, "registered");
	s = uffd_server_new(&o, &e);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	uffd_server_add(s, sv[0]);
	snprintf(json, sizeof(json),
		 "[{\"base_host_virt_addr\":%llu,\"size\":%zu,\"offset\":0,\"page_size\":4096}]",
		 (unsigned long long)(uintptr_t)t.p, len);
	{
		union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } c = { 0 };
		struct iovec iov = { json, strlen(json) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b,
				    .msg_controllen = sizeof(c.b) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
		CHECK(sendmsg(sv[1], &m, 0) == (ssize_t)strlen(json), "handshake sent");
	}
	pthread_create(&th, NULL, touch, &t);
	until = now_ms() + 30000;
	while (!__atomic_load_n(&t.done, __ATOMIC_SEQ_CST) && now_ms() < until)
		uffd_server_step(s, &e);
	CHECK(t.done, "the thread's faults were served");
	pthread_join(th, NULL);
	CHECK(!memcmp(t.p, mem, len), "every page equals the file");
	uffd_server_stats(s, &st);
	CHECK(st.clients == 1 && st.faults == len / 4096 / 16, "16 pages per fault");
	CHECK(st.ws_pages == len / 4096, "all recorded");
	wfd = mkstemp(path);
	close(wfd);
	CHECK(uffd_ws_save(s, path, &e) == 0, "working set saved");
	uffd_server_free(s);
	o.mem_size = len / 2;
	s = uffd_server_new(&o, &e);
	CHECK(uffd_ws_load(s, path, &e) < 0 && e.errnum == EINVAL, "another size's set refused");
	uffd_server_free(s);
	o.mem_size = len;
	s = uffd_server_new(&o, &e);
	CHECK(uffd_ws_load(s, path, &e) == 0, "the same size's set loads");
	uffd_server_stats(s, &st);
	CHECK(st.ws_pages == len / 4096, "with every page");
	uffd_server_free(s);
	unlink(path);
	close(sv[1]);
	close(uffd);
	munmap(t.p, len);
	free(mem);
}

int main(void)
{
	test_parser();
	test_engine();
	return check_done();
}
