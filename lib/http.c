/* http.c - see http.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "util.h"

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static int bad(int *status, int code, struct fc_err *e, const char *what)
{
	*status = code;
	return fc_err_set(e, 0, "%s", what);
}

/* Does the comma-separated header value @v (length @n) list @tok? */
static bool has_token(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);

	while (n) {
		size_t i = 0, j;

		while (i < n && v[i] != ',')
			i++;
		j = 0;
		while (j < i && (v[j] == ' ' || v[j] == '\t'))
			j++;
		size_t k = i;
		while (k > j && (v[k - 1] == ' ' || v[k - 1] == '\t'))
			k--;
		if (k - j == tl && !strncasecmp(v + j, tok, tl))
			return true;
		if (i == n)
			break;
		v += i + 1;
		n -= i + 1;
	}
	return false;
}

static int parse_request_line(const char *p, size_t n, struct http_request *req,
			      int *status, struct fc_err *e)
{
	const char *sp1, *sp2, *ver;
	size_t ml, tl, vl;

	sp1 = memchr(p, ' ', n);
	if (!sp1)
		return bad(status, 400, e, "malformed request line");
	ml = sp1 - p;
	if (ml == 0 || ml > HTTP_MAX_METHOD)
		return bad(status, 400, e, "malformed request method");
	for (size_t i = 0; i < ml; i++)
		if (!is_tchar((unsigned char)p[i]))
			return bad(status, 400, e, "malformed request method");
	sp2 = memchr(sp1 + 1, ' ', n - ml - 1);
	if (!sp2)
		return bad(status, 400, e, "malformed request line");
	tl = sp2 - sp1 - 1;
	if (tl == 0 || sp1[1] != '/')
		return bad(status, 400, e, "request target must be an absolute path");
	if (tl > HTTP_MAX_TARGET)
		return bad(status, 414, e, "request target too long");
	for (size_t i = 0; i < tl; i++) {
		unsigned char c = sp1[1 + i];

		if (c <= 0x20 || c >= 0x7f)
			return bad(status, 400, e, "invalid character in request target");
	}
	ver = sp2 + 1;
	vl = p + n - ver;
	if (vl != 8 || memcmp(ver, "HTTP/", 5) || ver[6] != '.' ||
	    ver[5] < '0' || ver[5] > '9' || ver[7] < '0' || ver[7] > '9')
		return bad(status, 400, e, "malformed HTTP version");
	if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1'))
		return bad(status, 505, e, "only HTTP/1.0 and HTTP/1.1 are supported");
	memcpy(req->method, p, ml);
	req->method[ml] = '\0';
	memcpy(req->target, sp1 + 1, tl);
	req->target[tl] = '\0';
	req->minor = ver[7] - '0';
	req->keep_alive = req->minor == 1;
	return 0;
}

ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req,
			   int *status, struct fc_err *e)
{
	size_t scan = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD, head = 0, pos, line_end;
	bool have_cl = false, conn_close = false, conn_keep = false;
	unsigned long long cl = 0;

	memset(req, 0, sizeof(*req));
	*status = 0;
	/* Find the blank line ending the head; reject what can never become one. */
	for (size_t i = 0; i < scan; i++) {
		if (buf[i] == '\0')
			return bad(status, 400, e, "NUL byte in request head");
		if (buf[i] == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return bad(status, 400, e, "bare LF in request head (lines must end with CRLF)");
			if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
				head = i + 1;
				break;
			}
		} else if (i > 0 && buf[i - 1] == '\r') {
			return bad(status, 400, e, "bare CR in request head");
		}
	}
	if (!head) {
		if (len >= HTTP_MAX_HEAD)
			return bad(status, 431, e, "request head larger than 8 KiB");
		return 0;
	}

	line_end = (const char *)memchr(buf, '\r', head) - buf;
	if (parse_request_line(buf, line_end, req, status, e) < 0)
		return -1;

	for (pos = line_end + 2; pos < head - 2; pos = line_end + 2) {
		const char *l = buf + pos, *colon, *v;
		size_t ll, nl, vl;

		line_end = (const char *)memchr(l, '\r', head - pos) - buf;
		ll = line_end - pos;
		if (l[0] == ' ' || l[0] == '\t')
			return bad(status, 400, e, "obsolete header line folding is not supported");
		colon = memchr(l, ':', ll);
		if (!colon || colon == l)
			return bad(status, 400, e, "malformed header line");
		nl = colon - l;
		for (size_t i = 0; i < nl; i++)
			if (!is_tchar((unsigned char)l[i]))
				return bad(status, 400, e, "invalid character in header name");
		v = colon + 1;
		vl = l + ll - v;
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		for (size_t i = 0; i < vl; i++) {
			unsigned char c = v[i];

			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return bad(status, 400, e, "invalid character in header value");
		}
		if (nl == 14 && !strncasecmp(l, "Content-Length", nl)) {
			unsigned long long n = 0;

			if (vl == 0 || vl > 19)
				return bad(status, 400, e, "invalid Content-Length");
			for (size_t i = 0; i < vl; i++) {
				if (v[i] < '0' || v[i] > '9')
					return bad(status, 400, e, "invalid Content-Length");
				n = n * 10 + (v[i] - '0');
			}
			if (have_cl && n != cl)
				return bad(status, 400, e, "conflicting Content-Length headers");
			have_cl = true;
			cl = n;
		} else if (nl == 17 && !strncasecmp(l, "Transfer-Encoding", nl)) {
			return bad(status, 411, e,
				   "Transfer-Encoding (chunked) is not supported: send Content-Length");
		} else if (nl == 10 && !strncasecmp(l, "Connection", nl)) {
			conn_close |= has_token(v, vl, "close");
			conn_keep |= has_token(v, vl, "keep-alive");
		} else if (nl == 6 && !strncasecmp(l, "Expect", nl)) {
			if (vl != 12 || strncasecmp(v, "100-continue", 12))
				return bad(status, 417, e, "unsupported Expect header");
			req->expect_continue = true;
		}
	}
	if (conn_close)
		req->keep_alive = false;
	else if (conn_keep)
		req->keep_alive = true;
	if (!have_cl && (!strcmp(req->method, "PUT") || !strcmp(req->method, "PATCH") ||
			 !strcmp(req->method, "POST")))
		return bad(status, 411, e, "Content-Length is required for a request body");
	if (cl > HTTP_MAX_BODY)
		return bad(status, 413, e, "request body larger than 64 KiB");
	req->head_len = head;
	if (len - head < cl)
		return 0;
	req->body = buf + head;
	req->body_len = cl;
	return head + cl;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

char *http_format_response(int status, const char *json, bool keep_alive, size_t *len)
{
	char *out;

	if (status < 200)
		out = xasprintf("HTTP/1.1 %d %s\r\n\r\n", status, http_reason(status));
	else if (status == 204 || !json)
		out = xasprintf("HTTP/1.1 %d %s\r\nServer: Firecracker API\r\n"
				"Connection: %s\r\n%s\r\n",
				status, http_reason(status), keep_alive ? "keep-alive" : "close",
				status == 204 ? "" : "Content-Length: 0\r\n");
	else
		out = xasprintf("HTTP/1.1 %d %s\r\nServer: Firecracker API\r\n"
				"Connection: %s\r\nContent-Type: application/json\r\n"
				"Content-Length: %zu\r\n\r\n%s",
				status, http_reason(status), keep_alive ? "keep-alive" : "close",
				strlen(json), json);
	*len = strlen(out);
	return out;
}
