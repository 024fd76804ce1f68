/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CheckpointRequest controller: Pending -> Scheduled (pod resolved to
 * its node, container and ID; the request labelled for that node's agent),
 * then the node agent drives Checkpointing -> Uploading -> Succeeded. The
 * operator fails requests whose pod never appears, whose pod goes away
 * before the agent started, and any request that outlives its deadline.
 */
#define KYB_LOG_MODULE "ckpt-ctl"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "operator/operator-internal.h"

typedef op_rctx rctx;

char *ckpt_pod_key(const json_t *req)
{
        const char *pod =
            json_string_value(json_object_get(json_object_get(req, "spec"), "podName"));
        const char *ns = kyb_kube_meta(req, "namespace");
        char *key = NULL;

        if (!pod || !ns || asprintf(&key, "%s/%s", ns, pod) < 0)
                return NULL;
        return key;
}

/* ---- writes ----------------------------------------------------------------------- */

/* ---- Pending ------------------------------------------------------------------------ */

static int to_pending(rctx *r, kyb_error **err)
{
        json_object_set_new(r->status, "phase", json_string("Pending"));
        op_set_time(r->status, "startTime", r->now);
        json_object_set_new(r->status, "message", json_string("waiting for the pod"));
        kyb_kube_set_condition(r->status, "Scheduled", "False", "Pending", "waiting for the pod",
                               op_generation(r->obj), r->now);
        kyb_kube_set_condition(r->status, "Ready", "False", "Pending", "not checkpointed yet",
                               op_generation(r->obj), r->now);
        *r->requeue_ms = 1; /* go on at once with the fresh object */
        return op_write_status(r, NULL, err);
}

static int64_t started_ns(const rctx *r)
{
        const char *s = op_sget(r->status, "startTime");
        int64_t t = r->now;

        /* Status times have whole seconds: round up so that a deadline is
         * never shorter than configured. */
        if (kyb_kube_parse_time(s, &t) == 0 && !strchr(s, '.'))
                t += 999999999;
        return t;
}

/* The container to checkpoint: the named one, else the first that is not
 * the sidecar. */
static const char *pick_container(const json_t *pod, const char *want)
{
        json_t *c;
        size_t i;

        json_array_foreach(json_object_get(json_object_get(pod, "spec"), "containers"), i, c)
        {
                const char *n = op_sget(c, "name");

                if (n && (want ? !strcmp(n, want) : strcmp(n, KYB_SIDECAR_NAME) != 0))
                        return n;
        }
        return NULL;
}

static bool container_running(const json_t *pod, const char *name)
{
        json_t *cs;
        size_t i;

        json_array_foreach(json_object_get(json_object_get(pod, "status"), "containerStatuses"), i,
                           cs)
        {
                if (!strcmp(op_sget(cs, "name") ?: "", name))
                        return json_object_get(json_object_get(cs, "state"), "running") &&
                               op_sget(cs, "containerID");
        }
        return false;
}

static char *checkpoint_id(const rctx *r)
{
        const char *want = op_sget(json_object_get(r->obj, "spec"), "checkpointID");
        const char *uid = kyb_kube_meta(r->obj, "uid");
        char *id = NULL;

        if (want)
                return strdup(want);
        /* Unique per node store across namespaces, stable across retries. */
        if (asprintf(&id, "%.100s-%.8s", r->name, uid ? uid : "0") < 0)
                return NULL;
        return id;
}

/* The pod spec a restore recreates, without what belongs to the old pod. */
static char *pod_spec_annotation(kyb_operator *op, const char *ns, const char *pod, kyb_error **err)
{
        _cleanup_json_ json_t *full = NULL;
        json_t *spec;

        if (kyb_kube_get(op->c, &KYB_KUBE_PODS, ns, pod, &full, err) < 0)
                return NULL;
        spec = json_object_get(full, "spec");
        json_object_del(spec, "nodeName");
        return json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
}

static int assign(rctx *r, const json_t *pod, const char *container, kyb_error **err)
{
        const char *node = op_sget(json_object_get(pod, "spec"), "nodeName");
        _cleanup_free_ char *spec = NULL, *id = checkpoint_id(r), *msg = NULL;
        _cleanup_json_ json_t *patch = NULL, *patched = NULL;
        int rc;

        if (!id || !(spec = pod_spec_annotation(r->op, r->ns, kyb_kube_meta(pod, "name"), err)))
                return kyb_error_wrap(err, -ENOMEM, "pod spec");
        /* The resourceVersion makes the patch conditional: a second writer
         * (a stale leader, a duplicate key) gets a conflict instead of
         * scheduling the request again on top of the first. */
        patch = json_pack("{s:{s:s?, s:{s:s}, s:{s:s}}}", "metadata", "resourceVersion",
                          kyb_kube_meta(r->obj, "resourceVersion"), "labels", KYB_LABEL_NODE, node,
                          "annotations", KYB_ANNOT_POD_SPEC, spec);
        if ((rc = kyb_kube_patch(r->op->c, &KYB_KUBE_CHECKPOINT_REQUESTS, r->ns, r->name,
                                 KYB_KUBE_PATCH_MERGE, patch, false, &patched, err)) < 0)
                return rc;
        if (asprintf(&msg, "assigned to the agent on node %s", node) < 0)
                return kyb_error_set(err, ENOMEM, "message");
        json_object_set_new(r->status, "phase", json_string("Scheduled"));
        json_object_set_new(r->status, "nodeName", json_string(node));
        json_object_set_new(r->status, "podUID", json_string(kyb_kube_meta(pod, "uid")));
        json_object_set_new(r->status, "containerName", json_string(container));
        json_object_set_new(r->status, "checkpointID", json_string(id));
        json_object_set_new(r->status, "message", json_string(msg));
        kyb_kube_set_condition(r->status, "Scheduled", "True", "Scheduled", msg,
                               op_generation(r->obj), r->now);
        if ((rc = op_write_status(r, patched, err)) < 0)
                return rc;
        kyb_log_info("checkpointrequest %s/%s: %s", r->ns, r->name, msg);
        op_event(r, "Normal", "Scheduled", msg);
        return 0;
}

static uint64_t ms_left(const rctx *r, int64_t since, int64_t limit_ms)
{
        int64_t left = since + limit_ms * 1000000 - r->now;

        return left > 0 ? (uint64_t)(left / 1000000) + 1 : 1;
}

static int reconcile_pending(rctx *r, kyb_error **err)
{
        const json_t *spec = json_object_get(r->obj, "spec");
        _cleanup_free_ char *pod_key = ckpt_pod_key(r->obj);
        _cleanup_json_ json_t *pod = pod_key ? kyb_kube_informer_get(r->op->pods, pod_key) : NULL;
        int64_t since = started_ns(r);
        const char *phase, *container;

        if (!pod) {
                if (r->now - since >= r->op->cfg.pod_wait_ms * 1000000)
                        return op_fail(r, "PodNotFound", err, "pod %s not found",
                                       op_sget(spec, "podName"));
                *r->requeue_ms = ms_left(r, since, r->op->cfg.pod_wait_ms);
                return 0;
        }
        phase = op_sget(json_object_get(pod, "status"), "phase");
        if (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed")))
                return op_fail(r, "PodNotRunning", err, "pod %s has terminated (%s)",
                               op_sget(spec, "podName"), phase);
        container = pick_container(pod, op_sget(spec, "containerName"));
        if (!container)
                return op_fail(r, "ContainerNotFound", err, "pod %s has no container %s",
                               op_sget(spec, "podName"),
                               op_sget(spec, "containerName") ?: "(other than the sidecar)");
        if (!op_sget(json_object_get(pod, "spec"), "nodeName") || !phase ||
            strcmp(phase, "Running") || !container_running(pod, container)) {
                if (r->now - since >= r->op->cfg.request_timeout_ms * 1000000)
                        return op_fail(r, "Timeout", err,
                                       "container %s of pod %s not running within %lld s "
                                       "(pod phase %s)",
                                       container, op_sget(spec, "podName"),
                                       (long long)(r->op->cfg.request_timeout_ms / 1000),
                                       phase ?: "unknown");
                *r->requeue_ms = ms_left(r, since, r->op->cfg.request_timeout_ms);
                return 0; /* the pod's next change wakes us sooner */
        }
        return assign(r, pod, container, err);
}

/* ---- assigned ------------------------------------------------------------------------ */

static int reconcile_assigned(rctx *r, const char *phase, kyb_error **err)
{
        _cleanup_free_ char *pod_key = ckpt_pod_key(r->obj);
        _cleanup_json_ json_t *pod = pod_key ? kyb_kube_informer_get(r->op->pods, pod_key) : NULL;
        const char *uid = op_sget(r->status, "podUID");

        /* Before the agent starts, a vanished pod fails the request here;
         * once it runs, the agent reports what happened to the dump. */
        if (!strcmp(phase, "Scheduled") &&
            (!pod || (uid && strcmp(uid, kyb_kube_meta(pod, "uid") ?: ""))))
                return op_fail(r, "PodDeleted", err, "pod %s was deleted before the checkpoint",
                               op_sget(json_object_get(r->obj, "spec"), "podName"));
        if (r->now - started_ns(r) >= r->op->cfg.request_timeout_ms * 1000000)
                return op_fail(r, "Timeout", err, "not finished within %lld s (phase %s)",
                               (long long)(r->op->cfg.request_timeout_ms / 1000), phase);
        *r->requeue_ms = ms_left(r, started_ns(r), r->op->cfg.request_timeout_ms);
        return 0;
}

static int dispatch(rctx *r, kyb_error **err)
{
        const char *phase = op_sget(r->status, "phase");

        if (!phase)
                return to_pending(r, err);
        if (!strcmp(phase, "Pending"))
                return reconcile_pending(r, err);
        if (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))
                return 0;
        return reconcile_assigned(r, phase, err);
}

int ckpt_reconcile(kyb_operator *op, const char *key, uint64_t *requeue_ms, kyb_error **err)
{
        _cleanup_json_ json_t *req = kyb_kube_informer_get(op->requests, key);
        rctx r;
        int rc;

        *requeue_ms = 0;
        if (!req)
                return 0; /* deleted: nothing to do */
        if ((rc = op_rctx_init(&r, op, &KYB_KUBE_CHECKPOINT_REQUESTS, req, requeue_ms, err)) < 0)
                return rc;
        rc = dispatch(&r, err);
        op_rctx_clear(&r);
        return rc;
}
