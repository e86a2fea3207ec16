/* plan.c - see plan.h */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plan.h"
#include "util.h"

/* The guest has no systemd or journald; say so on every call rather than
 * depend on the rootfs's containers.conf. */
static const char *const global_flags[] = {
	"--cgroup-manager=cgroupfs",
	"--events-backend=file",
};

static const char *const known_keys[] = {
	"version", "image", "cmd", "entrypoint", "env", "user", "workdir", "tty", "poweroff",
	"container_name", "stdin", "network", "labels", "hostname", "volumes",
};

static const char *const volume_keys[] = { "port", "guest", "read_only", "connections" };

static const char *const network_keys[] = { "guest_ip", "prefix", "gateway", "dns", "mac" };

static const char *const image_keys[] = { "disk", "ref", "store" };

static bool key_known(const char *key, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(key, keys[i]))
			return true;
	return false;
}

static int check_keys(json_t *obj, const char *what, const char *const *keys, size_t n,
		      struct fc_err *e)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		(void)v;
		if (!key_known(key, keys, n))
			return fc_err_set(e, 0, "unknown key '%s%s'", what, key);
	}
	return 0;
}

/* A string that survives the trip into argv unchanged: no NUL inside
 * (jansson rejects \u0000 by default; checked again here), bounded. */
static int get_string(json_t *v, const char *name, size_t max, char **out, struct fc_err *e)
{
	size_t len;

	if (!json_is_string(v))
		return fc_err_set(e, 0, "'%s' must be a string", name);
	len = json_string_length(v);
	if (len > max)
		return fc_err_set(e, 0, "'%s' is %zu bytes: at most %zu allowed", name, len,
				  max);
	if (strlen(json_string_value(v)) != len)
		return fc_err_set(e, 0, "'%s' contains a NUL byte", name);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int get_opt_string(json_t *obj, const char *key, size_t max, char **out,
			  struct fc_err *e)
{
	json_t *v = json_object_get(obj, key);

	return v ? get_string(v, key, max, out, e) : 0;
}

static int get_bool(json_t *obj, const char *key, bool *out, struct fc_err *e)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fc_err_set(e, 0, "'%s' must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int get_array(json_t *obj, const char *key, bool allow_empty, char ***out,
		     struct fc_err *e)
{
	json_t *arr = json_object_get(obj, key), *v;
	char **list;
	size_t i, n;

	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return fc_err_set(e, 0, "'%s' must be an array of strings", key);
	n = json_array_size(arr);
	if (n > PLAN_MAX_ARGS)
		return fc_err_set(e, 0, "'%s' has %zu entries: at most %d allowed", key, n,
				  PLAN_MAX_ARGS);
	if (!n && !allow_empty)
		return fc_err_set(e, 0, "'%s' must not be empty", key);
	list = xcalloc(n + 1, sizeof(*list));
	*out = list;	/* partially filled on error: plan_free releases it */
	json_array_foreach(arr, i, v) {
		char name[64];

		snprintf(name, sizeof(name), "%s[%zu]", key, i);
		if (get_string(v, name, PLAN_MAX_STR, &list[i], e) < 0)
			return -1;
	}
	return 0;
}

bool plan_ref_ok(const char *ref)
{
	size_t len = strlen(ref);

	if (!len || len > PLAN_MAX_REF || ref[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)ref[i] <= ' ' || (unsigned char)ref[i] >= 0x7f)
			return false;
	return true;
}

bool plan_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (!len || len > PLAN_MAX_NAME)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || !strchr("_.-", c)))
			return false;
	}
	return true;
}

static int check_env(char **env, struct fc_err *e)
{
	for (size_t i = 0; env[i]; i++) {
		const char *eq = strchr(env[i], '=');

		/* "-e K" without a value would copy K from the agent's own
		 * environment into the container: never wanted. */
		if (!eq || eq == env[i])
			return fc_err_set(e, 0, "'env[%zu]' must look like NAME=VALUE", i);
	}
	return 0;
}

