/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RestoreRequest controller: Pending (waiting for the source
 * CheckpointRequest to succeed) -> Scheduled (restore pod created from the
 * checkpointed pod's spec, with RuntimeClass kybernate, the
 * kybernate.io/restore-from annotation and the sidecar's fetch init
 * container) -> Fetching -> Restoring -> Succeeded, read off the pod's
 * status; failures of the fetch, the pod, or the deadline fail the request.
 */
#define KYB_LOG_MODULE "rstr-ctl"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "operator/operator-internal.h"

typedef op_rctx rctx;

static const json_t *spec_of(const json_t *o)
{
        return json_object_get(o, "spec");
}

/* ---- the restore pod ------------------------------------------------------------------ */

/* The fetch init container, and the volumes it needs. A file:// artifact is
 * read through the volume the original sidecar wrote it to. */
static json_t *fetch_container(const rctx *r, const json_t *spec, const char *uri,
                               const char *secret)
{
        _cleanup_free_ char *src = NULL, *dest = NULL;
        json_t *mounts =
            json_pack("[{s:s, s:s}]", "name", "kybernate-restore", "mountPath", KYB_RESTORE_DIR);
        json_t *c, *m, *args;
        size_t i;

        if (secret)
                json_array_append_new(mounts, json_pack("{s:s, s:s, s:b}", "name",
                                                        "kybernate-storage", "mountPath",
                                                        "/etc/kybernate/storage", "readOnly", 1));
        json_array_foreach(json_object_get(spec, "containers"), i, c)
        {
                if (strcmp(op_sget(c, "name") ?: "", KYB_SIDECAR_NAME))
                        continue;
                json_array_foreach(json_object_get(c, "volumeMounts"), i, m)
                    json_array_append(mounts, m);
                break;
        }
        if (asprintf(&src, "--source=%s", uri) < 0 ||
            asprintf(&dest, "--dest=%s", KYB_RESTORE_DIR) < 0)
                return NULL;
        args = json_pack("[s, s, s, s]", "fetch", src, dest, "--metrics-address=");
        if (secret)
                json_array_append_new(args,
                                      json_string("--credentials-dir=/etc/kybernate/storage"));
        return json_pack("{s:s, s:s, s:o, s:o}", "name", KYB_FETCH_NAME, "image",
                         r->op->cfg.sidecar_image, "args", args, "volumeMounts", mounts);
}

static void add_volumes(json_t *spec, const rctx *r, const char *pod, const char *secret)
{
        json_t *vols = json_object_get(spec, "volumes");
        _cleanup_free_ char *path = NULL;

        if (!json_is_array(vols))
                json_object_set_new(spec, "volumes", vols = json_array());
        if (asprintf(&path, "%s/%s/%s", KYB_RESTORE_DIR, r->ns, pod) >= 0)
                json_array_append_new(vols, json_pack("{s:s, s:{s:s, s:s}}", "name",
                                                      "kybernate-restore", "hostPath", "path", path,
                                                      "type", "DirectoryOrCreate"));
        /* The Secret's AWS_* keys become the files the sidecar reads. */
        if (secret)
                json_array_append_new(
                    vols,
                    json_pack("{s:s, s:{s:s, s:i, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]}}", "name",
                              "kybernate-storage", "secret", "secretName", secret, "defaultMode",
                              0400, "items", "key", "AWS_ACCESS_KEY_ID", "path", "access-key-id",
                              "key", "AWS_SECRET_ACCESS_KEY", "path", "secret-access-key", "key",
                              "AWS_SESSION_TOKEN", "path", "session-token"));
}

static json_t *merged(const json_t *base, const json_t *extra)
{
        json_t *m = json_is_object(base) ? json_deep_copy(base) : json_object();

        if (json_is_object(extra))
                json_object_update(m, (json_t *)extra);
        return m;
}

