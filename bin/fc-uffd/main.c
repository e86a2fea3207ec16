/* fc-uffd - serve a snapshot's memory to clones over userfaultfd, with
 * Firecracker's handshake (the engine is lib/uffd; see uffd.h).
 *
 * Order of start-up: open and validate the snapshot (lib/snapshot), map its
 * memory file read-only, claim a name and write a "starting" serve record,
 * listen on run/uffd-<tag>-<pid>.sock, record it ("running", snapshot,
 * sockets.uffd), load the working set, then give up what is not needed
 * (NO_NEW_PRIVS + a seccomp allowlist) before the first byte of a client is
 * read, and only then say "ready". SIGTERM/SIGINT: the record goes to
 * "stopping", the socket is removed, every live clone whose serve_pid is
 * this process gets SIGTERM and is served until it has gone (SIGKILL after
 * a bound), then the working set is saved and the record removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "proc.h"
#include "seccomp.h"
#include "snapshot.h"
#include "sock.h"
#include "state.h"
#include "uffd.h"
#include "util.h"

static const char usage_text[] =
	"usage: fc-uffd serve --snapshot TAG [--name NAME] [--prefetch on|off]\n"
	"                     [--fault-around PAGES] [--handshake-timeout MS]\n"
	"                     [--ready-fd N] [-v] [-q]\n";

#define STOP_GRACE_MS 20000
#define WS_FILE "workingset"

struct srv {
	const char *tag;
	char *id, *name, *sock_path, *stats_path, *ws_path;
	json_t *rec;
	int lfd, sfd, epfd;
	struct uffd_server *u;
	struct uffd_stats last;
	uint64_t last_stats_ms;
	bool stopping, recorded;
	uint64_t stop_deadline;
	pid_t clones[256];
	uint64_t clone_start[256];
	size_t nclones;
	bool killed;
	uint64_t ws_dropped;
	void *mem;
	size_t mem_size;
};

static int parse_int(const char *s, uint64_t min, uint64_t max, const char *what)
{
	struct fc_err e;
	uint64_t v;

	if (parse_u64(s, min, max, what, &v, &e) < 0)
		usage_err(usage_text, "%s", e.msg);
	return (int)v;
}

static int harden(struct fc_err *e)
{
	static const int allowed[] = {
		SYS_read, SYS_write, SYS_close, SYS_fcntl, SYS_lseek, SYS_pread64,
		SYS_recvmsg, SYS_sendmsg, SYS_sendto, SYS_accept4, SYS_getsockopt,
		SYS_epoll_ctl, SYS_epoll_pwait,
#ifdef SYS_epoll_wait
		SYS_epoll_wait,
#endif
		SYS_ioctl, SYS_pidfd_open, SYS_kill,
		SYS_openat, SYS_newfstatat, SYS_fstat, SYS_statx, SYS_readlinkat,
		SYS_getdents64, SYS_unlinkat, SYS_renameat, SYS_renameat2, SYS_fsync, SYS_fdatasync,
		SYS_flock, SYS_fchmod, SYS_umask,
#ifdef SYS_rename
		SYS_rename, SYS_unlink,
#endif
		SYS_mmap, SYS_munmap, SYS_mremap, SYS_madvise, SYS_brk, SYS_mprotect,
		SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep, SYS_getpid, SYS_gettid,
		SYS_tgkill, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn,
		SYS_restart_syscall, SYS_futex, SYS_getrandom, SYS_exit, SYS_exit_group,
	};

	return seccomp_allow_only(allowed, ARRAY_SIZE(allowed), false, e);
}

static int save_record(struct srv *s, const char *status, struct fc_err *e)
{
	json_object_set_new(s->rec, "status", json_string(status));
	return state_save(s->rec, e);
}

/* Claim a name and write the "starting" record (under the state lock). */
static int claim(struct srv *s, const char *want, struct fc_err *e)
{
	_cleanup_close_ int lk = state_lock(e);
	struct fc_err fe;
	json_t *other;

	if (lk < 0)
		return -1;
	s->id = state_new_id();
	if (want) {
		s->name = xstrdup(want);
	} else {
		s->name = xasprintf("uffd-%s", s->tag);
		if (!fc_valid_name(s->name)) {
			free(s->name);
			s->name = xstrdup(s->id);
		}
	}
	other = state_find(s->name, &fe);
	if (other) {
		json_decref(other);
		if (want)
			return fc_err_say(e, EEXIST, "the name '%s' is in use", want);
		free(s->name);
		s->name = xstrdup(s->id);
	}
	s->rec = state_new(s->id, s->name, "serve", "starting");
	if (state_save(s->rec, e) < 0)
		return -1;
	s->recorded = true;
	return 0;
}

