/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the operator's files; not part of its interface. */
#pragma once

#include <pthread.h>

#include "kube/informer.h"
#include "kube/kube.h"
#include "kube/leader.h"
#include "kube/workqueue.h"
#include "metrics/metrics.h"
#include "operator/operator.h"
#include "storage/storage.h"

/* Label and annotations the operator puts on CheckpointRequests. */
#define KYB_LABEL_NODE        "kybernate.io/node"
#define KYB_ANNOT_POD_SPEC    "kybernate.io/pod-spec"
#define KYB_SIDECAR_NAME      "kybernate-sidecar"
#define KYB_COMPONENT         "kybernate-operator"
#define KYB_LABEL_RESTORE     "kybernate.io/restore-request"
#define KYB_ANNOT_RESTORE     "kybernate.io/restore-from"
#define KYB_ANNOT_CKPT_ID     "kybernate.io/checkpoint-id"
#define KYB_ANNOT_GPU_MAP     "kybernate.io/gpu-mapping"
#define KYB_FETCH_NAME        "kybernate-fetch"
#define KYB_ANNOT_BEFORE_TERM "kybernate.io/checkpoint-before-termination"
#define KYB_RESTORE_DIR       "/var/lib/kybernate/restore"

/* Work queue keys carry their kind: "ckpt:ns/name", "rstr:ns/name". */
#define OP_KIND_CKPT "ckpt:"
#define OP_KIND_RSTR "rstr:"
#define OP_KIND_POL  "pol:"

struct kyb_operator {
        kyb_operator_config cfg;
        kyb_kube_config *kcfg;
        kyb_kube_client *c;
        kyb_kube_informer *requests, *restores, *policies, *pods, *nodes;
        kyb_workqueue *q;
        kyb_kube_leader *leader;

        kyb_metrics *metrics;
        kyb_http *http;
        kyb_metric *reconciles, *transitions, *queue_depth, *leading_gauge;

        /* "ns/pod" -> {"ns/request": true}: which requests a pod event wakes. */
        pthread_mutex_t index_mu;
        json_t *by_pod;

        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool stopping, lost, leading;
        pthread_t *workers;
        size_t n_workers;
};

/* One reconcile of one object: the controllers share the status plumbing
 * (reconcile.c). */
typedef struct op_rctx {
        kyb_operator *op;
        const kyb_kube_resource *res;
        json_t *obj;    /* the cached object, borrowed */
        json_t *status; /* what will be written: a copy, owned */
        const char *ns, *name;
        int64_t now;
        uint64_t *requeue_ms;
} op_rctx;

int op_rctx_init(op_rctx *r, kyb_operator *op, const kyb_kube_resource *res, json_t *obj,
                 uint64_t *requeue_ms, kyb_error **err);
void op_rctx_clear(op_rctx *r);
/* PUT /status of base (NULL: the cached object) carrying r->status. */
int op_write_status(op_rctx *r, const json_t *base, kyb_error **err);
/* Best effort. */
void op_event(op_rctx *r, const char *type, const char *reason, const char *msg);
/* Phase Failed, Ready=False with the reason, completionTime, a Warning Event. */
int op_fail(op_rctx *r, const char *reason, kyb_error **err, const char *fmt, ...) _printf_(4, 5);

int64_t op_now_ns(void);
const char *op_sget(const json_t *o, const char *k);
int64_t op_generation(const json_t *obj);
void op_set_time(json_t *st, const char *field, int64_t ns);
int64_t op_time_of(const json_t *o, const char *field, int64_t dflt);

/* artifact.c: an artifact URI's storage, opened with a resource's storage
 * fields (endpoint, region, forcePathStyle, secretRef read from ns). */
int op_artifact_open(kyb_operator *op, const char *ns, const json_t *storage, const char *uri,
                     kyb_storage **s, char **key, kyb_error **err);
/* The whole object at uri, at most max bytes (NUL-terminated). */
int op_artifact_read(kyb_operator *op, const char *ns, const json_t *storage, const char *uri,
                     size_t max, char **out, size_t *len, kyb_error **err);

/* policy-controller.c */
int pol_reconcile(kyb_operator *op, const char *key, uint64_t *requeue_ms, kyb_error **err);

/* restore-controller.c */
int rstr_reconcile(kyb_operator *op, const char *key, uint64_t *requeue_ms, kyb_error **err);

/* checkpoint-controller.c */
int ckpt_reconcile(kyb_operator *op, const char *key, uint64_t *requeue_ms, kyb_error **err);
/* The "ns/pod" a CheckpointRequest names, malloc'd. */
char *ckpt_pod_key(const json_t *req);