static int check_user(const char *u, struct fc_err *e)
{
	if (!*u || u[0] == '-')
		return fc_err_set(e, 0, "'user' must be a user name or UID[:GID]");
	for (const char *c = u; *c; c++)
		if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') &&
		    !(*c >= '0' && *c <= '9') && !strchr("_.:-@$", *c))
			return fc_err_set(e, 0, "'user' contains the character 0x%02x",
					  (unsigned char)*c);
	return 0;
}

static int parse_image(json_t *img, struct plan *p, struct fc_err *e)
{
	json_t *v;

	if (!json_is_object(img))
		return fc_err_set(e, 0, "'image' must be an object");
	if (check_keys(img, "image.", image_keys, ARRAY_SIZE(image_keys), e) < 0)
		return -1;
	v = json_object_get(img, "disk");
	if (!v)
		return fc_err_set(e, 0, "'image.disk' is missing");
	if (get_string(v, "image.disk", PLAN_MAX_PATH, &p->disk, e) < 0)
		return -1;
	if (p->disk[0] != '/')
		return fc_err_set(e, 0, "'image.disk' must be an absolute path");
	v = json_object_get(img, "ref");
	if (v) {
		if (get_string(v, "image.ref", PLAN_MAX_REF, &p->ref, e) < 0)
			return -1;
		if (!plan_ref_ok(p->ref))
			return fc_err_set(e, 0,
					  "'image.ref' must be printable, without spaces, and not start with '-'");
	}
	if (get_bool(img, "store", &p->store, e) < 0)
		return fc_err_wrap(e, "image");
	if (p->store && !p->ref)
		return fc_err_set(e, 0, "'image.store' needs 'image.ref': nothing is loaded to name it");
	return 0;
}

/* A dotted IPv4 address of a unicast host (not 0.0.0.0, loopback,
 * multicast or broadcast). */
static int get_ip(json_t *obj, const char *key, struct in_addr *out, struct fc_err *e)
{
	json_t *v = json_object_get(obj, key);
	uint32_t a;

	if (!json_is_string(v) || json_string_length(v) > 15 ||
	    inet_pton(AF_INET, json_string_value(v), out) != 1)
		return fc_err_set(e, 0, "'network.%s' must be an IPv4 address", key);
	a = ntohl(out->s_addr);
	if (a == 0 || (a >> 24) == 127 || (a >> 28) >= 14)
		return fc_err_set(e, 0, "'network.%s' must be a unicast address", key);
	return 0;
}

