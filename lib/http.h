/* http.h - a small, strict HTTP/1.1 request parser and response formatter
 * for the Firecracker API server (fc-qemu). Untrusted input: everything is
 * bounded, nothing is allocated while parsing.
 *
 * Supported: one request at a time out of a connection buffer (so keep-alive,
 * pipelining and partial reads work: call again with the rest), bodies only
 * with Content-Length. Not supported: chunked or any Transfer-Encoding
 * (answered 400), obsolete header line folding (400), HTTP versions other than
 * 1.0 and 1.1 (505).
 */
#ifndef FC_HTTP_H
#define FC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

#define HTTP_MAX_HEAD	8192	/* request line + headers + blank line */
#define HTTP_MAX_BODY	65536
#define HTTP_MAX_METHOD	15
#define HTTP_MAX_TARGET	1024

struct http_request {
	char method[HTTP_MAX_METHOD + 1];
	char target[HTTP_MAX_TARGET + 1];	/* origin-form, starts with '/' */
	int minor;				/* HTTP/1.<minor>: 0 or 1 */
	bool keep_alive;			/* the connection may carry more */
	bool expect_continue;			/* "Expect: 100-continue" seen */
	size_t head_len;			/* bytes of request line + headers */
	const char *body;			/* points into the caller's buffer */
	size_t body_len;
};

/* Parse the first request in @buf[0..@len).
 * Returns the number of bytes it occupies (> 0) with @req filled (req->body
 * points into @buf); 0 when more bytes are needed (if the head is complete,
 * req->head_len != 0 and req->expect_continue tells whether the client waits
 * for "100 Continue"); -1 when the input is not an acceptable request: then
 * *@status is the HTTP status to answer (400, 411, 413, 431, 505) and @e says
 * why. After -1 the connection cannot be resynchronised: answer and close. */
ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req,
			   int *status, struct fc_err *e);

/* Reason phrase for @status ("Bad Request"); "Unknown" for others. */
const char *http_reason(int status);

/* A complete response: status line, Server, Connection, and for a non-NULL
 * @json body Content-Type and Content-Length. 204 and 1xx never carry a
 * body. Returns a malloc'd buffer (caller frees), its length in *@len. */
char *http_format_response(int status, const char *json, bool keep_alive, size_t *len);

#endif
