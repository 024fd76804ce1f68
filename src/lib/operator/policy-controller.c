/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CheckpointPolicy controller: on each interval it creates one
 * CheckpointRequest per running pod the selector matches (skipping pods
 * whose previous request is still running), and it enforces retention by
 * deleting the oldest requests of the policy together with their archives
 * (through the storage library, with the policy's storage Secret).
 *
 * Runs are named after their slot (lastRunTime + interval), so a reconcile
 * repeated after a lost status write finds the requests it already made
 * instead of making them again.
 */
#define KYB_LOG_MODULE "policy-ctl"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "operator/operator-internal.h"
#include "storage/storage.h"

#define LABEL_POLICY "kybernate.io/policy"
#define NS_PER_S     1000000000LL

typedef struct pctx {
        kyb_operator *op;
        json_t *pol, *status;
        const char *ns, *name;
        int64_t now;
        json_t *requests; /* this policy's CheckpointRequests */
} pctx;

static const json_t *spec_of(const json_t *o)
{
        return json_object_get(o, "spec");
}

static const char *phase_of(const json_t *req)
{
        return op_sget(json_object_get(req, "status"), "phase") ?: "Pending";
}

/* ---- what the policy covers ------------------------------------------------------------ */

static json_t *policy_requests(pctx *p)
{
        _cleanup_json_ json_t *all = kyb_kube_informer_list(p->op->requests);
        json_t *mine = json_array(), *r;
        size_t i;

        json_array_foreach(all, i, r)
        {
                const char *pol = op_sget(json_object_get(spec_of(r), "policyRef"), "name");

                if (pol && !strcmp(pol, p->name) &&
                    !strcmp(kyb_kube_meta(r, "namespace") ?: "", p->ns))
                        json_array_append(mine, r);
        }
        return mine;
}

static int matched_pods(pctx *p, json_t **out, kyb_error **err)
{
        _cleanup_json_ json_t *all = kyb_kube_informer_list(p->op->pods), *mine = json_array();
        const json_t *sel = json_object_get(spec_of(p->pol), "selector");
        json_t *pod;
        size_t i;

        json_array_foreach(all, i, pod)
        {
                bool match = false;
                int rc;

                if (strcmp(kyb_kube_meta(pod, "namespace") ?: "", p->ns) ||
                    strcmp(op_sget(json_object_get(pod, "status"), "phase") ?: "", "Running") ||
                    json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp"))
                        continue;
                rc = kyb_kube_selector_matches(
                    sel, json_object_get(json_object_get(pod, "metadata"), "labels"), &match, err);
                if (rc < 0)
                        return rc;
                if (match)
                        json_array_append(mine, pod);
        }
        *out = TAKE_PTR(mine);
        return 0;
}

static bool has_active(const pctx *p, const char *pod)
{
        json_t *r;
        size_t i;

        json_array_foreach(p->requests, i, r)
        {
                const char *ph = phase_of(r);

                if (!strcmp(op_sget(spec_of(r), "podName") ?: "", pod) && strcmp(ph, "Succeeded") &&
                    strcmp(ph, "Failed"))
                        return true;
        }
        return false;
}

/* ---- the schedule ------------------------------------------------------------------------ */

static json_t *new_request(const pctx *p, const char *pod, int64_t slot)
{
        const json_t *spec = spec_of(p->pol);
        char name[254];
        json_t *req;

        snprintf(name, sizeof(name), "%.100s-%.100s-%lld", p->name, pod,
                 (long long)(slot / NS_PER_S));
        req =
            json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:O?, s:{s:s}, s:O}}",
                      "apiVersion", "kybernate.io/v1alpha1", "kind", "CheckpointRequest",
                      "metadata", "name", name, "namespace", p->ns, "labels", LABEL_POLICY, p->name,
                      "spec", "podName", pod, "options", json_object_get(spec, "defaultOptions"),
                      "policyRef", "name", p->name, "storage", json_object_get(spec, "storage"));
        if (req && op_sget(spec, "containerName"))
                json_object_set(json_object_get(req, "spec"), "containerName",
                                json_object_get(spec, "containerName"));
        return req;
}

