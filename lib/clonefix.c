/* clonefix.c - see clonefix.h */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clonefix.h"
#include "json.h"
#include "paths.h"
#include "text.h"
#include "util.h"

/* Seconds of a realtime clock we believe: 2000-01-01 .. 9999-12-31. A
 * host clock outside that is broken, and setting the guest to it would
 * only spread the damage. */
#define REALTIME_MIN 946684800LL
#define REALTIME_MAX 253402300799LL

int clonefix_make(struct clonefix *f, const char *id, const char *hostname, struct fc_err *e)
{
	size_t got = 0;

	memset(f, 0, sizeof(*f));
	if (!fc_valid_name(id) || !fc_valid_name(hostname))
		return fc_err_say(e, EINVAL, "invalid clone id or name");
	strcpy(f->id, id);
	strcpy(f->hostname, hostname);
	while (got < CLONEFIX_SEED_MAX) {
		ssize_t n = getrandom(f->seed + got, CLONEFIX_SEED_MAX - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fc_err_set(e, errno, "getrandom");
		got += n;
	}
	f->seed_len = CLONEFIX_SEED_MAX;
	if (clock_gettime(CLOCK_REALTIME, &f->realtime) < 0)
		return fc_err_set(e, errno, "clock_gettime");
	return 0;
}

char *clonefix_encode(const struct clonefix *f)
{
	char hex[2 * CLONEFIX_SEED_MAX + 1];
	_cleanup_json_ json_t *j = NULL;
	char *s;

	for (size_t i = 0; i < f->seed_len && i < CLONEFIX_SEED_MAX; i++)
		snprintf(hex + 2 * i, 3, "%02x", f->seed[i]);
	hex[2 * (f->seed_len < CLONEFIX_SEED_MAX ? f->seed_len : CLONEFIX_SEED_MAX)] = '\0';
	j = json_pack("{s:i, s:s, s:s, s:s, s:{s:I, s:I}}", "version", CLONEFIX_VERSION, "id",
		      f->id, "hostname", f->hostname, "seed", hex, "realtime", "sec",
		      (json_int_t)f->realtime.tv_sec, "nsec", (json_int_t)f->realtime.tv_nsec);
	if (!j || !(s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)))
		abort();
	return s;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The payload as an object of exactly the @nkeys fields in @keys, all
 * present, and a "version" of CLONEFIX_VERSION. New reference or NULL. */
static json_t *parse_object(const char *buf, size_t len, const char *what,
			    const char *const *keys, size_t nkeys, struct fc_err *e)
{
	_cleanup_json_ json_t *j = NULL;
	long long version = 0;
	const char *k;
	json_t *v;

	if (len > CLONEFIX_MAX)
		return fc_err_say(e, EMSGSIZE, "%s of %zu bytes (at most %d)", what, len,
				  CLONEFIX_MAX), NULL;
	j = json_parse(buf, len, e);
	if (!j)
		return fc_err_wrap(e, "%s", what), NULL;
	if (!json_is_object(j))
		return fc_err_say(e, EINVAL, "%s is not a JSON object", what), NULL;
	json_object_foreach(j, k, v) {
		size_t i;

		for (i = 0; i < nkeys && strcmp(k, keys[i]); i++)
			;
		if (i == nkeys) {
			/* (the guest may send this: cleaned before it is shown) */
			_cleanup_free_ char *name = text_clean(k, strlen(k), 32, false);

			fc_err_say(e, EINVAL, "%s: unknown field '%s'", what, name);
			return NULL;
		}
	}
	for (size_t i = 0; i < nkeys; i++)
		if (!json_object_get(j, keys[i]))
			return fc_err_say(e, EINVAL, "%s: missing '%s'", what, keys[i]), NULL;
	if (json_int(j, "version", 0, 1000000, &version, e) != 0 || version != CLONEFIX_VERSION)
		return fc_err_say(e, EPROTO, "%s: version must be %d", what, CLONEFIX_VERSION),
		       NULL;
	return steal_ptr(&j);
}

/* A name field that is a valid fcvm name, copied into @out. */
static int name_field(json_t *j, const char *key, const char *what, char *out, struct fc_err *e)
{
	const char *s = json_str(j, key);

	if (!s || strlen(s) != json_string_length(json_object_get(j, key)) || !fc_valid_name(s))
		return fc_err_say(e, EINVAL, "%s: '%s' must be 1-%d letters, digits, '_', '.', '-'",
				  what, key, CLONEFIX_NAME_MAX);
	strcpy(out, s);
	return 0;
}

int clonefix_parse(const char *buf, size_t len, struct clonefix *f, struct fc_err *e)
{
	static const char *const keys[] = { "version", "id", "hostname", "seed", "realtime" };
	static const char *const tkeys[] = { "sec", "nsec" };
	static const char what[] = "clone fix-up";
	_cleanup_json_ json_t *j = parse_object(buf, len, what, keys, ARRAY_SIZE(keys), e);
	json_t *rt;
	const char *seed, *k;
	json_t *v;
	long long sec = 0, nsec = 0;
	size_t n;

	memset(f, 0, sizeof(*f));
	if (!j)
		return -1;
	if (name_field(j, "id", what, f->id, e) < 0 ||
	    name_field(j, "hostname", what, f->hostname, e) < 0)
		return -1;
	seed = json_str(j, "seed");
	n = seed ? strlen(seed) : 0;
	if (!seed || n % 2 || n < 2 * CLONEFIX_SEED_MIN || n > 2 * CLONEFIX_SEED_MAX)
		return fc_err_say(e, EINVAL, "%s: 'seed' must be %d-%d bytes as hex digits", what,
				  CLONEFIX_SEED_MIN, CLONEFIX_SEED_MAX);
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(seed[i]), lo = hexval(seed[i + 1]);

		if (hi < 0 || lo < 0)
			return fc_err_say(e, EINVAL, "%s: 'seed' has a non-hex digit", what);
		f->seed[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	f->seed_len = n / 2;
	rt = json_object_get(j, "realtime");
	if (!json_is_object(rt) || json_object_size(rt) != 2)
		return fc_err_say(e, EINVAL, "%s: 'realtime' must be {\"sec\":S,\"nsec\":N}", what);
	json_object_foreach(rt, k, v)
		if (strcmp(k, tkeys[0]) && strcmp(k, tkeys[1]))
			return fc_err_say(e, EINVAL, "%s: 'realtime' must be {\"sec\":S,\"nsec\":N}",
					  what);
	if (json_int(rt, "sec", REALTIME_MIN, REALTIME_MAX, &sec, e) != 0 ||
	    json_int(rt, "nsec", 0, 999999999, &nsec, e) != 0)
		return fc_err_say(e, EINVAL, "%s: 'realtime' out of range (sec %lld-%lld, nsec "
				  "0-999999999)", what, REALTIME_MIN, REALTIME_MAX);
	f->realtime.tv_sec = (time_t)sec;
	f->realtime.tv_nsec = (long)nsec;
	return 0;
}

char *clonefix_done_encode(const struct clonefix_done *d)
{
	_cleanup_json_ json_t *j = json_pack("{s:i, s:s, s:I, s:b, s:I}", "version",
					     CLONEFIX_VERSION, "hostname", d->hostname,
					     "containers", (json_int_t)d->containers, "reseeded",
					     d->reseeded, "announced", (json_int_t)d->announced);
	char *s;

	if (!j || !(s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)))
		abort();
	return s;
}

int clonefix_done_parse(const char *buf, size_t len, struct clonefix_done *d, struct fc_err *e)
{
	static const char *const keys[] = { "version", "hostname", "containers", "reseeded",
					    "announced" };
	static const char what[] = "clone fix-up answer";
	_cleanup_json_ json_t *j = parse_object(buf, len, what, keys, ARRAY_SIZE(keys), e);

	memset(d, 0, sizeof(*d));
	if (!j)
		return -1;
	if (name_field(j, "hostname", what, d->hostname, e) < 0)
		return -1;
	if (json_int(j, "containers", 0, 1000000, &d->containers, e) != 0 ||
	    json_int(j, "announced", 0, 1000000, &d->announced, e) != 0)
		return fc_err_say(e, EINVAL, "%s: 'containers' and 'announced' must be counts", what);
	if (!json_is_boolean(json_object_get(j, "reseeded")))
		return fc_err_say(e, EINVAL, "%s: 'reseeded' must be true or false", what);
	d->reseeded = json_is_true(json_object_get(j, "reseeded"));
	return 0;
}