static void write_stats(struct srv *s, bool force)
{
	struct uffd_stats st;
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *txt = NULL;
	struct fc_err e;
	uint64_t now = now_ms();

	uffd_server_stats(s->u, &st);
	if (!force && (!memcmp(&st, &s->last, sizeof(st)) || now - s->last_stats_ms < 100))
		return;
	j = json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		      "pid", (int)getpid(), "snapshot", s->tag,
		      "clients", (json_int_t)st.clients,
		      "clients_total", (json_int_t)st.clients_total,
		      "refused", (json_int_t)st.refused, "dropped", (json_int_t)st.dropped,
		      "faults", (json_int_t)st.faults, "pages_copied", (json_int_t)st.pages_copied,
		      "pages_zeroed", (json_int_t)st.pages_zeroed,
		      "pages_prefetched", (json_int_t)st.pages_prefetched,
		      "removes", (json_int_t)st.removes, "eagain", (json_int_t)st.eagain,
		      "ws_pages", (json_int_t)st.ws_pages);
	txt = json_dumps(j, JSON_COMPACT);
	if (!txt)
		return;
	if (fs_write_atomic(s->stats_path, txt, strlen(txt), 0644, &e) < 0) {
		log_warn("%s", e.msg);
		return;
	}
	s->last = st;
	s->last_stats_ms = now;
}

static int find_clone(json_t *rec, void *arg)
{
	struct srv *s = arg;
	const char *type = json_str(rec, "process_type");
	json_int_t sp = json_integer_value(json_object_get(rec, "serve_pid"));
	json_int_t ss = json_integer_value(json_object_get(rec, "serve_pid_start"));
	uint64_t mine = json_integer_value(json_object_get(s->rec, "pid_start"));

	if (!type || strcmp(type, "clone") || sp != getpid() || (ss && (uint64_t)ss != mine) ||
	    !state_live(rec) || s->nclones >= ARRAY_SIZE(s->clones))
		return 0;
	s->clones[s->nclones] = (pid_t)json_integer_value(json_object_get(rec, "pid"));
	s->clone_start[s->nclones++] = json_integer_value(json_object_get(rec, "pid_start"));
	return 0;
}

static void begin_stop(struct srv *s, int sig)
{
	struct fc_err e;
	size_t i;

	s->stopping = true;
	s->stop_deadline = now_ms() + STOP_GRACE_MS;
	log_info("signal %d: stopping", sig);
	if (s->lfd >= 0) {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
		close(s->lfd);
		s->lfd = -1;
		unlink(s->sock_path);
	}
	if (save_record(s, "stopping", &e) < 0)
		log_warn("%s", e.msg);
	if (state_foreach(find_clone, s, &e) < 0)
		log_warn("%s", e.msg);
	for (i = 0; i < s->nclones; i++) {
		log_info("stopping clone %d", (int)s->clones[i]);
		kill(s->clones[i], SIGTERM);
	}
}

static bool clones_gone(struct srv *s)
{
	size_t i;

	for (i = 0; i < s->nclones; i++)
		if (state_pid_live(s->clones[i], s->clone_start[i]))
			return false;
	return true;
}

static void cleanup(struct srv *s)
{
	struct fc_err e;

	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->sock_path);
	}
	if (s->u && s->ws_path && uffd_ws_dirty(s->u) && uffd_ws_save(s->u, s->ws_path, &e) < 0)
		log_warn("%s", e.msg);
	if (s->stats_path)
		unlink(s->stats_path);
	if (s->recorded)
		state_remove(s->id);
	uffd_server_free(s->u);
	json_decref(s->rec);
	if (s->sfd >= 0)
		close(s->sfd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->mem)
		munmap(s->mem, s->mem_size);
	free(s->id);
	free(s->name);
	free(s->sock_path);
	free(s->stats_path);
	free(s->ws_path);
	free((char *)s->tag);
}

