/* volspec.h - a VM's host directory volumes as its record ("config.volumes")
 * and so a snapshot's manifest keep them, for a clone's volume servers:
 *   [{"port": N, "guest": "/abs", "host": "/abs", "read_only": bool}]
 * port: the guest's vsock port of that volume's server (1024..65535).
 */
#ifndef FC_VOLSPEC_H
#define FC_VOLSPEC_H

#include <jansson.h>

#include "err.h"

#define VOLSPEC_MAX 16

/* Check @v: an array of at most VOLSPEC_MAX such objects, with no other
 * keys; distinct ports; absolute guest and host paths without control
 * characters, "." or ".." components; distinct guest paths. 0, or -1 with
 * @e naming the first bad field. */
int volspec_check(json_t *v, struct fc_err *e);

/* Load (at most 64 KiB) and check the file @path. New reference or NULL
 * with @e. */
json_t *volspec_load(const char *path, struct fc_err *e);

#endif
