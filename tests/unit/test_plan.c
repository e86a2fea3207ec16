/* test_plan - fc-agent's plan parser (agent/plan.c): the documented schema,
 * every rejection, the podman argv built from a plan and the image name
 * taken from `podman load` output.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The Makefile links unit tests with lib/ only; the agent's parser is
 * compiled in directly. */
#include "plan.h"
#include "util.h"

#include "check.h"

static int parse(const char *s, struct plan *p, struct fc_err *e)
{
	return plan_parse(s, strlen(s), p, e);
}

static void refused(const char *json, const char *needle, const char *what)
{
	struct plan p;
	struct fc_err e = { 0 };
	char msg[512];
	int r = parse(json, &p, &e);

	snprintf(msg, sizeof(msg), "refused: %s ('%s')", what, needle);
	if (!CHECK(r == -1 && strstr(e.msg, needle), msg))
		printf("#   got: %s\n", r == -1 ? e.msg : "accepted");
	plan_free(&p);
}

static char *joined(char **v)
{
	size_t n = 1;
	char *s;

	for (size_t i = 0; v[i]; i++)
		n += strlen(v[i]) + 1;
	s = xcalloc(1, n);
	for (size_t i = 0; v[i]; i++) {
		if (i)
			strcat(s, "|");
		strcat(s, v[i]);
	}
	return s;
}

static void test_full(void)
{
	const char *j = "{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\",\"ref\":\"localhost/x:1\"},"
			"\"cmd\":[\"sh\",\"-c\",\"echo $A\"],\"entrypoint\":[\"/bin/env\",\"-i\"],"
			"\"env\":[\"A=1\",\"B=x=y\",\"C=\"],\"user\":\"1000:1000\",\"workdir\":\"/w d\","
			"\"tty\":false,\"poweroff\":true,\"container_name\":\"web-1.a_b\"}";
	struct plan p;
	struct fc_err e;
	char **argv, *s;

	CHECK(parse(j, &p, &e) == 0, "a plan with every key parses");
	CHECK(!strcmp(p.disk, "/dev/vdb") && !strcmp(p.ref, "localhost/x:1") &&
		      !strcmp(p.cmd[2], "echo $A") && !p.cmd[3] && !strcmp(p.env[1], "B=x=y") &&
		      !strcmp(p.user, "1000:1000") && !strcmp(p.workdir, "/w d") && !p.tty &&
		      p.poweroff && !strcmp(p.name, "web-1.a_b"),
	      "every field lands in the struct");
	argv = plan_run_argv("podman", &p, p.ref);
	s = joined(argv);
	CHECK(!strcmp(s, "podman|--cgroup-manager=cgroupfs|--events-backend=file|run|--rm|"
			 "--name=web-1.a_b|--network=none|--log-driver=none|--env=A=1|--env=B=x=y|--env=C=|"
			 "--user=1000:1000|--workdir=/w d|--entrypoint=[\"/bin/env\",\"-i\"]|"
			 "localhost/x:1|sh|-c|echo $A"),
	      "run argv: options glued to values, image, then cmd verbatim");
	if (strstr(s, "podman|") != s)
		printf("#   got: %s\n", s);
	free(s);
	plan_argv_free(argv);
	argv = plan_load_argv("/x/fake", &p);
	s = joined(argv);
	CHECK(!strcmp(s, "/x/fake|--cgroup-manager=cgroupfs|--events-backend=file|load|-i|/dev/vdb"),
	      "load argv");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
}

static void test_minimal(void)
{
	struct plan p;
	struct fc_err e;
	char **argv, *s;

	CHECK(parse("{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\"}}", &p, &e) == 0,
	      "minimal plan: version and image.disk");
	CHECK(!p.ref && !p.cmd && !p.entrypoint && p.env && !p.env[0] && !p.poweroff && !p.tty,
	      "defaults: no ref, image's cmd, empty env, no power off");
	CHECK(p.name && !strcmp(p.name, "fcvm"), "default container name 'fcvm'");
	argv = plan_run_argv("podman", &p, "sha256:abc");
	s = joined(argv);
	CHECK(strstr(s, "|run|--rm|--name=fcvm|") != NULL, "the default name is passed to podman run");
	CHECK(!strcmp(s + strlen(s) - strlen("--log-driver=none|sha256:abc"),
		      "--log-driver=none|sha256:abc"),
	      "no cmd: the image ends the argv");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
	CHECK(parse("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[\"\"],\"entrypoint\":[],"
		    "\"tty\":true}", &p, &e) == 0 && p.cmd[0][0] == '\0' && p.entrypoint &&
		      !p.entrypoint[0] && p.tty,
	      "empty strings in cmd, an empty entrypoint (reset) and tty are accepted");
	argv = plan_run_argv("podman", &p, "r");
	s = joined(argv);
	CHECK(strstr(s, "|--tty|") && strstr(s, "|--entrypoint=[]|r|"), "tty and empty entrypoint in argv");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
}