/* Returns how many requests the run made (or found made by an earlier try). */
static int run_schedule(pctx *p, const json_t *pods, int64_t slot, kyb_error **err)
{
        int made = 0;
        json_t *pod;
        size_t i;
        int rc;

        json_array_foreach(pods, i, pod)
        {
                _cleanup_json_ json_t *req = NULL;
                const char *name = kyb_kube_meta(pod, "name");

                if (has_active(p, name))
                        continue; /* the previous run of this pod is still going */
                if (!(req = new_request(p, name, slot)))
                        return kyb_error_set(err, ENOMEM, "request");
                rc =
                    kyb_kube_create(p->op->c, &KYB_KUBE_CHECKPOINT_REQUESTS, p->ns, req, NULL, err);
                if (rc < 0 && rc != -EEXIST)
                        return kyb_error_wrap(err, rc, "creating a request for pod %s", name);
                kyb_error_freep(err);
                json_object_set(p->status, "lastRequestName",
                                json_object_get(json_object_get(req, "metadata"), "name"));
                made++;
        }
        /* lastRunTime is when requests were last created: a run that found
         * nothing to do stays due until a pod matches or a request ends. */
        if (made) {
                kyb_log_info("checkpointpolicy %s/%s: %d request(s) for slot %lld", p->ns, p->name,
                             made, (long long)(slot / NS_PER_S));
                op_set_time(p->status, "lastRunTime", p->now);
        }
        return made;
}

/* ---- retention ----------------------------------------------------------------------------- */

static int by_completion_desc(const void *a, const void *b)
{
        const json_t *ra = *(json_t *const *)a, *rb = *(json_t *const *)b;
        int64_t ta = op_time_of(json_object_get(ra, "status"), "completionTime", 0);
        int64_t tb = op_time_of(json_object_get(rb, "status"), "completionTime", 0);

        if (ta != tb)
                return ta < tb ? 1 : -1;
        /* Whole-second times tie often: then the later creation is newer. */
        ta = op_time_of(json_object_get(ra, "metadata"), "creationTimestamp", 0);
        tb = op_time_of(json_object_get(rb, "metadata"), "creationTimestamp", 0);
        if (ta != tb)
                return ta < tb ? 1 : -1;
        return -strcmp(kyb_kube_meta(ra, "name") ?: "", kyb_kube_meta(rb, "name") ?: "");
}

static int delete_artifact(pctx *p, const char *uri, kyb_error **err)
{
        const json_t *st = json_object_get(spec_of(p->pol), "storage");
        _cleanup_free_ char *key = NULL;
        kyb_storage *s = NULL;
        int rc = op_artifact_open(p->op, p->ns, st, uri, &s, &key, err);

        if (rc >= 0) {
                rc = kyb_storage_delete(s, key, err);
                kyb_storage_close(s);
        }
        if (rc == -ENOENT) { /* already gone: what retention wants */
                kyb_error_freep(err);
                rc = 0;
        }
        return rc;
}

static void drop(pctx *p, const json_t *req, const char *why)
{
        _cleanup_error_ kyb_error *err = NULL;
        const char *uri = op_sget(json_object_get(req, "status"), "artifactURI");
        const char *name = kyb_kube_meta(req, "name");
        _cleanup_free_ char *msg = NULL;
        int rc = uri ? delete_artifact(p, uri, &err) : 0;

        if (rc >= 0)
                rc = kyb_kube_delete(p->op->c, &KYB_KUBE_CHECKPOINT_REQUESTS, p->ns, name,
                                     kyb_kube_meta(req, "uid"), NULL, &err);
        if (rc < 0 && rc != -ENOENT) {
                if (asprintf(&msg, "keeping %s: %s", name, kyb_error_message(err)) >= 0)
                        kyb_kube_event(p->op->c, p->pol, "Warning", "RetentionFailed",
                                       KYB_COMPONENT, msg, NULL);
                kyb_log_warn("checkpointpolicy %s/%s: %s", p->ns, p->name, msg ? msg : "");
                return;
        }
        if (asprintf(&msg, "deleted %s (%s)", name, why) >= 0)
                kyb_kube_event(p->op->c, p->pol, "Normal", "RetentionDeleted", KYB_COMPONENT, msg,
                               NULL);
        kyb_log_info("checkpointpolicy %s/%s: %s", p->ns, p->name, msg ? msg : name);
}

