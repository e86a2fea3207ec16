/* test_proto - the agent framing (lib/proto): header encode/decode, every
 * kind of bad header, and whole frames over a socketpair including
 * truncated ones and clean EOF.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"
#include "util.h"

#include "check.h"

static void test_header_roundtrip(void)
{
	uint8_t b[PROTO_HDR_LEN];
	struct proto_hdr h = { 0 };
	struct fc_err e;

	proto_encode_hdr(b, MSG_STDOUT, 1234567 % PROTO_MAX_PAYLOAD);
	CHECK(!memcmp(b, "FCV1", 4), "magic is \"FCV1\" on the wire");
	CHECK(b[4] == PROTO_VERSION && b[5] == MSG_STDOUT && !b[6] && !b[7],
	      "version, type, zero flags at bytes 4-7");
	CHECK(proto_decode_hdr(b, &h, &e) == 0 && h.type == MSG_STDOUT &&
		      h.len == 1234567 % PROTO_MAX_PAYLOAD,
	      "decode(encode(h)) == h");
	proto_encode_hdr(b, MSG_HEARTBEAT, 0x01020304 & 0x3ffff);
	CHECK(b[8] == 0x04 && b[9] == 0x03 && b[10] == 0x02 && b[11] == 0,
	      "length is little endian");
	for (unsigned t = 1; t < MSG_TYPE_MAX; t++) {
		proto_encode_hdr(b, t, 0);
		if (proto_decode_hdr(b, &h, &e) < 0 || h.type != t) {
			CHECK(0, "every defined type decodes");
			return;
		}
	}
	CHECK(1, "every defined type decodes");
	proto_encode_hdr(b, MSG_PLAN, PROTO_MAX_PAYLOAD);
	CHECK(proto_decode_hdr(b, &h, &e) == 0, "a payload of exactly the limit is accepted");
	CHECK(!strcmp(proto_type_name(MSG_STDERR), "stderr") &&
		      !strcmp(proto_type_name(0), "unknown") &&
		      !strcmp(proto_type_name(MSG_TYPE_MAX), "unknown"),
	      "type names, 'unknown' out of range");
	CHECK(MSG_STATUS_REQ == 12 && MSG_STATUS == 13 &&
		      !strcmp(proto_type_name(MSG_STATUS_REQ), "status-request") &&
		      !strcmp(proto_type_name(MSG_STATUS), "status"),
	      "status request and status are types 12 and 13 (appended after signal)");
	CHECK(MSG_EXEC == 14 && MSG_WINSIZE == 15 &&
		      !strcmp(proto_type_name(MSG_EXEC), "exec") &&
		      !strcmp(proto_type_name(MSG_WINSIZE), "winsize"),
	      "exec and winsize are types 14 and 15 (appended after status)");
	CHECK(MSG_CLONE == 16 && MSG_CLONE_DONE == 17 &&
		      !strcmp(proto_type_name(MSG_CLONE), "clone") &&
		      !strcmp(proto_type_name(MSG_CLONE_DONE), "clone-done"),
	      "clone and clone-done are types 16 and 17 (appended after winsize)");
	CHECK(MSG_PREPARE == 18 && MSG_PREPARED == 19 && MSG_TYPE_MAX == 20 &&
		      !strcmp(proto_type_name(MSG_PREPARE), "prepare") &&
		      !strcmp(proto_type_name(MSG_PREPARED), "prepared"),
	      "prepare and prepared are types 18 and 19 (appended after clone-done)");
}

static void bad(const uint8_t *b, const char *needle, const char *what)
{
	struct proto_hdr h = { 0 };
	struct fc_err e = { 0 };
	char msg[256];
	int r = proto_decode_hdr(b, &h, &e);

	snprintf(msg, sizeof(msg), "%s is refused (%s)", what, needle);
	CHECK(r == -1 && e.errnum == EPROTO && strstr(e.msg, needle), msg);
}

static void test_bad_headers(void)
{
	uint8_t b[PROTO_HDR_LEN];

	proto_encode_hdr(b, MSG_STDOUT, 10);
	b[0] = 'X';
	bad(b, "magic", "bad magic");
	proto_encode_hdr(b, MSG_STDOUT, 10);
	b[4] = 2;
	bad(b, "version 2", "a newer version");
	b[4] = 0;
	bad(b, "version 0", "version 0");
	proto_encode_hdr(b, 0, 10);
	bad(b, "type 0", "type 0");
	proto_encode_hdr(b, MSG_TYPE_MAX, 10);
	bad(b, "unknown message type", "the first undefined type");
	proto_encode_hdr(b, 255, 10);
	bad(b, "type 255", "type 255");
	proto_encode_hdr(b, MSG_STDOUT, 10);
	b[6] = 1;
	bad(b, "flags", "flags low byte set");
	proto_encode_hdr(b, MSG_STDOUT, 10);
	b[7] = 0x80;
	bad(b, "flags", "flags high byte set");
	proto_encode_hdr(b, MSG_PLAN, PROTO_MAX_PAYLOAD + 1);
	bad(b, "exceeds", "one byte over the limit");
	proto_encode_hdr(b, MSG_PLAN, 0xffffffffu);
	bad(b, "exceeds", "a 4 GiB length");
}

struct writer {
	int fd;
	const uint8_t *buf;
	size_t len;
};

/* Big frames exceed the socket buffer: write from a thread. */
static void *write_thread(void *arg)
{
	struct writer *w = arg;

	if (write_full(w->fd, w->buf, w->len) < 0)
		perror("write");
	close(w->fd);
	return NULL;
}

