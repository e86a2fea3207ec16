/* test_clonefix - the clone fix-up messages (lib/clonefix): what the host
 * makes round-trips through the agent's parser; every field out of bounds,
 * missing, of the wrong type or unknown is refused with a message naming
 * it; the answer's parser likewise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clonefix.h"
#include "util.h"

#include "check.h"

static const char hex64[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void test_roundtrip(void)
{
	struct clonefix f, g, h;
	struct fc_err e;
	struct timespec now;
	char *s;

	CHECK(clonefix_make(&f, "vm-0123456789ab", "c1", &e) == 0, "make a fix-up");
	clock_gettime(CLOCK_REALTIME, &now);
	CHECK(f.seed_len == CLONEFIX_SEED_MAX && f.realtime.tv_sec <= now.tv_sec &&
		      f.realtime.tv_sec >= now.tv_sec - 5,
	      "it carries a full seed and the clock of now");
	CHECK(clonefix_make(&h, "vm-0123456789ab", "c1", &e) == 0 &&
		      memcmp(f.seed, h.seed, CLONEFIX_SEED_MAX),
	      "two fix-ups have different seeds");
	s = clonefix_encode(&f);
	CHECK(strlen(s) <= CLONEFIX_MAX, "the encoding fits the bound");
	CHECK(clonefix_parse(s, strlen(s), &g, &e) == 0 && !strcmp(g.id, f.id) &&
		      !strcmp(g.hostname, "c1") && g.seed_len == f.seed_len &&
		      !memcmp(g.seed, f.seed, f.seed_len) &&
		      g.realtime.tv_sec == f.realtime.tv_sec &&
		      g.realtime.tv_nsec == f.realtime.tv_nsec,
	      "parse(encode(f)) == f");
	free(s);
	CHECK(clonefix_make(&f, "vm-x", "../etc", &e) < 0, "make refuses a name that is no fcvm name");
}

/* parse @json and expect a refusal whose message contains @needle. */
static void bad(const char *json, const char *needle, const char *what)
{
	struct clonefix f;
	struct fc_err e = { 0 };
	int r = clonefix_parse(json, strlen(json), &f, &e);

	if (!CHECK(r < 0 && strstr(e.msg, needle), what))
		printf("#   got %d: %s\n", r, e.msg);
}

static char *msg(const char *id, const char *host, const char *seed, const char *rt,
		 const char *extra)
{
	return xasprintf("{\"version\":1,\"id\":%s,\"hostname\":%s,\"seed\":%s,\"realtime\":%s%s}",
			 id, host, seed, rt, extra);
}

