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

#include <ctype.h>
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

/* What a restore starts from, whichever way the request names it. */
typedef struct source {
        char *artifact_uri;
        char *checkpoint_id;
        char *node;      /* where it was checkpointed; NULL when unknown */
        char *pod;       /* the checkpointed pod's name, for the default name */
        char *secret;    /* storage Secret of the artifact; NULL: none */
        json_t *storage; /* the storage fields that reach the artifact */
        json_t *spec;    /* the pod spec to recreate */
} source;

static void source_clear(source *src)
{
        free(src->artifact_uri);
        free(src->checkpoint_id);
        free(src->node);
        free(src->pod);
        free(src->secret);
        json_decref(src->storage);
        json_decref(src->spec);
        *src = (source){0};
}

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

static json_t *restore_pod(const rctx *r, const source *src, const char *pod_name)
{
        const json_t *tmpl = json_object_get(spec_of(r->obj), "podTemplate");
        const char *policy = op_sget(json_object_get(spec_of(r->obj), "gpuMapping"), "policy");
        const char *target = op_sget(spec_of(r->obj), "targetNodeName");
        json_t *spec = json_deep_copy(src->spec);
        json_t *init = json_object_get(spec, "initContainers"), *labels, *annots;

        if (!spec)
                return NULL;
        if (!json_is_array(init))
                json_object_set_new(spec, "initContainers", init = json_array());
        json_array_insert_new(init, 0, fetch_container(r, spec, src->artifact_uri, src->secret));
        add_volumes(spec, r, pod_name, src->secret);
        json_object_set_new(spec, "runtimeClassName", json_string("kybernate"));
        /* SameUUID: only the very GPUs, i.e. the node, of the checkpoint. */
        if (!target && policy && !strcmp(policy, "SameUUID"))
                target = src->node;
        if (target)
                json_object_set_new(spec, "nodeName", json_string(target));
        labels = merged(json_object_get(tmpl, "labels"), NULL);
        json_object_set_new(labels, KYB_LABEL_RESTORE, json_string(r->name));
        annots = merged(json_object_get(tmpl, "annotations"), NULL);
        json_object_set_new(annots, KYB_ANNOT_RESTORE, json_string(src->artifact_uri));
        json_object_set_new(annots, KYB_ANNOT_CKPT_ID, json_string(src->checkpoint_id));
        json_object_set_new(annots, KYB_ANNOT_GPU_MAP, json_string(policy ? policy : "SameModel"));
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:o}, s:o}", "apiVersion", "v1", "kind",
                         "Pod", "metadata", "name", pod_name, "namespace", r->ns, "labels", labels,
                         "annotations", annots, "spec", spec);
}

static char *pod_name_for(const rctx *r, const source *src)
{
        const char *want = op_sget(json_object_get(spec_of(r->obj), "podTemplate"), "name");
        const char *uid = kyb_kube_meta(r->obj, "uid");
        char base[41];
        char *name = NULL;

        if (want)
                return strdup(want);
        /* Stable across retries, so a second reconcile finds its own pod; a
         * checkpoint ID may hold '_' or upper case, a pod name may not. */
        snprintf(base, sizeof(base), "%s", src->pod ? src->pod : src->checkpoint_id);
        for (char *c = base; *c; c++)
                *c = (char)(*c == '_' ? '-' : tolower((unsigned char)*c));
        if (asprintf(&name, "%s-restored-%.5s", base, uid ? uid : "0") < 0)
                return NULL;
        return name;
}

