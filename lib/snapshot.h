/* snapshot.h - a snapshot directory $FCVM_ROOT/snapshots/<tag>/ and its
 * manifest: create (in a temporary directory, published whole), open and
 * validate, list, remove. Shared by fc-snap, fc-clone (and fc-uffd).
 *
 * Layout: snapshots/<tag>/{vmstate,memory,disk.ext4,manifest.json}. The
 * manifest (schema in fc-snap(1), "version": 1) names each file by a plain
 * name inside the directory with its size, and the vmstate with its
 * sha256; the source VM's config and network identity; the VMM and its
 * version; the memory backends a clone may use ("File", "Uffd").
 *
 * How it works:
 *  - snapshot_begin() refuses a tag that exists and makes
 *    snapshots/.tmp-<tag>-<pid>/; the caller fills it (vmstate, memory,
 *    disk), snapshot_finish() hashes, writes manifest.json (fsync) and
 *    publishes the directory with fs_publish (RENAME_NOREPLACE): a partial
 *    snapshot is never visible under its final name. Temporaries of dead
 *    creators are removed by snapshot_gc() (fc-snap calls it).
 *  - snapshot_open() trusts nothing: the manifest is bounded and checked
 *    field by field (unknown fields refused), file names must be plain
 *    components, files are opened O_NOFOLLOW and must be regular files of
 *    the recorded size, and the vmstate's sha256 must match.
 */
#ifndef FC_SNAPSHOT_H
#define FC_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"

#define SNAPSHOT_VERSION 1
#define SNAPSHOT_MANIFEST_MAX (256 * 1024)

/* The files of a snapshot, relative to its directory. */
#define SNAPSHOT_VMSTATE "vmstate"
#define SNAPSHOT_MEMORY "memory"
#define SNAPSHOT_DISK "disk.ext4"
#define SNAPSHOT_MANIFEST "manifest.json"

/* A valid tag: fc_valid_name(). */
bool snapshot_valid_tag(const char *tag);

/* "$FCVM_ROOT/snapshots/<tag>" (caller frees). */
char *snapshot_dir(const char *tag);

/* Start a snapshot @tag: EEXIST ("snapshot 'T' already exists") when the
 * tag is taken; else *@tmp = the new, empty temporary directory (caller
 * frees; remove it with snapshot_abort on failure). 0 or -1 with @e. */
int snapshot_begin(const char *tag, char **tmp, struct fc_err *e);

/* Finish: @m (borrowed) is the manifest without its "files" and "created"
 * members, which are filled here from the files in @tmp (sizes, vmstate
 * sha256); it is written as @tmp/manifest.json and @tmp is published as
 * snapshots/<tag>. On failure @tmp is left for snapshot_abort. 0 or -1. */
int snapshot_finish(const char *tag, const char *tmp, json_t *m, struct fc_err *e);

/* Remove a temporary directory of snapshot_begin (NULL is fine). */
void snapshot_abort(const char *tmp);

/* Open snapshot @tag and validate it (see the top). Returns the manifest
 * (new reference) with "dir" and, under "files", each file's absolute
 * "abs" path added; or NULL with @e naming what is wrong (errnum ENOENT
 * when there is no such snapshot). */
json_t *snapshot_open(const char *tag, struct fc_err *e);

/* Check a manifest already parsed (for fuzzing and tests): the schema
 * only, no files. 0 or -1 with @e. */
int snapshot_check_manifest(json_t *m, const char *tag, struct fc_err *e);

/* All snapshots, by tag: a JSON array of manifests (new reference); a
 * directory that does not validate appears as {"tag": T, "error": why}. */
json_t *snapshot_list(struct fc_err *e);

/* Remove snapshots/<tag>: renamed to a temporary name first (so it stops
 * being visible at once), then removed. 0 or -1 (ENOENT: no such). */
int snapshot_remove(const char *tag, struct fc_err *e);

/* Remove snapshots/.tmp-*-PID of creators that are gone; calls @fn (may
 * be NULL) with each path removed. Returns the number removed. */
int snapshot_gc(void (*fn)(const char *path, void *arg), void *arg);

#endif
