/* fcapi.h - Firecracker's HTTP API over its Unix socket, through libcurl.
 *
 * One handle per VMM; libcurl keeps the connection alive between requests.
 * A non-2xx answer becomes an error carrying Firecracker's "fault_message".
 * If $FCVM_API_TRACE names a file, every request is appended to it as one
 * JSON line {"method","path","body"} (the contract tests validate those).
 */
#ifndef FC_FCAPI_H
#define FC_FCAPI_H

#include <jansson.h>

#include "err.h"
#include "sock.h"

struct fcapi;

/* New client for the API socket @sock (not connected yet). Never NULL. */
struct fcapi *fcapi_new(const char *sock);
void fcapi_free(struct fcapi *a);

/* Send METHOD @path with optional JSON @body (borrowed). On 2xx return 0
 * and, if @reply is not NULL, the parsed body (new reference, or NULL when
 * empty). Otherwise -1 with @e = "PUT /drives/rootfs: HTTP 400: <fault>"
 * (errnum EPROTO; the VMM's fault_message passed through text_clean(), no
 * strerror appended), or "GET /: <curl's reason>" when no answer came. */
int fcapi_call(struct fcapi *a, const char *method, const char *path, json_t *body,
	       json_t **reply, struct fc_err *e);

/* Wait until the API socket accepts a connection (sock_connect_unix: at
 * most @timeout_ms, @give_up asked between attempts - the VMM died, a
 * signal came), then GET / once. 0, or -1 with @e. */
int fcapi_wait(struct fcapi *a, int timeout_ms, sock_wait_fn give_up, void *arg,
	       struct fc_err *e);

/* Extract the "fault_message" from an error body (bounded); for tests. */
const char *fcapi_fault(json_t *body);

#endif
