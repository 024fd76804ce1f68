/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's wiring: informers, queue, workers, leader election, metrics. */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "kyb-version.h"
#include "operator/operator-internal.h"

#define OP_TRIM_INTERVAL_S 10

const kyb_config_option kyb_operator_options[] = {
    {"kubeconfig", KYB_CONFIG_STRING, offsetof(kyb_operator_config, kubeconfig), NULL, 0, 0,
     "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"},
    {"context", KYB_CONFIG_STRING, offsetof(kyb_operator_config, context), NULL, 0, 0,
     "kubeconfig context (default: its current-context)"},
    {"watch-namespace", KYB_CONFIG_STRING, offsetof(kyb_operator_config, watch_namespace), NULL, 0,
     0, "only act on objects in this namespace (default: all)"},
    {"leader-elect", KYB_CONFIG_BOOL, offsetof(kyb_operator_config, leader_elect), "true", 0, 0,
     "run only while holding the leader Lease (run two replicas for failover)"},
    {"lease-namespace", KYB_CONFIG_STRING, offsetof(kyb_operator_config, lease_namespace),
     "kybernate-system", 0, 0, "namespace of the leader Lease"},
    {"lease-name", KYB_CONFIG_STRING, offsetof(kyb_operator_config, lease_name),
     "kybernate-operator", 0, 0, "name of the leader Lease"},
    {"identity", KYB_CONFIG_STRING, offsetof(kyb_operator_config, identity), NULL, 0, 0,
     "this replica's name in the Lease (default: hostname_pid)"},
    {"lease-duration", KYB_CONFIG_DURATION, offsetof(kyb_operator_config, lease_ms), "15s", 1000,
     3600000, "how long a silent leader keeps the Lease"},
    {"renew-deadline", KYB_CONFIG_DURATION, offsetof(kyb_operator_config, renew_deadline_ms), "10s",
     500, 3600000, "a leader that cannot renew for this long steps down (and exits)"},
    {"retry-period", KYB_CONFIG_DURATION, offsetof(kyb_operator_config, retry_ms), "2s", 100,
     600000, "how often candidates try and leaders renew"},
    {"metrics-address", KYB_CONFIG_STRING, offsetof(kyb_operator_config, metrics_address),
     "127.0.0.1:9463", 0, 0, "host:port of /metrics and /healthz (empty: off)"},
    {"workers", KYB_CONFIG_INT64, offsetof(kyb_operator_config, workers), "12", 1, 64,
     "requests reconciled in parallel"},
    {"pod-wait", KYB_CONFIG_DURATION, offsetof(kyb_operator_config, pod_wait_ms), "30s", 0,
     86400000, "how long a request waits for its pod to exist before it fails"},
    {"request-timeout", KYB_CONFIG_DURATION, offsetof(kyb_operator_config, request_timeout_ms),
     "30m", 1000, 604800000, "a CheckpointRequest not finished by then fails"},
    {"sidecar-image", KYB_CONFIG_STRING, offsetof(kyb_operator_config, sidecar_image),
     "kybernate/kybernate-sidecar:" KYB_VERSION, 0, 0,
     "image of the fetch init container that restore pods get"},
    {"log-level", KYB_CONFIG_STRING, offsetof(kyb_operator_config, log_level), "info", 0, 0,
     "error, warn, info, debug or trace"},
    {"log-format", KYB_CONFIG_STRING, offsetof(kyb_operator_config, log_format), "text", 0, 0,
     "text or json"},
};
const size_t kyb_operator_n_options = KYB_ARRAY_SIZE(kyb_operator_options);

/* ---- the pod -> requests index -------------------------------------------------------- */

static char *prefixed(const char *kind, const json_t *obj)
{
        _cleanup_free_ char *key = kyb_kube_key(obj);
        char *out = NULL;

        if (!key || asprintf(&out, "%s%s", kind, key) < 0)
                return NULL;
        return out;
}