static json_t *restore_pod(const rctx *r, const json_t *ckpt, const char *pod_name, json_t *spec)
{
        const json_t *cst = json_object_get(ckpt, "status"),
                     *tmpl = json_object_get(spec_of(r->obj), "podTemplate");
        const json_t *storage = json_object_get(spec_of(ckpt), "storage");
        const char *secret = op_sget(json_object_get(storage, "secretRef"), "name");
        const char *policy = op_sget(json_object_get(spec_of(r->obj), "gpuMapping"), "policy");
        const char *target = op_sget(spec_of(r->obj), "targetNodeName");
        json_t *init = json_object_get(spec, "initContainers"), *labels, *annots;

        if (!json_is_array(init))
                json_object_set_new(spec, "initContainers", init = json_array());
        json_array_insert_new(init, 0,
                              fetch_container(r, spec, op_sget(cst, "artifactURI"), secret));
        add_volumes(spec, r, pod_name, secret);
        json_object_set_new(spec, "runtimeClassName", json_string("kybernate"));
        /* SameUUID: only the very GPUs, i.e. the node, of the checkpoint. */
        if (!target && policy && !strcmp(policy, "SameUUID"))
                target = op_sget(cst, "nodeName");
        if (target)
                json_object_set_new(spec, "nodeName", json_string(target));
        labels = merged(json_object_get(tmpl, "labels"), NULL);
        json_object_set_new(labels, KYB_LABEL_RESTORE, json_string(r->name));
        annots = merged(json_object_get(tmpl, "annotations"), NULL);
        json_object_set_new(annots, KYB_ANNOT_RESTORE, json_string(op_sget(cst, "artifactURI")));
        json_object_set_new(annots, KYB_ANNOT_CKPT_ID, json_string(op_sget(cst, "checkpointID")));
        json_object_set_new(annots, KYB_ANNOT_GPU_MAP, json_string(policy ? policy : "SameModel"));
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:o}, s:O}", "apiVersion", "v1", "kind",
                         "Pod", "metadata", "name", pod_name, "namespace", r->ns, "labels", labels,
                         "annotations", annots, "spec", spec);
}

static char *pod_name_for(const rctx *r, const json_t *ckpt)
{
        const char *want = op_sget(json_object_get(spec_of(r->obj), "podTemplate"), "name");
        const char *uid = kyb_kube_meta(r->obj, "uid");
        char *name = NULL;

        if (want)
                return strdup(want);
        /* Stable across retries, so a second reconcile finds its own pod. */
        if (asprintf(&name, "%.40s-restored-%.5s", op_sget(spec_of(ckpt), "podName") ?: "pod",
                     uid ? uid : "0") < 0)
                return NULL;
        return name;
}

static int create_pod(rctx *r, const json_t *ckpt, const char *pod_name, kyb_error **err)
{
        _cleanup_json_ json_t *pod = NULL, *existing = NULL, *full = NULL, *spec = NULL;
        const char *text, *owner;
        int rc;

        /* The cache keeps requests without the (large) pod spec: read it. */
        if ((rc = kyb_kube_get(r->op->c, &KYB_KUBE_CHECKPOINT_REQUESTS, r->ns,
                               kyb_kube_meta(ckpt, "name"), &full, err)) < 0)
                return rc;
        text = json_string_value(json_object_get(
            json_object_get(json_object_get(full, "metadata"), "annotations"), KYB_ANNOT_POD_SPEC));
        spec = text ? json_loads(text, 0, NULL) : NULL;

        if (!json_is_object(spec))
                return op_fail(r, "SourceIncomplete", err,
                               "CheckpointRequest %s carries no pod spec (annotation %s)",
                               kyb_kube_meta(ckpt, "name"), KYB_ANNOT_POD_SPEC);
        if (!(pod = restore_pod(r, ckpt, pod_name, spec)))
                return kyb_error_set(err, ENOMEM, "restore pod");
        rc = kyb_kube_create(r->op->c, &KYB_KUBE_PODS, r->ns, pod, NULL, err);
        if (rc == -EACCES || rc == -EINVAL) {
                /* Admission said no (no RuntimeClass, quota, policy): retrying
                 * will not help, and the user needs the server's reason. */
                _cleanup_free_ char *why = strdup(kyb_error_message(*err));

                kyb_error_freep(err);
                return op_fail(r, "PodRejected", err, "creating pod %s: %s", pod_name,
                               why ? why : "rejected");
        }
        if (rc != -EEXIST)
                return rc;
        /* Ours from an earlier reconcile whose status write was lost? */
        kyb_error_freep(err);
        if ((rc = kyb_kube_get(r->op->c, &KYB_KUBE_PODS, r->ns, pod_name, &existing, err)) < 0)
                return rc;
        owner = json_string_value(json_object_get(
            json_object_get(json_object_get(existing, "metadata"), "labels"), KYB_LABEL_RESTORE));
        if (owner && !strcmp(owner, r->name))
                return 0;
        return op_fail(r, "PodExists", err, "pod %s already exists", pod_name);
}

