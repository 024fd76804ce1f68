/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node controller: the half of the CheckpointRequest life cycle that
 * runs on the node (docs/operator.md). It watches the requests the operator
 * labelled kybernate.io/node=<this node> and, for each in phase Scheduled:
 *
 *   Scheduled -> Checkpointing   claimed (a conditional status write, so a
 *                                request is never run twice)
 *   Checkpointing -> Uploading   the engine checkpointed the container into
 *                                the local store; sizes, steps, GPUs recorded
 *   Uploading -> Succeeded       the pod's sidecar wrote <id>.upload.json
 *                                (artifact URI, size, SHA-256) beside it
 *   any -> Failed                with the engine's message naming the step
 *
 * After a restart it picks up where it stopped: a request found in
 * Checkpointing that this process is not running is checkpointed again
 * when the store does not hold its ID (the engine rolled the workload back
 * when the previous agent died), or moved on to Uploading when it does.
 *
 * The engine is behind a table of callbacks so the agent plugs in its CRIU
 * engine and benchmarks a no-op one.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "kube/kube.h"

typedef struct kyb_nodectl_job {
        const char *ns, *request; /* the CheckpointRequest */
        const char *pod, *pod_uid;
        const char *container;    /* name in the pod */
        const char *container_id; /* runtime ID without the "containerd://" scheme */
        const char *checkpoint_id;
        const json_t *options; /* spec.options, defaults applied by the API server */
} kyb_nodectl_job;

typedef struct kyb_nodectl_engine {
        /* Checkpoints the job's container; on success fills *status_out with
         * status fields to merge: imageBytes, stepDurationsMillis, gpus. */
        int (*checkpoint)(void *ctx, const kyb_nodectl_job *job, json_t *status_out,
                          kyb_error **err);
        /* Is the checkpoint committed in the local store? Fills imageBytes
         * when it is. */
        bool (*exists)(void *ctx, const char *checkpoint_id, json_t *status_out);
        void *ctx;
} kyb_nodectl_engine;

typedef struct kyb_nodectl_opts {
        const char *node_name;
        const char *result_dir;        /* where the sidecar writes <id>.upload.json */
        int64_t upload_timeout_ms;     /* Uploading longer than this fails; 0: 1 h */
        unsigned workers;              /* checkpoints in parallel; 0: 2 */
        const char *container_runtime; /* scheme expected in containerIDs; NULL: containerd */
} kyb_nodectl_opts;

typedef struct kyb_nodectl kyb_nodectl;

/* Starts the informer and the workers; the client is borrowed. */
int kyb_nodectl_start(kyb_kube_client *c, const kyb_nodectl_opts *opts,
                      const kyb_nodectl_engine *engine, kyb_nodectl **out, kyb_error **err);
/* Lets running checkpoints finish, then stops. */
void kyb_nodectl_free(kyb_nodectl *n);
