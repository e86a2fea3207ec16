/* plan.h - the run plan the host sends to fc-agent (MSG_PLAN), parsed
 * strictly, and the podman command lines built from it.
 *
 * The host is not trusted: unknown keys, wrong types, oversized strings or
 * arrays, NUL bytes and option-looking values are rejected with a message
 * that names the offending key. The schema is documented in fc-agent(1).
 */
#ifndef FC_AGENT_PLAN_H
#define FC_AGENT_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "err.h"

#define PLAN_VERSION	 1
#define PLAN_MAX_ARGS	 1024		/* entries in cmd, entrypoint, env */
#define PLAN_MAX_STR	 (32 * 1024)	/* bytes in one string */
#define PLAN_MAX_REF	 512		/* image reference */
#define PLAN_MAX_PATH	 4096		/* disk, workdir */
#define PLAN_MAX_USER	 256
#define PLAN_MAX_NAME	 63		/* container_name */
#define PLAN_DEFAULT_NAME "fcvm"

#define PLAN_MAX_DNS	 3		/* network.dns entries (resolv.conf's limit) */

/* The guest's network ("network" in the plan, from fc-net's result): the
 * agent configures the NIC with @mac (or eth0), address, default route and
 * /etc/resolv.conf, and the container shares the guest's network. */
struct plan_net {
	bool set;		/* false: no network, the container runs --network=none */
	struct in_addr ip, gateway;
	int prefix;		/* 1..30 */
	struct in_addr dns[PLAN_MAX_DNS];
	int ndns;
	uint8_t mac[6];
	bool has_mac;
};

/* A host directory volume ("volumes" in the plan): fc-volfs mounts host
 * vsock port @port at /run/fcvm/vol/<i>, bound into the container at
 * @guest (see volume.h). */
#define PLAN_MAX_VOLUMES 16
#define PLAN_MAX_VOL_CONNS 64
#define PLAN_VOL_DIR	 "/run/fcvm/vol"	/* mount points: PLAN_VOL_DIR/<i> */

struct plan_vol {
	unsigned port;		/* host vsock port, 1024..65535 */
	char *guest;		/* absolute path in the container */
	bool ro;
	unsigned conns;		/* fc-volfs --connections, 1..64 (default 4) */
};

/* Where an image store disk ("image.store": true) is mounted, read-only:
 * podman uses it as an additional image store (overlay.imagestore). */
#define PLAN_STORE_DIR	 "/run/fcvm/image"

struct plan {
	char *disk;		/* absolute path of the image disk */
	char *ref;		/* image name to run, NULL: take it from podman load */
	bool store;		/* "image.store": @disk is an ext4 holding the image
				 * unpacked (containers-storage, overlay): mounted
				 * at PLAN_STORE_DIR and run by @ref (required), no
				 * load; else @disk is an archive for podman load */
	char **cmd;		/* NULL-terminated; NULL when absent (image default) */
	char **entrypoint;	/* NULL-terminated; NULL when absent */
	char **env;		/* NULL-terminated, never NULL after a successful parse */
	char *user, *workdir;	/* NULL when absent */
	char **labels;		/* "labels": ["K=V"...], NULL-terminated; NULL when absent */
	char *hostname;		/* "hostname", NULL when absent */
	char *name;		/* container name, never NULL after a successful parse */
	bool tty;
	bool in;		/* "stdin": the host's stdin reaches the container (podman run -i) */
	bool poweroff;
	struct plan_net net;
	struct plan_vol *vols;	/* "volumes", @nvols entries */
	size_t nvols;
};

/* Parse @len bytes of plan JSON into @p (zeroed first; free with
 * plan_free even on failure). p->poweroff is filled before anything else is
 * checked, so a caller can honour it for a plan that is otherwise invalid.
 * 0 or -1 with @e filled ("'env[2]' must be K=V"). */
int plan_parse(const char *buf, size_t len, struct plan *p, struct fc_err *e);

void plan_free(struct plan *p);

/* Is @name acceptable as container_name: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}. */
bool plan_name_ok(const char *name);

/* Is @ref acceptable as an image reference (from the plan or from podman's
 * output): 1..PLAN_MAX_REF printable non-space bytes, not starting with '-'. */
bool plan_ref_ok(const char *ref);

/* Extract the image reference from the output of `podman load`
 * ("Loaded image: REF" or "Loaded image(s): REF[,REF...]" lines). Exactly one
 * image must have been loaded. Returns a new string (caller frees) or NULL
 * with @e filled. */
char *plan_loaded_ref(const char *out, struct fc_err *e);

/* argv for `RUNNER [global flags] load -i DISK` (caller frees the array
 * with plan_argv_free; strings are copies). */
char **plan_load_argv(const char *runner, const struct plan *p);

/* argv for `RUNNER [global flags] run --rm --name=NAME ... REF [CMD...]`;
 * with p->store the global flags name PLAN_STORE_DIR as an image store. */
char **plan_run_argv(const char *runner, const struct plan *p, const char *ref);

/* argv for "podman image exists REF" with the plan's image store (p->store
 * set): a prepare's warm-up (run.h). */
char **plan_warm_argv(const char *runner, const struct plan *p);

void plan_argv_free(char **argv);

/* ---- exec requests (MSG_EXEC, the first frame on the exec port) ----
 * {"version":1,"cmd":[...],"vm":bool,"tty":bool,"stdin":bool,"env":["K=V"],
 *  "workdir":"/abs","user":"NAME|UID[:GID]","term":"xterm","rows":N,"cols":N,
 *  "wait_ms":N}; only "version" and "cmd" are required. Checked as strictly
 * as a plan. */
#define EXEC_WAIT_MS_MAX  600000	/* how long an exec may wait for the container */
#define EXEC_WAIT_MS_DEF  120000

struct exec_req {
	char **cmd;		/* NULL-terminated, never empty */
	char **env;		/* NULL-terminated, never NULL after a successful parse */
	char *workdir, *user;	/* NULL when absent */
	char *term;		/* TERM for a tty session; NULL when absent */
	bool vm;		/* in the guest OS, not the container */
	bool tty, in;		/* a pty; stdin forwarded */
	unsigned rows, cols;	/* initial window size (tty), 0: unknown */
	unsigned wait_ms;	/* for a starting container */
};

/* Parse @len bytes of exec request JSON into @r (zeroed first; free with
 * exec_req_free even on failure). 0 or -1 with @e filled. */
int exec_req_parse(const char *buf, size_t len, struct exec_req *r, struct fc_err *e);

void exec_req_free(struct exec_req *r);

/* argv for `RUNNER [global flags] exec [--interactive] [--tty] --env=...
 * [--user=U] [--workdir=W] NAME CMD...`; @marker ("FCVM_EXEC_ID=...") is
 * one more --env, so the agent can find the process podman started.
 * @store: the container's image store (run_image_store()), or NULL: every
 * podman call about the container must see the store its image is in. */
char **exec_req_argv(const char *runner, const char *store, const struct exec_req *r,
		     const char *name, const char *marker);

/* argv for `RUNNER [global flags] wait --condition=running NAME`. */
char **exec_wait_argv(const char *runner, const char *store, const char *name);

/* Parse {"rows":N,"cols":N} (1..65535 each). 0 or -1 with @e. */
int exec_winsize_parse(const char *buf, size_t len, unsigned *rows, unsigned *cols,
		       struct fc_err *e);

#endif