/* ---- phases ------------------------------------------------------------------------------ */

static int pending(rctx *r, kyb_error **err)
{
        const json_t *src = json_object_get(spec_of(r->obj), "source");
        const char *ck_name = op_sget(src, "checkpointRequestName");
        _cleanup_free_ char *key = NULL, *pod_name = NULL, *msg = NULL;
        _cleanup_json_ json_t *ckpt = NULL;
        const char *phase;
        int rc;

        if (!ck_name)
                return op_fail(r, "SourceUnsupported", err,
                               "restoring from an artifact URI needs the pod spec stored in the "
                               "archive, which is not implemented yet: name the CheckpointRequest");
        if (asprintf(&key, "%s/%s", r->ns, ck_name) < 0)
                return kyb_error_set(err, ENOMEM, "key");
        if (!(ckpt = kyb_kube_informer_get(r->op->requests, key)))
                return op_fail(r, "SourceNotFound", err, "CheckpointRequest %s not found", ck_name);
        phase = op_sget(json_object_get(ckpt, "status"), "phase") ?: "Pending";
        if (!strcmp(phase, "Failed"))
                return op_fail(r, "SourceFailed", err, "CheckpointRequest %s failed", ck_name);
        if (strcmp(phase, "Succeeded")) {
                *r->requeue_ms = 2000; /* its status change wakes us earlier */
                return 0;
        }
        if (!(pod_name = pod_name_for(r, ckpt)))
                return kyb_error_set(err, ENOMEM, "pod name");
        if ((rc = create_pod(r, ckpt, pod_name, err)) < 0 ||
            !strcmp(op_sget(r->status, "phase") ?: "", "Failed"))
                return rc;
        if (asprintf(&msg, "created pod %s", pod_name) < 0)
                return kyb_error_set(err, ENOMEM, "message");
        json_object_set_new(r->status, "phase", json_string("Scheduled"));
        json_object_set_new(r->status, "restoredPodName", json_string(pod_name));
        json_object_set(r->status, "checkpointID",
                        json_object_get(json_object_get(ckpt, "status"), "checkpointID"));
        json_object_set(r->status, "artifactURI",
                        json_object_get(json_object_get(ckpt, "status"), "artifactURI"));
        json_object_set_new(r->status, "message", json_string(msg));
        kyb_kube_set_condition(r->status, "Scheduled", "True", "PodCreated", msg,
                               op_generation(r->obj), r->now);
        if ((rc = op_write_status(r, NULL, err)) < 0)
                return rc;
        op_event(r, "Normal", "PodCreated", msg);
        return 0;
}

static const json_t *status_named(const json_t *list, const char *name)
{
        const json_t *c;
        size_t i;

        json_array_foreach(list, i, c)
        {
                if (!strcmp(op_sget(c, "name") ?: "", name))
                        return c;
        }
        return NULL;
}

static bool all_running(const json_t *pod)
{
        const json_t *st = json_object_get(pod, "status"), *c;
        size_t i;

        if (strcmp(op_sget(st, "phase") ?: "", "Running"))
                return false;
        json_array_foreach(json_object_get(st, "containerStatuses"), i, c)
        {
                if (!json_object_get(json_object_get(c, "state"), "running"))
                        return false;
        }
        return json_array_size(json_object_get(st, "containerStatuses")) > 0;
}

/* Where the pod is, as a phase of the request; NULL on a failure set in *why. */
static const char *observe(const json_t *pod, char **why)
{
        const json_t *st = json_object_get(pod, "status");
        const json_t *fetch =
            status_named(json_object_get(st, "initContainerStatuses"), KYB_FETCH_NAME);
        const json_t *term = json_object_get(json_object_get(fetch, "state"), "terminated");
        json_int_t code = json_integer_value(json_object_get(term, "exitCode"));

        if (term && code != 0) {
                if (asprintf(why, "fetch exited with %lld: %s", (long long)code,
                             op_sget(term, "message") ?: op_sget(term, "reason") ?: "see its log") < 0)
                        *why = NULL;
                return NULL;
        }
        if (!strcmp(op_sget(st, "phase") ?: "", "Failed")) {
                if (asprintf(why, "pod failed: %s", op_sget(st, "message") ?: "see its events") < 0)
                        *why = NULL;
                return NULL;
        }
        if (!term) /* waiting for a node or an image: still just Scheduled */
                return json_object_get(json_object_get(fetch, "state"), "running") ? "Fetching"
                                                                                   : "Scheduled";
        return all_running(pod) ? "Succeeded" : "Restoring";
}