static int serve(struct srv *s, const char *want_name, struct uffd_opts *uo, int ready_fd,
		 struct fc_err *e)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, 0 };
	_cleanup_json_ json_t *m = NULL;
	_cleanup_close_ int mfd = -1;
	struct epoll_event ev;
	const char *mem_path;
	json_int_t mem_size;
	struct rlimit rl;
	struct stat st;
	void *mem;

	if (fc_root_check(e) < 0)
		return -1;
	m = snapshot_open(s->tag, e);
	if (!m)
		return -1;
	mem_path = json_str(json_object_get(json_object_get(m, "files"), "memory"), "abs");
	mem_size = json_integer_value(
		json_object_get(json_object_get(json_object_get(m, "files"), "memory"), "size"));
	if (!mem_path || mem_size <= 0)
		return fc_err_say(e, EINVAL, "snapshot '%s': no memory file", s->tag);
	mfd = open(mem_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (mfd < 0 || fstat(mfd, &st) < 0)
		return fc_err_set(e, errno, "open '%s'", mem_path);
	if (!S_ISREG(st.st_mode) || st.st_size != mem_size)
		return fc_err_say(e, EINVAL, "memory file '%s' changed: %lld bytes, the manifest "
				  "says %lld", mem_path, (long long)st.st_size,
				  (long long)mem_size);
	mem = mmap(NULL, (size_t)mem_size, PROT_READ, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED)
		return fc_err_set(e, errno, "map '%s'", mem_path);
	s->mem = mem;
	s->mem_size = (size_t)mem_size;
	s->ws_path = xasprintf("%s/" WS_FILE, json_str(m, "dir"));
	uo->mem = mem;
	uo->mem_size = (uint64_t)mem_size;

	if (claim(s, want_name, e) < 0)
		return -1;
	log_set_tag(s->name);
	s->sock_path = fc_path("run/uffd-%s-%d.sock", s->tag, (int)getpid());
	s->stats_path = fc_path("run/uffd-%s-%d.stats", s->tag, (int)getpid());
	s->lfd = sock_listen_unix(s->sock_path, SOCK_NONBLOCK, 128, e);
	if (s->lfd < 0)
		return -1;
	/* whoever connects gets the snapshot's memory: the owner only */
	if (chmod(s->sock_path, 0600) < 0)
		return fc_err_set(e, errno, "chmod '%s'", s->sock_path);
	json_object_set_new(s->rec, "snapshot", json_string(s->tag));
	json_object_set_new(s->rec, "sockets", json_pack("{s:s}", "uffd", s->sock_path));
	if (save_record(s, "running", e) < 0)
		return -1;

	/* Each connection holds its socket and up to 8 received fds until it
	 * is judged: raise the soft limit, and admit no more than fit, so
	 * accept() never fails with EMFILE (a level-triggered spin). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (!uo->max_clients) {
			rlim_t lim = rl.rlim_cur > 64 ? (rl.rlim_cur - 32) / 10 : 4;

			uo->max_clients = (unsigned)(lim > 1024 ? 1024 : lim);
		}
	}
	s->u = uffd_server_new(uo, e);
	if (!s->u)
		return -1;
	if (uffd_ws_load(s->u, s->ws_path, e) < 0)
		log_warn("%s: not used", e->msg);
	s->sfd = signalfd_for(sigs, SFD_NONBLOCK, e);
	if (s->sfd < 0)
		return -1;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0)
		return fc_err_set(e, errno, "epoll_create1");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = s->lfd };
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0)
		return fc_err_set(e, errno, "epoll_ctl");
	ev.data.fd = s->sfd;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sfd, &ev) < 0)
		return fc_err_set(e, errno, "epoll_ctl");
	ev.data.fd = uffd_server_fd(s->u);
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
		return fc_err_set(e, errno, "epoll_ctl");
	write_stats(s, true);
	if (harden(e) < 0)
		return -1;
	log_info("serving snapshot '%s' (%lld MiB) on %s, prefetch %s", s->tag,
		 (long long)(mem_size >> 20), s->sock_path, uo->prefetch ? "on" : "off");
	if (ready_fd >= 0) {
		dprintf(ready_fd, "ready %s\n", s->sock_path);
		if (ready_fd > STDERR_FILENO)
			close(ready_fd);
	}

	for (;;) {
		struct epoll_event evs[8];
		int t = uffd_server_timeout(s->u), n, i;

		if (t < 0 || t > 200)	/* the stats file trails by at most this */
			t = 200;
		if (s->stopping && t > 100)
			t = 100;
		n = epoll_wait(s->epfd, evs, ARRAY_SIZE(evs), t);
		if (n < 0 && errno != EINTR)
			return fc_err_set(e, errno, "epoll_wait");
		for (i = 0; i < n; i++) {
			if (s->lfd >= 0 && evs[i].data.fd == s->lfd) {
				int c;

				while ((c = accept4(s->lfd, NULL, NULL,
						    SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
					uffd_server_add(s->u, c);
				if (errno == EMFILE || errno == ENFILE)
					log_warn("accept: %s", strerror(errno));
			} else if (evs[i].data.fd == s->sfd) {
				struct signalfd_siginfo si;

				while (read(s->sfd, &si, sizeof(si)) == sizeof(si))
					if (!s->stopping)
						begin_stop(s, (int)si.ssi_signo);
			}
		}
		if (uffd_server_step(s->u, e) < 0)
			return -1;
		write_stats(s, false);
		if (uffd_ws_dirty(s->u)) {
			/* a clone has come and gone: keep what it taught us */
			struct fc_err we;
			struct uffd_stats cur;

			uffd_server_stats(s->u, &cur);
			if (cur.dropped != s->ws_dropped) {
				s->ws_dropped = cur.dropped;
				if (uffd_ws_save(s->u, s->ws_path, &we) < 0)
					log_warn("%s", we.msg);
			}
		}
		if (s->stopping) {
			if (clones_gone(s))
				break;
			if (now_ms() >= s->stop_deadline) {
				size_t k;

				if (s->killed)
					break;
				for (k = 0; k < s->nclones; k++)
					if (state_pid_live(s->clones[k], s->clone_start[k]))
						kill(s->clones[k], SIGKILL);
				s->killed = true;
				s->stop_deadline = now_ms() + 3000;
			}
		}
	}
	write_stats(s, true);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_SNAP = 256, O_NAME, O_PREFETCH, O_AROUND, O_HSTO, O_READY };
	static const struct option opts[] = {
		{ "snapshot", required_argument, NULL, O_SNAP },
		{ "name", required_argument, NULL, O_NAME },
		{ "prefetch", required_argument, NULL, O_PREFETCH },
		{ "fault-around", required_argument, NULL, O_AROUND },
		{ "handshake-timeout", required_argument, NULL, O_HSTO },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct srv s = { .lfd = -1, .sfd = -1, .epfd = -1 };
	struct uffd_opts uo = { .prefetch = true };
	const char *name = NULL;
	int c, ready_fd = -1, rc;
	struct fc_err e;

	log_init("fc-uffd");
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "serve"))
		usage_err(usage_text, argc < 2 ? "a command is needed" : "unknown command '%s'",
			  argv[1]);
	optind = 2;
	while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
		switch (c) {
		case O_SNAP:
			if (!snapshot_valid_tag(optarg))
				usage_err(usage_text, "invalid --snapshot '%s': not a valid tag",
					  optarg);
			s.tag = optarg;
			break;
		case O_NAME:
			if (!fc_valid_name(optarg))
				usage_err(usage_text, "invalid --name '%s'", optarg);
			name = optarg;
			break;
		case O_PREFETCH:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				usage_err(usage_text, "invalid --prefetch '%s': on or off", optarg);
			uo.prefetch = !strcmp(optarg, "on");
			break;
		case O_AROUND:
			uo.fault_around = (unsigned)parse_int(optarg, 1, 64, "--fault-around");
			break;
		case O_HSTO:
			uo.handshake_ms = parse_int(optarg, 10, 600000, "--handshake-timeout");
			break;
		case O_READY:
			ready_fd = parse_int(optarg, 0, 1023, "--ready-fd");
			if (fcntl(ready_fd, F_GETFD) < 0)
				usage_err(usage_text, "--ready-fd %d is not an open descriptor",
					  ready_fd);
			break;
		case 'v':
			log_adjust(1);
			break;
		case 'q':
			log_adjust(-1);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			usage_err(usage_text, "unknown option");
		}
	}
	if (optind < argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (!s.tag)
		usage_err(usage_text, "--snapshot TAG is needed");
	s.tag = xstrdup(s.tag);
	rc = serve(&s, name, &uo, ready_fd, &e);
	cleanup(&s);
	if (rc < 0)
		fc_err_exit(&e, 1);
	return 0;
}