/* Newest first; marks what the per-pod count and age limits remove. */
static void per_pod_limits(pctx *p, json_t **v, size_t n, bool *gone)
{
        const json_t *ret = json_object_get(spec_of(p->pol), "retention");
        json_int_t max_count = json_integer_value(json_object_get(ret, "maxCount"));
        json_int_t max_age = json_integer_value(json_object_get(ret, "maxAgeSeconds"));

        for (size_t i = 0; i < n; i++) {
                const char *pod = op_sget(spec_of(v[i]), "podName") ?: "";
                size_t rank = 0; /* newer requests of the same pod */

                for (size_t j = 0; j < i; j++)
                        rank += !strcmp(op_sget(spec_of(v[j]), "podName") ?: "", pod);
                if (max_count > 0 && rank >= (size_t)max_count)
                        gone[i] = true;
                /* never the newest of a pod */
                if (max_age > 0 && rank > 0 &&
                    op_time_of(json_object_get(v[i], "status"), "completionTime", p->now) <
                        p->now - max_age * NS_PER_S)
                        gone[i] = true;
        }
}

static bool newest_of_pod(json_t **v, size_t i)
{
        for (size_t j = 0; j < i; j++)
                if (!strcmp(op_sget(spec_of(v[j]), "podName") ?: "",
                            op_sget(spec_of(v[i]), "podName") ?: ""))
                        return false;
        return true;
}

static void enforce_retention(pctx *p)
{
        json_int_t max_bytes = json_integer_value(
            json_object_get(json_object_get(spec_of(p->pol), "retention"), "maxTotalBytes"));
        size_t n = 0, total_n = json_array_size(p->requests);
        _cleanup_free_ json_t **v = calloc(total_n + 1, sizeof(*v));
        _cleanup_free_ bool *gone = calloc(total_n + 1, sizeof(*gone));
        int64_t total = 0, live = 0, last_ok = 0;
        json_t *r;
        size_t i;

        if (!v || !gone)
                return;
        json_array_foreach(p->requests, i, r)
        {
                if (!strcmp(phase_of(r), "Succeeded"))
                        v[n++] = r;
        }
        qsort(v, n, sizeof(*v), by_completion_desc);
        per_pod_limits(p, v, n, gone);
        for (i = 0; i < n; i++)
                total += gone[i] ? 0
                                 : json_integer_value(json_object_get(
                                       json_object_get(v[i], "status"), "archiveBytes"));
        for (i = n; max_bytes > 0 && total > max_bytes && i-- > 0;) {
                if (gone[i] || newest_of_pod(v, i))
                        continue;
                gone[i] = true;
                total -= json_integer_value(
                    json_object_get(json_object_get(v[i], "status"), "archiveBytes"));
        }
        for (i = 0; i < n; i++) {
                if (gone[i]) {
                        drop(p, v[i], "retention");
                        continue;
                }
                live++;
                last_ok = KYB_MAX(last_ok,
                                  op_time_of(json_object_get(v[i], "status"), "completionTime", 0));
        }
        json_object_set_new(p->status, "liveCheckpoints", json_integer(live));
        json_object_set_new(p->status, "totalBytes", json_integer(total));
        if (last_ok)
                op_set_time(p->status, "lastSuccessTime", last_ok);
}

/* ---- reconcile ------------------------------------------------------------------------------- */