static void index_request(kyb_operator *op, const json_t *req, bool add)
{
        _cleanup_free_ char *pod = ckpt_pod_key(req), *key = prefixed(OP_KIND_CKPT, req);
        json_t *set;

        if (!pod || !key)
                return;
        pthread_mutex_lock(&op->index_mu);
        set = json_object_get(op->by_pod, pod);
        if (add && !set) {
                set = json_object();
                json_object_set_new(op->by_pod, pod, set);
        }
        if (add)
                json_object_set(set, key, json_true());
        else if (set) {
                json_object_del(set, key);
                if (!json_object_size(set))
                        json_object_del(op->by_pod, pod);
        }
        pthread_mutex_unlock(&op->index_mu);
}

static void enqueue(kyb_operator *op, const char *kind, const json_t *obj)
{
        _cleanup_free_ char *key = prefixed(kind, obj);

        if (key)
                kyb_workqueue_add(op->q, key);
}

/* A request's progress changes its policy's retention and status. */
static void wake_policy(kyb_operator *op, const json_t *req)
{
        const char *pol = json_string_value(
            json_object_get(json_object_get(json_object_get(req, "spec"), "policyRef"), "name"));
        _cleanup_free_ char *key = NULL;

        if (pol &&
            asprintf(&key, "%s%s/%s", OP_KIND_POL, kyb_kube_meta(req, "namespace"), pol) >= 0)
                kyb_workqueue_add(op->q, key);
}

/* Pods coming and going change what policies of their namespace match. */
static void wake_policies_of(kyb_operator *op, const char *ns)
{
        _cleanup_json_ json_t *all = kyb_kube_informer_list(op->policies);
        json_t *pol;
        size_t i;

        json_array_foreach(all, i, pol)
        {
                if (ns && !strcmp(kyb_kube_meta(pol, "namespace") ?: "", ns))
                        enqueue(op, OP_KIND_POL, pol);
        }
}

static void on_req_add(void *ctx, json_t *obj)
{
        index_request(ctx, obj, true);
        enqueue(ctx, OP_KIND_CKPT, obj);
        wake_policy(ctx, obj);
}

static void on_req_update(void *ctx, json_t *old, json_t *obj)
{
        _cleanup_free_ char *was = ckpt_pod_key(old), *is = ckpt_pod_key(obj);

        /* Only when spec.podName changed: a request briefly missing from
         * the index would miss its pod's wake-up. */
        if (was && (!is || strcmp(was, is)))
                index_request(ctx, old, false);
        on_req_add(ctx, obj);
}

static void on_req_delete(void *ctx, json_t *obj)
{
        kyb_operator *op = ctx;
        _cleanup_free_ char *key = prefixed(OP_KIND_CKPT, obj);

        index_request(op, obj, false);
        if (key)
                kyb_workqueue_forget(op->q, key);
        wake_policy(op, obj);
}

/* A node cordoned (or uncordoned) for a drain wakes every policy. */
static void on_node_update(void *ctx, json_t *old, json_t *node)
{
        kyb_operator *op = ctx;
        const json_t *was = json_object_get(json_object_get(old, "spec"), "unschedulable");
        const json_t *is = json_object_get(json_object_get(node, "spec"), "unschedulable");
        _cleanup_json_ json_t *all = NULL;
        json_t *pol;
        size_t i;

        if (json_is_true(was) == json_is_true(is))
                return;
        all = kyb_kube_informer_list(op->policies);
        json_array_foreach(all, i, pol) enqueue(op, OP_KIND_POL, pol);
}

/* Requests are cached without managedFields and without the pod spec the
 * assignment stored (the restore controller reads that one from the API):
 * 1,000 requests then need a third of the memory. */
