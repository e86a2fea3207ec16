/* fc-run - the host side of one container run: send a plan to fc-agent,
 * stream the container's output, exit with its exit code; or ask the agent
 * for its state (--status). See fc-run(1); the session is lib/agentc.
 *
 * Exit codes follow podman: the container's own code, 128+N when it died of
 * signal N, and 125 when fc-run itself (or the agent) failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agentc.h"
#include "json.h"
#include "log.h"
#include "proc.h"
#include "proto.h"
#include "tty.h"
#include "util.h"

#define EXIT_FAIL 125
/* Shorter than podman's 10 s: fcvm promises a VM gone within 10 s of a
 * signal, and a stop after the grace still takes a moment. */
#define STOP_TIMEOUT_DEF 4

static const char usage[] =
	"usage: fc-run --vsock UDS [--port N] [--timeout SECONDS] [--started-fd N] [--exit-fd N]\n"
	"              [--heartbeat-timeout SECONDS] [--stop-timeout SECONDS] [--die-with-parent]\n"
	"              [--owner-pid PID[:START]] [--console PATH] [-i] [-t] PLAN.json\n"
	"       fc-run --unix PATH [--timeout SECONDS] [--started-fd N] [--exit-fd N]\n"
	"              [--heartbeat-timeout SECONDS] [--stop-timeout SECONDS] [--die-with-parent]\n"
	"              [--owner-pid PID[:START]] [--console PATH] PLAN.json\n"
	"       fc-run --status (--vsock UDS [--port N] | --unix PATH) [--timeout SECONDS]\n"
	"              [--owner-pid PID[:START]] [--console PATH]\n"
	"       fc-run --prepare (--vsock UDS [--port N] | --unix PATH) [--timeout SECONDS]\n"
	"              [--owner-pid PID[:START]] [--console PATH] PLAN.json\n";

/* PID or PID:START (START: the owner's start time, as in its state record). */
static int parse_owner(const char *s, struct agentc_opts *o, struct fc_err *e)
{
	_cleanup_free_ char *pid = xstrdup(s);
	char *colon = strchr(pid, ':');
	uint64_t v, start = 0;

	if (colon)
		*colon = '\0';
	if (parse_u64(pid, 1, 1 << 22, "--owner-pid", &v, e) < 0 ||
	    (colon && parse_u64(colon + 1, 1, UINT64_MAX, "--owner-pid start time", &start, e) < 0))
		return -1;
	o->owner_pid = v;
	o->owner_start = start;
	return 0;
}

