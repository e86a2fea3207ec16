/* proto.c - see proto.h */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto.h"
#include "util.h"

static const char *const type_names[MSG_TYPE_MAX] = {
	[MSG_HELLO] = "hello",	     [MSG_PLAN] = "plan",	    [MSG_STARTED] = "started",
	[MSG_STDOUT] = "stdout",     [MSG_STDERR] = "stderr",	    [MSG_STDIN] = "stdin",
	[MSG_STDIN_EOF] = "stdin-eof", [MSG_EXIT] = "exit",	    [MSG_ERROR] = "error",
	[MSG_HEARTBEAT] = "heartbeat", [MSG_SIGNAL] = "signal",
	[MSG_STATUS_REQ] = "status-request", [MSG_STATUS] = "status",
	[MSG_EXEC] = "exec",	     [MSG_WINSIZE] = "winsize",
	[MSG_CLONE] = "clone",	     [MSG_CLONE_DONE] = "clone-done",
	[MSG_PREPARE] = "prepare",   [MSG_PREPARED] = "prepared",
};

const char *proto_type_name(unsigned type)
{
	return type > 0 && type < MSG_TYPE_MAX ? type_names[type] : "unknown";
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void proto_encode_hdr(uint8_t out[PROTO_HDR_LEN], uint8_t type, uint32_t len)
{
	put_le32(out, PROTO_MAGIC);
	out[4] = PROTO_VERSION;
	out[5] = type;
	out[6] = out[7] = 0;
	put_le32(out + 8, len);
}

int proto_decode_hdr(const uint8_t in[PROTO_HDR_LEN], struct proto_hdr *h,
		     struct fc_err *e)
{
	uint32_t len = get_le32(in + 8);

	if (get_le32(in) != PROTO_MAGIC)
		return fc_err_set(e, EPROTO, "bad frame magic");
	if (in[4] != PROTO_VERSION)
		return fc_err_set(e, EPROTO, "unsupported protocol version %u (want %u)",
				  in[4], PROTO_VERSION);
	if (in[5] == 0 || in[5] >= MSG_TYPE_MAX)
		return fc_err_set(e, EPROTO, "unknown message type %u", in[5]);
	if (in[6] || in[7])
		return fc_err_set(e, EPROTO, "non-zero frame flags");
	if (len > PROTO_MAX_PAYLOAD)
		return fc_err_set(e, EPROTO, "%s frame of %u bytes exceeds the %u byte limit",
				  proto_type_name(in[5]), len, PROTO_MAX_PAYLOAD);
	h->type = in[5];
	h->len = len;
	return 0;
}

int proto_send(int fd, uint8_t type, const void *buf, uint32_t len, struct fc_err *e)
{
	uint8_t hdr[PROTO_HDR_LEN];

	if (len > PROTO_MAX_PAYLOAD)
		return fc_err_set(e, EMSGSIZE, "send %s frame", proto_type_name(type));
	proto_encode_hdr(hdr, type, len);
	if (write_full(fd, hdr, sizeof(hdr)) < 0 || (len && write_full(fd, buf, len) < 0))
		return fc_err_set(e, errno, "send %s frame", proto_type_name(type));
	return 0;
}

int proto_send_str(int fd, uint8_t type, const char *text, struct fc_err *e)
{
	return proto_send(fd, type, text, strlen(text), e);
}

int proto_recv(int fd, struct proto_hdr *h, uint8_t **payload, struct fc_err *e)
{
	uint8_t hdr[PROTO_HDR_LEN];
	_cleanup_free_ uint8_t *buf = NULL;
	ssize_t n;

	*payload = NULL;
	n = read_full(fd, hdr, sizeof(hdr));
	if (n == 0)
		return 0;
	if (n < 0)
		return fc_err_set(e, errno, "receive frame");
	if (n != sizeof(hdr))
		return fc_err_set(e, EPROTO, "connection closed inside a frame header");
	if (proto_decode_hdr(hdr, h, e) < 0)
		return -1;
	buf = xmalloc(h->len + 1);
	n = read_full(fd, buf, h->len);
	if (n < 0)
		return fc_err_set(e, errno, "receive %s frame", proto_type_name(h->type));
	if ((uint32_t)n != h->len)
		return fc_err_set(e, EPROTO, "connection closed inside a %s frame",
				  proto_type_name(h->type));
	buf[h->len] = '\0';
	*payload = steal_ptr(&buf);
	return 1;
}

void proto_rx_reset(struct proto_rx *rx)
{
	free(rx->payload);
	memset(rx, 0, sizeof(*rx));
}

enum proto_rx_result proto_rx_read(int fd, struct proto_rx *rx, struct fc_err *e)
{
	if (rx->got >= PROTO_HDR_LEN + (size_t)rx->h.len && rx->got) {
		/* The previous call returned a frame: start the next one. */
		proto_rx_reset(rx);
	}
	for (;;) {
		uint8_t *dst;
		size_t want;
		ssize_t n;

		if (rx->got < PROTO_HDR_LEN) {
			dst = rx->hdr + rx->got;
			want = PROTO_HDR_LEN - rx->got;
		} else {
			dst = rx->payload + (rx->got - PROTO_HDR_LEN);
			want = PROTO_HDR_LEN + rx->h.len - rx->got;
		}
		n = want ? read(fd, dst, want) : 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return PROTO_RX_AGAIN;
			fc_err_set(e, errno, "receive frame");
			return PROTO_RX_ERROR;
		}
		if (n == 0 && want) {
			if (!rx->got)
				return PROTO_RX_EOF;
			fc_err_set(e, EPROTO, "connection closed inside a %s",
				   rx->got < PROTO_HDR_LEN ? "frame header" : "frame");
			return PROTO_RX_ERROR;
		}
		rx->got += n;
		if (rx->got == PROTO_HDR_LEN && !rx->payload) {
			if (proto_decode_hdr(rx->hdr, &rx->h, e) < 0)
				return PROTO_RX_ERROR;
			rx->payload = xmalloc(rx->h.len + 1);
		}
		if (rx->got >= PROTO_HDR_LEN && rx->got == PROTO_HDR_LEN + (size_t)rx->h.len) {
			rx->payload[rx->h.len] = '\0';
			return PROTO_RX_FRAME;
		}
	}
}