static void test_frames(void)
{
	int sv[2];
	uint8_t *big = xmalloc(PROTO_MAX_PAYLOAD), *p = NULL;
	struct proto_hdr h;
	struct fc_err e;
	pthread_t th;
	int r;

	for (size_t i = 0; i < PROTO_MAX_PAYLOAD; i++)
		big[i] = (uint8_t)(i * 7 + (i >> 9));
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	CHECK(proto_send_str(sv[0], MSG_HELLO, "{\"version\":1}", &e) == 0, "send a JSON frame");
	r = proto_recv(sv[1], &h, &p, &e);
	CHECK(r == 1 && h.type == MSG_HELLO && h.len == 13 && !strcmp((char *)p, "{\"version\":1}"),
	      "receive it, NUL-terminated");
	free(p);
	CHECK(proto_send(sv[0], MSG_HEARTBEAT, NULL, 0, &e) == 0, "send an empty frame");
	r = proto_recv(sv[1], &h, &p, &e);
	CHECK(r == 1 && h.type == MSG_HEARTBEAT && h.len == 0 && p && !p[0],
	      "receive an empty frame");
	free(p);
	CHECK(proto_send(sv[0], MSG_STDOUT, big, PROTO_MAX_PAYLOAD + 1, &e) == -1 &&
		      e.errnum == EMSGSIZE,
	      "send refuses an oversized payload");
	{
		uint8_t bin[] = { 0, 1, 0xff, '\n', 0, 0x80 };

		proto_send(sv[0], MSG_STDERR, bin, sizeof(bin), &e);
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == 1 && h.len == sizeof(bin) && !memcmp(p, bin, sizeof(bin)),
		      "binary payload with NUL bytes arrives byte-exact");
		free(p);
	}
	{
		/* Full-size frame from a thread, received in one call. */
		size_t tot = PROTO_HDR_LEN + PROTO_MAX_PAYLOAD;
		uint8_t *wire = xmalloc(tot);
		struct writer w = { .fd = sv[0], .buf = wire, .len = tot };

		proto_encode_hdr(wire, MSG_STDOUT, PROTO_MAX_PAYLOAD);
		memcpy(wire + PROTO_HDR_LEN, big, PROTO_MAX_PAYLOAD);
		pthread_create(&th, NULL, write_thread, &w);
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == 1 && h.len == PROTO_MAX_PAYLOAD && !memcmp(p, big, PROTO_MAX_PAYLOAD),
		      "a maximum-size frame arrives intact");
		free(p);
		pthread_join(th, NULL);
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == 0 && p == NULL, "clean EOF between frames returns 0");
		free(wire);
		close(sv[1]);
	}

	/* Truncated header. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	{
		uint8_t hdr[PROTO_HDR_LEN];

		proto_encode_hdr(hdr, MSG_STDOUT, 10);
		write_full(sv[0], hdr, 5);
		close(sv[0]);
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == -1 && e.errnum == EPROTO && strstr(e.msg, "header"),
		      "EOF inside a header is an error");
		close(sv[1]);
	}
	/* Truncated payload. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	{
		uint8_t hdr[PROTO_HDR_LEN];

		proto_encode_hdr(hdr, MSG_STDOUT, 100);
		write_full(sv[0], hdr, sizeof(hdr));
		write_full(sv[0], big, 99);
		close(sv[0]);
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == -1 && e.errnum == EPROTO && strstr(e.msg, "stdout frame") && !p,
		      "EOF inside a payload is an error, nothing returned");
		close(sv[1]);
	}
	/* A bad header on the wire stops the reader before it allocates. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	{
		uint8_t hdr[PROTO_HDR_LEN];

		proto_encode_hdr(hdr, MSG_STDOUT, 0x7fffffff);
		write_full(sv[0], hdr, sizeof(hdr));
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == -1 && e.errnum == EPROTO && !p, "oversized length on the wire is refused");
		proto_encode_hdr(hdr, MSG_STDOUT, 4);
		hdr[0] ^= 1;
		write_full(sv[0], hdr, sizeof(hdr));
		r = proto_recv(sv[1], &h, &p, &e);
		CHECK(r == -1 && strstr(e.msg, "magic"), "bad magic on the wire is refused");
		close(sv[0]);
		close(sv[1]);
	}
	/* Reading from a peer that reset. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	close(sv[0]);
	CHECK(proto_send(sv[1], MSG_STDOUT, "x", 1, &e) == -1 && e.errnum == EPIPE,
	      "send to a closed peer fails with EPIPE");
	close(sv[1]);
	free(big);
}

/* proto_rx_read on a non-blocking socket: frames that arrive a byte at a
 * time, several frames in one read, and every error. */
