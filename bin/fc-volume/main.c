/* fc-volume - serve a host directory to a guest's FUSE client (fc-volfs)
 * over the volume protocol (lib/vproto.h), on a Unix socket: under a VM the
 * hybrid-vsock listener "<uds_path>_<port>" the guest connects to.
 *
 * One event loop over the listener and every connection; each request is
 * answered in full before the next one of the same connection, and at most
 * BATCH requests of one connection are served before the others get a
 * turn. The one exception is FSYNC, which can take milliseconds: it goes to
 * a small pool of worker threads (on a duplicate of the file's descriptor,
 * so a RELEASE meanwhile cannot close it under them), its reply is queued
 * back to the loop through an eventfd and may overtake later replies of the
 * same connection (replies are matched by id). The workers are started
 * before the hardening and each hardens itself the same way, since
 * capabilities, Landlock and seccomp are per thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sock.h"
#include "util.h"
#include "volume.h"
#include "vproto.h"

int volume_harden(int share_fd, int sock_dir_fd, struct fc_err *e);

static const char usage_text[] =
	"usage: fc-volume serve --dir HOST_DIR [--ro] --listen UNIX_PATH [--connections N]\n"
	"                       [--max-handles N] [--max-nodes N] [--ready-fd N] [-v] [-q]\n"
	"       fc-volume mount (--connect UNIX_PATH | --vsock PORT) [options] MOUNTPOINT\n"
	"                       (runs fc-volfs; see fc-volume(1))\n";

#define BATCH	   64
#define WBUF_HIGH  (8u << 20)	/* stop reading a connection with this much unsent */
#define RBUF_MAX   (VP_HDR_SIZE + VP_MAX_PAYLOAD + 65536)	/* nor with this much unserved */

struct conn {
	int fd;
	uint64_t serial;
	uint8_t *rbuf;
	size_t rlen, rcap;
	struct vp_buf w;
	size_t woff;
	bool pending;		/* complete frames left in rbuf */
	bool reading;		/* EPOLLIN armed */
	uint32_t events;
};

struct server {
	struct vol vol;
	int epfd, lfd, sfd;
	const char *listen_path;
	struct conn **conns;
	unsigned nconns, max_conns;
	unsigned long frames, bad_frames;
	uint64_t next_serial;
};

/* ---- the fsync workers ---- */

#define WORKERS 4

struct job {
	struct job *next;
	uint64_t conn, id;
	int fd, err;
	bool datasync;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_barrier_t ready, hardened;
	struct job *todo, **todo_tail, *done;
	int efd, share_fd, sock_dir;
	bool failed;
} W = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .efd = -1 };

static void *worker(void *arg)
{
	struct fc_err e;
	uint64_t one = 1;

	(void)arg;
	pthread_barrier_wait(&W.ready);
	if (volume_harden(W.share_fd, W.sock_dir, &e) < 0) {
		pthread_mutex_lock(&W.lock);
		W.failed = true;
		pthread_mutex_unlock(&W.lock);
	}
	pthread_barrier_wait(&W.hardened);
	for (;;) {
		struct job *j;

		pthread_mutex_lock(&W.lock);
		while (!W.todo)
			pthread_cond_wait(&W.cond, &W.lock);
		j = W.todo;
		W.todo = j->next;
		if (!W.todo)
			W.todo_tail = &W.todo;
		pthread_mutex_unlock(&W.lock);
		j->err = (j->datasync ? fdatasync(j->fd) : fsync(j->fd)) < 0 ? errno : 0;
		pthread_mutex_lock(&W.lock);
		j->next = W.done;
		W.done = j;
		pthread_mutex_unlock(&W.lock);
		if (write(W.efd, &one, sizeof(one)) < 0)
			continue;
	}
	return NULL;
}

static int workers_start(struct fc_err *e)
{
	pthread_attr_t a;
	pthread_t t;
	int i;

	W.todo_tail = &W.todo;
	W.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (W.efd < 0)
		return fc_err_set(e, errno, "eventfd");
	pthread_barrier_init(&W.ready, NULL, WORKERS + 1);
	pthread_barrier_init(&W.hardened, NULL, WORKERS + 1);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	for (i = 0; i < WORKERS; i++) {
		int r = pthread_create(&t, &a, worker, NULL);

		if (r)
			return fc_err_set(e, r, "start a worker thread");
	}
	pthread_attr_destroy(&a);
	return 0;
}