static int parse_network(json_t *n, struct plan_net *net, struct fc_err *e)
{
	json_t *v, *dns;
	size_t i;

	if (json_is_null(n))
		return 0;
	if (!json_is_object(n))
		return fc_err_set(e, 0, "'network' must be an object");
	if (check_keys(n, "network.", network_keys, ARRAY_SIZE(network_keys), e) < 0)
		return -1;
	if (get_ip(n, "guest_ip", &net->ip, e) < 0 || get_ip(n, "gateway", &net->gateway, e) < 0)
		return -1;
	v = json_object_get(n, "prefix");
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 30)
		return fc_err_set(e, 0, "'network.prefix' must be a whole number from 1 to 30");
	net->prefix = (int)json_integer_value(v);
	{
		uint32_t mask = ~0u << (32 - net->prefix);

		if ((ntohl(net->ip.s_addr) & mask) != (ntohl(net->gateway.s_addr) & mask) ||
		    net->ip.s_addr == net->gateway.s_addr)
			return fc_err_set(e, 0, "'network.gateway' must be another address in "
					  "the guest's /%d", net->prefix);
	}
	dns = json_object_get(n, "dns");
	if (dns) {
		if (!json_is_array(dns) || json_array_size(dns) > PLAN_MAX_DNS)
			return fc_err_set(e, 0, "'network.dns' must be an array of at most %d "
					  "IPv4 addresses", PLAN_MAX_DNS);
		for (i = 0; i < json_array_size(dns); i++) {
			json_t *tmp = json_pack("{s:O}", "dns", json_array_get(dns, i));
			int r = get_ip(tmp, "dns", &net->dns[i], e);

			json_decref(tmp);
			if (r < 0)
				return fc_err_set(e, 0, "'network.dns[%zu]' must be a unicast IPv4 "
						  "address", i);
		}
		net->ndns = (int)i;
	}
	v = json_object_get(n, "mac");
	if (v) {
		unsigned int m[6];
		char end;

		const char *ms = json_is_string(v) ? json_string_value(v) : "";

		for (i = 0; i < 17 && ms[i]; i++)
			if (i % 3 == 2 ? ms[i] != ':' : !strchr("0123456789abcdefABCDEF", ms[i]))
				break;
		if (!json_is_string(v) || json_string_length(v) != 17 || i != 17 ||
		    sscanf(json_string_value(v), "%2x:%2x:%2x:%2x:%2x:%2x%c", &m[0], &m[1], &m[2],
			   &m[3], &m[4], &m[5], &end) != 6)
			return fc_err_set(e, 0, "'network.mac' must look like xx:xx:xx:xx:xx:xx");
		for (i = 0; i < 6; i++)
			net->mac[i] = (uint8_t)m[i];
		net->has_mac = true;
	}
	net->set = true;
	return 0;
}

/* "volumes": [{"port":N,"guest":"/abs","read_only":bool,"connections":N}].
 * The guest path goes into podman's -v SRC:DST[:ro], so no ':' or ',', and
 * no "." or ".." component. */
static int parse_volumes(json_t *arr, struct plan *p, struct fc_err *e)
{
	size_t n = json_is_array(arr) ? json_array_size(arr) : 0;

	if (!json_is_array(arr) || n > PLAN_MAX_VOLUMES)
		return fc_err_set(e, 0, "'volumes' must be an array of at most %d objects",
				  PLAN_MAX_VOLUMES);
	p->vols = xcalloc(n ? n : 1, sizeof(*p->vols));
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, i);
		struct plan_vol *pv = &p->vols[p->nvols++];
		_cleanup_free_ char *what = xasprintf("volumes[%zu].", i);
		long long port = 0, conns = 4;
		const char *g;

		if (!json_is_object(v))
			return fc_err_set(e, 0, "'volumes[%zu]' must be an object", i);
		if (check_keys(v, what, volume_keys, ARRAY_SIZE(volume_keys), e) < 0)
			return -1;
		int rc = json_int(v, "port", 1024, 65535, &port, e);

		if (rc < 0)
			return fc_err_wrap(e, "'volumes[%zu]'", i);
		if (rc > 0)
			return fc_err_set(e, 0, "'volumes[%zu].port' is missing", i);
		if (json_int(v, "connections", 1, PLAN_MAX_VOL_CONNS, &conns, e) < 0)
			return fc_err_wrap(e, "'volumes[%zu]'", i);
		if (get_bool(v, "read_only", &pv->ro, e) < 0)
			return fc_err_wrap(e, "'volumes[%zu]'", i);
		if (!json_object_get(v, "guest"))
			return fc_err_set(e, 0, "'volumes[%zu].guest' is missing", i);
		if (get_string(json_object_get(v, "guest"), "volumes[].guest", PLAN_MAX_PATH,
			       &pv->guest, e) < 0)
			return -1;
		pv->port = (unsigned)port;
		pv->conns = (unsigned)conns;
		g = pv->guest;
		if (g[0] != '/' || !g[1] || strpbrk(g, ":,") || strstr(g, "/./") ||
		    strstr(g, "/../") || !strcmp(g + strlen(g) - 2, "/.") ||
		    (strlen(g) >= 3 && !strcmp(g + strlen(g) - 3, "/..")))
			return fc_err_set(e, 0, "'volumes[%zu].guest' must be an absolute path "
					  "other than / without ':', ',', '.' or '..'", i);
		for (const char *c = g; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				return fc_err_set(e, 0, "'volumes[%zu].guest' has a control "
						  "character", i);
		for (size_t k = 0; k + 1 < p->nvols; k++) {
			if (p->vols[k].port == pv->port)
				return fc_err_set(e, 0, "'volumes[%zu].port' %u is used twice", i,
						  pv->port);
			if (!strcmp(p->vols[k].guest, pv->guest))
				return fc_err_set(e, 0, "'volumes[%zu].guest' '%s' is used twice", i,
						  pv->guest);
		}
	}
	return 0;
}

