/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint/restore workflow engine: validate -> resolve target ->
 * pause devices -> CRIU dump -> resume devices -> manifest -> publish, and
 * the reverse for restores. Every step is timed and reported through a
 * progress callback; a cancel callback is polled between steps; a target is
 * locked for the duration of a request (a second request on the same target
 * fails with -EBUSY), different targets run in parallel.
 *
 * Rollback: whatever fails, the workload keeps running. CRIU resumes a tree
 * whose dump fails, and the engine commits the checkpoint inside CRIU's
 * post-dump notification, while the tree is still frozen, so that a failed
 * commit makes CRIU resume the tree too; the partial image is removed.
 *
 * Containers (target kind container) are resolved through their runc state
 * and dumped and restored by runc (container/container.h), which talks to
 * CRIU itself: see checkpoint.c for how the rollback rule holds there.
 * Restoring a container makes the calling process a child subreaper
 * (PR_SET_CHILD_SUBREAPER) so that it inherits and reaps the init runc
 * leaves behind, as it reaps restored process trees.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/validate.h"
#include "store/store.h"

typedef struct kyb_engine kyb_engine;

/* The steps of both workflows; values match agent.proto's Step. */
typedef enum kyb_step {
        KYB_STEP_VALIDATE = 1,
        KYB_STEP_RESOLVE = 2,
        KYB_STEP_GPU_LOCK = 3,
        KYB_STEP_GPU_CHECKPOINT = 4,
        KYB_STEP_CRIU_DUMP = 5,
        KYB_STEP_CRIU_RESTORE = 6,
        KYB_STEP_GPU_RESTORE = 7,
        KYB_STEP_GPU_UNLOCK = 8,
        KYB_STEP_MANIFEST = 9,
        KYB_STEP_PUBLISH = 10,
        KYB_STEP_VERIFY = 11,
        KYB_STEP_ROLLBACK = 12,
        KYB_STEP_DONE = 13,
} kyb_step;

const char *kyb_step_name(kyb_step step); /* "criu_dump" */

typedef struct kyb_progress {
        kyb_step step;
        const char *message;
        uint64_t bytes_done;
        uint64_t bytes_total; /* 0 when unknown */
} kyb_progress;

/* Callbacks of one request; all may be NULL. They run on the request's
 * thread. */
typedef struct kyb_request_hooks {
        void (*progress)(void *ctx, const kyb_progress *p);
        bool (*cancelled)(void *ctx);
        void *ctx;
} kyb_request_hooks;

typedef struct kyb_engine_config {
        const char *store_dir;
        const char *work_dir;  /* per-request scratch (restore logs); created 0700 */
        const char *criu_path; /* NULL: the default CRIU */
        const char *runc_path; /* NULL: "runc" in $PATH */
        const char *runc_root; /* runc root templates (kyb_runc_config); NULL: the default */
        const char *node_name;
        int64_t default_timeout_ms; /* for requests that give none; 0: none */
        const char *cuda_lib;       /* NULL: "libcuda.so.1" */
        const char *nvml_lib;       /* NULL: "libnvidia-ml.so.1" */
} kyb_engine_config;

struct kyb_gpu;
/* The GPU facade the engine uses (for the agent's GPU methods). */
struct kyb_gpu *kyb_engine_gpu(kyb_engine *e);

int kyb_engine_new(const kyb_engine_config *cfg, kyb_engine **out, kyb_error **err);
void kyb_engine_free(kyb_engine *e);

kyb_store *kyb_engine_store(kyb_engine *e);
const char *kyb_engine_criu_version(const kyb_engine *e);

typedef struct kyb_checkpoint_spec {
        const char *id; /* NULL or "": generated */
        kyb_manifest_target target;
        kyb_manifest_workload workload;
        bool leave_running;
        bool tcp_established;
        bool file_locks;
        bool shell_job;
        bool external_unix_sockets;
        bool pre_dump;
        bool lazy_pages;
        const char *parent_id;
        kyb_gpu_mode gpu_mode;
        uint32_t gpu_lock_timeout_ms;
        uint32_t ghost_limit_bytes;
        const kyb_label *labels;
        size_t n_labels;
        int64_t timeout_ms; /* 0: the engine default */
} kyb_checkpoint_spec;

/* On success *out holds the committed checkpoint (caller clears it). */
int kyb_engine_checkpoint(kyb_engine *e, const kyb_checkpoint_spec *spec,
                          const kyb_request_hooks *hooks, kyb_checkpoint *out, kyb_error **err);

typedef struct kyb_restore_spec {
        const char *checkpoint_id;
        /* Checkpoints of containers only: the container to create (NULL or
         * "": the checkpointed one's namespace and ID) and its OCI bundle
         * (NULL or "": the bundle recorded at checkpoint time). */
        const char *container_namespace;
        const char *container_id;
        const char *bundle;
        bool tcp_established;
        bool file_locks;
        bool shell_job;
        bool external_unix_sockets;
        bool lazy_pages;
        kyb_gpu_mode gpu_mode;
        /* Old GPU UUID -> new one, when the checkpoint's GPUs differ from ours. */
        const struct kyb_gpu_uuid_pair *gpu_uuid_map;
        size_t n_gpu_uuid_map;
        int64_t timeout_ms;
} kyb_restore_spec;

typedef struct kyb_step_time {
        kyb_step step;
        int64_t duration_ns;
} kyb_step_time;

#define KYB_MAX_STEPS 16

typedef struct kyb_restore_result {
        int32_t pid; /* root of the restored tree, host PID namespace */
        /* The container created, for checkpoints of containers; "" otherwise. */
        char container_namespace[KYB_ID_MAX_LEN + 1];
        char container_id[KYB_ID_MAX_LEN + 1];
        kyb_step_time steps[KYB_MAX_STEPS];
        size_t n_steps;
} kyb_restore_result;

int kyb_engine_restore(kyb_engine *e, const kyb_restore_spec *spec, const kyb_request_hooks *hooks,
                       kyb_restore_result *out, kyb_error **err);