/* "image.store": run from the store disk, no load; every podman call about
 * the container names the store. */
static void test_store(void)
{
	struct plan p;
	struct fc_err e;
	struct exec_req r = { 0 };
	char *cmd[] = { "sh", NULL }, *env[] = { NULL };
	char **argv, *s;

	CHECK(parse("{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\",\"ref\":\"abc\",\"store\":true}}",
		    &p, &e) == 0 && p.store,
	      "image.store parses");
	argv = plan_run_argv("podman", &p, p.ref);
	s = joined(argv);
	CHECK(strstr(s, "|--events-backend=file|--storage-opt=overlay.imagestore=" PLAN_STORE_DIR
			 "|run|") != NULL,
	      "run argv: the store is a global storage option");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
	r.cmd = cmd;
	r.env = env;
	argv = exec_req_argv("podman", PLAN_STORE_DIR, &r, "box", NULL);
	s = joined(argv);
	CHECK(strstr(s, "|--storage-opt=overlay.imagestore=" PLAN_STORE_DIR "|exec|") != NULL,
	      "exec argv names the store too");
	free(s);
	plan_argv_free(argv);
	argv = exec_wait_argv("podman", NULL, "box");
	s = joined(argv);
	CHECK(!strstr(s, "storage-opt"), "no store: no storage option");
	free(s);
	plan_argv_free(argv);
	CHECK(parse("{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\"}}", &p, &e) == 0 && !p.store,
	      "no image.store: an archive to load");
	plan_free(&p);
	refused("{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\",\"store\":true}}", "needs 'image.ref'",
		"a store without the image id to run");
	refused("{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\",\"ref\":\"a\",\"store\":1}}",
		"'store' must be true or false", "a store flag that is not a boolean");
}

