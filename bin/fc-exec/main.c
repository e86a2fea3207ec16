/* fc-exec - run a command in a running VM's container (podman exec in the
 * guest) or in the guest OS itself (--vm), over its own vsock connection
 * to fc-agent's exec port. See fc-exec(1); the session is lib/agentc.
 *
 * Order: arguments; the VM (its live record: by name, id or the pid of its
 * owner or of the fcvm that started it; a VM still starting is waited for,
 * bounded); the request; the terminal (raw mode, restored at every exit:
 * atexit, and after the session on every path that returns); then one
 * agentc session, whose exit code is ours.
 *
 * Exit codes follow podman exec: the command's own, 128+N for signal N,
 * 125 when fc-exec or the agent failed (unknown VM included).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <jansson.h>

#include "agentc.h"
#include "json.h"
#include "log.h"
#include "proc.h"
#include "proto.h"
#include "state.h"
#include "tty.h"
#include "util.h"

#define EXIT_FAIL 125

static const char usage[] =
	"usage: fc-exec (--name NAME | --id ID | --pid PID) [-i] [-t] [--vm] [-e K=V]...\n"
	"               [-w DIR] [-u USER] [--timeout SECONDS] [-v] [-q] -- CMD [ARG...]\n"
	"       fc-exec --unix PATH [same options] -- CMD [ARG...]\n";

/* ---- finding the VM ---- */

struct by_pid {
	pid_t pid;
	json_t *found;
};

/* The parent of @pid, 0 if unknown. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	_cleanup_close_ int fd = -1;
	ssize_t n;
	int ppid = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (n = read_full(fd, buf, sizeof(buf) - 1)) <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return 0;
	return ppid;
}

static int match_pid(json_t *rec, void *arg)
{
	struct by_pid *b = arg;
	long long pid = 0;
	struct fc_err e;

	if (json_int(rec, "pid", 1, 1 << 22, &pid, &e) != 0 || !state_live(rec))
		return 0;
	/* The owner itself, or the process that started it (fcvm podman run). */
	if (pid == b->pid || parent_of(pid) == b->pid) {
		b->found = json_incref(rec);
		return 1;
	}
	return 0;
}

static json_t *find_vm(const char *key, pid_t pid, struct fc_err *e)
{
	struct by_pid b = { .pid = pid };

	if (key)
		return state_find(key, e);
	if (state_foreach(match_pid, &b, e) < 0)
		return NULL;
	if (!b.found)
		fc_err_say(e, ENOENT, "no running VM owned by or started by pid %d", (int)pid);
	return b.found;
}

/* ---- the request ---- */