/* The plan: checked before waiting minutes for a VM. NULL with @e. */
static char *load_plan(const char *path, size_t *len, struct fc_err *e)
{
	_cleanup_free_ char *plan = read_file_max(path, PROTO_MAX_PAYLOAD, len, e);
	_cleanup_json_ json_t *j = plan ? json_parse(plan, *len, e) : NULL;

	if (!j)
		return plan ? (fc_err_wrap(e, "plan '%s'", path), NULL) : NULL;
	if (!json_is_object(j))
		return fc_err_set(e, 0, "plan '%s': must be a JSON object", path), NULL;
	return steal_ptr(&plan);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vsock", required_argument, NULL, 'V' },
		{ "unix", required_argument, NULL, 'U' },
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 'X' },
		{ "started-fd", required_argument, NULL, 'S' },
		{ "exit-fd", required_argument, NULL, 'E' },
		{ "die-with-parent", no_argument, NULL, 'D' },
		{ "heartbeat-timeout", required_argument, NULL, 'H' },
		{ "stop-timeout", required_argument, NULL, 'K' },
		{ "owner-pid", required_argument, NULL, 'O' },
		{ "console", required_argument, NULL, 'C' },
		{ "status", no_argument, NULL, 's' },
		{ "prepare", no_argument, NULL, 'P' },
		{ "interactive", no_argument, NULL, 'i' },
		{ "tty", no_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agentc_opts o = AGENTC_OPTS_INIT;
	const char *vsock = NULL, *unix_path = NULL;
	uint64_t port = AGENT_PORT_RUN, timeout = 120, v;
	_cleanup_agentc_ struct agentc *s = NULL;
	_cleanup_free_ char *plan = NULL, *status = NULL;
	_cleanup_close_ int sigfd = -1;
	bool want_status = false, want_prepare = false, die_with = false, interactive = false, tty = false;
	struct fc_err e;
	size_t plan_len = 0;
	int c, code, exit_fd = -1;

	log_init("fc-run");
	o.harden = true;
	o.stop_ms = STOP_TIMEOUT_DEF * 1000;
	while ((c = getopt_long(argc, argv, "itvqh", opts, NULL)) != -1) {
		switch (c) {
		case 'V':
			vsock = optarg;
			break;
		case 'U':
			unix_path = optarg;
			break;
		case 'p':
			if (parse_u64(optarg, 1, UINT32_MAX - 1, "--port", &port, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 'X':
			if (parse_u64(optarg, 1, 86400, "--timeout", &timeout, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 'S':
			if (parse_u64(optarg, 0, 1 << 20, "--started-fd", &v, &e) < 0)
				usage_err(usage, "%s", e.msg);
			o.started_fd = v;
			break;
		case 'E':
			if (parse_u64(optarg, 0, 1 << 20, "--exit-fd", &v, &e) < 0)
				usage_err(usage, "%s", e.msg);
			exit_fd = v;
			break;
		case 'H':
			if (parse_u64(optarg, 3, 86400, "--heartbeat-timeout", &v, &e) < 0)
				usage_err(usage, "%s", e.msg);
			o.heartbeat_ms = v * 1000;
			break;
		case 'K':
			if (parse_u64(optarg, 0, 86400, "--stop-timeout", &v, &e) < 0)
				usage_err(usage, "%s", e.msg);
			o.stop_ms = v * 1000;
			break;
		case 'O':
			if (parse_owner(optarg, &o, &e) < 0)
				usage_err(usage, "%s", e.msg);
			break;
		case 'C':
			o.console = optarg;
			break;
		case 'D':
			die_with = true;
			break;
		case 's':
			want_status = true;
			break;
		case 'P':
			want_prepare = true;
			break;
		case 'i':
			interactive = true;
			break;
		case 't':
		case 'T':
			tty = true;
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
	if (!vsock == !unix_path)
		usage_err(usage, "give exactly one of --vsock and --unix");
	if (want_status && want_prepare)
		usage_err(usage, "give at most one of --status and --prepare");
	if (want_status ? optind != argc : optind + 1 != argc)
		usage_err(usage, want_status ? "--status takes no PLAN.json" :
					       "expected one PLAN.json argument");
	if (o.started_fd >= 0 && fcntl(o.started_fd, F_GETFD) < 0)
		usage_err(usage, "--started-fd %d is not an open file descriptor", o.started_fd);
	if (exit_fd >= 0 && fcntl(exit_fd, F_GETFD) < 0)
		usage_err(usage, "--exit-fd %d is not an open file descriptor", exit_fd);
	o.timeout_ms = timeout * 1000;

	if (!want_status && !(plan = load_plan(argv[optind], &plan_len, &e)))
		fc_err_exit(&e, EXIT_FAIL);
	signal(SIGPIPE, SIG_IGN);
	/* Served by the session: until the plan is out SIGINT/SIGTERM end
	 * fc-run at once (blocked signals reach the signalfd even when we
	 * were started with them ignored, as a script's background job);
	 * afterwards the first is forwarded to the container. */
	sigfd = signalfd_for((const int[]){ SIGINT, SIGTERM, tty ? SIGWINCH : 0, 0 }, SFD_NONBLOCK,
			     &e);
	if (sigfd < 0)
		fc_err_exit(&e, EXIT_FAIL);
	o.sigfd = sigfd;
	/* After the mask: the parent's death is then a SIGTERM on sigfd. */
	if (die_with && die_with_parent(SIGTERM, &e) < 0)
		fc_err_exit(&e, EXIT_FAIL);

	if (want_status) {
		s = agentc_new(&o);
		if (agentc_connect(s, vsock ? vsock : unix_path, vsock ? port : 0, &e) < 0 ||
		    agentc_status(s, &status, &e) < 0) {
			if (agentc_signal(s))
				return 128 + agentc_signal(s);
			fc_err_exit(&e, 1);
		}
		puts(status);
		return fflush(stdout) ? 1 : 0;
	}
	if (want_prepare) {
		s = agentc_new(&o);
		if (agentc_connect(s, vsock ? vsock : unix_path, vsock ? port : 0, &e) < 0 ||
		    agentc_prepare(s, plan, plan_len, &e) < 0) {
			if (agentc_signal(s))
				return 128 + agentc_signal(s);
			fc_err_exit(&e, EXIT_FAIL);
		}
		return 0;
	}
	/* -i: stdin to the container (the plan says "stdin": true); -t with
	 * a terminal: its size follows, and with -i it is raw until we end. */
	if (interactive)
		o.in_fd = STDIN_FILENO;
	if (tty && isatty(STDIN_FILENO)) {
		o.winch = true;
		o.tty_fd = STDIN_FILENO;
		if (interactive && tty_raw(STDIN_FILENO, &e) < 0)
			fc_err_exit(&e, EXIT_FAIL);
	}
	/* One agentc for the session: agentc_free closes o's started_fd. */
	s = agentc_new(&o);
	code = agentc_session(s, vsock ? vsock : unix_path, vsock ? port : 0, MSG_PLAN, plan,
			      plan_len, &e);
	tty_restore();
	/* Only an EXIT from the agent: then the guest ends by itself (the
	 * plan's poweroff), and a front end may wait for that. */
	if (exit_fd >= 0 && code >= 0 && agentc_exited(s) && dprintf(exit_fd, "exit %d\n", code) < 0)
		log_warn("--exit-fd: %s", strerror(errno));
	if (code < 0)
		fc_err_exit(&e, EXIT_FAIL);
	return code;
}
