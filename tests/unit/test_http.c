/* test_http - the API server's HTTP parser: well-formed requests, partial
 * reads, pipelining, and malformed input that must be refused with the
 * right status rather than crash or be misread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "util.h"

#include "check.h"

static ssize_t parse(const char *s, struct http_request *r, int *status)
{
	struct fc_err e;

	return http_parse_request(s, strlen(s), r, status, &e);
}

/* Malformed input: -1 with @want as the status to answer. */
static void refused(const char *s, int want, const char *what)
{
	struct http_request r;
	int status;
	ssize_t n = parse(s, &r, &status);
	char msg[256];

	snprintf(msg, sizeof(msg), "%s -> %d", what, want);
	CHECK(n == -1 && status == want, msg);
}

static void test_good(void)
{
	struct http_request r;
	int status;
	const char *put = "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\n"
			  "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
			  "{\"smt\":false}";
	ssize_t n;

	n = parse("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", &r, &status);
	CHECK(n == 35 && !strcmp(r.method, "GET") && !strcmp(r.target, "/") &&
	      r.keep_alive && r.body_len == 0, "simple GET parsed, keep-alive by default");

	n = parse(put, &r, &status);
	CHECK(n == (ssize_t)strlen(put) && r.body_len == 13 && !memcmp(r.body, "{\"smt\":false}", 13),
	      "PUT with body parsed");

	n = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r, &status);
	CHECK(n > 0 && !r.keep_alive, "Connection: close ends keep-alive");
	n = parse("GET / HTTP/1.0\r\n\r\n", &r, &status);
	CHECK(n > 0 && !r.keep_alive, "HTTP/1.0 closes by default");
	n = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r, &status);
	CHECK(n > 0 && r.keep_alive, "HTTP/1.0 with keep-alive stays open");
	n = parse("GET / HTTP/1.1\r\ncontent-length:   0  \r\n\r\n", &r, &status);
	CHECK(n > 0 && r.body_len == 0, "header names case-insensitive, value whitespace trimmed");
	n = parse("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &r, &status);
	CHECK(n > 0 && !r.keep_alive, "close found in a Connection token list");
}

static void test_partial_and_pipelined(void)
{
	const char *full = "PUT /vm HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"state\":\"Paused\"}"
			   "GET /version HTTP/1.1\r\n\r\n";
	size_t first = strlen(full) - strlen("GET /version HTTP/1.1\r\n\r\n");
	struct http_request r;
	struct fc_err e;
	int status, all_partial_ok = 1;
	ssize_t n;

	/* every prefix of the first request is "need more", never an error */
	for (size_t i = 0; i < first; i++) {
		n = http_parse_request(full, i, &r, &status, &e);
		if (n != 0)
			all_partial_ok = 0;
	}
	CHECK(all_partial_ok, "every prefix of a request asks for more bytes");
	n = http_parse_request(full, first - 1, &r, &status, &e);
	CHECK(n == 0 && r.head_len != 0, "head complete, body incomplete: head_len set");

	n = http_parse_request(full, strlen(full), &r, &status, &e);
	CHECK(n == (ssize_t)first && !strcmp(r.target, "/vm"), "pipelined: first request only");
	n = http_parse_request(full + first, strlen(full) - first, &r, &status, &e);
	CHECK(n > 0 && !strcmp(r.target, "/version"), "pipelined: second request follows");

	n = parse("PUT /vm HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", &r, &status);
	CHECK(n == 0 && r.expect_continue, "Expect: 100-continue reported while waiting for body");
}

static void test_malformed(void)
{
	char big[HTTP_MAX_HEAD + 64];
	char target[HTTP_MAX_TARGET + 64];
	char *s;

	refused("\r\n\r\n", 400, "empty request line");
	refused("GET\r\n\r\n", 400, "request line without target");
	refused("GET /\r\n\r\n", 400, "request line without version");
	refused("GET  / HTTP/1.1\r\n\r\n", 400, "double space in request line");
	refused("GET / HTTP/1.1 x\r\n\r\n", 400, "trailing garbage after version");
	refused("GET x HTTP/1.1\r\n\r\n", 400, "target not an absolute path");
	refused("GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0");
	refused("GET / HTTP/1.9\r\n\r\n", 505, "HTTP/1.9");
	refused("GET / HTTQ/1.1\r\n\r\n", 400, "bad protocol name");
	refused("G(T / HTTP/1.1\r\n\r\n", 400, "separator in method");
	refused("VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", 400, "method too long");
	refused("GET / HTTP/1.1\nHost: x\n\n", 400, "bare LF line endings");
	refused("GET / HTTP/1.1\rHost: x\r\n\r\n", 400, "bare CR");
	refused("GET / HTTP/1.1\r\nHost x\r\n\r\n", 400, "header without colon");
	refused("GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "empty header name");
	refused("GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400, "space in header name");
	refused("GET / HTTP/1.1\r\nHost: x\r\n  folded\r\n\r\n", 400, "obsolete line folding");
	refused("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400, "control character in header value");
	refused("PUT /vm HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "negative Content-Length");
	refused("PUT /vm HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "non-numeric Content-Length");
	refused("PUT /vm HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
		"Content-Length overflow");
	refused("PUT /vm HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400,
		"conflicting Content-Length");
	refused("PUT /vm HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na", 400, "Content-Length list");
	refused("PUT /vm HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413, "body over 64 KiB");
	refused("PUT /vm HTTP/1.1\r\n\r\n", 411, "PUT without Content-Length");
	refused("PATCH /vm HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		411, "chunked transfer encoding");
	refused("PUT /vm HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417,
		"unknown expectation");

	{
		struct http_request r;
		struct fc_err e;
		int status;
		const char nul[] = "GET /\0 HTTP/1.1\r\n\r\n";

		CHECK(http_parse_request(nul, sizeof(nul) - 1, &r, &status, &e) == -1 && status == 400,
		      "NUL byte in head -> 400");
	}

	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	big[sizeof(big) - 1] = '\0';
	refused(big, 431, "head over 8 KiB without end");

	target[0] = '/';
	memset(target + 1, 'a', sizeof(target) - 2);
	target[sizeof(target) - 1] = '\0';
	s = xasprintf("GET %s HTTP/1.1\r\n\r\n", target);
	refused(s, 414, "target over 1 KiB");
	free(s);
}

static void test_format(void)
{
	size_t len;
	char *r = http_format_response(204, NULL, true, &len);

	CHECK(!strncmp(r, "HTTP/1.1 204 No Content\r\n", 25) && !strstr(r, "Content-Length") &&
	      len >= 4 && !strcmp(r + len - 4, "\r\n\r\n"), "204 has no body and no Content-Length");
	free(r);
	r = http_format_response(400, "{\"fault_message\":\"x\"}", false, &len);
	CHECK(strstr(r, "Content-Length: 21\r\n") && strstr(r, "Connection: close\r\n") &&
	      !strcmp(r + len - 21, "{\"fault_message\":\"x\"}"), "400 carries its JSON body");
	free(r);
}

int main(void)
{
	test_good();
	test_partial_and_pipelined();
	test_malformed();
	test_format();
	return check_done();
}
