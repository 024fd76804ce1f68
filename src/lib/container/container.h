/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd containers through runc (docs/agent.md, "Containers").
 *
 * containerd's runc shim keeps the runc state of container <ns>/<id> under a
 * runc root per namespace (/run/containerd/runc/<ns> by default; the shim's
 * Root option moves it). This module finds a container's state there and
 * drives `runc checkpoint`, `runc restore -d` and `runc kill` on it, so that
 * mounts, namespaces, cgroups and the container's stdio descriptors are
 * handled the way containerd expects. Plain process trees do not come here:
 * they go through the CRIU RPC client (criu/criu.h).
 *
 * A kyb_runc handle is immutable after kyb_runc_new(): any number of threads
 * may use one handle at the same time. runc always runs through
 * base/runner.h (argv, no shell) with a deadline.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

#define KYB_RUNC_DEFAULT_PATH "runc"
/* Where containerd's runc shim keeps its state unless told otherwise. */
#define KYB_RUNC_DEFAULT_ROOT "/run/containerd/runc/{namespace}"
/* Manifest label recording the OCI bundle of a checkpointed container. */
#define KYB_CONTAINER_BUNDLE_LABEL "kybernate.io/runc-bundle"
/* The bundle's config.json, stored in a checkpoint as Kubernetes' archives do. */
#define KYB_CONTAINER_SPEC_DUMP "spec.dump"

typedef struct kyb_runc kyb_runc;

typedef struct kyb_runc_config {
        const char *runc_path; /* NULL or "": "runc", searched in $PATH */
        /* Candidate runc roots, ':'-separated, tried in order; "{namespace}"
         * is replaced by the containerd namespace. NULL or "":
         * KYB_RUNC_DEFAULT_ROOT. Every candidate must be absolute. */
        const char *root_templates;
        const char *criu_path; /* runc's --criu; NULL: runc's default ("criu" in $PATH) */
} kyb_runc_config;

int kyb_runc_new(const kyb_runc_config *cfg, kyb_runc **out, kyb_error **err);
void kyb_runc_free(kyb_runc *r);

typedef enum kyb_container_status {
        KYB_CONTAINER_UNKNOWN = 0,
        KYB_CONTAINER_CREATING,
        KYB_CONTAINER_CREATED,
        KYB_CONTAINER_RUNNING,
        KYB_CONTAINER_PAUSED,
        KYB_CONTAINER_STOPPED,
} kyb_container_status;

const char *kyb_container_status_name(kyb_container_status s); /* "running" */

/* One container as `runc state` describes it. */
typedef struct kyb_container {
        char *namespace_; /* containerd namespace */
        char *id;
        char *root; /* the runc root it was found under */
        pid_t pid;  /* init, host PID namespace; 0 when not running */
        kyb_container_status status;
        char *bundle; /* OCI bundle directory (config.json, rootfs) */
} kyb_container;

void kyb_container_clear(kyb_container *c);

/*
 * Finds <ns>/<id> under the candidate roots (the first root holding
 * <root>/<id>/state.json wins) and reads `runc --root R state <id>`.
 * -ENOENT "container ns/id not found under R1, R2" when no root knows it;
 * -EINVAL for IDs that are not kyb_validate_id() names. Any status is
 * returned; the caller decides what it needs.
 */
int kyb_runc_find(const kyb_runc *r, const char *ns, const char *id, int64_t timeout_ms,
                  kyb_container *out, kyb_error **err);

/* The root a new container <ns>/<id> is created under: the first candidate
 * whose directory exists, else the first candidate (runc creates it).
 * -EEXIST when any candidate already holds a container of that ID. */
int kyb_runc_root_for_new(const kyb_runc *r, const char *ns, const char *id, char **root,
                          kyb_error **err);

/* CRIU options runc passes on; the same flags at checkpoint and restore. */
typedef struct kyb_runc_criu_flags {
        bool tcp_established;
        bool ext_unix_sk;
        bool shell_job;
        bool file_locks;
} kyb_runc_criu_flags;

typedef struct kyb_runc_checkpoint_opts {
        const char *images_dir; /* absolute; must exist */
        const char *work_dir;   /* absolute; runc writes CRIU's dump.log here */
        bool leave_running;
        kyb_runc_criu_flags flags;
        int64_t timeout_ms; /* <= 0: none */
} kyb_runc_checkpoint_opts;

/*
 * `runc --root R checkpoint ...` of a found container. Errors quote runc's
 * error messages and the last Error lines of CRIU's dump.log in work_dir:
 * "runc checkpoint default/web: criu failed: ...; criu: Error (...): ...".
 */
int kyb_runc_checkpoint(const kyb_runc *r, const kyb_container *c,
                        const kyb_runc_checkpoint_opts *o, kyb_error **err);

typedef struct kyb_runc_restore_opts {
        const char *root;       /* runc root for the new container (kyb_runc_root_for_new) */
        const char *images_dir; /* absolute; only read */
        const char *work_dir;   /* absolute; restore.log and the pid file go here */
        const char *bundle;     /* absolute OCI bundle directory with config.json */
        kyb_runc_criu_flags flags;
        int64_t timeout_ms;
} kyb_runc_restore_opts;

/*
 * `runc --root R restore -d --pid-file ... <id>`: creates container <id>
 * from the images and returns its init PID once runc detached. runc leaves
 * the init behind as an orphan: it becomes the child of the nearest child
 * subreaper (containerd's shim when the shim runs this; the caller's
 * business otherwise). Errors quote runc and CRIU's restore.log.
 */
int kyb_runc_restore(const kyb_runc *r, const char *ns, const char *id,
                     const kyb_runc_restore_opts *o, pid_t *pid, kyb_error **err);

/*
 * Stops a running container: `runc kill <id> KILL`, then waits until the
 * process behind init_pidfd (pidfd_open() of its init, taken while it was
 * known to be that container's init) has exited. -ETIMEDOUT when it is
 * still there after timeout_ms; *signalled tells whether the kill was
 * delivered (then it will go, just later). An init that exited by itself
 * counts as stopped.
 */
int kyb_runc_kill(const kyb_runc *r, const kyb_container *c, int init_pidfd, int64_t timeout_ms,
                  bool *signalled, kyb_error **err);

/*
 * Copies <bundle>/config.json (the OCI runtime spec, at most 4 MiB, a
 * regular file, no symbolic link followed at the last component) to
 * <dir>/<name>, created exclusively with mode 0600 (it holds the
 * container's environment).
 */
int kyb_container_save_spec(const char *bundle, const char *dir, const char *name, kyb_error **err);