static void test_rx(void)
{
	struct proto_rx rx = { 0 };
	uint8_t wire[3 * PROTO_HDR_LEN + 10];
	struct fc_err e;
	size_t n = 0;
	int sv[2], r;

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
	CHECK(proto_rx_read(sv[1], &rx, &e) == PROTO_RX_AGAIN && !proto_rx_partial(&rx),
	      "rx: nothing there yet is AGAIN");
	proto_encode_hdr(wire, MSG_STDOUT, 7);
	memcpy(wire + PROTO_HDR_LEN, "abcdefg", 7);
	n = PROTO_HDR_LEN + 7;
	proto_encode_hdr(wire + n, MSG_STATUS_REQ, 0);
	n += PROTO_HDR_LEN;
	proto_encode_hdr(wire + n, MSG_SIGNAL, 3);
	memcpy(wire + n + PROTO_HDR_LEN, "xyz", 3);
	n += PROTO_HDR_LEN + 3;
	r = PROTO_RX_AGAIN;
	/* The first frame, one byte at a time. */
	for (size_t i = 0; i < PROTO_HDR_LEN + 7; i++) {
		write_full(sv[0], wire + i, 1);
		r = proto_rx_read(sv[1], &rx, &e);
		if (i + 1 < PROTO_HDR_LEN + 7 && (r != PROTO_RX_AGAIN || !proto_rx_partial(&rx)))
			break;
	}
	CHECK(r == PROTO_RX_FRAME && rx.h.type == MSG_STDOUT && rx.h.len == 7 &&
		      !strcmp((char *)rx.payload, "abcdefg"),
	      "rx: a frame arriving byte by byte, complete only at its last byte");
	/* The next two in one write. */
	write_full(sv[0], wire + PROTO_HDR_LEN + 7, n - PROTO_HDR_LEN - 7);
	r = proto_rx_read(sv[1], &rx, &e);
	CHECK(r == PROTO_RX_FRAME && rx.h.type == MSG_STATUS_REQ && rx.h.len == 0 && !rx.payload[0],
	      "rx: an empty frame");
	r = proto_rx_read(sv[1], &rx, &e);
	CHECK(r == PROTO_RX_FRAME && rx.h.type == MSG_SIGNAL && !strcmp((char *)rx.payload, "xyz"),
	      "rx: the frame after it, from the same read buffer");
	{
		uint8_t *taken = steal_ptr(&rx.payload);

		CHECK(taken && !strcmp((char *)taken, "xyz"), "rx: the payload can be taken");
		free(taken);
	}
	CHECK(proto_rx_read(sv[1], &rx, &e) == PROTO_RX_AGAIN && !proto_rx_partial(&rx),
	      "rx: then AGAIN, nothing pending");
	close(sv[0]);
	CHECK(proto_rx_read(sv[1], &rx, &e) == PROTO_RX_EOF, "rx: clean EOF between frames");
	close(sv[1]);
	proto_rx_reset(&rx);

	/* EOF inside a frame, a bad header. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
	write_full(sv[0], wire, PROTO_HDR_LEN + 3);
	CHECK(proto_rx_read(sv[1], &rx, &e) == PROTO_RX_AGAIN && proto_rx_partial(&rx),
	      "rx: a partial frame is pending");
	close(sv[0]);
	r = proto_rx_read(sv[1], &rx, &e);
	CHECK(r == PROTO_RX_ERROR && e.errnum == EPROTO && strstr(e.msg, "inside a frame"),
	      "rx: EOF inside a payload is an error");
	close(sv[1]);
	proto_rx_reset(&rx);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
	proto_encode_hdr(wire, MSG_STDOUT, PROTO_MAX_PAYLOAD + 1);
	write_full(sv[0], wire, PROTO_HDR_LEN);
	r = proto_rx_read(sv[1], &rx, &e);
	CHECK(r == PROTO_RX_ERROR && e.errnum == EPROTO && !rx.payload,
	      "rx: an oversized length is refused before anything is allocated");
	proto_rx_reset(&rx);
	write_full(sv[0], "FCV1", 4);
	close(sv[0]);
	r = proto_rx_read(sv[1], &rx, &e);
	CHECK(r == PROTO_RX_ERROR && strstr(e.msg, "header"), "rx: EOF inside a header is an error");
	close(sv[1]);
	proto_rx_reset(&rx);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_header_roundtrip();
	test_bad_headers();
	test_frames();
	test_rx();
	return check_done();
}
