/* proto.h - the one framing for all host <-> agent traffic over vsock.
 *
 * A frame is a 12-byte header followed by @len payload bytes:
 *   u32 magic "FCV1" | u8 version | u8 type | u16 flags (0) | u32 len   (little endian)
 * Payloads are bounded (PROTO_MAX_PAYLOAD); control payloads are JSON,
 * data payloads (stdout, stderr, stdin) are raw bytes. An unknown type or
 * version, a non-zero flags field or an oversized length is a protocol
 * error: the reader drops the connection rather than resynchronising.
 */
#ifndef FC_PROTO_H
#define FC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define PROTO_MAGIC	  0x31564346u	/* "FCV1" read as little-endian u32 */
#define PROTO_VERSION	  1
#define PROTO_HDR_LEN	  12
#define PROTO_MAX_PAYLOAD (256 * 1024)
#define PROTO_DATA_CHUNK  (64 * 1024)	/* senders split stdout/stderr to this */

/* vsock ports the agent listens on in the guest. */
#define AGENT_PORT_RUN	 1024	/* plan in, output + exit code out */
#define AGENT_PORT_EXEC	 1025	/* exec sessions (fc-exec): EXEC in, output + exit code out */

enum proto_type {
	MSG_HELLO = 1,	/* agent -> host: JSON {"version":1,"agent":"fc-agent"} */
	MSG_PLAN,	/* host -> agent: JSON plan (see fc-agent(1)) */
	MSG_STARTED,	/* agent -> host: JSON {} - container is running */
	MSG_STDOUT,	/* agent -> host: raw bytes */
	MSG_STDERR,	/* agent -> host: raw bytes */
	MSG_STDIN,	/* host -> agent: raw bytes */
	MSG_STDIN_EOF,	/* host -> agent: empty */
	MSG_EXIT,	/* agent -> host: JSON {"code":N} or {"signal":N} */
	MSG_ERROR,	/* either way: JSON {"message":"..."} - fatal for this session */
	MSG_HEARTBEAT,	/* agent -> host: empty, every few seconds; host -> agent:
			 * a probe after a silence (the agent ignores it) */
	MSG_SIGNAL,	/* host -> agent: JSON {"signal":N} - forward to the container */
	MSG_STATUS_REQ,	/* host -> agent: empty - first frame of a status connection */
	MSG_STATUS,	/* agent -> host: JSON {"version":1,"state":...} - then it closes */
	MSG_EXEC,	/* host -> agent: JSON exec request (see fc-agent(1)) - first frame */
	MSG_WINSIZE,	/* host -> agent: JSON {"rows":N,"cols":N} - resize the session's pty */
	MSG_CLONE,	/* host -> agent: JSON clone fix-up (see clonefix.h) - first frame */
	MSG_CLONE_DONE,	/* agent -> host: JSON what the fix-up did (see clonefix.h) - then it closes */
	MSG_PREPARE,	/* host -> agent: JSON plan - first frame: only its image is made ready
			 * (a startup snapshot's VM, see fc-agent(1)); nothing runs */
	MSG_PREPARED,	/* agent -> host: JSON {} - the image is ready; then it closes */
	MSG_TYPE_MAX
};

struct proto_hdr {
	uint8_t type;
	uint32_t len;
};

/* Name of a message type for logs ("stdout"), "unknown" if out of range. */
const char *proto_type_name(unsigned type);

/* Encode a header into @out (PROTO_HDR_LEN bytes). */
void proto_encode_hdr(uint8_t out[PROTO_HDR_LEN], uint8_t type, uint32_t len);

/* Decode and validate a header. 0 or -1 with @e filled. */
int proto_decode_hdr(const uint8_t in[PROTO_HDR_LEN], struct proto_hdr *h,
		     struct fc_err *e);

/* Send one frame (blocking; retries EINTR and short writes). 0 or -1. */
int proto_send(int fd, uint8_t type, const void *buf, uint32_t len, struct fc_err *e);

/* Send @text (a JSON document) as one frame. */
int proto_send_str(int fd, uint8_t type, const char *text, struct fc_err *e);

/* Incremental receiver for non-blocking sockets: a frame arrives in as
 * many reads as the peer needs, and a reader never waits for the rest.
 * Zero-initialise (or proto_rx_reset) before use; proto_rx_reset frees
 * what it holds. */
struct proto_rx {
	uint8_t hdr[PROTO_HDR_LEN];
	size_t got;		/* bytes of the current frame so far (header + payload) */
	struct proto_hdr h;	/* valid once got >= PROTO_HDR_LEN */
	uint8_t *payload;	/* h.len + 1 bytes, NUL-terminated when complete */
};

enum proto_rx_result {
	PROTO_RX_ERROR = -1,	/* read error, bad header, EOF inside a frame: @e filled */
	PROTO_RX_AGAIN = 0,	/* no complete frame yet (EAGAIN) */
	PROTO_RX_FRAME = 1,	/* rx->h and rx->payload hold one frame */
	PROTO_RX_EOF = 2,	/* the peer closed between frames */
};

/* Read from @fd (non-blocking) until one frame is complete, or nothing
 * more is there. After PROTO_RX_FRAME the caller may take the payload
 * (steal_ptr(&rx->payload)); the next call starts a new frame either way.
 * At most one frame is consumed per call: call again until AGAIN. */
enum proto_rx_result proto_rx_read(int fd, struct proto_rx *rx, struct fc_err *e);

/* True while a frame has been started but not finished. */
static inline int proto_rx_partial(const struct proto_rx *rx)
{
	return rx->got > 0;
}

/* Drop a partial frame and free the payload buffer. */
void proto_rx_reset(struct proto_rx *rx);

/* Receive one frame (blocking). The payload is stored NUL-terminated in a
 * newly allocated *@payload (caller frees). Returns 1 on a frame, 0 on
 * clean EOF before a header, -1 on error or truncation. */
int proto_recv(int fd, struct proto_hdr *h, uint8_t **payload, struct fc_err *e);

#endif