static json_t *slim_request(const json_t *req)
{
        json_t *t = json_copy((json_t *)req);
        json_t *meta = t ? json_copy(json_object_get(req, "metadata")) : NULL;
        json_t *annots = json_object_get(meta, "annotations");

        if (!meta) {
                json_decref(t);
                return NULL;
        }
        json_object_del(meta, "managedFields");
        if (json_object_get(annots, KYB_ANNOT_POD_SPEC)) {
                annots = json_copy(annots);
                json_object_del(annots, KYB_ANNOT_POD_SPEC);
                json_object_set_new(meta, "annotations", annots);
        }
        json_object_set_new(t, "metadata", meta);
        return t;
}

static json_t *slim_node(const json_t *node)
{
        const json_t *meta = json_object_get(node, "metadata");

        return json_pack(
            "{s:{s:O*, s:O*}, s:{s:b}}", "metadata", "name", json_object_get(meta, "name"),
            "resourceVersion", json_object_get(meta, "resourceVersion"), "spec", "unschedulable",
            json_is_true(json_object_get(json_object_get(node, "spec"), "unschedulable")));
}

static void on_pol_add(void *ctx, json_t *obj)
{
        enqueue(ctx, OP_KIND_POL, obj);
}

static void on_pol_update(void *ctx, json_t *old, json_t *obj)
{
        enqueue(ctx, OP_KIND_POL, obj);
}

static void on_rstr_add(void *ctx, json_t *obj)
{
        enqueue(ctx, OP_KIND_RSTR, obj);
}

static void on_rstr_update(void *ctx, json_t *old, json_t *obj)
{
        enqueue(ctx, OP_KIND_RSTR, obj);
}

static void on_pod_change(void *ctx, json_t *pod)
{
        kyb_operator *op = ctx;
        _cleanup_free_ char *key = kyb_kube_key(pod), *rkey = NULL;
        const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
        const char *restore = json_string_value(json_object_get(labels, KYB_LABEL_RESTORE));
        const char *req;
        json_t *v;

        if (!key)
                return;
        pthread_mutex_lock(&op->index_mu);
        json_object_foreach(json_object_get(op->by_pod, key), req, v) kyb_workqueue_add(op->q, req);
        pthread_mutex_unlock(&op->index_mu);
        /* A restored pod wakes its RestoreRequest. */
        if (restore &&
            asprintf(&rkey, "%s%s/%s", OP_KIND_RSTR, kyb_kube_meta(pod, "namespace"), restore) >= 0)
                kyb_workqueue_add(op->q, rkey);
}

static void on_pod_update(void *ctx, json_t *old, json_t *pod)
{
        const char *was =
            json_string_value(json_object_get(json_object_get(old, "status"), "phase"));
        const char *is =
            json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));

        const json_t *old_labels = json_object_get(json_object_get(old, "metadata"), "labels");
        const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");

        on_pod_change(ctx, pod);
        /* What a policy matches depends on phase and labels only. */
        if ((was == NULL) != (is == NULL) || (was && is && strcmp(was, is)) ||
            !json_equal(old_labels, labels))
                wake_policies_of(ctx, kyb_kube_meta(pod, "namespace"));
}

static void on_pod_add(void *ctx, json_t *pod)
{
        on_pod_change(ctx, pod);
        wake_policies_of(ctx, kyb_kube_meta(pod, "namespace"));
}

static json_t *slim_statuses(const json_t *list)
{
        json_t *out = json_array(), *c;
        size_t i;

        json_array_foreach(list, i, c)
        {
                json_array_append_new(out, json_pack("{s:O*, s:O*, s:O*}", "name",
                                                     json_object_get(c, "name"), "containerID",
                                                     json_object_get(c, "containerID"), "state",
                                                     json_object_get(c, "state")));
        }
        return out;
}

/* What the controllers read of a pod; the rest is not cached (10,000 pods
 * must fit in a small operator). */