static int64_t interval_ns(const pctx *p)
{
        const json_t *trig = json_object_get(spec_of(p->pol), "triggers");

        return json_integer_value(
                   json_object_get(json_object_get(trig, "schedule"), "intervalSeconds")) *
               NS_PER_S;
}

static bool trigger_on(const pctx *p, const char *name)
{
        return json_is_true(json_object_get(json_object_get(spec_of(p->pol), "triggers"), name));
}

static bool node_cordoned(const pctx *p, const json_t *pod)
{
        const char *node = op_sget(json_object_get(pod, "spec"), "nodeName");
        _cleanup_json_ json_t *n = node ? kyb_kube_informer_get(p->op->nodes, node) : NULL;

        return json_is_true(json_object_get(json_object_get(n, "spec"), "unschedulable"));
}

/*
 * onNodeDrain: a pod on a cordoned node is checkpointed once (a request
 * named after the pod's UID: a pod instance is drained at most once; its
 * replacement elsewhere has another UID).
 */
static int drain_trigger(pctx *p, const json_t *pods, kyb_error **err)
{
        json_t *pod;
        size_t i;
        int rc;

        json_array_foreach(pods, i, pod)
        {
                _cleanup_json_ json_t *req = NULL;
                const char *name = kyb_kube_meta(pod, "name"), *uid = kyb_kube_meta(pod, "uid");
                char rname[254];

                if (!node_cordoned(p, pod) || has_active(p, name))
                        continue;
                if (!(req = new_request(p, name, 0)))
                        return kyb_error_set(err, ENOMEM, "request");
                snprintf(rname, sizeof(rname), "%.100s-%.100s-drain-%.8s", p->name, name,
                         uid ? uid : "0");
                json_object_set_new(json_object_get(req, "metadata"), "name", json_string(rname));
                rc =
                    kyb_kube_create(p->op->c, &KYB_KUBE_CHECKPOINT_REQUESTS, p->ns, req, NULL, err);
                if (rc == -EEXIST) {
                        kyb_error_freep(err);
                        continue; /* this pod's drain checkpoint was made */
                }
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "drain request for pod %s", name);
                kyb_log_info("checkpointpolicy %s/%s: node of pod %s is cordoned: %s", p->ns,
                             p->name, name, rname);
                json_object_set_new(p->status, "lastRequestName", json_string(rname));
        }
        return 0;
}

/* beforeTermination: the runtime shim checkpoints pods carrying this mark
 * when their container is being stopped. */
static int mark_pods(pctx *p, const json_t *pods, kyb_error **err)
{
        json_t *pod;
        size_t i;
        int rc;

        json_array_foreach(pods, i, pod)
        {
                const char *mark =
                    op_sget(json_object_get(json_object_get(pod, "metadata"), "annotations"),
                            KYB_ANNOT_BEFORE_TERM);
                _cleanup_json_ json_t *patch = NULL;

                if (mark && !strcmp(mark, p->name))
                        continue;
                patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", KYB_ANNOT_BEFORE_TERM,
                                  p->name);
                rc = kyb_kube_patch(p->op->c, &KYB_KUBE_PODS, p->ns, kyb_kube_meta(pod, "name"),
                                    KYB_KUBE_PATCH_MERGE, patch, false, NULL, err);
                if (rc < 0 && rc != -ENOENT)
                        return kyb_error_wrap(err, rc, "marking pod %s",
                                              kyb_kube_meta(pod, "name"));
                kyb_error_freep(err);
        }
        return 0;
}

/* onPreemption stays in the schema for clusters that can signal it, but
 * Kubernetes 1.20's scheduler deletes a victim before anything announces
 * the preemption: a policy asking for it is told so, not silently ignored. */