/* Hand FSYNC of @fh to a worker. false: do it inline. */
static bool fsync_async(struct server *s, struct conn *c, const struct vp_req *r)
{
	int fd = vol_handle_fd(&s->vol, r->fh), dfd;
	struct job *j;

	if (fd < 0 || (dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return false;
	j = xcalloc(1, sizeof(*j));
	j->conn = c->serial;
	j->id = r->id;
	j->fd = dfd;
	j->datasync = r->flags & 1;
	pthread_mutex_lock(&W.lock);
	*W.todo_tail = j;
	W.todo_tail = &j->next;
	pthread_cond_signal(&W.cond);
	pthread_mutex_unlock(&W.lock);
	return true;
}

/* epoll tags of the listener and the signalfd (connections are their own). */
static struct conn listener_tag, signal_tag, done_tag;

static int server_watch(struct server *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &listener_tag };

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0)
		return -1;
	ev.data.ptr = &signal_tag;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sfd, &ev) < 0)
		return -1;
	ev.data.ptr = &done_tag;
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, W.efd, &ev);
}

static void conn_close(struct server *s, struct conn *c)
{
	unsigned i;

	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->rbuf);
	vp_buf_free(&c->w);
	for (i = 0; i < s->nconns; i++) {
		if (s->conns[i] == c) {
			s->conns[i] = s->conns[--s->nconns];
			break;
		}
	}
	free(c);
}

static int conn_arm(struct server *s, struct conn *c)
{
	uint32_t ev = 0;
	struct epoll_event e;

	c->reading = c->w.len - c->woff < WBUF_HIGH && c->rlen < RBUF_MAX;
	if (c->reading)
		ev |= EPOLLIN;
	if (c->w.len > c->woff)
		ev |= EPOLLOUT;
	if (ev == c->events)
		return 0;
	e.events = ev;
	e.data.ptr = c;
	c->events = ev;
	return epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

/* Write what is queued; 0, or -1 when the peer is gone. */
static int conn_flush(struct conn *c)
{
	while (c->woff < c->w.len) {
		ssize_t k = send(c->fd, c->w.p + c->woff, c->w.len - c->woff, MSG_NOSIGNAL);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		c->woff += (size_t)k;
	}
	if (c->woff == c->w.len) {
		c->w.len = c->woff = 0;
		if (c->w.cap > (4u << 20)) {
			vp_buf_free(&c->w);
		}
	}
	return 0;
}

/* Serve up to BATCH complete frames. -1: a frame that cannot be framed
 * (bad header): the stream cannot be trusted further. */
static int conn_serve(struct server *s, struct conn *c)
{
	size_t done = 0;
	int n = 0;

	c->pending = false;
	while (c->rlen - done >= VP_HDR_SIZE) {
		struct vp_hdr h;
		struct vp_req r;
		int rc = vp_hdr_parse(c->rbuf + done, VP_REQUEST, &h);

		if (rc < 0) {
			s->bad_frames++;
			log_debug("connection %d: %s frame header; closed", c->fd,
				  rc == -EMSGSIZE ? "oversized" : "invalid");
			return -1;
		}
		if (c->rlen - done < VP_HDR_SIZE + (size_t)h.len) {
			size_t need = VP_HDR_SIZE + (size_t)h.len;

			if (c->rcap < need) {
				if (done) {
					memmove(c->rbuf, c->rbuf + done, c->rlen - done);
					c->rlen -= done;
					done = 0;
				}
				c->rbuf = xrealloc(c->rbuf, need);
				c->rcap = need;
			}
			break;
		}
		if (n == BATCH || c->w.len - c->woff >= WBUF_HIGH) {
			c->pending = true;
			break;
		}
		rc = vp_req_decode(&h, c->rbuf + done + VP_HDR_SIZE, h.len, &r);
		s->frames++;
		if (rc < 0) {
			s->bad_frames++;
			log_debug("connection %d: bad %s request: %s", c->fd, vp_op_name(h.op),
				  strerror(-rc));
			vol_reply_error(h.op, h.id, -rc, &c->w);
		} else if (r.op != VP_FSYNC || !fsync_async(s, c, &r)) {
			vol_handle(&s->vol, &r, &c->w);
		}
		done += VP_HDR_SIZE + h.len;
		n++;
	}
	if (done) {
		memmove(c->rbuf, c->rbuf + done, c->rlen - done);
		c->rlen -= done;
	}
	return 0;
}

static int conn_read(struct conn *c)
{
	for (;;) {
		ssize_t k;

		/* Bounded: a client that pipelines faster than it is served
		 * waits (EPOLLIN is off past RBUF_MAX, see conn_arm). */
		if (c->rlen >= RBUF_MAX)
			return 0;
		if (c->rcap - c->rlen < 4096) {
			size_t cap = c->rcap ? c->rcap * 2 : 65536;

			if (cap > RBUF_MAX)
				cap = RBUF_MAX;
			if (cap > c->rcap) {
				c->rbuf = xrealloc(c->rbuf, cap);
				c->rcap = cap;
			}
		}
		k = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		if (k == 0)
			return -1;
		c->rlen += (size_t)k;
		return 1;
	}
}

static void conn_event(struct server *s, struct conn *c, uint32_t ev)
{
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		int r = conn_read(c);

		if (r < 0 && c->rlen < VP_HDR_SIZE) {
			conn_close(s, c);
			return;
		}
		if (r < 0) {
			/* Peer gone: answer nothing more. */
			conn_close(s, c);
			return;
		}
	}
	if (conn_serve(s, c) < 0 || conn_flush(c) < 0 || conn_arm(s, c) < 0)
		conn_close(s, c);
}

