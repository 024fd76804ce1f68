/* SPDX-License-Identifier: Apache-2.0 */
/* The node half of the CheckpointRequest life cycle; see nodectl.h. */
#define KYB_LOG_MODULE "nodectl"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "kube/informer.h"
#include "kube/workqueue.h"
#include "nodectl/nodectl.h"
#include "store/fsutil.h"
#include "store/store.h"

#define RESULT_SUFFIX  KYB_STORE_UPLOAD_RESULT_SUFFIX
#define POD_SPEC_EXT   KYB_STORE_POD_SPEC_SUFFIX
#define POLL_MS        1000
#define WRITE_ATTEMPTS 5

struct kyb_nodectl {
        kyb_kube_client *c;
        kyb_nodectl_opts o;
        kyb_nodectl_engine engine;
        char *node, *result_dir, *runtime, *selector;
        kyb_kube_informer *inf;
        kyb_workqueue *q;
        pthread_t *workers;
        size_t n_workers;

        pthread_mutex_t mu;
        json_t *running;  /* keys this process is checkpointing: set */
        json_t *finished; /* key -> checkpoint ID this process checkpointed, until
                             the cache shows it past Checkpointing */
};

static int64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *sget(const json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

static int64_t generation(const json_t *obj)
{
        return json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
}

/* ---- status writes ------------------------------------------------------------------ */

typedef void (*status_edit)(json_t *status, const json_t *req, void *arg);

/* What the first attempt edits: known when it is at the expected phase (the
 * write is conditional on its resourceVersion, so a stale copy costs a
 * conflict, never a wrong write); otherwise, and on every retry, the live
 * object. */
static int status_base(kyb_nodectl *n, const json_t *known, bool reread, const char *phase,
                       json_t **out, kyb_error **err)
{
        const char *is = sget(json_object_get(known, "status"), "phase");

        if (!reread && is && !strcmp(is, phase))
                return (*out = json_deep_copy(known)) ? 0 : kyb_error_set(err, ENOMEM, "status");
        return kyb_kube_get(n->c, &KYB_KUBE_CHECKPOINT_REQUESTS, kyb_kube_meta(known, "namespace"),
                            kyb_kube_meta(known, "name"), out, err);
}

/*
 * Applies edit to the status of request known and writes it, re-reading on
 * conflict: the outcome of a checkpoint that took minutes must not be lost
 * to an operator that wrote a condition meanwhile. phase guards against
 * acting on a request someone else moved on. written, if given, gets the
 * object as stored.
 */
static int write_status(kyb_nodectl *n, const json_t *known, const char *phase, status_edit edit,
                        void *arg, json_t **written, kyb_error **err)
{
        int rc = -ESTALE;

        for (int i = 0; i < WRITE_ATTEMPTS && rc == -ESTALE; i++) {
                _cleanup_json_ json_t *req = NULL;
                json_t *st;

                kyb_error_freep(err);
                if ((rc = status_base(n, known, i > 0, phase, &req, err)) < 0)
                        return rc;
                st = json_object_get(req, "status");
                if (!json_is_object(st))
                        json_object_set_new(req, "status", st = json_object());
                if (strcmp(sget(st, "phase") ?: "", phase))
                        return kyb_error_setf(err, ESTALE, "request is %s now, not %s",
                                              sget(st, "phase") ?: "(none)", phase);
                edit(st, req, arg);
                json_object_set_new(st, "observedGeneration", json_integer(generation(req)));
                rc = kyb_kube_update_status(n->c, &KYB_KUBE_CHECKPOINT_REQUESTS, req, written, err);
        }
        return rc;
}

static void set_time(json_t *st, const char *field)
{
        char buf[40];

        kyb_kube_format_time(now_ns(), false, buf);
        json_object_set_new(st, field, json_string(buf));
}

typedef struct failure {
        const char *reason, *message, *condition;
} failure;

static void edit_failed(json_t *st, const json_t *req, void *arg)
{
        const failure *f = arg;

        json_object_set_new(st, "phase", json_string("Failed"));
        json_object_set_new(st, "message", json_string(f->message));
        set_time(st, "completionTime");
        kyb_kube_set_condition(st, f->condition, "False", f->reason, f->message, generation(req),
                               now_ns());
        kyb_kube_set_condition(st, "Ready", "False", f->reason, f->message, generation(req),
                               now_ns());
}

static void edit_checkpointing(json_t *st, const json_t *req, void *arg)
{
        json_object_set_new(st, "phase", json_string("Checkpointing"));
        json_object_set_new(st, "message", json_string("checkpointing on the node"));
        kyb_kube_set_condition(st, "Checkpointed", "Unknown", "Checkpointing",
                               "the agent is checkpointing the container", generation(req),
                               now_ns());
}

static void edit_uploading(json_t *st, const json_t *req, void *arg)
{
        const json_t *result = arg;

        json_object_update(st, (json_t *)result);
        json_object_set_new(st, "phase", json_string("Uploading"));
        json_object_set_new(st, "message",
                            json_string("checkpointed; waiting for the sidecar's upload"));
        kyb_kube_set_condition(st, "Checkpointed", "True", "Checkpointed",
                               "the checkpoint is complete on the node", generation(req), now_ns());
}

static void edit_succeeded(json_t *st, const json_t *req, void *arg)
{
        const json_t *up = arg;
        json_t *steps = json_object_get(st, "stepDurationsMillis");

        if (!json_is_object(steps))
                json_object_set_new(st, "stepDurationsMillis", steps = json_object());
        json_object_set(st, "artifactURI", json_object_get(up, "artifact"));
        json_object_set(st, "archiveSHA256", json_object_get(up, "sha256"));
        json_object_set(st, "archiveBytes", json_object_get(up, "size"));
        json_object_set(steps, "upload", json_object_get(up, "durationMs"));
        json_object_set_new(st, "phase", json_string("Succeeded"));
        json_object_set_new(st, "message", json_string("uploaded"));
        set_time(st, "completionTime");
        kyb_kube_set_condition(st, "Uploaded", "True", "Uploaded", sget(up, "artifact"),
                               generation(req), now_ns());
        kyb_kube_set_condition(st, "Ready", "True", "Succeeded", "the archive is stored",
                               generation(req), now_ns());
}

static int fail(kyb_nodectl *n, const json_t *hint, const char *expect, const failure *f)
{
        const char *ns = kyb_kube_meta(hint, "namespace"), *name = kyb_kube_meta(hint, "name");
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *req = NULL;
        int rc = write_status(n, hint, expect, edit_failed, (void *)f, &req, &err);

        if (rc < 0) {
                kyb_log_error_ctx(err, "checkpointrequest %s/%s: recording failure", ns, name);
                return rc;
        }
        kyb_log_info("checkpointrequest %s/%s failed: %s", ns, name, f->message);
        kyb_kube_event(n->c, req, "Warning", f->reason, "kybernate-agent", f->message, NULL);
        return 0;
}

/* ---- checkpointing --------------------------------------------------------------------- */

/* The container's runtime ID from the pod's status ("containerd://ID"). */
static int container_id(kyb_nodectl *n, const json_t *pod, const char *name, char **out,
                        kyb_error **err)
{
        size_t i, len = strlen(n->runtime);
        json_t *cs;

        json_array_foreach(json_object_get(json_object_get(pod, "status"), "containerStatuses"), i,
                           cs)
        {
                const char *id = sget(cs, "containerID");

                if (strcmp(sget(cs, "name") ?: "", name))
                        continue;
                if (!id || strncmp(id, n->runtime, len) || strncmp(id + len, "://", 3))
                        return kyb_error_setf(err, ENOTSUP,
                                              "container %s has ID %s, not a %s:// container", name,
                                              id ? id : "(none)", n->runtime);
                *out = strdup(id + len + 3);
                return *out ? 0 : kyb_error_set(err, ENOMEM, "container ID");
        }
        return kyb_error_setf(err, ENOENT, "container %s is not running", name);
}

/*
 * The pod's spec (without its node) beside the checkpoint, before the
 * checkpoint exists: the sidecar uploads it next to the archive, so a
 * restore from the artifact URI alone can recreate the pod.
 */
static int write_pod_spec(kyb_nodectl *n, const char *id, const json_t *pod, bool keep,
                          kyb_error **err)
{
        _cleanup_json_ json_t *spec = json_deep_copy(json_object_get(pod, "spec"));
        _cleanup_free_ char *name = NULL, *tmp = NULL, *text = NULL;
        _cleanup_close_ int dirfd = -1;

        if (asprintf(&name, "%s" POD_SPEC_EXT, id) < 0 ||
            asprintf(&tmp, ".%s" POD_SPEC_EXT ".tmp", id) < 0)
                return kyb_error_set(err, ENOMEM, "pod spec");
        if ((dirfd = open(n->result_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return kyb_error_set(err, errno, "%s", n->result_dir);
        if (!keep) {
                unlinkat(dirfd, name, 0);
                return 0;
        }
        json_object_del(spec, "nodeName");
        if (!spec || !(text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS)))
                return kyb_error_set(err, ENOMEM, "pod spec");
        return kyb_fs_write_at(dirfd, tmp, name, text, strlen(text), 0644, err);
}

static int run_job(kyb_nodectl *n, const json_t *req, json_t *result, kyb_error **err)
{
        const json_t *st = json_object_get(req, "status"), *spec = json_object_get(req, "spec");
        const char *ns = kyb_kube_meta(req, "namespace");
        _cleanup_json_ json_t *pod = NULL;
        _cleanup_free_ char *cid = NULL;
        kyb_nodectl_job job = {
            .ns = ns,
            .request = kyb_kube_meta(req, "name"),
            .pod = sget(spec, "podName"),
            .pod_uid = sget(st, "podUID"),
            .container = sget(st, "containerName"),
            .checkpoint_id = sget(st, "checkpointID"),
            .options = json_object_get(spec, "options"),
        };
        int rc;

        if (!job.pod || !job.container || !job.checkpoint_id)
                return kyb_error_setf(err, EINVAL,
                                      "request has no pod, container or checkpoint ID");
        if ((rc = kyb_kube_get(n->c, &KYB_KUBE_PODS, ns, job.pod, &pod, err)) < 0)
                return kyb_error_wrap(err, rc, "pod %s", job.pod);
        if (job.pod_uid && strcmp(job.pod_uid, kyb_kube_meta(pod, "uid") ?: ""))
                return kyb_error_setf(err, ENOENT, "pod %s was replaced", job.pod);
        if ((rc = container_id(n, pod, job.container, &cid, err)) < 0)
                return kyb_error_wrap(err, rc, "pod %s", job.pod);
        job.container_id = cid;
        if ((rc = write_pod_spec(n, job.checkpoint_id, pod, true, err)) < 0)
                return kyb_error_wrap(err, rc, "pod spec of %s", job.pod);
        rc = n->engine.checkpoint(n->engine.ctx, &job, result, err);
        if (rc < 0)
                write_pod_spec(n, job.checkpoint_id, pod, false, NULL);
        return rc;
}

static void mark_running(kyb_nodectl *n, const char *key, bool on)
{
        pthread_mutex_lock(&n->mu);
        if (on)
                json_object_set(n->running, key, json_true());
        else
                json_object_del(n->running, key);
        pthread_mutex_unlock(&n->mu);
}

static bool is_running(kyb_nodectl *n, const char *key)
{
        bool r;

        pthread_mutex_lock(&n->mu);
        r = json_object_get(n->running, key) != NULL;
        pthread_mutex_unlock(&n->mu);
        return r;
}

/*
 * Remembers how this process's run of a request ended, {"id", "result"} or
 * {"id", "failure"}, until the request's status shows it; run NULL forgets.
 */
static void set_finished(kyb_nodectl *n, const char *key, json_t *run)
{
        pthread_mutex_lock(&n->mu);
        if (run)
                json_object_set_new(n->finished, key, run);
        else
                json_object_del(n->finished, key);
        pthread_mutex_unlock(&n->mu);
}

static json_t *run_outcome(const json_t *req, const json_t *result, const char *error)
{
        const char *id = sget(json_object_get(req, "status"), "checkpointID");

        return json_pack("{s:s, s:s?, s:o?}", "id", id ?: "", "failure", error, "result",
                         result ? json_deep_copy(result) : NULL);
}

/* This process's run of the request with checkpoint ID id (a new
 * reference), or NULL. */
static json_t *finished_run(kyb_nodectl *n, const char *key, const char *id)
{
        json_t *f;

        pthread_mutex_lock(&n->mu);
        f = json_object_get(n->finished, key);
        f = id && f && !strcmp(sget(f, "id") ?: "", id) ? json_incref(f) : NULL;
        pthread_mutex_unlock(&n->mu);
        return f;
}

static int checkpoint(kyb_nodectl *n, const char *key, const json_t *req)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *result = json_object();
        int rc;

        /* The caller marked the key running before it claimed it. */
        kyb_log_info("checkpointrequest %s: checkpointing", key);
        rc = run_job(n, req, result, &err);
        if (rc < 0) {
                _cleanup_free_ char *msg = NULL;
                const char *why;

                if (asprintf(&msg, "checkpoint: %s", kyb_error_message(err)) < 0)
                        msg = NULL;
                why = msg ?: "checkpoint failed";
                /* Kept so that a retry after a failed status write reports
                 * this run's error instead of checkpointing again. */
                set_finished(n, key, run_outcome(req, NULL, why));
                mark_running(n, key, false);
                return fail(n, req, "Checkpointing",
                            &(failure){"CheckpointFailed", why, "Checkpointed"});
        }
        set_finished(n, key, run_outcome(req, result, NULL));
        mark_running(n, key, false);
        kyb_error_freep(&err);
        rc = write_status(n, req, "Checkpointing", edit_uploading, result, NULL, &err);
        if (rc < 0)
                kyb_log_error_ctx(err, "checkpointrequest %s: recording the checkpoint", key);
        else
                kyb_log_info("checkpointrequest %s: checkpointed, waiting for the upload", key);
        return rc;
}

/* ---- phases ---------------------------------------------------------------------------- */

static int claim(kyb_nodectl *n, const char *key, const json_t *req)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *claimed = json_deep_copy(req), *stored = NULL;
        json_t *st = json_object_get(claimed, "status");
        int rc;

        /* Conditional on the cached resourceVersion: of two agents (or two
         * workers after a relist) only one wins the claim. Marked running
         * first, so the claim's own watch event never looks like a request
         * a dead agent left behind. */
        edit_checkpointing(st, claimed, NULL);
        mark_running(n, key, true);
        rc = kyb_kube_update_status(n->c, &KYB_KUBE_CHECKPOINT_REQUESTS, claimed, &stored, &err);
        if (rc < 0)
                mark_running(n, key, false);
        if (rc == -ESTALE)
                return 0; /* someone moved it on; its next event tells us what */
        if (rc < 0) {
                kyb_log_error_ctx(err, "checkpointrequest %s: claiming", key);
                return rc;
        }
        return checkpoint(n, key, stored); /* its resourceVersion guards the next write */
}

static int read_result(kyb_nodectl *n, const char *id, json_t **out)
{
        _cleanup_free_ char *path = NULL;
        json_error_t e;

        if (asprintf(&path, "%s/%s" RESULT_SUFFIX, n->result_dir, id) < 0)
                return -ENOMEM;
        *out = json_load_file(path, 0, &e);
        return *out ? 0 : -ENOENT;
}

static int64_t uploading_since(const json_t *st)
{
        json_t *c;
        size_t i;
        int64_t t = now_ns();

        json_array_foreach(json_object_get(st, "conditions"), i, c)
        {
                if (!strcmp(sget(c, "type") ?: "", "Checkpointed"))
                        kyb_kube_parse_time(sget(c, "lastTransitionTime"), &t);
        }
        return t;
}

static int uploading(kyb_nodectl *n, const char *key, const json_t *req, uint64_t *requeue)
{
        const json_t *st = json_object_get(req, "status");
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *up = NULL;
        int rc;

        if (read_result(n, sget(st, "checkpointID") ?: "", &up) < 0) {
                if (now_ns() - uploading_since(st) > n->o.upload_timeout_ms * 1000000)
                        return fail(n, req, "Uploading",
                                    &(failure){"UploadTimeout",
                                               "the sidecar did not report an upload in time",
                                               "Uploaded"});
                *requeue = POLL_MS;
                return 0;
        }
        if (!sget(up, "artifact") || !sget(up, "sha256"))
                return fail(n, req, "Uploading",
                            &(failure){"UploadFailed", "the sidecar's result file is malformed",
                                       "Uploaded"});
        rc = write_status(n, req, "Uploading", edit_succeeded, up, NULL, &err);
        if (rc < 0 && rc != -ESTALE)
                kyb_log_error_ctx(err, "checkpointrequest %s: recording the upload", key);
        else if (rc >= 0)
                kyb_log_info("checkpointrequest %s: uploaded to %s", key, sget(up, "artifact"));
        return rc;
}

/*
 * A request at Checkpointing that no worker runs: left by a previous agent
 * process, or run by this one whose status write did not go through (or
 * did, and the cache has not caught up).
 */
static int resume(kyb_nodectl *n, const char *key, const json_t *cached)
{
        const char *ns = kyb_kube_meta(cached, "namespace"), *name = kyb_kube_meta(cached, "name");
        _cleanup_json_ json_t *result = json_object(), *req = NULL;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *run =
            finished_run(n, key, sget(json_object_get(cached, "status"), "checkpointID"));
        const char *failed = sget(run, "failure");
        const json_t *st;
        int rc;

        /* Decide on the live object, never on a possibly stale cache. */
        if ((rc = kyb_kube_get(n->c, &KYB_KUBE_CHECKPOINT_REQUESTS, ns, name, &req, &err)) < 0)
                return rc == -ENOENT ? 0 : rc;
        st = json_object_get(req, "status");
        if (strcmp(sget(st, "phase") ?: "", "Checkpointing") ||
            strcmp(sget(st, "nodeName") ?: "", n->node))
                return 0;
        if (failed) /* this process's run failed; recording that did not go through */
                return fail(n, req, "Checkpointing",
                            &(failure){"CheckpointFailed", failed, "Checkpointed"});
        if (run) { /* this process's run committed; recording that did not go through */
                kyb_log_info("checkpointrequest %s: recording the checkpoint again", key);
                return write_status(n, req, "Checkpointing", edit_uploading,
                                    json_object_get(run, "result"), NULL, &err);
        }
        if (!n->engine.exists(n->engine.ctx, sget(st, "checkpointID") ?: "", result)) {
                mark_running(n, key, true);
                return checkpoint(n, key, req); /* the old run rolled back: again */
        }
        kyb_log_info("checkpointrequest %s: found committed after a restart", key);
        return write_status(n, req, "Checkpointing", edit_uploading, result, NULL, &err);
}

static int reconcile(kyb_nodectl *n, const char *key, uint64_t *requeue)
{
        _cleanup_json_ json_t *req = kyb_kube_informer_get(n->inf, key);
        const json_t *st = json_object_get(req, "status");
        const char *phase = sget(st, "phase");

        *requeue = 0;
        if (!req || !phase || strcmp(sget(st, "nodeName") ?: "", n->node))
                return 0;
        if (!strcmp(phase, "Scheduled"))
                return claim(n, key, req);
        if (!strcmp(phase, "Checkpointing") && !is_running(n, key))
                return resume(n, key, req);
        if (strcmp(phase, "Checkpointing"))
                set_finished(n, key, NULL); /* the cache caught up */
        if (!strcmp(phase, "Uploading"))
                return uploading(n, key, req, requeue);
        return 0;
}

/* ---- plumbing ----------------------------------------------------------------------------- */

static void *worker(void *arg)
{
        kyb_nodectl *n = arg;
        char *key;

        while (kyb_workqueue_get(n->q, &key) == 0) {
                uint64_t requeue = 0;

                if (reconcile(n, key, &requeue) < 0)
                        kyb_workqueue_add_rate_limited(n->q, key);
                else if (requeue)
                        kyb_workqueue_add_after(n->q, key, requeue);
                else
                        kyb_workqueue_forget(n->q, key);
                kyb_workqueue_done(n->q, key);
                free(key);
        }
        return NULL;
}

static void on_change(void *ctx, json_t *obj)
{
        kyb_nodectl *n = ctx;
        _cleanup_free_ char *key = kyb_kube_key(obj);

        if (key)
                kyb_workqueue_add(n->q, key);
}

static void on_update(void *ctx, json_t *old, json_t *obj)
{
        on_change(ctx, obj);
}

static void on_api_error(void *ctx, const kyb_error *err)
{
        kyb_log_warn("watching CheckpointRequests: %s", kyb_error_message(err));
}

static int start_threads(kyb_nodectl *n, kyb_error **err)
{
        n->workers = calloc(n->o.workers, sizeof(*n->workers));
        if (!n->workers)
                return kyb_error_set(err, ENOMEM, "node controller");
        for (; n->n_workers < n->o.workers; n->n_workers++) {
                int e = pthread_create(&n->workers[n->n_workers], NULL, worker, n);

                if (e)
                        return kyb_error_set(err, e, "node controller worker");
        }
        return kyb_kube_informer_start(n->inf, err);
}

int kyb_nodectl_start(kyb_kube_client *c, const kyb_nodectl_opts *opts,
                      const kyb_nodectl_engine *engine, kyb_nodectl **out, kyb_error **err)
{
        kyb_nodectl *n = calloc(1, sizeof(*n));
        kyb_kube_informer_opts io = {.resource = &KYB_KUBE_CHECKPOINT_REQUESTS,
                                     .handlers = {on_change, on_update, NULL, NULL},
                                     .on_error = on_api_error};
        int rc;

        if (!n)
                return kyb_error_set(err, ENOMEM, "node controller");
        n->c = c;
        n->o = *opts;
        n->engine = *engine;
        n->o.workers = opts->workers ? opts->workers : 2;
        n->o.upload_timeout_ms = opts->upload_timeout_ms ? opts->upload_timeout_ms : 3600000;
        n->node = strdup(opts->node_name);
        n->result_dir = strdup(opts->result_dir);
        n->runtime = strdup(opts->container_runtime ? opts->container_runtime : "containerd");
        pthread_mutex_init(&n->mu, NULL);
        n->running = json_object();
        n->finished = json_object();
        n->q =
            kyb_workqueue_new(&(kyb_workqueue_opts){.base_delay_ms = 100, .max_delay_ms = 30000});
        if (!n->node || !n->result_dir || !n->runtime || !n->running || !n->finished || !n->q ||
            asprintf(&n->selector, "kybernate.io/node=%s", n->node) < 0) {
                kyb_nodectl_free(n);
                return kyb_error_set(err, ENOMEM, "node controller");
        }
        io.list.label_selector = n->selector;
        io.handlers.ctx = n;
        if ((rc = kyb_kube_informer_new(c, &io, &n->inf, err)) < 0 ||
            (rc = start_threads(n, err)) < 0) {
                kyb_nodectl_free(n);
                return kyb_error_wrap(err, rc, "node controller");
        }
        *out = n;
        return 0;
}

void kyb_nodectl_free(kyb_nodectl *n)
{
        if (!n)
                return;
        /* Stop events first, then let the workers finish what they hold;
         * they read the cache, so it goes last. */
        kyb_kube_informer_stop(n->inf);
        if (n->q)
                kyb_workqueue_shutdown(n->q);
        for (size_t i = 0; i < n->n_workers; i++)
                pthread_join(n->workers[i], NULL);
        free(n->workers);
        kyb_kube_informer_free(n->inf);
        kyb_workqueue_free(n->q);
        json_decref(n->running);
        json_decref(n->finished);
        pthread_mutex_destroy(&n->mu);
        free(n->node);
        free(n->result_dir);
        free(n->runtime);
        free(n->selector);
        free(n);
}