static void test_refusals(void)
{
	struct plan p;
	struct fc_err e;
	char *big;

	refused("", "invalid JSON", "empty text");
	refused("{\"version\":1,", "invalid JSON", "truncated JSON");
	refused("[1]", "JSON object", "an array");
	refused("{\"version\":1,\"version\":1,\"image\":{\"disk\":\"/d\"}}", "invalid JSON",
		"a duplicate key");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"mounts\":[]}", "unknown key 'mounts'",
		"an unknown key");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\",\"x\":1}}", "unknown key 'image.x'",
		"an unknown image key");
	refused("{\"image\":{\"disk\":\"/d\"}}", "'version' must be 1", "no version");
	refused("{\"version\":2,\"image\":{\"disk\":\"/d\"}}", "'version' must be 1", "version 2");
	refused("{\"version\":\"1\",\"image\":{\"disk\":\"/d\"}}", "integer", "version as a string");
	refused("{\"version\":1}", "'image' is missing", "no image");
	refused("{\"version\":1,\"image\":\"x\"}", "'image' must be an object", "image as a string");
	refused("{\"version\":1,\"image\":{}}", "'image.disk' is missing", "no disk");
	refused("{\"version\":1,\"image\":{\"disk\":\"dev/vdb\"}}", "absolute", "a relative disk");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\",\"ref\":\"--privileged\"}}", "image.ref",
		"a ref that looks like an option");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\",\"ref\":\"a b\"}}", "image.ref",
		"a ref with a space");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\",\"ref\":\"\"}}", "image.ref", "an empty ref");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":\"echo hi\"}", "array of strings",
		"cmd as a string");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[]}", "must not be empty",
		"an empty cmd");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[\"a\",1]}", "'cmd[1]' must be a string",
		"a number in cmd");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[\"a\\u0000b\"]}", "invalid JSON",
		"a NUL byte in an argument");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"env\":[\"NOVALUE\"]}", "NAME=VALUE",
		"env without '='");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"env\":[\"=v\"]}", "NAME=VALUE",
		"env with an empty name");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"user\":\"-x\"}", "'user'",
		"a user that looks like an option");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"user\":\"a b\"}", "'user' contains",
		"a user with a space");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"workdir\":\"rel\"}", "absolute",
		"a relative workdir");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"tty\":1}", "true or false", "tty as 1");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"poweroff\":\"yes\"}", "true or false",
		"poweroff as a string");

	/* container_name: [A-Za-z0-9][A-Za-z0-9_.-]{0,62} */
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"\"}",
		"'container_name' must match", "an empty container_name");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"-x\"}",
		"'container_name' must match", "a container_name that looks like an option");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\".x\"}",
		"'container_name' must match", "a container_name starting with '.'");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"a b\"}",
		"'container_name' must match", "a container_name with a space");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"a/b\"}",
		"'container_name' must match", "a container_name with a slash");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"a\\u00e9\"}",
		"'container_name' must match", "a container_name with a non-ASCII letter");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"a\\nb\"}",
		"'container_name' must match", "a container_name with a newline");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":7}",
		"'container_name' must be a string", "a container_name that is a number");
	{
		char name[80], json[200];

		memset(name, 'a', 63);
		name[63] = '\0';
		snprintf(json, sizeof(json),
			 "{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"%s\"}", name);
		CHECK(parse(json, &p, &e) == 0 && !strcmp(p.name, name),
		      "a container_name of 63 characters is accepted");
		plan_free(&p);
		name[63] = 'a';
		name[64] = '\0';
		snprintf(json, sizeof(json),
			 "{\"version\":1,\"image\":{\"disk\":\"/d\"},\"container_name\":\"%s\"}", name);
		refused(json, "'container_name' must match", "a container_name of 64 characters");
	}
	CHECK(plan_name_ok("a") && plan_name_ok("0") && plan_name_ok("A.b_c-9") &&
		      !plan_name_ok("_a") && !plan_name_ok("a:b") && !plan_name_ok("a\x80"),
	      "plan_name_ok: the character classes");

	/* Bounds. */
	big = xmalloc(PLAN_MAX_STR + 200);
	snprintf(big, PLAN_MAX_STR + 200, "{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[\"%0*d\"]}",
		 PLAN_MAX_STR + 1, 0);
	refused(big, "at most", "an argument over the size limit");
	snprintf(big, PLAN_MAX_STR + 200, "{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[\"%0*d\"]}",
		 PLAN_MAX_STR, 0);
	CHECK(parse(big, &p, &e) == 0, "an argument of exactly the size limit is accepted");
	plan_free(&p);
	free(big);
	{
		size_t n = PLAN_MAX_ARGS + 1, len = 64 + 4 * n;
		char *s = xmalloc(len), *w = s;

		w += sprintf(w, "{\"version\":1,\"image\":{\"disk\":\"/d\"},\"cmd\":[");
		for (size_t i = 0; i < n; i++)
			w += sprintf(w, "%s\"a\"", i ? "," : "");
		strcpy(w, "]}");
		refused(s, "entries", "more arguments than the limit");
		free(s);
	}

	/* poweroff is known even when the rest is bad. */
	memset(&p, 0, sizeof(p));
	CHECK(parse("{\"poweroff\":true,\"version\":1,\"image\":{\"disk\":\"x\"}}", &p, &e) == -1 &&
		      p.poweroff,
	      "poweroff is honoured for an otherwise invalid plan");
	plan_free(&p);
}