static int create_pod(rctx *r, const source *src, const char *pod_name, kyb_error **err)
{
        _cleanup_json_ json_t *pod = NULL, *existing = NULL;
        const char *owner;
        int rc;

        if (!(pod = restore_pod(r, src, pod_name)))
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

/* ---- sources ------------------------------------------------------------------------------ */

/* The request's own storage fields win over the source's (docs/crds.md). */
static json_t *storage_for(const rctx *r, const json_t *fallback)
{
        const json_t *own = json_object_get(spec_of(r->obj), "storage");

        return json_incref((json_t *)(json_is_object(own) ? own : fallback));
}

/* From a CheckpointRequest: 1 ready, 0 not yet (requeued), <0 error or failed. */
static int from_request(rctx *r, const char *name, source *src, kyb_error **err)
{
        _cleanup_free_ char *key = NULL;
        _cleanup_json_ json_t *ckpt = NULL, *full = NULL;
        const json_t *st;
        const char *phase, *text;
        int rc;

        if (asprintf(&key, "%s/%s", r->ns, name) < 0)
                return kyb_error_set(err, ENOMEM, "key");
        if (!(ckpt = kyb_kube_informer_get(r->op->requests, key)))
                return op_fail(r, "SourceNotFound", err, "CheckpointRequest %s not found", name);
        st = json_object_get(ckpt, "status");
        phase = op_sget(st, "phase") ?: "Pending";
        if (!strcmp(phase, "Failed"))
                return op_fail(r, "SourceFailed", err, "CheckpointRequest %s failed", name);
        if (strcmp(phase, "Succeeded")) {
                *r->requeue_ms = 2000; /* its status change wakes us earlier */
                return 0;
        }
        /* The cache keeps requests without the (large) pod spec: read it. */
        if ((rc = kyb_kube_get(r->op->c, &KYB_KUBE_CHECKPOINT_REQUESTS, r->ns, name, &full, err)) <
            0)
                return rc;
        text = json_string_value(json_object_get(
            json_object_get(json_object_get(full, "metadata"), "annotations"), KYB_ANNOT_POD_SPEC));
        src->spec = text ? json_loads(text, 0, NULL) : NULL;
        if (!json_is_object(src->spec))
                return op_fail(r, "SourceIncomplete", err,
                               "CheckpointRequest %s carries no pod spec (annotation %s)", name,
                               KYB_ANNOT_POD_SPEC);
        src->storage = storage_for(r, json_object_get(spec_of(ckpt), "storage"));
        src->artifact_uri = dup_or_null(op_sget(st, "artifactURI"));
        src->checkpoint_id = dup_or_null(op_sget(st, "checkpointID"));
        src->node = dup_or_null(op_sget(st, "nodeName"));
        src->pod = dup_or_null(op_sget(spec_of(ckpt), "podName"));
        src->secret = dup_or_null(op_sget(json_object_get(src->storage, "secretRef"), "name"));
        return src->artifact_uri && src->checkpoint_id ? 1 : kyb_error_set(err, ENOMEM, "source");
}

/* From an artifact URI ".../<id>.tar.zst": the node agent left the pod spec
 * beside it as ".../<id>.pod.json" (uploaded by the sidecar). */
static int from_artifact(rctx *r, const char *uri, source *src, kyb_error **err)
{
        const char *q = strchr(uri, '?'), *end = q ? q : uri + strlen(uri);
        const char *slash = end, *ext = ".tar.zst";
        _cleanup_free_ char *spec_uri = NULL, *text = NULL;
        size_t len = 0, ext_len = strlen(ext);
        int rc;

        while (slash > uri && slash[-1] != '/')
                slash--;
        if ((size_t)(end - slash) <= ext_len || strncmp(end - ext_len, ext, ext_len))
                return op_fail(r, "SourceUnsupported", err, "artifact URI %s does not name a %s",
                               uri, ext);
        src->checkpoint_id = strndup(slash, (size_t)(end - slash) - ext_len);
        src->artifact_uri = strdup(uri);
        src->storage = storage_for(r, NULL);
        src->secret = dup_or_null(op_sget(json_object_get(src->storage, "secretRef"), "name"));
        if (!src->checkpoint_id || !src->artifact_uri ||
            asprintf(&spec_uri, "%.*s.pod.json%s", (int)(end - ext_len - uri), uri, q ? q : "") < 0)
                return kyb_error_set(err, ENOMEM, "source");
        rc = op_artifact_read(r->op, r->ns, src->storage, spec_uri, 1 << 20, &text, &len, err);
        if (rc == -ENOENT || rc == -EINVAL || rc == -EACCES || rc == -EPERM) {
                _cleanup_free_ char *why = strdup(kyb_error_message(*err));

                kyb_error_freep(err);
                return op_fail(r, "SourceIncomplete", err, "reading the pod spec %s: %s", spec_uri,
                               why ? why : "failed");
        }
        if (rc < 0)
                return rc; /* storage unreachable: try again */
        src->spec = json_loadb(text, len, 0, NULL);
        if (!json_is_object(src->spec))
                return op_fail(r, "SourceIncomplete", err, "%s is not a pod spec", spec_uri);
        return 1;
}

/* ---- phases ------------------------------------------------------------------------------ */

static bool failed(const rctx *r)
{
        return !strcmp(op_sget(r->status, "phase") ?: "", "Failed");
}

static int scheduled(rctx *r, const source *src, const char *pod_name, kyb_error **err)
{
        _cleanup_free_ char *msg = NULL;
        int rc;

        if (asprintf(&msg, "created pod %s", pod_name) < 0)
                return kyb_error_set(err, ENOMEM, "message");
        json_object_set_new(r->status, "phase", json_string("Scheduled"));
        json_object_set_new(r->status, "restoredPodName", json_string(pod_name));
        json_object_set_new(r->status, "checkpointID", json_string(src->checkpoint_id));
        json_object_set_new(r->status, "artifactURI", json_string(src->artifact_uri));
        json_object_set_new(r->status, "message", json_string(msg));
        kyb_kube_set_condition(r->status, "Scheduled", "True", "PodCreated", msg,
                               op_generation(r->obj), r->now);
        if ((rc = op_write_status(r, NULL, err)) < 0)
                return rc;
        op_event(r, "Normal", "PodCreated", msg);
        return 0;
}

static int pending(rctx *r, kyb_error **err)
{
        const json_t *from = json_object_get(spec_of(r->obj), "source");
        const char *ck_name = op_sget(from, "checkpointRequestName");
        _cleanup_free_ char *pod_name = NULL;
        source src = {0};
        int rc;

        /* > 0: ready; 0: not yet, or failed (the status says which) */
        rc = ck_name ? from_request(r, ck_name, &src, err)
                     : from_artifact(r, op_sget(from, "artifactURI") ?: "", &src, err);
        if (rc > 0 && !(pod_name = pod_name_for(r, &src)))
                rc = kyb_error_set(err, ENOMEM, "pod name");
        if (rc > 0)
                rc = create_pod(r, &src, pod_name, err);
        else if (rc == 0)
                rc = -EAGAIN;
        if (rc >= 0 && !failed(r))
                rc = scheduled(r, &src, pod_name, err);
        source_clear(&src);
        return rc == -EAGAIN ? 0 : rc;
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
