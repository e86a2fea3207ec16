/* ids.h - fc-volfs's own node ids and file handles, so that what the guest
 * kernel holds outlives the server that handed out the ids: after a
 * snapshot restore a new fc-volume (a new instance, with its own node ids
 * and handles, perhaps over another directory) serves the mount.
 *
 * How it works: the kernel only ever sees our ids (guest ids; 1 is the
 * root). Each node remembers the last name it was seen under (parent guest
 * id + name) and, for the server of one epoch, its server id. One epoch is
 * one server instance; ids_new_epoch() makes every node stale at once, and
 * a stale node is found again by walking its names from the nearest
 * current ancestor (ids_stale_chain + ids_set), one LOOKUP each. A node is
 * freed when the kernel has forgotten it and no other node names it as its
 * parent; then the server is told to forget what it counted in its epoch.
 * Everything here is under one lock: no pointer to a node leaves a call.
 */
#ifndef FC_VOLFS_IDS_H
#define FC_VOLFS_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDS_ROOT 1

/* Start: the root (guest 1) is server node @srv_root in epoch 1. */
void ids_init(uint64_t srv_root);

/* The current epoch. */
uint32_t ids_epoch(void);

/* A new server instance: every node but the root becomes stale. Returns the
 * new epoch. */
uint32_t ids_new_epoch(void);

/* A lookup-type reply (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE) to a
 * request sent in @epoch named server node @srv as @name under guest
 * @parent; the kernel counts one lookup of the guest id returned. The same
 * server node gives the same guest id; a stale node last seen under that
 * name is taken over. 0 when @parent is unknown (the reply is then
 * dropped and the server told to forget it: ids_forget_srv). */
uint64_t ids_add(uint64_t parent, const char *name, uint64_t srv, uint32_t epoch);

/* The server id of guest @g in epoch @epoch: 0, -ESTALE (found again with
 * ids_stale_chain first), or -ENOENT (no such guest id). */
int ids_srv(uint64_t g, uint32_t epoch, uint64_t *srv);

/* The stale nodes from the nearest current ancestor of @g down to @g, in
 * that order, into @chain (at most @max). Returns their count (0: @g is
 * current), -ESTALE when one of them has no known name (unlinked while
 * open, or overwritten), -ELOOP past @max, -ENOENT for an unknown id. */
int ids_stale_chain(uint64_t g, uint32_t epoch, uint64_t *chain, size_t max);

/* The parent and name of stale node @g (for its LOOKUP): 0 or -ESTALE. */
int ids_name_of(uint64_t g, uint64_t *parent, char *name, size_t size);

/* @g was found again as server node @srv in @epoch (one server lookup).
 * Ignored when @epoch is no longer current. */
void ids_set(uint64_t g, uint64_t srv, uint32_t epoch);

/* The kernel forgot @n lookups of @g. When it has forgotten @g entirely
 * and @g was current, true with what to tell the server of @epoch (FORGET
 * @srv, @count lookups). */
bool ids_forget(uint64_t g, uint64_t n, uint64_t *srv, uint64_t *count, uint32_t *epoch);

/* Names changed by a successful request: */
void ids_unlink(uint64_t parent, const char *name);
void ids_rename(uint64_t parent, const char *name, uint64_t newparent, const char *newname,
		bool exchange);

/* Every node the kernel may cache, to invalidate after a new epoch: calls
 * @fn(guest id, parent, name or NULL, @arg) outside the lock on a copy. */
void ids_foreach(void (*fn)(uint64_t g, uint64_t parent, const char *name, void *arg), void *arg);

/* How many nodes the table holds (tests, logs). */
size_t ids_count(void);

#endif