static void test_loaded_ref(void)
{
	struct fc_err e;
	char *r;

	r = plan_loaded_ref("Getting image source signatures\nCopying blob 123 done\n"
			    "Writing manifest to image destination\n"
			    "Loaded image: localhost/fcvm-test:latest\n", &e);
	CHECK(r && !strcmp(r, "localhost/fcvm-test:latest"), "\"Loaded image: REF\"");
	free(r);
	r = plan_loaded_ref("Loaded image(s): docker.io/library/busybox:1.36 \r\n", &e);
	CHECK(r && !strcmp(r, "docker.io/library/busybox:1.36"), "\"Loaded image(s): REF\" trimmed");
	free(r);
	r = plan_loaded_ref("Loaded image: sha256:0123abcd", &e);
	CHECK(r && !strcmp(r, "sha256:0123abcd"), "an unnamed image by id, no final newline");
	free(r);
	r = plan_loaded_ref("Loaded image(s): a:1,b:2\n", &e);
	CHECK(!r && strstr(e.msg, "2 images"), "two images at once need image.ref");
	r = plan_loaded_ref("Loaded image: a:1\nLoaded image: b:2\n", &e);
	CHECK(!r && strstr(e.msg, "2 images"), "two Loaded lines need image.ref");
	r = plan_loaded_ref("Error: nothing\n", &e);
	CHECK(!r && strstr(e.msg, "no \"Loaded image\""), "no Loaded line");
	r = plan_loaded_ref("Loaded image: --rm\n", &e);
	CHECK(!r && strstr(e.msg, "unusable"), "an option-like name from podman is refused");
	r = plan_loaded_ref("", &e);
	CHECK(!r, "empty output");
}

static int xparse(const char *s, struct exec_req *r, struct fc_err *e)
{
	return exec_req_parse(s, strlen(s), r, e);
}

static void exec_refused(const char *json, const char *needle, const char *what)
{
	struct exec_req r;
	struct fc_err e = { 0 };
	char msg[512];
	int rc = xparse(json, &r, &e);

	snprintf(msg, sizeof(msg), "exec refused: %s ('%s')", what, needle);
	if (!CHECK(rc == -1 && strstr(e.msg, needle), msg))
		printf("#   got: %s\n", rc == -1 ? e.msg : "accepted");
	exec_req_free(&r);
}

static void test_exec(void)
{
	struct exec_req r;
	struct fc_err e;
	char **argv, *s;
	unsigned rows = 0, cols = 0;

	CHECK(xparse("{\"version\":1,\"cmd\":[\"sh\",\"-c\",\"x\"],\"stdin\":true,\"tty\":true,"
		     "\"env\":[\"A=1\"],\"workdir\":\"/w\",\"user\":\"1:2\",\"term\":\"vt220\","
		     "\"rows\":30,\"cols\":100,\"wait_ms\":5000}", &r, &e) == 0,
	      "an exec request with every key parses");
	CHECK(r.in && r.tty && !r.vm && r.rows == 30 && r.cols == 100 && r.wait_ms == 5000 &&
		      !strcmp(r.term, "vt220"),
	      "exec: flags, size, bound");
	argv = exec_req_argv("podman", NULL, &r, "box", "FCVM_EXEC_ID=1");
	s = joined(argv);
	CHECK(!strcmp(s, "podman|--cgroup-manager=cgroupfs|--events-backend=file|exec|--interactive|"
			 "--tty|--env=TERM=vt220|--env=FCVM_EXEC_ID=1|--env=A=1|--user=1:2|"
			 "--workdir=/w|box|sh|-c|x"),
	      "exec: the podman exec argv, values glued to their options");
	if (strcmp(s, "podman|--cgroup-manager=cgroupfs|--events-backend=file|exec|--interactive|"
		      "--tty|--env=TERM=vt220|--env=FCVM_EXEC_ID=1|--env=A=1|--user=1:2|--workdir=/w|box|sh|-c|x"))
		printf("#   got: %s\n", s);
	free(s);
	plan_argv_free(argv);
	exec_req_free(&r);
	CHECK(xparse("{\"version\":1,\"cmd\":[\"true\"]}", &r, &e) == 0 && !r.in && !r.tty &&
		      r.env && !r.env[0] && r.wait_ms == EXEC_WAIT_MS_DEF,
	      "exec: a minimal request, defaults");
	exec_req_free(&r);
	exec_refused("{\"version\":1}", "'cmd' is missing", "no cmd");
	exec_refused("{\"version\":1,\"cmd\":[]}", "must not be empty", "empty cmd");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"bogus\":1}", "unknown key 'bogus'", "unknown key");
	exec_refused("{\"version\":2,\"cmd\":[\"x\"]}", "'version' must be 1", "version");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"env\":[\"A\"]}", "NAME=VALUE", "env without =");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"workdir\":\"rel\"}", "absolute", "relative workdir");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"user\":\"-u\"}", "'user'", "option-like user");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"term\":\"a b\"}", "'term'", "term with a space");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"rows\":70000}", "'rows'", "rows too big");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"wait_ms\":600001}", "'wait_ms'", "wait too long");
	exec_refused("{\"version\":1,\"cmd\":[\"x\"],\"tty\":1}", "true or false", "tty not a bool");
	exec_refused("[1]", "JSON object", "not an object");
	CHECK(exec_winsize_parse("{\"rows\":40,\"cols\":120}", 22, &rows, &cols, &e) == 0 &&
		      rows == 40 && cols == 120,
	      "winsize parses");
	CHECK(exec_winsize_parse("{\"rows\":0,\"cols\":120}", 22, &rows, &cols, &e) < 0 &&
		      exec_winsize_parse("{\"rows\":1,\"cols\":2,\"x\":3}", 27, &rows, &cols, &e) < 0,
	      "winsize: zero and extra keys refused");
}