static int track(rctx *r, const char *phase, kyb_error **err)
{
        _cleanup_free_ char *key = NULL, *why = NULL;
        _cleanup_json_ json_t *pod = NULL;
        const char *pod_name = op_sget(r->status, "restoredPodName"), *now_phase;
        int rc;

        if (!pod_name || asprintf(&key, "%s/%s", r->ns, pod_name) < 0)
                return kyb_error_set(err, EINVAL, "no restored pod recorded");
        pod = kyb_kube_informer_get(r->op->pods, key);
        if (!pod && (rc = kyb_kube_get(r->op->c, &KYB_KUBE_PODS, r->ns, pod_name, &pod, err)) < 0)
                return rc == -ENOENT ? op_fail(r, "PodDeleted", err, "pod %s was deleted", pod_name)
                                     : rc;
        now_phase = observe(pod, &why);
        if (!now_phase)
                return op_fail(r, strstr(why ?: "", "fetch") ? "FetchFailed" : "RestoreFailed", err,
                               "%s", why ? why : "restore failed");
        if (!strcmp(now_phase, phase))
                return 0;
        json_object_set_new(r->status, "phase", json_string(now_phase));
        if (op_sget(json_object_get(pod, "spec"), "nodeName"))
                json_object_set(r->status, "nodeName",
                                json_object_get(json_object_get(pod, "spec"), "nodeName"));
        if (strcmp(now_phase, "Fetching"))
                kyb_kube_set_condition(r->status, "Fetched", "True", "Fetched",
                                       "the archive is on the node and verified",
                                       op_generation(r->obj), r->now);
        if (!strcmp(now_phase, "Succeeded")) {
                op_set_time(r->status, "completionTime", r->now);
                kyb_kube_set_condition(r->status, "Restored", "True", "Running",
                                       "the restored pod runs", op_generation(r->obj), r->now);
                kyb_kube_set_condition(r->status, "Ready", "True", "Succeeded",
                                       "the restored pod runs", op_generation(r->obj), r->now);
        }
        json_object_set_new(r->status, "message", json_string(now_phase));
        return op_write_status(r, NULL, err);
}

static int64_t deadline_ms(const rctx *r)
{
        json_int_t t = json_integer_value(json_object_get(spec_of(r->obj), "timeoutSeconds"));

        return t > 0 ? t * 1000 : r->op->cfg.request_timeout_ms;
}

static int dispatch(rctx *r, kyb_error **err)
{
        const char *phase = op_sget(r->status, "phase");
        int64_t started = r->now;

        if (!phase) {
                json_object_set_new(r->status, "phase", json_string("Pending"));
                op_set_time(r->status, "startTime", r->now);
                kyb_kube_set_condition(r->status, "Ready", "False", "Pending", "not restored yet",
                                       op_generation(r->obj), r->now);
                *r->requeue_ms = 1;
                return op_write_status(r, NULL, err);
        }
        if (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))
                return 0;
        if (kyb_kube_parse_time(op_sget(r->status, "startTime"), &started) == 0 &&
            r->now - started >= deadline_ms(r) * 1000000 + 999999999)
                return op_fail(r, "Timeout", err, "not restored within %lld s (phase %s)",
                               (long long)(deadline_ms(r) / 1000), phase);
        *r->requeue_ms = 1000; /* re-check the deadline */
        return !strcmp(phase, "Pending") ? pending(r, err) : track(r, phase, err);
}

int rstr_reconcile(kyb_operator *op, const char *key, uint64_t *requeue_ms, kyb_error **err)
{
        _cleanup_json_ json_t *req = kyb_kube_informer_get(op->restores, key);
        rctx r;
        int rc;

        *requeue_ms = 0;
        if (!req)
                return 0;
        if ((rc = op_rctx_init(&r, op, &KYB_KUBE_RESTORE_REQUESTS, req, requeue_ms, err)) < 0)
                return rc;
        rc = dispatch(&r, err);
        op_rctx_clear(&r);
        return rc;
}
