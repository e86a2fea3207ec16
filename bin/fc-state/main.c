/* fc-state - read fcvm's state records: list them, get one, wait for a
 * status, collect what dead owners left behind. Results to stdout (--json
 * for machines), errors to stderr. See fc-state(1).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdnoreturn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fc-state.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "state.h"
#include "util.h"

/* getopt's '?' and ':' (optstrings start with ':', opterr is 0). */
noreturn static void bad_option(const char *usage, int o, char **argv)
{
	if (o == ':')
		usage_err(usage, "option '%s' needs a value", argv[optind - 1]);
	usage_err(usage, "unknown option '%s'", argv[optind - 1]);
}

/* ---- ls ---------------------------------------------------------------- */

struct ls_ctx {
	bool all;
	json_t *list;	/* the records to show */
	json_t *ids;	/* every record's id (object used as a set) */
};

static int ls_cb(json_t *rec, void *arg)
{
	struct ls_ctx *c = arg;
	bool live = state_live(rec);

	json_object_set_new(c->ids, json_str(rec, "id"), json_true());
	if (!live && !c->all)
		return 0;
	rec = json_deep_copy(rec);
	if (c->all)
		json_object_set_new(rec, "live", json_boolean(live));
	json_array_append_new(c->list, rec);
	return 0;
}

static void warn_bad(const char *id, const struct fc_err *why, void *arg)
{
	(void)arg;
	log_warn("skipping state record '%s': %s", id, why->msg);
}

/* Disk directories of stopped VMs: vm-disks/<id> with no record at all. */
static int add_kept_disks(struct ls_ctx *c, struct fc_err *e)
{
	_cleanup_free_ char *dir = fc_path("vm-disks");
	struct dirent **names = NULL;
	int n, i;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0)
		return errno == ENOENT ? 0 : fc_err_set(e, errno, "read '%s'", dir);
	for (i = 0; i < n; i++) {
		const char *id = names[i]->d_name;
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, id);
		struct stat st;

		if (fc_valid_name(id) && !json_object_get(c->ids, id) && lstat(path, &st) == 0 &&
		    S_ISDIR(st.st_mode))
			json_array_append_new(c->list,
					      json_pack("{s:s, s:s, s:b, s:s}", "id", id, "status",
							"stopped", "live", 0, "disk_dir", path));
		free(names[i]);
	}
	free(names);
	return 0;
}

static const char *field_text(json_t *rec, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(rec, key);

	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	return "-";
}

static void print_table(json_t *list, bool all)
{
	static const char *const head[] = { "ID", "NAME", "TYPE", "PID", "STATUS", "CREATED" };
	static const char *const keys[] = { "id", "name", "process_type", "pid", "status", "created" };
	size_t w[ARRAY_SIZE(head)], i, j;
	char buf[32];
	json_t *rec;

	for (j = 0; j < ARRAY_SIZE(head); j++)
		w[j] = strlen(head[j]);
	json_array_foreach(list, i, rec) {
		for (j = 0; j < ARRAY_SIZE(keys); j++) {
			size_t n = strlen(field_text(rec, keys[j], buf, sizeof(buf)));

			if (j == 4 && all && json_is_false(json_object_get(rec, "live")) &&
			    json_object_get(rec, "pid"))
				n = strlen("dead");
			if (n > w[j])
				w[j] = n;
		}
	}
	for (j = 0; j < ARRAY_SIZE(head); j++)
		printf("%-*s%s", j + 1 < ARRAY_SIZE(head) ? (int)w[j] : 0, head[j],
		       j + 1 < ARRAY_SIZE(head) ? "  " : "\n");
	json_array_foreach(list, i, rec) {
		for (j = 0; j < ARRAY_SIZE(keys); j++) {
			const char *s = field_text(rec, keys[j], buf, sizeof(buf));

			/* a dead owner's record: what it said last is no longer true */
			if (j == 4 && all && json_is_false(json_object_get(rec, "live")) &&
			    json_object_get(rec, "pid"))
				s = "dead";
			printf("%-*s%s", j + 1 < ARRAY_SIZE(keys) ? (int)w[j] : 0, s,
			       j + 1 < ARRAY_SIZE(keys) ? "  " : "\n");
		}
	}
}

static const char ls_usage[] = "usage: fc-state ls [-a] [--json]\n";