/* The plan's network (fc-net's result, the guest's part): parsed, refused,
 * and --network=host in podman's argv only with it. */
static void test_network(void)
{
	struct plan p;
	struct fc_err e;
	char **argv, *s;

#define NETPLAN(net) "{\"version\":1,\"image\":{\"disk\":\"/dev/vdb\"},\"network\":" net "}"
	CHECK(parse(NETPLAN("{\"guest_ip\":\"10.213.0.2\",\"prefix\":30,\"gateway\":\"10.213.0.1\","
			    "\"dns\":[\"10.213.0.1\",\"192.0.2.53\"],\"mac\":\"0a:fc:12:34:ab:CD\"}"),
		    &p, &e) == 0,
	      "a network with every key parses");
	CHECK(p.net.set && p.net.prefix == 30 && p.net.ndns == 2 && p.net.has_mac &&
		      p.net.mac[0] == 0x0a && p.net.mac[5] == 0xcd &&
		      p.net.ip.s_addr == htonl(0x0ad50002) && p.net.gateway.s_addr == htonl(0x0ad50001),
	      "network: address, gateway, prefix, dns, mac");
	argv = plan_run_argv("podman", &p, "r");
	s = joined(argv);
	CHECK(strstr(s, "|--network=host|") && !strstr(s, "--network=none"),
	      "with a network the container shares the guest's (--network=host)");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
	CHECK(parse(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\"}"),
		    &p, &e) == 0 && p.net.set && !p.net.has_mac && p.net.ndns == 0,
	      "dns and mac are optional");
	plan_free(&p);
	CHECK(parse(NETPLAN("null"), &p, &e) == 0 && !p.net.set, "network null: none");
	argv = plan_run_argv("podman", &p, "r");
	s = joined(argv);
	CHECK(strstr(s, "|--network=none|") != NULL, "without a network: --network=none");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
	refused(NETPLAN("[]"), "'network' must be an object", "network not an object");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\",\"x\":1}"),
		"unknown key 'network.x'", "unknown network key");
	refused(NETPLAN("{\"prefix\":24,\"gateway\":\"10.0.2.2\"}"),
		"'network.guest_ip' must be an IPv4 address", "missing guest_ip");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.999\",\"prefix\":24,\"gateway\":\"10.0.2.2\"}"),
		"'network.guest_ip' must be an IPv4 address", "bad address");
	refused(NETPLAN("{\"guest_ip\":\"127.0.0.2\",\"prefix\":24,\"gateway\":\"127.0.0.1\"}"),
		"must be a unicast address", "loopback guest address");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":31,\"gateway\":\"10.0.2.2\"}"),
		"'network.prefix' must be a whole number from 1 to 30", "prefix 31");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":\"24\",\"gateway\":\"10.0.2.2\"}"),
		"'network.prefix' must be", "prefix as a string");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.3.2\"}"),
		"'network.gateway' must be another address in the guest's /24", "gateway off the subnet");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.15\"}"),
		"'network.gateway' must be another address", "gateway = guest");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\","
			"\"dns\":[\"1.1.1.1\",\"1.1.1.2\",\"1.1.1.3\",\"1.1.1.4\"]}"),
		"'network.dns' must be an array of at most 3", "four resolvers");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\","
			"\"dns\":[\"nameserver\"]}"),
		"'network.dns[0]' must be a unicast IPv4 address", "a resolver that is no address");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\","
			"\"mac\":\"0a:fc:12:34:ab\"}"),
		"'network.mac' must look like", "short mac");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\","
			"\"mac\":\"0a:fc:12:34:ab:zz\"}"),
		"'network.mac' must look like", "mac with non-hex digits");
	refused(NETPLAN("{\"guest_ip\":\"10.0.2.15\",\"prefix\":24,\"gateway\":\"10.0.2.2\","
			"\"mac\":\"+a:fc:12:34:ab:cd\"}"),
		"'network.mac' must look like", "mac with a sign");