static void report_triggers(pctx *p)
{
        static const char msg[] = "onPreemption is not acted on: Kubernetes 1.20 gives no signal "
                                  "before a pod is preempted (the scheduler deletes it first)";
        bool on = trigger_on(p, "onPreemption");

        if (kyb_kube_set_condition(p->status, "TriggersSupported", on ? "False" : "True",
                                   on ? "OnPreemptionNotSupported" : "Supported", on ? msg : "",
                                   op_generation(p->pol), p->now) &&
            on)
                kyb_kube_event(p->op->c, p->pol, "Warning", "OnPreemptionNotSupported",
                               KYB_COMPONENT, msg, NULL);
}

static int schedule(pctx *p, const json_t *pods, uint64_t *requeue_ms, kyb_error **err)
{
        int64_t every = interval_ns(p);
        bool suspended = json_is_true(json_object_get(spec_of(p->pol), "suspend"));
        int64_t created =
            op_time_of(json_object_get(p->pol, "metadata"), "creationTimestamp", p->now);
        int64_t last = op_time_of(p->status, "lastRunTime", 0);
        int64_t slot = last ? last + every : created;
        int rc;

        kyb_kube_set_condition(p->status, "Suspended", suspended ? "True" : "False",
                               suspended ? "Suspended" : "Active",
                               suspended ? "spec.suspend is set" : "", op_generation(p->pol),
                               p->now);
        report_triggers(p);
        if (!suspended && trigger_on(p, "onNodeDrain") && (rc = drain_trigger(p, pods, err)) < 0)
                return rc;
        if (!suspended && trigger_on(p, "beforeTermination") && (rc = mark_pods(p, pods, err)) < 0)
                return rc;
        if (suspended || every <= 0) {
                json_object_del(p->status, "nextRunTime");
                return 0;
        }
        if (p->now >= slot) {
                if ((rc = run_schedule(p, pods, slot, err)) < 0)
                        return rc;
                if (rc == 0) { /* still due; pod and request events wake us sooner */
                        op_set_time(p->status, "nextRunTime", slot);
                        *requeue_ms = 5000;
                        return 0;
                }
                slot = p->now + every;
        }
        op_set_time(p->status, "nextRunTime", slot);
        *requeue_ms = (uint64_t)((slot - p->now) / 1000000) + 1;
        return 0;
}

int pol_reconcile(kyb_operator *op, const char *key, uint64_t *requeue_ms, kyb_error **err)
{
        _cleanup_json_ json_t *pol = kyb_kube_informer_get(op->policies, key);
        _cleanup_json_ json_t *status = NULL, *requests = NULL, *pods = NULL, *obj = NULL;
        pctx p = {.op = op, .pol = pol, .now = op_now_ns()};
        _cleanup_error_ kyb_error *sel_err = NULL;
        int rc;

        *requeue_ms = 0;
        if (!pol)
                return 0;
        status = json_is_object(json_object_get(pol, "status"))
                     ? json_deep_copy(json_object_get(pol, "status"))
                     : json_object();
        p.status = status;
        p.ns = kyb_kube_meta(pol, "namespace");
        p.name = kyb_kube_meta(pol, "name");
        p.requests = requests = policy_requests(&p);
        if (matched_pods(&p, &pods, &sel_err) < 0) {
                kyb_kube_set_condition(status, "Ready", "False", "InvalidSelector",
                                       kyb_error_message(sel_err), op_generation(pol), p.now);
        } else {
                json_object_set_new(status, "matchedPods",
                                    json_integer((json_int_t)json_array_size(pods)));
                kyb_kube_set_condition(status, "Ready", "True", "Ready", "", op_generation(pol),
                                       p.now);
                if ((rc = schedule(&p, pods, requeue_ms, err)) < 0)
                        return rc;
        }
        enforce_retention(&p);
        if (json_equal(status, json_object_get(pol, "status")))
                return 0;
        json_object_set_new(status, "observedGeneration", json_integer(op_generation(pol)));
        if (!(obj = json_deep_copy(pol)))
                return kyb_error_set(err, ENOMEM, "status");
        json_object_set(obj, "status", status);
        return kyb_kube_update_status(op->c, &KYB_KUBE_CHECKPOINT_POLICIES, obj, NULL, err);
}