static json_t *strv_json(char **v, int n)
{
	json_t *a = json_array();

	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'N' },
		{ "id", required_argument, NULL, 'I' },
		{ "pid", required_argument, NULL, 'P' },
		{ "unix", required_argument, NULL, 'U' },
		{ "interactive", no_argument, NULL, 'i' },
		{ "tty", no_argument, NULL, 't' },
		{ "vm", no_argument, NULL, 'M' },
		{ "env", required_argument, NULL, 'e' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agentc_opts o = AGENTC_OPTS_INIT;
	const char *key = NULL, *unix_path = NULL, *workdir = NULL, *user = NULL, *vsock = NULL;
	_cleanup_json_ json_t *env = json_array(), *rec = NULL, *req = NULL;
	_cleanup_agentc_ struct agentc *s = NULL;
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int sigfd = -1;
	bool in = false, tty = false, vm = false;
	uint64_t timeout = 120, v;
	pid_t pid = 0;
	int keys = 0, c, code;
	struct fc_err e;

	log_init("fc-exec");
	while ((c = getopt_long(argc, argv, "+ite:w:u:vqh", opts, NULL)) != -1) {
		switch (c) {
		case 'N':
		case 'I':
			key = optarg;
			keys++;
			break;
		case 'P':
			if (parse_u64(optarg, 1, 1 << 22, "--pid", &v, &e) < 0)
				usage_err(usage, "%s", e.msg);
			pid = v;
			keys++;
			break;
		case 'U':
			unix_path = optarg;
			keys++;
			break;
		case 'i':
			in = true;
			break;
		case 't':
			tty = true;
			break;
		case 'M':
			vm = true;
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				usage_err(usage, "-e '%s': want NAME=VALUE", optarg);
			json_array_append_new(env, json_string(optarg));
			break;
		case 'w':
			if (optarg[0] != '/')
				usage_err(usage, "-w '%s': must be an absolute path", optarg);
			workdir = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'T':
			if (parse_u64(optarg, 1, 600, "--timeout", &timeout, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 'v':
			log_adjust(1);
			break;
		case 'q':
			log_adjust(-1);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			usage_err(usage, "unknown option");
		}
	}
	if (keys != 1)
		usage_err(usage, "give exactly one of --name, --id, --pid (or --unix)");
	if (optind >= argc)
		usage_err(usage, "no command given");
	for (size_t i = 0, n = json_array_size(env); i < n; i++)
		if (!json_string_value(json_array_get(env, i)))
			usage_err(usage, "-e values must be UTF-8");

	o.timeout_ms = timeout * 1000;
	o.harden = true;
	if (!unix_path) {
		rec = find_vm(key, pid, &e);
		if (!rec)
			fc_err_exit(&e, EXIT_FAIL);
		if (!strcmp(json_str(rec, "status") ? json_str(rec, "status") : "", "starting")) {
			json_t *r2 = NULL;
			_cleanup_free_ char *id = xstrdup(json_str(rec, "id"));

			if (state_wait(id, "running", o.timeout_ms, 0, 0, &r2, &e) < 0)
				fc_err_exit(&e, EXIT_FAIL);
			json_decref(rec);
			rec = r2;
		}
		{
			json_t *socks = json_object_get(rec, "sockets");
			long long p = 0, st = 0;

			vsock = socks ? json_str(socks, "vsock") : NULL;
			if (!vsock || !*vsock)
				diex("VM '%s' has no vsock socket in its record", json_str(rec, "id"));
			if (json_int(rec, "pid", 1, 1 << 22, &p, &e) == 0)
				o.owner_pid = p;
			if (json_int(rec, "pid_start", 0, INT64_MAX, &st, &e) == 0)
				o.owner_start = st;
			o.console = json_str(rec, "console");
		}
	}

	req = json_pack("{s:i,s:o,s:b,s:b,s:b,s:O,s:I}", "version", 1, "cmd",
			strv_json(argv + optind, argc - optind), "vm", vm, "tty", tty, "stdin", in,
			"env", env, "wait_ms", (json_int_t)o.timeout_ms);
	if (!req)
		diex("cannot encode the command: arguments must be UTF-8");
	if (workdir)
		json_object_set_new(req, "workdir", json_string(workdir));
	if (user)
		json_object_set_new(req, "user", json_string(user));
	if (tty) {
		const char *term = getenv("TERM");
		struct winsize ws;

		if (term && *term && strlen(term) < 128 && !strpbrk(term, " \t\n"))
			json_object_set_new(req, "term", json_string(term));
		if (isatty(STDIN_FILENO) && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row &&
		    ws.ws_col) {
			json_object_set_new(req, "rows", json_integer(ws.ws_row));
			json_object_set_new(req, "cols", json_integer(ws.ws_col));
		}
	}
	text = json_dumps(req, JSON_COMPACT);
	if (!text)
		abort();

	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd_for((const int[]){ SIGINT, SIGTERM, SIGHUP, SIGWINCH, 0 }, SFD_NONBLOCK, &e);
	if (sigfd < 0)
		fc_err_exit(&e, EXIT_FAIL);
	o.sigfd = sigfd;
	if (in)
		o.in_fd = STDIN_FILENO;
	if (tty && isatty(STDIN_FILENO)) {
		o.winch = true;
		o.tty_fd = STDIN_FILENO;
		if (in && tty_raw(STDIN_FILENO, &e) < 0)
			fc_err_exit(&e, EXIT_FAIL);
	}
	s = agentc_new(&o);
	code = agentc_session(s, unix_path ? unix_path : vsock, unix_path ? 0 : AGENT_PORT_EXEC,
			      MSG_EXEC, text, strlen(text), &e);
	tty_restore();
	if (code < 0)
		fc_err_exit(&e, EXIT_FAIL);
	return code;
}