#undef NETPLAN
}

static void test_labels_hostname(void)
{
	struct plan p;
	struct fc_err e;
	char **argv, *s;

	CHECK(parse("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"labels\":[\"a=b\",\"c\"],"
		    "\"hostname\":\"hx\",\"stdin\":true}", &p, &e) == 0,
	      "labels, hostname and stdin parse");
	argv = plan_run_argv("podman", &p, "img");
	s = joined(argv);
	CHECK(strstr(s, "|--interactive|") && strstr(s, "|--label=a=b|--label=c|") &&
		      strstr(s, "|--hostname=hx|"),
	      "podman run gets --interactive, --label=..., --hostname=...");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"labels\":[\"=x\"]}", "KEY[=VALUE]",
		"a label without a key");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"hostname\":\"-x\"}", "'hostname'",
		"an option-like hostname");
	refused("{\"version\":1,\"image\":{\"disk\":\"/d\"},\"stdin\":\"yes\"}", "true or false",
		"stdin not a bool");
}

#define VOLP "{\"version\":1,\"image\":{\"disk\":\"/d\"},\"volumes\":"

static void test_volumes(void)
{
	struct plan p;
	struct fc_err e;
	char **argv, *s;

	CHECK(parse(VOLP "[{\"port\":5100,\"guest\":\"/data\"},"
		    "{\"port\":5101,\"guest\":\"/in\",\"read_only\":true,\"connections\":2}]}",
		    &p, &e) == 0, "two volumes parse");
	CHECK(p.nvols == 2 && p.vols[0].port == 5100 && p.vols[0].conns == 4 && !p.vols[0].ro &&
		      p.vols[1].ro && p.vols[1].conns == 2 && !strcmp(p.vols[1].guest, "/in"),
	      "volume fields (default 4 connections)");
	argv = plan_run_argv("podman", &p, "img");
	s = joined(argv);
	CHECK(strstr(s, "|--volume=/run/fcvm/vol/0:/data|--volume=/run/fcvm/vol/1:/in:ro|") != NULL,
	      "podman run gets --volume=/run/fcvm/vol/<i>:GUEST[:ro]");
	free(s);
	plan_argv_free(argv);
	plan_free(&p);
	refused(VOLP "{}}", "'volumes' must be an array", "volumes not an array");
	refused(VOLP "[{\"guest\":\"/d\"}]}", "'volumes[0].port' is missing", "no port");
	refused(VOLP "[{\"port\":80,\"guest\":\"/d\"}]}", "volumes[0]", "a port below 1024");
	refused(VOLP "[{\"port\":5100}]}", "'volumes[0].guest' is missing", "no guest path");
	refused(VOLP "[{\"port\":5100,\"guest\":\"data\"}]}", "absolute", "a relative guest path");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/\"}]}", "absolute", "guest path /");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/a:/b\"}]}", "':'", "a ':' in the guest path");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/a/../b\"}]}", "'..'", "'..' in the guest path");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/a/..\"}]}", "'..'", "a trailing '..'");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/a\\nb\"}]}", "control", "a newline");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/d\",\"x\":1}]}", "unknown key 'volumes[0].x'",
		"an unknown volume key");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/d\",\"connections\":65}]}", "volumes[0]",
		"too many connections");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/d\"},{\"port\":5100,\"guest\":\"/e\"}]}",
		"used twice", "a port twice");
	refused(VOLP "[{\"port\":5100,\"guest\":\"/d\"},{\"port\":5101,\"guest\":\"/d\"}]}",
		"used twice", "a guest path twice");
}

int main(void)
{
	test_volumes();
	test_labels_hostname();
	test_network();
	test_exec();
	test_full();
	test_minimal();
	test_store();
	test_refusals();
	test_loaded_ref();
	return check_done();
}