static void test_refusals(void)
{
	char seed[2 * CLONEFIX_SEED_MAX + 8];
	char *m;
	struct clonefix f;
	struct fc_err e;
	const char *rt = "{\"sec\":1800000000,\"nsec\":5}";

#define BAD(id, host, sd, r, extra, needle, what)          \
	do {                                                \
		m = msg(id, host, sd, r, extra);            \
		bad(m, needle, what);                       \
		free(m);                                    \
	} while (0)

	snprintf(seed, sizeof(seed), "\"%s\"", hex64);
	m = msg("\"vm-1\"", "\"c1\"", seed, rt, "");
	CHECK(clonefix_parse(m, strlen(m), &f, &e) == 0 && f.seed_len == 32 && f.seed[31] == 0x1f &&
		      f.realtime.tv_nsec == 5,
	      "a minimal seed (32 bytes) is accepted");
	free(m);
	BAD("\"vm-1\"", "\"c1\"", seed, rt, ",\"evil\":1", "unknown field 'evil'", "an unknown field");
	BAD("\"vm-1\"", "\"c1\"", seed, rt, ",\"e\\u001bvil\":1", "unknown field 'e?vil'",
	    "an unknown field's name is cleaned before it is shown");
	BAD("\"vm-1\"", "\"../x\"", seed, rt, "", "'hostname' must be", "a hostname with a slash");
	BAD("\"vm-1\"", "\"-x\"", seed, rt, "", "'hostname' must be", "a hostname starting with '-'");
	BAD("\"vm-1\"", "\"c\\u0000d\"", seed, rt, "", "clone fix-up", "a NUL in the hostname");
	BAD("\"vm-1\"",
	    "\"a234567890123456789012345678901234567890123456789012345678901234\"", seed, rt, "",
	    "'hostname' must be", "a hostname of 64 characters");
	BAD("1", "\"c1\"", seed, rt, "", "'id' must be", "an id that is no string");
	BAD("\"vm-1\"", "\"c1\"", "\"00\"", rt, "", "'seed' must be 32-64 bytes", "a short seed");
	snprintf(seed, sizeof(seed), "\"%s%s0\"", hex64, hex64);
	BAD("\"vm-1\"", "\"c1\"", seed, rt, "", "'seed' must be", "a seed of odd length");
	snprintf(seed, sizeof(seed), "\"%s%s00\"", hex64, hex64);
	BAD("\"vm-1\"", "\"c1\"", seed, rt, "", "'seed' must be", "a seed of 65 bytes");
	snprintf(seed, sizeof(seed), "\"%.62sxy\"", hex64);
	BAD("\"vm-1\"", "\"c1\"", seed, rt, "", "non-hex", "a seed with a non-hex digit");
	snprintf(seed, sizeof(seed), "\"%s\"", hex64);
	BAD("\"vm-1\"", "\"c1\"", seed, "{\"sec\":1800000000,\"nsec\":1000000000}", "",
	    "'realtime' out of range", "nsec of a whole second");
	BAD("\"vm-1\"", "\"c1\"", seed, "{\"sec\":5,\"nsec\":0}", "", "'realtime' out of range",
	    "a clock before 2000");
	BAD("\"vm-1\"", "\"c1\"", seed, "{\"sec\":1800000000}", "", "'realtime' must be",
	    "realtime without nsec");
	BAD("\"vm-1\"", "\"c1\"", seed, "{\"sec\":1800000000,\"nsec\":0,\"x\":1}", "",
	    "'realtime' must be", "realtime with an extra field");
	BAD("\"vm-1\"", "\"c1\"", seed, "1800000000", "", "'realtime' must be",
	    "realtime as a number");
	bad("{\"version\":1}", "missing 'id'", "a missing field");
	m = msg("\"vm-1\"", "\"c1\"", seed, rt, "");
	m[11] = '2';	/* "version":2 */
	bad(m, "version must be 1", "another version");
	free(m);
	bad("[1]", "not a JSON object", "an array");
	bad("{\"version\":", "clone fix-up", "truncated JSON");
	{
		char *big = xmalloc(CLONEFIX_MAX + 2);

		memset(big, ' ', CLONEFIX_MAX + 1);
		big[CLONEFIX_MAX + 1] = '\0';
		bad(big, "at most", "more than CLONEFIX_MAX bytes, before parsing");
		free(big);
	}
#undef BAD
}

static void test_done(void)
{
	struct clonefix_done d = { .containers = 1, .reseeded = true, .announced = 2 }, g;
	struct fc_err e;
	char *s;

	strcpy(d.hostname, "c1");
	s = clonefix_done_encode(&d);
	CHECK(clonefix_done_parse(s, strlen(s), &g, &e) == 0 && !strcmp(g.hostname, "c1") &&
		      g.containers == 1 && g.reseeded && g.announced == 2,
	      "done: parse(encode(d)) == d");
	free(s);
	s = "{\"version\":1,\"hostname\":\"c1\",\"containers\":-1,\"reseeded\":true,\"announced\":0}";
	CHECK(clonefix_done_parse(s, strlen(s), &g, &e) < 0 && strstr(e.msg, "counts"),
	      "done: a negative count is refused");
	s = "{\"version\":1,\"hostname\":\"c1\",\"containers\":0,\"reseeded\":1,\"announced\":0}";
	CHECK(clonefix_done_parse(s, strlen(s), &g, &e) < 0 && strstr(e.msg, "'reseeded'"),
	      "done: reseeded must be a boolean");
	s = "{\"version\":1,\"hostname\":\"c1\\n\",\"containers\":0,\"reseeded\":true,\"announced\":0}";
	CHECK(clonefix_done_parse(s, strlen(s), &g, &e) < 0 && strstr(e.msg, "'hostname'"),
	      "done: a hostname with a newline is refused");
}

int main(void)
{
	test_roundtrip();
	test_refusals();
	test_done();
	return check_done();
}