static json_t *slim_pod(const json_t *pod)
{
        const json_t *meta = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
        const json_t *st = json_object_get(pod, "status");
        const char *mark = json_string_value(
            json_object_get(json_object_get(meta, "annotations"), KYB_ANNOT_BEFORE_TERM));
        json_t *containers = json_array(), *c;
        size_t i;

        json_array_foreach(json_object_get(spec, "containers"), i, c)
        {
                json_array_append_new(containers,
                                      json_pack("{s:O*}", "name", json_object_get(c, "name")));
        }
        return json_pack(
            "{s:{s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, s:o*}, s:{s:O*, s:o}, s:{s:O*, s:O*, s:o, "
            "s:o}}",
            "metadata", "name", json_object_get(meta, "name"), "namespace",
            json_object_get(meta, "namespace"), "uid", json_object_get(meta, "uid"),
            "resourceVersion", json_object_get(meta, "resourceVersion"), "labels",
            json_object_get(meta, "labels"), "deletionTimestamp",
            json_object_get(meta, "deletionTimestamp"), "annotations",
            mark ? json_pack("{s:s}", KYB_ANNOT_BEFORE_TERM, mark) : NULL, "spec", "nodeName",
            json_object_get(spec, "nodeName"), "containers", containers, "status", "phase",
            json_object_get(st, "phase"), "message", json_object_get(st, "message"),
            "containerStatuses", slim_statuses(json_object_get(st, "containerStatuses")),
            "initContainerStatuses", slim_statuses(json_object_get(st, "initContainerStatuses")));
}

/* ---- workers ----------------------------------------------------------------------------- */

static void process(kyb_operator *op, const char *key)
{
        _cleanup_error_ kyb_error *err = NULL;
        uint64_t requeue = 0;
        int rc;

        kyb_log_trace("reconcile %s", key);
        if (!strncmp(key, OP_KIND_RSTR, strlen(OP_KIND_RSTR)))
                rc = rstr_reconcile(op, key + strlen(OP_KIND_RSTR), &requeue, &err);
        else if (!strncmp(key, OP_KIND_POL, strlen(OP_KIND_POL)))
                rc = pol_reconcile(op, key + strlen(OP_KIND_POL), &requeue, &err);
        else
                rc = ckpt_reconcile(op, key + strlen(OP_KIND_CKPT), &requeue, &err);

        if (rc < 0) {
                kyb_metric_add(op->reconciles, rc == -ESTALE ? "conflict" : "error", 1);
                /* Conflicts are routine (the agent writes status too). */
                if (rc == -ESTALE)
                        kyb_log_debug("%s: %s", key, kyb_error_message(err));
                else
                        kyb_log_error_ctx(err, "%s", key);
                kyb_workqueue_add_rate_limited(op->q, key);
                return;
        }
        kyb_metric_add(op->reconciles, "ok", 1);
        kyb_workqueue_forget(op->q, key);
        if (requeue)
                kyb_workqueue_add_after(op->q, key, requeue);
}

/* Followers keep their caches warm but never act. */
static bool wait_leading(kyb_operator *op)
{
        bool go;

        pthread_mutex_lock(&op->mu);
        while (!op->leading && !op->stopping)
                pthread_cond_wait(&op->cv, &op->mu);
        go = op->leading && !op->stopping;
        pthread_mutex_unlock(&op->mu);
        return go;
}

static void *worker(void *arg)
{
        kyb_operator *op = arg;
        char *key;

        if (!wait_leading(op))
                return NULL;
        while (kyb_workqueue_get(op->q, &key) == 0) {
                process(op, key);
                kyb_workqueue_done(op->q, key);
                kyb_metric_set(op->queue_depth, NULL, (double)kyb_workqueue_len(op->q));
                free(key);
        }
        return NULL;
}

static int start_workers(kyb_operator *op)
{
        op->workers = calloc((size_t)op->cfg.workers, sizeof(*op->workers));
        if (!op->workers)
                return -ENOMEM;
        for (; op->n_workers < (size_t)op->cfg.workers; op->n_workers++) {
                if (pthread_create(&op->workers[op->n_workers], NULL, worker, op))
                        return -EAGAIN;
        }
        return 0;
}