int plan_parse(const char *buf, size_t len, struct plan *p, struct fc_err *e)
{
	_cleanup_json_ json_t *j = NULL;
	long long version = 0;
	json_t *img, *v;

	memset(p, 0, sizeof(*p));
	j = json_parse(buf, len, e);
	if (!j)
		return -1;
	if (!json_is_object(j))
		return fc_err_set(e, 0, "the plan must be a JSON object");
	if (get_bool(j, "poweroff", &p->poweroff, e) < 0)
		return -1;
	if (check_keys(j, "", known_keys, ARRAY_SIZE(known_keys), e) < 0)
		return -1;
	if (json_int(j, "version", 0, 1000, &version, e) < 0)
		return -1;
	if (version != PLAN_VERSION)
		return fc_err_set(e, 0, "'version' must be %d", PLAN_VERSION);
	img = json_object_get(j, "image");
	if (!img)
		return fc_err_set(e, 0, "'image' is missing");
	if (parse_image(img, p, e) < 0)
		return -1;
	/* An empty cmd would be the same as none; say so instead of guessing. */
	if (get_array(j, "cmd", false, &p->cmd, e) < 0 ||
	    get_array(j, "entrypoint", true, &p->entrypoint, e) < 0 ||
	    get_array(j, "env", true, &p->env, e) < 0)
		return -1;
	if (!p->env)
		p->env = xcalloc(1, sizeof(*p->env));
	if (check_env(p->env, e) < 0)
		return -1;
	if (get_opt_string(j, "user", PLAN_MAX_USER, &p->user, e) < 0 ||
	    (p->user && check_user(p->user, e) < 0))
		return -1;
	if (get_opt_string(j, "workdir", PLAN_MAX_PATH, &p->workdir, e) < 0)
		return -1;
	if (p->workdir && p->workdir[0] != '/')
		return fc_err_set(e, 0, "'workdir' must be an absolute path");
	if (get_bool(j, "tty", &p->tty, e) < 0 || get_bool(j, "stdin", &p->in, e) < 0)
		return -1;
	if (get_array(j, "labels", true, &p->labels, e) < 0)
		return -1;
	for (size_t i = 0; p->labels && p->labels[i]; i++)
		if (p->labels[i][0] == '=' || p->labels[i][0] == '\0')
			return fc_err_set(e, 0, "'labels[%zu]' must look like KEY[=VALUE]", i);
	if (get_opt_string(j, "hostname", PLAN_MAX_NAME, &p->hostname, e) < 0)
		return -1;
	if (p->hostname && !plan_name_ok(p->hostname))
		return fc_err_set(e, 0, "'hostname' must match [A-Za-z0-9][A-Za-z0-9_.-]{0,%d}",
				  PLAN_MAX_NAME - 1);
	if (get_opt_string(j, "container_name", PLAN_MAX_STR, &p->name, e) < 0)
		return -1;
	if (p->name && !plan_name_ok(p->name))
		return fc_err_set(e, 0, "'container_name' must match [A-Za-z0-9][A-Za-z0-9_.-]{0,%d}",
				  PLAN_MAX_NAME - 1);
	if (!p->name)
		p->name = xstrdup(PLAN_DEFAULT_NAME);
	v = json_object_get(j, "network");
	if (v && parse_network(v, &p->net, e) < 0)
		return -1;
	v = json_object_get(j, "volumes");
	if (v && parse_volumes(v, p, e) < 0)
		return -1;
	return 0;
}

