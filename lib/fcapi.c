/* fcapi.c - see fcapi.h */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fcapi.h"
#include "json.h"
#include "text.h"
#include "util.h"

#define REPLY_MAX (1024 * 1024)
#define FAULT_MAX 1024	/* bytes of a fault_message worth showing */

struct fcapi {
	CURL *curl;
	char *sock;
	char *buf;
	size_t len;
	int overflow;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct fcapi *a = arg;
	size_t n = size * nmemb;

	/* A VMM reply is small; a huge one is a broken or hostile peer. */
	if (a->len + n > REPLY_MAX) {
		a->overflow = 1;
		return 0;
	}
	a->buf = xrealloc(a->buf, a->len + n + 1);
	memcpy(a->buf + a->len, p, n);
	a->len += n;
	a->buf[a->len] = '\0';
	return n;
}

struct fcapi *fcapi_new(const char *sock)
{
	struct fcapi *a = xcalloc(1, sizeof(*a));

	curl_global_init(CURL_GLOBAL_NOTHING);
	a->curl = curl_easy_init();
	if (!a->curl)
		abort();	/* only fails on out of memory */
	a->sock = xstrdup(sock);
	return a;
}

void fcapi_free(struct fcapi *a)
{
	if (!a)
		return;
	curl_easy_cleanup(a->curl);
	free(a->sock);
	free(a->buf);
	free(a);
}

const char *fcapi_fault(json_t *body)
{
	const char *m = json_is_object(body) ? json_str(body, "fault_message") : NULL;

	return m && strlen(m) < 4096 ? m : NULL;
}

static void trace(const char *method, const char *path, json_t *body)
{
	const char *file = getenv("FCVM_API_TRACE");
	json_t *line;
	char *text;
	FILE *f;

	if (!file || !*file)
		return;
	line = json_pack("{s:s, s:s, s:O?}", "method", method, "path", path, "body", body);
	text = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS);
	f = fopen(file, "ae");
	if (f && text)
		fprintf(f, "%s\n", text);
	if (f)
		fclose(f);
	free(text);
	json_decref(line);
}

int fcapi_call(struct fcapi *a, const char *method, const char *path, json_t *body,
	       json_t **reply, struct fc_err *e)
{
	_cleanup_free_ char *url = xasprintf("http://localhost%s", path);
	_cleanup_free_ char *text = NULL;
	struct curl_slist *hdrs = NULL;
	CURLcode rc;
	long status = 0;
	json_t *j = NULL;
	struct fc_err perr;

	if (reply)
		*reply = NULL;
	trace(method, path, body);
	free(a->buf);
	a->buf = NULL;
	a->len = 0;
	a->overflow = 0;
	curl_easy_reset(a->curl);
	curl_easy_setopt(a->curl, CURLOPT_UNIX_SOCKET_PATH, a->sock);
	curl_easy_setopt(a->curl, CURLOPT_URL, url);
	curl_easy_setopt(a->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			return fc_err_set(e, ENOMEM, "%s %s: serialise body", method, path);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
	}
	curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(a->curl);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		if (a->overflow)
			return fc_err_set(e, EMSGSIZE, "%s %s: reply larger than %d bytes",
					  method, path, REPLY_MAX);
		/* curl's reason is the message; no strerror after it. */
		fc_err_set(e, 0, "%s %s: %s", method, path, curl_easy_strerror(rc));
		e->errnum = rc == CURLE_COULDNT_CONNECT ? ECONNREFUSED : EIO;
		return -1;
	}
	curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
	if (a->len) {
		j = json_parse(a->buf, a->len, &perr);
		if (!j && status >= 200 && status < 300 && reply) {
			*e = perr;
			return fc_err_wrap(e, "%s %s: reply", method, path);
		}
	}
	if (status < 200 || status >= 300) {
		const char *fault = fcapi_fault(j);
		/* The VMM's words reach a terminal: only printable text passes. */
		_cleanup_free_ char *clean = fault ? text_clean(fault, strlen(fault), FAULT_MAX, false)
						   : NULL;

		fc_err_set(e, 0, "%s %s: HTTP %ld: %s", method, path, status,
			   clean ? clean : (a->len ? "(no fault_message in reply)" : "(empty reply)"));
		e->errnum = EPROTO;
		json_decref(j);
		return -1;
	}
	if (reply)
		*reply = j;
	else
		json_decref(j);
	return 0;
}

int fcapi_wait(struct fcapi *a, int timeout_ms, sock_wait_fn give_up, void *arg,
	       struct fc_err *e)
{
	int fd = sock_connect_unix(a->sock, timeout_ms, give_up, arg, e);

	if (fd < 0)
		return fc_err_wrap(e, "API socket did not answer");
	close(fd);
	return fcapi_call(a, "GET", "/", NULL, NULL, e);
}