/* Replies of finished FSYNCs, to connections still open. */
static void fsync_done(struct server *s)
{
	struct job *j, *next;
	uint64_t n;

	if (read(W.efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&W.lock);
	j = W.done;
	W.done = NULL;
	pthread_mutex_unlock(&W.lock);
	for (; j; j = next) {
		unsigned i;

		next = j->next;
		close(j->fd);
		for (i = 0; i < s->nconns; i++) {
			struct conn *c = s->conns[i];

			if (c->serial != j->conn)
				continue;
			vol_reply_error(VP_FSYNC, j->id, j->err, &c->w);
			if (conn_flush(c) < 0 || conn_arm(s, c) < 0)
				conn_close(s, c);
			break;
		}
		free(j);
	}
}

static void accept_all(struct server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev;
		struct conn *c;

		if (fd < 0)
			return;
		if (s->nconns >= s->max_conns) {
			log_warn("connection refused: %u connections already open", s->nconns);
			close(fd);
			continue;
		}
		c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->serial = ++s->next_serial;
		c->events = EPOLLIN;
		c->reading = true;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		s->conns[s->nconns++] = c;
	}
}

static int serve_loop(struct server *s, struct fc_err *e)
{
	struct epoll_event evs[64];

	for (;;) {
		bool pending = false;
		unsigned i;
		int n;

		for (i = 0; i < s->nconns; i++)
			pending |= s->conns[i]->pending;
		n = epoll_wait(s->epfd, evs, ARRAY_SIZE(evs), pending ? 0 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fc_err_set(e, errno, "epoll_wait");
		}
		for (i = 0; i < (unsigned)n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c == &listener_tag) {
				accept_all(s);
			} else if (c == &done_tag) {
				fsync_done(s);
			} else if (c == &signal_tag) {
				struct signalfd_siginfo si;

				if (read(s->sfd, &si, sizeof(si)) == sizeof(si)) {
					log_debug("signal %u: stopping (%lu frames, %lu bad)", si.ssi_signo,
						  s->frames, s->bad_frames);
					return 0;
				}
			} else {
				c->pending = false;
				conn_event(s, c, evs[i].events);
			}
		}
		/* Connections with frames left over from their batch. */
		for (i = 0; i < s->nconns; i++) {
			struct conn *c = s->conns[i];

			if (c->pending) {
				if (conn_serve(s, c) < 0 || conn_flush(c) < 0 || conn_arm(s, c) < 0) {
					conn_close(s, c);
					i--;
				}
			}
		}
	}
}

static uint32_t parse_num(const char *s, uint64_t min, uint64_t max, const char *what)
{
	struct fc_err e;
	uint64_t v;

	if (parse_u64(s, min, max, what, &v, &e) < 0)
		usage_err(usage_text, "%s", e.msg);
	return (uint32_t)v;
}

static int exec_volfs(int argc, char **argv)
{
	char self[PATH_MAX], *slash;
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 16);
	char **args = xcalloc((size_t)argc + 2, sizeof(char *));
	int i;

	if (k < 0)
		die("readlink /proc/self/exe");
	self[k > 0 ? k : 0] = '\0';
	slash = strrchr(self, '/');
	strcpy(slash ? slash + 1 : self, "fc-volfs");
	args[0] = self;
	for (i = 1; i < argc; i++)
		args[i] = argv[i];
	execv(self, args);
	die("run '%s'", self);
}