int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_json_ json_t *list = json_array(), *ids = json_object();
	struct ls_ctx c = { false, list, ids };
	bool json = false;
	struct fc_err e;
	int o;

	while ((o = getopt_long(argc, argv, ":ajh", opts, NULL)) != -1) {
		switch (o) {
		case 'a': c.all = true; break;
		case 'j': json = true; break;
		case 'h': fputs(ls_usage, stdout); return 0;
		default: bad_option(ls_usage, o, argv);
		}
	}
	if (optind < argc)
		usage_err(ls_usage, "ls: unexpected argument '%s'", argv[optind]);
	if (fc_root_check(&e) < 0 || state_scan(ls_cb, warn_bad, &c, &e) < 0 ||
	    (c.all && add_kept_disks(&c, &e) < 0))
		fc_err_exit(&e, 1);
	if (json) {
		_cleanup_free_ char *text = json_dumps(list, JSON_INDENT(2));

		puts(text ? text : "[]");
	} else {
		print_table(list, c.all);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- get --------------------------------------------------------------- */

static const char get_usage[] = "usage: fc-state get [--field NAME] KEY\n";

/* @path: "a.b.c" - object members by name. */
static json_t *get_path(json_t *rec, const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);
	char *save = NULL, *part;
	json_t *v = rec;

	for (part = strtok_r(copy, ".", &save); part && v; part = strtok_r(NULL, ".", &save))
		v = json_object_get(v, part);
	return v;
}

int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "field", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_json_ json_t *rec = NULL;
	_cleanup_free_ char *text = NULL;
	const char *field = NULL, *key;
	struct fc_err e;
	json_t *v;
	int o;

	while ((o = getopt_long(argc, argv, ":f:h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': field = optarg; break;
		case 'h': fputs(get_usage, stdout); return 0;
		default: bad_option(get_usage, o, argv);
		}
	}
	if (argc - optind != 1)
		usage_err(get_usage, "get: needs exactly one KEY (a VM name or id)");
	key = argv[optind];
	if (field && (!*field || field[0] == '.' || field[strlen(field) - 1] == '.' ||
		      strstr(field, "..")))
		usage_err(get_usage, "get: invalid --field '%s': want NAME or NAME.SUB", field);
	if (fc_root_check(&e) < 0)
		fc_err_exit(&e, 1);
	if (!fc_valid_name(key)) {
		fc_err_set(&e, 0, "invalid VM name '%s'", key);
		fc_err_exit(&e, 1);
	}
	rec = state_find(key, &e);
	if (!rec)
		fc_err_exit(&e, 1);
	v = field ? get_path(rec, field) : rec;
	if (!v || json_is_null(v)) {
		fc_err_set(&e, 0, "VM '%s' has no field '%s'", key, field);
		fc_err_exit(&e, 1);
	}
	if (json_is_string(v)) {
		puts(json_string_value(v));
	} else {
		text = json_dumps(v, JSON_ENCODE_ANY | (field ? JSON_COMPACT : JSON_INDENT(2)));
		puts(text ? text : "null");
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- wait -------------------------------------------------------------- */

static const char wait_usage[] =
	"usage: fc-state wait [--timeout SEC] [--pid PID[:START]] KEY STATUS\n";

int cmd_wait(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t timeout = 60, pid = 0, start = 0;
	struct fc_err e;
	char *colon;
	int o;

	while ((o = getopt_long(argc, argv, ":t:p:h", opts, NULL)) != -1) {
		switch (o) {
		case 't':
			if (parse_u64(optarg, 0, 86400, "--timeout", &timeout, &e) < 0)
				usage_err(wait_usage, "%s", e.msg);
			break;
		case 'p':
			colon = strchr(optarg, ':');
			if (colon)
				*colon = '\0';
			if (parse_u64(optarg, 1, 1 << 22, "--pid", &pid, &e) < 0 ||
			    (colon && parse_u64(colon + 1, 1, UINT64_MAX, "--pid start time", &start, &e) < 0))
				usage_err(wait_usage, "%s", e.msg);
			break;
		case 'h': fputs(wait_usage, stdout); return 0;
		default: bad_option(wait_usage, o, argv);
		}
	}
	if (argc - optind != 2)
		usage_err(wait_usage, "wait: needs KEY and STATUS");
	if (!state_valid_status(argv[optind + 1]))
		usage_err(wait_usage, "wait: invalid STATUS '%s': must be starting, running or stopping",
			  argv[optind + 1]);
	if (!fc_valid_name(argv[optind]))
		usage_err(wait_usage, "wait: invalid KEY '%s': not a VM name or id", argv[optind]);
	if (fc_root_check(&e) < 0 ||
	    state_wait(argv[optind], argv[optind + 1], (int)timeout * 1000, (pid_t)pid, start, NULL,
		       &e) < 0)
		fc_err_exit(&e, 1);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;

	log_init("fc-state");
	opterr = 0;
	if (argc < 2)
		usage_err(FC_STATE_USAGE, "missing command");
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(FC_STATE_USAGE, stdout);
		return 0;
	}
	/* subcommands parse argv[1..]: getopt sees the command as argv[0] */
	if (!strcmp(cmd, "ls"))
		return cmd_ls(argc - 1, argv + 1);
	if (!strcmp(cmd, "get"))
		return cmd_get(argc - 1, argv + 1);
	if (!strcmp(cmd, "wait"))
		return cmd_wait(argc - 1, argv + 1);
	if (!strcmp(cmd, "gc"))
		return cmd_gc(argc - 1, argv + 1);
	usage_err(FC_STATE_USAGE, "unknown command '%s'", cmd);
}