/* ---- leadership -------------------------------------------------------------------------- */

static void begin_leading(kyb_operator *op)
{
        _cleanup_json_ json_t *all = kyb_kube_informer_list(op->requests);
        _cleanup_json_ json_t *restores = kyb_kube_informer_list(op->restores);
        _cleanup_json_ json_t *policies = kyb_kube_informer_list(op->policies);
        json_t *obj;
        size_t i;

        pthread_mutex_lock(&op->mu);
        op->leading = true;
        pthread_cond_broadcast(&op->cv);
        pthread_mutex_unlock(&op->mu);
        kyb_metric_set(op->leading_gauge, NULL, 1);
        /* Level-triggered: look at everything once. */
        json_array_foreach(all, i, obj) enqueue(op, OP_KIND_CKPT, obj);
        json_array_foreach(restores, i, obj) enqueue(op, OP_KIND_RSTR, obj);
        json_array_foreach(policies, i, obj) enqueue(op, OP_KIND_POL, obj);
}

static void on_started(void *ctx)
{
        kyb_log_info("leading now");
        begin_leading(ctx);
}

static void on_stopped(void *ctx)
{
        kyb_operator *op = ctx;

        kyb_metric_set(op->leading_gauge, NULL, 0);
        pthread_mutex_lock(&op->mu);
        if (!op->stopping) {
                op->lost = true;
                op->stopping = true;
        }
        pthread_cond_broadcast(&op->cv);
        pthread_mutex_unlock(&op->mu);
}

static void on_api_error(void *ctx, const kyb_error *err)
{
        kyb_log_warn("%s", kyb_error_message(err));
}