enum { O_DIR = 256, O_RO, O_LISTEN, O_CONNS, O_READY, O_HANDLES, O_NODES };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, O_DIR },
		{ "ro", no_argument, NULL, O_RO },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "connections", required_argument, NULL, O_CONNS },
		{ "max-handles", required_argument, NULL, O_HANDLES },
		{ "max-nodes", required_argument, NULL, O_NODES },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *dir = NULL, *listen_path = NULL;
	uint32_t max_conns = 64, max_handles = 4096, max_nodes = 65536;
	int ready_fd = -1, c, share_fd, sock_dir, rc;
	struct server s = { .epfd = -1, .lfd = -1, .sfd = -1 };
	struct fc_err e = { 0 };
	struct rlimit rl;
	sigset_t mask;
	bool ro = false;

	log_init("fc-volume");
	if (argc >= 2 && strcmp(argv[1], "mount") == 0)
		return exec_volfs(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "serve") != 0)
		usage_err(usage_text, "%s", argc < 2 ? "a command is required" : "unknown command");
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
		switch (c) {
		case O_DIR: dir = optarg; break;
		case O_RO: ro = true; break;
		case O_LISTEN: listen_path = optarg; break;
		case O_CONNS: max_conns = parse_num(optarg, 1, 1024, "--connections"); break;
		case O_HANDLES: max_handles = parse_num(optarg, 1, 1u << 20, "--max-handles"); break;
		case O_NODES: max_nodes = parse_num(optarg, 16, 1u << 24, "--max-nodes"); break;
		case O_READY:
			ready_fd = (int)parse_num(optarg, 0, 1023, "--ready-fd");
			if (fcntl(ready_fd, F_GETFD) < 0)
				usage_err(usage_text, "--ready-fd %d is not an open descriptor", ready_fd);
			break;
		case 'v': log_adjust(1); break;
		case 'q': log_adjust(-1); break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_err(usage_text, "bad arguments");
		}
	}
	if (optind != argc)
		usage_err(usage_text, "unexpected argument '%s'", argv[optind]);
	if (!dir || !listen_path)
		usage_err(usage_text, "--dir and --listen are required");

	/* Every node holds an fd: raise the limit and fit the tables in it. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)max_nodes + max_handles + max_conns + 64) {
			if (rl.rlim_cur < (rlim_t)max_handles + max_conns + 64 + 16)
				diex("the open file limit %lu cannot hold --max-handles %u",
				     (unsigned long)rl.rlim_cur, max_handles);
			max_nodes = (uint32_t)(rl.rlim_cur - max_handles - max_conns - 64);
			log_debug("at most %u nodes (open file limit %lu)", max_nodes,
				  (unsigned long)rl.rlim_cur);
		}
	}
	umask(0);
	if (vol_init(&s.vol, dir, ro, max_nodes, max_handles, &e) < 0)
		fc_err_exit(&e, 1);
	{
		struct stat st;

		if (fstat(s.vol.nodes[VOL_ROOT].fd, &st) < 0 || !S_ISDIR(st.st_mode))
			diex("'%s' is not a directory", dir);
	}
	share_fd = s.vol.nodes[VOL_ROOT].fd;
	s.max_conns = max_conns;
	s.conns = xcalloc(max_conns, sizeof(*s.conns));
	s.listen_path = listen_path;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	s.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s.sfd < 0 || s.epfd < 0)
		die("signalfd/epoll");
	s.lfd = sock_listen_unix(listen_path, SOCK_NONBLOCK, 128, &e);
	if (s.lfd < 0)
		fc_err_exit(&e, 1);
	{
		char *d = xstrdup(listen_path), *sl = strrchr(d, '/');

		if (sl)
			*(sl == d ? sl + 1 : sl) = '\0';
		sock_dir = open(sl ? d : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		free(d);
	}
	W.share_fd = share_fd;
	W.sock_dir = sock_dir;
	if (workers_start(&e) < 0) {
		unlink(listen_path);
		fc_err_exit(&e, 1);
	}
	pthread_barrier_wait(&W.ready);
	rc = volume_harden(share_fd, sock_dir, &e);
	pthread_barrier_wait(&W.hardened);
	if (rc == 0 && W.failed)
		rc = fc_err_set(&e, 0, "harden the worker threads");
	if (sock_dir >= 0)
		close(sock_dir);
	if (rc < 0) {
		unlink(listen_path);
		fc_err_exit(&e, 1);
	}
	if (server_watch(&s) < 0) {
		unlink(listen_path);
		die("epoll_ctl");
	}
	if (ready_fd >= 0) {
		dprintf(ready_fd, "ready %s\n", listen_path);
		if (ready_fd > STDERR_FILENO)
			close(ready_fd);
	}
	log_info("serving '%s'%s on '%s'", dir, ro ? " read-only" : "", listen_path);
	c = serve_loop(&s, &e);
	unlink(listen_path);
	while (s.nconns)
		conn_close(&s, s.conns[0]);
	vol_free(&s.vol);
	free(s.conns);
	if (c < 0)
		fc_err_exit(&e, 1);
	return 0;
}