static void strv_free(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

void plan_free(struct plan *p)
{
	free(p->disk);
	free(p->ref);
	strv_free(p->cmd);
	strv_free(p->entrypoint);
	strv_free(p->env);
	free(p->user);
	free(p->workdir);
	strv_free(p->labels);
	free(p->hostname);
	free(p->name);
	for (size_t i = 0; i < p->nvols; i++)
		free(p->vols[i].guest);
	free(p->vols);
	memset(p, 0, sizeof(*p));
}

void plan_argv_free(char **argv)
{
	strv_free(argv);
}

/* Growable NULL-terminated argv. */
struct argv_buf {
	char **v;
	size_t n, cap;
};

static void argv_add(struct argv_buf *a, char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void argv_start(struct argv_buf *a, const char *runner, const char *store)
{
	argv_add(a, xstrdup(runner));
	for (size_t i = 0; i < ARRAY_SIZE(global_flags); i++)
		argv_add(a, xstrdup(global_flags[i]));
	/* The guest's storage.conf names no stores: an archive-only VM must
	 * not depend on a mount point that is empty. */
	if (store)
		argv_add(a, xasprintf("--storage-opt=overlay.imagestore=%s", store));
}

char **plan_load_argv(const char *runner, const struct plan *p)
{
	struct argv_buf a = { 0 };

	argv_start(&a, runner, NULL);
	argv_add(&a, xstrdup("load"));
	argv_add(&a, xstrdup("-i"));
	argv_add(&a, xstrdup(p->disk));
	return a.v;
}

char **plan_warm_argv(const char *runner, const struct plan *p)
{
	struct argv_buf a = { 0 };

	argv_start(&a, runner, PLAN_STORE_DIR);
	argv_add(&a, xstrdup("image"));
	argv_add(&a, xstrdup("exists"));
	argv_add(&a, xstrdup(p->ref));
	return a.v;
}

char **plan_run_argv(const char *runner, const struct plan *p, const char *ref)
{
	struct argv_buf a = { 0 };

	argv_start(&a, runner, p->store ? PLAN_STORE_DIR : NULL);
	argv_add(&a, xstrdup("run"));
	argv_add(&a, xstrdup("--rm"));
	argv_add(&a, xasprintf("--name=%s", p->name ? p->name : PLAN_DEFAULT_NAME));
	/* The VM is the isolation boundary: the container shares the guest's
	 * network (configured from the plan), or has none. */
	argv_add(&a, xstrdup(p->net.set ? "--network=host" : "--network=none"));
	argv_add(&a, xstrdup("--log-driver=none"));
	if (p->tty)
		argv_add(&a, xstrdup("--tty"));
	if (p->in)
		argv_add(&a, xstrdup("--interactive"));
	/* NAME=VALUE glued to the option: a value can never be taken for a flag. */
	for (size_t i = 0; p->env && p->env[i]; i++)
		argv_add(&a, xasprintf("--env=%s", p->env[i]));
	if (p->user)
		argv_add(&a, xasprintf("--user=%s", p->user));
	if (p->workdir)
		argv_add(&a, xasprintf("--workdir=%s", p->workdir));
	for (size_t i = 0; p->labels && p->labels[i]; i++)
		argv_add(&a, xasprintf("--label=%s", p->labels[i]));
	if (p->hostname)
		argv_add(&a, xasprintf("--hostname=%s", p->hostname));
	/* the fc-volfs mounts (volume.c), already checked: no ':' or ',' */
	for (size_t i = 0; i < p->nvols; i++)
		argv_add(&a, xasprintf("--volume=" PLAN_VOL_DIR "/%zu:%s%s", i, p->vols[i].guest,
				       p->vols[i].ro ? ":ro" : ""));
	if (p->entrypoint) {
		/* podman takes an exec-form entrypoint as a JSON array string. */
		json_t *arr = json_array();
		char *text;

		for (size_t i = 0; p->entrypoint[i]; i++)
			json_array_append_new(arr, json_string(p->entrypoint[i]));
		text = json_dumps(arr, JSON_COMPACT);
		json_decref(arr);
		if (!text)
			abort();	/* only fails on out of memory */
		argv_add(&a, xasprintf("--entrypoint=%s", text));
		free(text);
	}
	argv_add(&a, xstrdup(ref));
	for (size_t i = 0; p->cmd && p->cmd[i]; i++)
		argv_add(&a, xstrdup(p->cmd[i]));
	return a.v;
}

/* Copy of the line's value with trailing whitespace removed. */
static char *line_value(const char *s, size_t len)
{
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\r' || s[len - 1] == '\t'))
		len--;
	while (len && *s == ' ') {
		s++;
		len--;
	}
	return strndup(s, len);
}

char *plan_loaded_ref(const char *out, struct fc_err *e)
{
	static const char *const prefixes[] = { "Loaded image(s):", "Loaded image:" };
	char *found = NULL;
	int count = 0;

	for (const char *line = out; *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);

		for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
			size_t pl = strlen(prefixes[i]);
			char *val, *tok, *save = NULL;

			if (len < pl || memcmp(line, prefixes[i], pl))
				continue;
			val = line_value(line + pl, len - pl);
			if (!val)
				abort();
			for (tok = strtok_r(val, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				while (*tok == ' ')
					tok++;
				if (!*tok)
					continue;
				if (!count++)
					found = xstrdup(tok);
			}
			free(val);
			break;
		}
		line += len + (nl ? 1 : 0);
	}
	if (count != 1) {
		free(found);
		if (!count)
			fc_err_set(e, 0, "no \"Loaded image\" line in its output");
		else
			fc_err_set(e, 0, "the archive holds %d images: name one in image.ref",
				   count);
		return NULL;
	}
	if (!plan_ref_ok(found)) {
		free(found);
		fc_err_set(e, 0, "unusable image name in its output");
		return NULL;
	}
	return found;
}

/* ---- exec requests ---- */

static const char *const exec_keys[] = {
	"version", "cmd", "vm", "tty", "stdin", "env", "workdir", "user", "term", "rows", "cols",
	"wait_ms",
};

static int get_uint(json_t *obj, const char *key, long long min, long long max, unsigned *out,
		    struct fc_err *e)
{
	long long v = 0;
	int r = json_int(obj, key, min, max, &v, e);

	if (r < 0)
		return -1;
	if (r == 0)
		*out = v;
	return 0;
}

int exec_req_parse(const char *buf, size_t len, struct exec_req *r, struct fc_err *e)
{
	_cleanup_json_ json_t *j = NULL;
	long long version = 0;

	memset(r, 0, sizeof(*r));
	r->wait_ms = EXEC_WAIT_MS_DEF;
	j = json_parse(buf, len, e);
	if (!j)
		return -1;
	if (!json_is_object(j))
		return fc_err_set(e, 0, "the exec request must be a JSON object");
	if (check_keys(j, "", exec_keys, ARRAY_SIZE(exec_keys), e) < 0)
		return -1;
	if (json_int(j, "version", 0, 1000, &version, e) < 0)
		return -1;
	if (version != PLAN_VERSION)
		return fc_err_set(e, 0, "'version' must be %d", PLAN_VERSION);
	if (!json_object_get(j, "cmd"))
		return fc_err_set(e, 0, "'cmd' is missing");
	if (get_array(j, "cmd", false, &r->cmd, e) < 0 || get_array(j, "env", true, &r->env, e) < 0)
		return -1;
	if (!r->env)
		r->env = xcalloc(1, sizeof(*r->env));
	if (check_env(r->env, e) < 0)
		return -1;
	if (get_bool(j, "vm", &r->vm, e) < 0 || get_bool(j, "tty", &r->tty, e) < 0 ||
	    get_bool(j, "stdin", &r->in, e) < 0)
		return -1;
	if (get_opt_string(j, "user", PLAN_MAX_USER, &r->user, e) < 0 ||
	    (r->user && check_user(r->user, e) < 0))
		return -1;
	if (get_opt_string(j, "workdir", PLAN_MAX_PATH, &r->workdir, e) < 0)
		return -1;
	if (r->workdir && r->workdir[0] != '/')
		return fc_err_set(e, 0, "'workdir' must be an absolute path");
	if (get_opt_string(j, "term", 128, &r->term, e) < 0)
		return -1;
	if (r->term) {
		for (const char *c = r->term; *c; c++)
			if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
				return fc_err_set(e, 0, "'term' must be printable, without spaces");
	}
	if (get_uint(j, "rows", 0, 65535, &r->rows, e) < 0 ||
	    get_uint(j, "cols", 0, 65535, &r->cols, e) < 0 ||
	    get_uint(j, "wait_ms", 0, EXEC_WAIT_MS_MAX, &r->wait_ms, e) < 0)
		return -1;
	return 0;
}

void exec_req_free(struct exec_req *r)
{
	strv_free(r->cmd);
	strv_free(r->env);
	free(r->workdir);
	free(r->user);
	free(r->term);
	memset(r, 0, sizeof(*r));
}

char **exec_req_argv(const char *runner, const char *store, const struct exec_req *r,
		     const char *name, const char *marker)
{
	struct argv_buf a = { 0 };

	argv_start(&a, runner, store);
	argv_add(&a, xstrdup("exec"));
	if (r->in)
		argv_add(&a, xstrdup("--interactive"));
	if (r->tty) {
		argv_add(&a, xstrdup("--tty"));
		argv_add(&a, xasprintf("--env=TERM=%s", r->term ? r->term : "xterm"));
	}
	if (marker)
		argv_add(&a, xasprintf("--env=%s", marker));
	for (size_t i = 0; r->env && r->env[i]; i++)
		argv_add(&a, xasprintf("--env=%s", r->env[i]));
	if (r->user)
		argv_add(&a, xasprintf("--user=%s", r->user));
	if (r->workdir)
		argv_add(&a, xasprintf("--workdir=%s", r->workdir));
	/* podman exec stops parsing options at the container name. */
	argv_add(&a, xstrdup(name));
	for (size_t i = 0; r->cmd[i]; i++)
		argv_add(&a, xstrdup(r->cmd[i]));
	return a.v;
}

char **exec_wait_argv(const char *runner, const char *store, const char *name)
{
	struct argv_buf a = { 0 };

	argv_start(&a, runner, store);
	argv_add(&a, xstrdup("wait"));
	argv_add(&a, xstrdup("--condition=running"));
	argv_add(&a, xstrdup(name));
	return a.v;
}

int exec_winsize_parse(const char *buf, size_t len, unsigned *rows, unsigned *cols,
		       struct fc_err *e)
{
	_cleanup_json_ json_t *j = json_parse(buf, len, e);
	long long r = 0, c = 0;

	if (!j)
		return -1;
	if (!json_is_object(j) || json_object_size(j) != 2 ||
	    json_int(j, "rows", 1, 65535, &r, e) != 0 || json_int(j, "cols", 1, 65535, &c, e) != 0)
		return fc_err_set(e, 0, "a window size must be {\"rows\":1..65535,\"cols\":1..65535}");
	*rows = r;
	*cols = c;
	return 0;
}