static int health(void *ctx, kyb_error **err)
{
        kyb_operator *op = ctx;
        bool lost;

        pthread_mutex_lock(&op->mu);
        lost = op->lost;
        pthread_mutex_unlock(&op->mu);
        return lost ? kyb_error_setf(err, ENOLCK, "lost leadership") : 0;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static int setup_metrics(kyb_operator *op, kyb_error **err)
{
        int rc = kyb_metrics_new(&op->metrics, err);

        if (rc < 0)
                return rc;
        op->reconciles = kyb_metrics_counter(op->metrics, "kybernate_operator_reconciles_total",
                                             "CheckpointRequest reconciles by result", "result");
        op->transitions =
            kyb_metrics_counter(op->metrics, "kybernate_operator_phase_transitions_total",
                                "CheckpointRequest status writes by phase", "phase");
        op->queue_depth = kyb_metrics_gauge(op->metrics, "kybernate_operator_queue_depth",
                                            "keys ready in the work queue", NULL);
        op->leading_gauge = kyb_metrics_gauge(op->metrics, "kybernate_operator_leader",
                                              "1 while this replica leads", NULL);
        if (!op->cfg.metrics_address || !*op->cfg.metrics_address)
                return 0;
        return kyb_http_start(op->cfg.metrics_address, op->metrics, health, op, &op->http, err);
}

static int setup_informers(kyb_operator *op, kyb_error **err)
{
        kyb_kube_informer_opts ro = {
            .resource = &KYB_KUBE_CHECKPOINT_REQUESTS,
            .ns = op->cfg.watch_namespace,
            .transform = slim_request,
            .compact = true,
            .list = {.page_size = 100}, /* a small transient during sync */
            .handlers = {on_req_add, on_req_update, on_req_delete, op},
            .on_error = on_api_error,
        };
        kyb_kube_informer_opts po = {
            .resource = &KYB_KUBE_PODS,
            .ns = op->cfg.watch_namespace,
            .transform = slim_pod,
            .compact = true,
            .list = {.page_size = 100},
            .handlers = {on_pod_add, on_pod_update, on_pod_add, op},
            .on_error = on_api_error,
        };
        kyb_kube_informer_opts so = {
            .resource = &KYB_KUBE_RESTORE_REQUESTS,
            .ns = op->cfg.watch_namespace,
            .handlers = {on_rstr_add, on_rstr_update, NULL, op},
            .on_error = on_api_error,
        };
        kyb_kube_informer_opts pol = {
            .resource = &KYB_KUBE_CHECKPOINT_POLICIES,
            .ns = op->cfg.watch_namespace,
            .handlers = {on_pol_add, on_pol_update, NULL, op},
            .on_error = on_api_error,
        };
        kyb_kube_informer_opts no = {
            .resource = &KYB_KUBE_NODES,
            .transform = slim_node,
            .handlers = {NULL, on_node_update, NULL, op},
            .on_error = on_api_error,
        };
        int rc;

        if ((rc = kyb_kube_informer_new(op->c, &no, &op->nodes, err)) < 0 ||
            (rc = kyb_kube_informer_new(op->c, &pol, &op->policies, err)) < 0 ||
            (rc = kyb_kube_informer_new(op->c, &ro, &op->requests, err)) < 0 ||
            (rc = kyb_kube_informer_new(op->c, &so, &op->restores, err)) < 0 ||
            (rc = kyb_kube_informer_new(op->c, &po, &op->pods, err)) < 0)
                return rc;
        return 0;
}

int kyb_operator_new(const kyb_operator_config *cfg, kyb_operator **out, kyb_error **err)
{
        kyb_operator *op = calloc(1, sizeof(*op));
        kyb_kube_client_opts co = {.user_agent = KYB_COMPONENT};
        pthread_condattr_t attr;
        int rc;

        if (!op)
                return kyb_error_set(err, ENOMEM, "operator");
        op->cfg = *cfg;
        pthread_mutex_init(&op->mu, NULL);
        pthread_mutex_init(&op->index_mu, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&op->cv, &attr);
        pthread_condattr_destroy(&attr);
        op->by_pod = json_object();
        op->q =
            kyb_workqueue_new(&(kyb_workqueue_opts){.base_delay_ms = 50, .max_delay_ms = 30000});
        if (!op->by_pod || !op->q)
                rc = kyb_error_set(err, ENOMEM, "operator");
        else if ((rc = kyb_kube_config_load(cfg->kubeconfig, cfg->context, &op->kcfg, err)) >= 0 &&
                 (rc = kyb_kube_client_new(op->kcfg, &co, &op->c, err)) >= 0 &&
                 (rc = setup_metrics(op, err)) >= 0)
                rc = setup_informers(op, err);
        if (rc < 0) {
                kyb_operator_free(op);
                return rc;
        }
        *out = op;
        return 0;
}

static int start_election(kyb_operator *op, kyb_error **err)
{
        char host[256] = "operator", ident[320];
        kyb_kube_leader_opts lo = {
            .ns = op->cfg.lease_namespace,
            .name = op->cfg.lease_name,
            .identity = op->cfg.identity,
            .lease_ms = (unsigned)op->cfg.lease_ms,
            .renew_deadline_ms = (unsigned)op->cfg.renew_deadline_ms,
            .retry_ms = (unsigned)op->cfg.retry_ms,
            .on_started = on_started,
            .on_stopped = on_stopped,
            .on_error = on_api_error,
            .ctx = op,
        };

        if (!op->cfg.leader_elect) {
                on_started(op);
                return 0;
        }
        if (!lo.identity) {
                gethostname(host, sizeof(host) - 1);
                snprintf(ident, sizeof(ident), "%s_%d", host, (int)getpid());
                lo.identity = ident;
        }
        kyb_log_info("campaigning for lease %s/%s as %s", lo.ns, lo.name, lo.identity);
        return kyb_kube_leader_start(op->c, &lo, &op->leader, err);
}

/* Called with op->mu held. Freed JSON of past reconciles is scattered over
 * the heap between live cache entries; glibc only returns the top of the
 * heap by itself, so the free pages in between are handed back here
 * (MADV_DONTNEED, a walk of a few MiB). */
static void idle_tick(kyb_operator *op)
{
        struct timespec until;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += OP_TRIM_INTERVAL_S;
        if (pthread_cond_timedwait(&op->cv, &op->mu, &until) == ETIMEDOUT) {
                pthread_mutex_unlock(&op->mu);
                malloc_trim(0);
                pthread_mutex_lock(&op->mu);
        }
}

int kyb_operator_run(kyb_operator *op, kyb_error **err)
{
        int rc;

        if ((rc = kyb_kube_informer_start(op->requests, err)) < 0 ||
            (rc = kyb_kube_informer_start(op->restores, err)) < 0 ||
            (rc = kyb_kube_informer_start(op->policies, err)) < 0 ||
            (rc = kyb_kube_informer_start(op->nodes, err)) < 0 ||
            (rc = kyb_kube_informer_start(op->pods, err)) < 0)
                return rc;
        if (!kyb_kube_informer_wait_synced(op->requests, 60000) ||
            !kyb_kube_informer_wait_synced(op->restores, 60000) ||
            !kyb_kube_informer_wait_synced(op->policies, 60000) ||
            !kyb_kube_informer_wait_synced(op->nodes, 60000) ||
            !kyb_kube_informer_wait_synced(op->pods, 60000))
                return kyb_error_setf(err, ETIMEDOUT,
                                      "caches not synced within 60 s: is the API server reachable "
                                      "and are the CRDs installed?");
        kyb_log_info("caches synced");
        /* The initial lists' pages are garbage now: give the heap back. */
        malloc_trim(0);
        if ((rc = start_workers(op)) < 0)
                return kyb_error_set(err, -rc, "workers");
        if ((rc = start_election(op, err)) < 0)
                return rc;
        pthread_mutex_lock(&op->mu);
        while (!op->stopping)
                idle_tick(op);
        rc = op->lost ? kyb_error_setf(err, ENOLCK, "lost the leader lease; exiting") : 0;
        pthread_mutex_unlock(&op->mu);
        return rc;
}

void kyb_operator_stop(kyb_operator *op)
{
        pthread_mutex_lock(&op->mu);
        op->stopping = true;
        pthread_cond_broadcast(&op->cv);
        pthread_mutex_unlock(&op->mu);
}

int kyb_operator_metrics_port(const kyb_operator *op)
{
        return op->http ? kyb_http_port(op->http) : -1;
}

void kyb_operator_free(kyb_operator *op)
{
        if (!op)
                return;
        /* Workers finish their current key (those still waiting to lead
         * give up); then the lease is released. */
        kyb_operator_stop(op);
        if (op->q)
                kyb_workqueue_shutdown(op->q);
        for (size_t i = 0; i < op->n_workers; i++)
                pthread_join(op->workers[i], NULL);
        free(op->workers);
        kyb_kube_leader_free(op->leader);
        /* Pod and node handlers read the policy cache: no handler may run
         * once any informer is freed. */
        kyb_kube_informer_stop(op->requests);
        kyb_kube_informer_stop(op->restores);
        kyb_kube_informer_stop(op->policies);
        kyb_kube_informer_stop(op->nodes);
        kyb_kube_informer_stop(op->pods);
        kyb_kube_informer_free(op->requests);
        kyb_kube_informer_free(op->restores);
        kyb_kube_informer_free(op->policies);
        kyb_kube_informer_free(op->nodes);
        kyb_kube_informer_free(op->pods);
        kyb_http_stop(op->http);
        kyb_metrics_free(op->metrics);
        kyb_kube_client_free(op->c);
        kyb_kube_config_free(op->kcfg);
        kyb_workqueue_free(op->q);
        json_decref(op->by_pod);
        pthread_cond_destroy(&op->cv);
        pthread_mutex_destroy(&op->mu);
        pthread_mutex_destroy(&op->index_mu);
        free(op);
}
