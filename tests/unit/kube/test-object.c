/* SPDX-License-Identifier: Apache-2.0 */
/* Object helpers: times, conditions, selectors, keys; paths, queries and errors. */
#include <stdio.h>
#include <stdlib.h>

#include "kube-test-util.h"
#include "kube/kube-internal.h"

#define NS_PER_S 1000000000LL
#define T0       1795636800LL /* 2026-11-25T20:00:00Z */

/* ---- times ------------------------------------------------------------------- */

static int64_t parse_ok(const char *s)
{
        int64_t ns = -1;

        if (kyb_kube_parse_time(s, &ns) < 0)
                fail_msg("parse %s failed", s);
        return ns;
}

static void test_format_time(void **state)
{
        char buf[40];

        kyb_kube_format_time(0, false, buf);
        assert_string_equal(buf, "1970-01-01T00:00:00Z");
        kyb_kube_format_time(T0 * NS_PER_S, false, buf);
        assert_string_equal(buf, "2026-11-25T20:00:00Z");
        /* Seconds drop the fraction (truncated, not rounded). */
        kyb_kube_format_time(T0 * NS_PER_S + 999999999, false, buf);
        assert_string_equal(buf, "2026-11-25T20:00:00Z");
        /* micro: exactly six digits, truncated. */
        kyb_kube_format_time(T0 * NS_PER_S + 123456789, true, buf);
        assert_string_equal(buf, "2026-11-25T20:00:00.123456Z");
        kyb_kube_format_time(T0 * NS_PER_S + 1000, true, buf);
        assert_string_equal(buf, "2026-11-25T20:00:00.000001Z");
        kyb_kube_format_time(951827696LL * NS_PER_S, true, buf);
        assert_string_equal(buf, "2000-02-29T12:34:56.000000Z");
}

static void test_time_round_trip(void **state)
{
        static const int64_t times[] = {0, T0 * NS_PER_S, T0 * NS_PER_S + 123456000,
                                        951827696LL * NS_PER_S + 1000, 4102444799LL * NS_PER_S};
        char buf[40];

        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
                kyb_kube_format_time(times[i], true, buf);
                assert_int_equal(parse_ok(buf), times[i]);
                kyb_kube_format_time(times[i], false, buf);
                assert_int_equal(parse_ok(buf), times[i] / NS_PER_S * NS_PER_S);
        }
}

static void test_parse_time(void **state)
{
        assert_int_equal(parse_ok("2026-11-25T20:00:00Z"), T0 * NS_PER_S);
        assert_int_equal(parse_ok("2026-11-25T20:00:00z"), T0 * NS_PER_S);
        /* Fractions of any length up to nanoseconds; digits beyond are dropped. */
        assert_int_equal(parse_ok("2026-11-25T20:00:00.5Z"), T0 * NS_PER_S + 500000000);
        assert_int_equal(parse_ok("2026-11-25T20:00:00.000001Z"), T0 * NS_PER_S + 1000);
        assert_int_equal(parse_ok("2026-11-25T20:00:00.123456789Z"), T0 * NS_PER_S + 123456789);
        assert_int_equal(parse_ok("2026-11-25T20:00:00.1234567899Z"), T0 * NS_PER_S + 123456789);
        /* Offsets: local time minus the offset is UTC. */
        assert_int_equal(parse_ok("2026-11-25T22:00:00+02:00"), T0 * NS_PER_S);
        assert_int_equal(parse_ok("2026-11-25T14:30:00-05:30"), T0 * NS_PER_S);
        assert_int_equal(parse_ok("2026-11-25T20:00:00+00:00"), T0 * NS_PER_S);
        assert_int_equal(parse_ok("2026-11-26T01:45:00.25+05:45"), T0 * NS_PER_S + 250000000);
        /* Across a date boundary. */
        assert_int_equal(parse_ok("2026-11-26T00:30:00+04:30"), T0 * NS_PER_S);
}

static void test_parse_time_invalid(void **state)
{
        static const char *bad[] = {
            "",
            "nonsense",
            "2026-11-25",
            "2026-11-25T20:00:00",        /* no zone */
            "2026-11-25 20:00:00Z",       /* space, not T */
            "2026-11-25T20:00:00ZZ",      /* trailing garbage */
            "2026-11-25T20:00:00Z ",      /* trailing space */
            "2026-11-25T20:00:00+0200",   /* offset without colon */
            "2026-11-25T20:00:00+02",     /* offset without minutes */
            "2026-11-25T20:00:00+02:00x", /* trailing garbage */
            "2026-11-25T20:00:00.5",      /* fraction, no zone */
            "2026-11-25T20:00:00.Z",      /* '.' without digits */
            "2026-11-25T20:00:00+-1:00",  /* signed hour */
            "2026-11-25T20:00:00+ 1:00",  /* space for a digit */
            "2026-11-25T20:00:00+24:00",  /* hour out of range */
            "2026-11-25T20:00:00+02:60",  /* minute out of range */
            "2026-13-25T20:00:00Z",       /* month 13 */
            "2026-11-25T25:00:00Z",       /* hour 25 */
        };
        int64_t ns = 42;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (kyb_kube_parse_time(bad[i], &ns) != -EINVAL)
                        fail_msg("'%s' parsed", bad[i]);
                assert_int_equal(ns, 42); /* untouched on failure */
        }
        assert_int_equal(kyb_kube_parse_time(NULL, &ns), -EINVAL);
}

/* ---- conditions ------------------------------------------------------------------ */

static json_t *condition(json_t *status, const char *type)
{
        size_t i;
        json_t *c;

        json_array_foreach(json_object_get(status, "conditions"), i, c)
        {
                if (!strcmp(json_string_value(json_object_get(c, "type")), type))
                        return c;
        }
        fail_msg("no condition %s", type);
        return NULL;
}

static const char *cond_str(json_t *status, const char *type, const char *field)
{
        return json_string_value(json_object_get(condition(status, type), field));
}

static void test_set_condition(void **state)
{
        _cleanup_json_ json_t *st = json_object();
        const int64_t t1 = T0 * NS_PER_S, t2 = t1 + 60 * NS_PER_S, t3 = t2 + 60 * NS_PER_S;

        /* A new condition: the list is created and the transition time set. */
        assert_true(kyb_kube_set_condition(st, "Ready", "False", "Pending", "waiting", 1, t1));
        assert_int_equal(json_array_size(json_object_get(st, "conditions")), 1);
        assert_string_equal(cond_str(st, "Ready", "status"), "False");
        assert_string_equal(cond_str(st, "Ready", "reason"), "Pending");
        assert_string_equal(cond_str(st, "Ready", "message"), "waiting");
        assert_string_equal(cond_str(st, "Ready", "lastTransitionTime"), "2026-11-25T20:00:00Z");
        assert_int_equal(
            json_integer_value(json_object_get(condition(st, "Ready"), "observedGeneration")), 1);

        /* The same again is no change: no status update needed. */
        assert_false(kyb_kube_set_condition(st, "Ready", "False", "Pending", "waiting", 1, t2));
        assert_string_equal(cond_str(st, "Ready", "lastTransitionTime"), "2026-11-25T20:00:00Z");

        /* Same status, new reason and message: a change, but no transition. */
        assert_true(
            kyb_kube_set_condition(st, "Ready", "False", "Pulling", "pulling image", 1, t2));
        assert_string_equal(cond_str(st, "Ready", "reason"), "Pulling");
        assert_string_equal(cond_str(st, "Ready", "message"), "pulling image");
        assert_string_equal(cond_str(st, "Ready", "lastTransitionTime"), "2026-11-25T20:00:00Z");

        /* A new generation alone is a change. */
        assert_true(
            kyb_kube_set_condition(st, "Ready", "False", "Pulling", "pulling image", 2, t2));
        assert_int_equal(
            json_integer_value(json_object_get(condition(st, "Ready"), "observedGeneration")), 2);
        assert_string_equal(cond_str(st, "Ready", "lastTransitionTime"), "2026-11-25T20:00:00Z");

        /* The status changes: the transition time moves. */
        assert_true(kyb_kube_set_condition(st, "Ready", "True", "Running", NULL, 2, t3));
        assert_string_equal(cond_str(st, "Ready", "status"), "True");
        assert_string_equal(cond_str(st, "Ready", "message"), "");
        assert_string_equal(cond_str(st, "Ready", "lastTransitionTime"), "2026-11-25T20:02:00Z");

        /* Another type is a second entry; the first is untouched. */
        assert_true(kyb_kube_set_condition(st, "Stalled", "False", "OK", "", 2, t3));
        assert_int_equal(json_array_size(json_object_get(st, "conditions")), 2);
        assert_string_equal(cond_str(st, "Ready", "status"), "True");
        assert_false(kyb_kube_set_condition(st, "Stalled", "False", "OK", NULL, 2, t3 + NS_PER_S));
}

/* Conditions written by someone else (other fields, other order) are kept. */
static void test_set_condition_existing_list(void **state)
{
        _cleanup_json_ json_t *st = json_loads(
            "{\"phase\": \"x\", \"conditions\": [{\"type\": \"Other\", \"status\": \"True\"},"
            " {\"type\": \"Ready\", \"status\": \"True\", \"reason\": \"R\", \"message\": \"m\","
            " \"lastTransitionTime\": \"2020-01-01T00:00:00Z\", \"observedGeneration\": 3}]}",
            0, NULL);

        assert_non_null(st);
        assert_false(kyb_kube_set_condition(st, "Ready", "True", "R", "m", 3, T0 * NS_PER_S));
        assert_true(kyb_kube_set_condition(st, "Ready", "False", "R", "m", 3, T0 * NS_PER_S));
        assert_string_equal(cond_str(st, "Ready", "lastTransitionTime"), "2026-11-25T20:00:00Z");
        assert_int_equal(json_array_size(json_object_get(st, "conditions")), 2);
        assert_string_equal(cond_str(st, "Other", "status"), "True");
        assert_string_equal(json_string_value(json_object_get(st, "phase")), "x");
}

/* ---- label selectors -------------------------------------------------------------- */

static bool matches(const char *selector, const char *labels)
{
        _cleanup_json_ json_t *sel = json_loads(selector, 0, NULL);
        _cleanup_json_ json_t *lab = json_loads(labels, 0, NULL);
        _cleanup_error_ kyb_error *err = NULL;
        bool m = false;

        assert_non_null(sel);
        assert_non_null(lab);
        if (kyb_kube_selector_matches(sel, lab, &m, &err) < 0)
                fail_msg("%s: %s", selector, kyb_error_message(err));
        return m;
}

static void selector_bad(const char *selector, const char *fragment)
{
        _cleanup_json_ json_t *sel = json_loads(selector, 0, NULL);
        _cleanup_json_ json_t *lab = json_loads("{\"app\": \"db\"}", 0, NULL);
        _cleanup_error_ kyb_error *err = NULL;
        bool m = true;

        assert_non_null(sel);
        assert_error(kyb_kube_selector_matches(sel, lab, &m, &err), err, EINVAL, fragment);
        assert_false(m);
}

static void test_selector_match_labels(void **state)
{
        const char *labels = "{\"app\": \"db\", \"tier\": \"backend\"}";

        /* An empty selector selects everything. */
        assert_true(matches("{}", labels));
        assert_true(matches("{}", "{}"));
        assert_true(matches("{\"matchLabels\": {}, \"matchExpressions\": []}", labels));
        assert_true(matches("{\"matchLabels\": {\"app\": \"db\"}}", labels));
        assert_true(matches("{\"matchLabels\": {\"app\": \"db\", \"tier\": \"backend\"}}", labels));
        assert_false(matches("{\"matchLabels\": {\"app\": \"web\"}}", labels));
        assert_false(matches("{\"matchLabels\": {\"app\": \"db\", \"zone\": \"a\"}}", labels));
        assert_false(matches("{\"matchLabels\": {\"app\": \"db\"}}", "{}"));
        /* Values compare exactly. */
        assert_false(matches("{\"matchLabels\": {\"app\": \"d\"}}", labels));
        assert_false(matches("{\"matchLabels\": {\"app\": \"dbx\"}}", labels));
}

#define EXPR(key, op, values)                                                                      \
        "{\"matchExpressions\": [{\"key\": \"" key "\", \"operator\": \"" op "\"" values "}]}"

static void test_selector_expressions(void **state)
{
        const char *labels = "{\"app\": \"db\", \"tier\": \"backend\"}";

        assert_true(matches(EXPR("app", "In", ", \"values\": [\"web\", \"db\"]"), labels));
        assert_false(matches(EXPR("app", "In", ", \"values\": [\"web\"]"), labels));
        assert_false(matches(EXPR("zone", "In", ", \"values\": [\"a\"]"), labels));
        assert_true(matches(EXPR("app", "NotIn", ", \"values\": [\"web\"]"), labels));
        assert_false(matches(EXPR("app", "NotIn", ", \"values\": [\"web\", \"db\"]"), labels));
        /* NotIn matches objects without the label (as Kubernetes does). */
        assert_true(matches(EXPR("zone", "NotIn", ", \"values\": [\"a\"]"), labels));
        assert_true(matches(EXPR("tier", "Exists", ""), labels));
        assert_false(matches(EXPR("zone", "Exists", ""), labels));
        assert_true(matches(EXPR("zone", "DoesNotExist", ""), labels));
        assert_false(matches(EXPR("tier", "DoesNotExist", ""), labels));
        assert_true(matches(EXPR("tier", "Exists", ", \"values\": []"), labels));

        /* All requirements must hold (AND), labels and expressions together. */
        assert_true(matches("{\"matchLabels\": {\"app\": \"db\"}, \"matchExpressions\": ["
                            "{\"key\": \"tier\", \"operator\": \"In\", \"values\": [\"backend\"]},"
                            "{\"key\": \"canary\", \"operator\": \"DoesNotExist\"}]}",
                            labels));
        assert_false(matches("{\"matchLabels\": {\"app\": \"db\"}, \"matchExpressions\": ["
                             "{\"key\": \"tier\", \"operator\": \"In\", \"values\": [\"backend\"]},"
                             "{\"key\": \"app\", \"operator\": \"DoesNotExist\"}]}",
                             labels));
        assert_false(matches("{\"matchLabels\": {\"app\": \"web\"}, \"matchExpressions\": ["
                             "{\"key\": \"tier\", \"operator\": \"Exists\"}]}",
                             labels));
}

static void test_selector_invalid(void **state)
{
        selector_bad(EXPR("app", "Equals", ", \"values\": [\"db\"]"),
                     "selector operator Equals is not supported");
        selector_bad(EXPR("app", "In", ""), "selector app In needs values");
        selector_bad(EXPR("app", "NotIn", ", \"values\": []"), "selector app NotIn needs values");
        selector_bad(EXPR("app", "Exists", ", \"values\": [\"db\"]"), "takes no values");
        selector_bad("{\"matchExpressions\": [{\"operator\": \"Exists\"}]}",
                     "needs key and operator");
        selector_bad("{\"matchExpressions\": [{\"key\": \"app\"}]}", "needs key and operator");
        selector_bad("{\"matchLabels\": {\"app\": 1}}", "selector label app is not a string");
        /* Invalid is invalid whatever the labels: not hidden by an earlier
         * requirement that does not match. */
        selector_bad("{\"matchLabels\": {\"app\": \"web\"}, \"matchExpressions\": ["
                     "{\"key\": \"app\", \"operator\": \"Equals\"}]}",
                     "selector operator Equals is not supported");
        selector_bad("{\"matchExpressions\": [{\"key\": \"zone\", \"operator\": \"Exists\"},"
                     "{\"key\": \"app\", \"operator\": \"In\"}]}",
                     "selector app In needs values");
}

/* ---- keys --------------------------------------------------------------------------- */

static void test_keys(void **state)
{
        _cleanup_json_ json_t *pod =
            json_pack("{s:{s:s, s:s}}", "metadata", "namespace", "team-a", "name", "llm-0");
        _cleanup_json_ json_t *node = json_pack("{s:{s:s}}", "metadata", "name", "node-1");
        _cleanup_json_ json_t *empty_ns =
            json_pack("{s:{s:s, s:s}}", "metadata", "namespace", "", "name", "x");
        _cleanup_json_ json_t *nameless = json_pack("{s:{s:s}}", "metadata", "namespace", "a");
        _cleanup_free_ char *k1 = kyb_kube_key(pod), *k2 = kyb_kube_key(node);
        _cleanup_free_ char *k3 = kyb_kube_key(empty_ns);
        char *ns = NULL, *name = NULL;

        assert_string_equal(kyb_kube_meta(pod, "name"), "llm-0");
        assert_null(kyb_kube_meta(pod, "uid"));
        assert_null(kyb_kube_meta(NULL, "name"));
        assert_string_equal(k1, "team-a/llm-0");
        assert_string_equal(k2, "node-1");
        assert_string_equal(k3, "x");
        assert_null(kyb_kube_key(nameless));

        assert_int_equal(kyb_kube_split_key(k1, &ns, &name, NULL), 0);
        assert_string_equal(ns, "team-a");
        assert_string_equal(name, "llm-0");
        free(ns);
        free(name);
        assert_int_equal(kyb_kube_split_key(k2, &ns, &name, NULL), 0);
        assert_null(ns);
        assert_string_equal(name, "node-1");
        free(name);
        /* Only the first slash separates. */
        assert_int_equal(kyb_kube_split_key("a/b/c", &ns, &name, NULL), 0);
        assert_string_equal(ns, "a");
        assert_string_equal(name, "b/c");
        free(ns);
        free(name);
}

/* ---- errors ------------------------------------------------------------------------- */

static void test_errno_for(void **state)
{
        assert_int_equal(kube_errno_for(404, "NotFound"), ENOENT);
        assert_int_equal(kube_errno_for(409, "AlreadyExists"), EEXIST);
        assert_int_equal(kube_errno_for(409, "Conflict"), ESTALE);
        /* A 409 without a Status body is a conflict too. */
        assert_int_equal(kube_errno_for(409, NULL), ESTALE);
        assert_int_equal(kube_errno_for(410, "Expired"), ETIME);
        assert_int_equal(kube_errno_for(410, "Gone"), ETIME);
        assert_int_equal(kube_errno_for(401, "Unauthorized"), EPERM);
        assert_int_equal(kube_errno_for(403, "Forbidden"), EACCES);
        assert_int_equal(kube_errno_for(422, "Invalid"), EINVAL);
        assert_int_equal(kube_errno_for(400, "BadRequest"), EINVAL);
        assert_int_equal(kube_errno_for(429, "TooManyRequests"), EAGAIN);
        assert_int_equal(kube_errno_for(500, "InternalError"), EAGAIN);
        assert_int_equal(kube_errno_for(503, "ServiceUnavailable"), EAGAIN);
        assert_int_equal(kube_errno_for(504, NULL), EAGAIN);
        assert_int_equal(kube_errno_for(405, "MethodNotAllowed"), ENOTSUP);
        assert_int_equal(kube_errno_for(415, "UnsupportedMediaType"), ENOTSUP);
        assert_int_equal(kube_errno_for(302, NULL), EIO);
        assert_int_equal(kube_errno_for(418, NULL), EIO);
}

static void test_status_error(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        const char *path = "/apis/kybernate.io/v1alpha1/namespaces/a/checkpointrequests/x";
        const char *conflict =
            "{\"kind\": \"Status\", \"apiVersion\": \"v1\", \"status\": \"Failure\","
            " \"message\": \"Operation cannot be fulfilled on checkpointrequests \\\"x\\\":"
            " the object has been modified\", \"reason\": \"Conflict\", \"code\": 409}";
        const char *exists = "{\"kind\": \"Status\", \"reason\": \"AlreadyExists\","
                             " \"message\": \"pods \\\"p\\\" already exists\", \"code\": 409}";

        assert_error(kube_status_error(409, "PUT", path, conflict, strlen(conflict), &err), err,
                     ESTALE,
                     "PUT /apis/kybernate.io/v1alpha1/namespaces/a/checkpointrequests/x: HTTP "
                     "409 Conflict: Operation cannot be fulfilled on checkpointrequests \"x\": "
                     "the object has been modified");
        assert_error(kube_status_error(409, "POST", "/api/v1/namespaces/d/pods", exists,
                                       strlen(exists), &err),
                     err, EEXIST, "HTTP 409 AlreadyExists: pods \"p\" already exists");
        /* Only len bytes of the body count. */
        assert_error(kube_status_error(404, "GET", "/api/v1/nodes/n",
                                       "{\"reason\": \"NotFound\"}garbage", 22, &err),
                     err, ENOENT, "GET /api/v1/nodes/n: HTTP 404 NotFound");
        /* A body that is no Status (a proxy's HTML page) still gives the code. */
        assert_error(kube_status_error(503, "GET", "/api/v1/pods", "<html>", 6, &err), err, EAGAIN,
                     "GET /api/v1/pods: HTTP 503");
        assert_error(kube_status_error(401, "GET", "/api", NULL, 0, &err), err, EPERM,
                     "GET /api: HTTP 401");
        assert_error(kube_status_error(403, "DELETE", "/api/v1/namespaces/x", NULL, 0, &err), err,
                     EACCES, "DELETE /api/v1/namespaces/x: HTTP 403");
}

/* ---- paths and queries -------------------------------------------------------------- */

static char *path_of(const kyb_kube_resource *r, const char *ns, const char *name, const char *sub)
{
        char *p = NULL;

        assert_int_equal(kube_path(r, ns, name, sub, &p, NULL), 0);
        return p;
}

static void expect_path(const kyb_kube_resource *r, const char *ns, const char *name,
                        const char *sub, const char *want)
{
        _cleanup_free_ char *p = path_of(r, ns, name, sub);

        assert_string_equal(p, want);
}

static void test_paths(void **state)
{
        /* core group, namespaced */
        expect_path(&KYB_KUBE_PODS, "d", NULL, NULL, "/api/v1/namespaces/d/pods");
        expect_path(&KYB_KUBE_PODS, "d", "p", NULL, "/api/v1/namespaces/d/pods/p");
        expect_path(&KYB_KUBE_PODS, "d", "p", "status", "/api/v1/namespaces/d/pods/p/status");
        /* all namespaces */
        expect_path(&KYB_KUBE_PODS, NULL, NULL, NULL, "/api/v1/pods");
        /* core group, cluster-scoped: the namespace is ignored */
        expect_path(&KYB_KUBE_NODES, "ignored", NULL, NULL, "/api/v1/nodes");
        expect_path(&KYB_KUBE_NODES, NULL, "n1", "status", "/api/v1/nodes/n1/status");
        /* named groups */
        expect_path(&KYB_KUBE_LEASES, "kyb-system", "kybernate-operator", NULL,
                    "/apis/coordination.k8s.io/v1/namespaces/kyb-system/leases/kybernate-operator");
        expect_path(&KYB_KUBE_CHECKPOINT_REQUESTS, "a", "x", "status",
                    "/apis/kybernate.io/v1alpha1/namespaces/a/checkpointrequests/x/status");
        expect_path(&KYB_KUBE_RESTORE_REQUESTS, NULL, NULL, NULL,
                    "/apis/kybernate.io/v1alpha1/restorerequests");
        expect_path(&(kyb_kube_resource){"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                         "CustomResourceDefinition", false},
                    "ns", "checkpointrequests.kybernate.io", NULL,
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                    "checkpointrequests.kybernate.io");
}

static void test_query(void **state)
{
        _cleanup_free_ char *p = path_of(&KYB_KUBE_PODS, "d", NULL, NULL);

        /* NULL values are skipped: no '?' yet. */
        assert_int_equal(kube_query(&p, "fieldSelector", NULL, NULL), 0);
        assert_string_equal(p, "/api/v1/namespaces/d/pods");
        assert_int_equal(kube_query(&p, "limit", "500", NULL), 0);
        assert_string_equal(p, "/api/v1/namespaces/d/pods?limit=500");
        assert_int_equal(kube_query(&p, "labelSelector", "app=db,tier!=web,!canary", NULL), 0);
        assert_string_equal(p, "/api/v1/namespaces/d/pods?limit=500"
                               "&labelSelector=app%3Ddb%2Ctier%21%3Dweb%2C%21canary");
        assert_int_equal(kube_query(&p, "labelSelector", NULL, NULL), 0);
        assert_int_equal(kube_query(&p, "fieldSelector", "spec.nodeName=n 1&x,env in (a,b)", NULL),
                         0);
        assert_int_equal(kube_query(&p, "continue", "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ==/+", NULL), 0);
        assert_string_equal(p, "/api/v1/namespaces/d/pods?limit=500"
                               "&labelSelector=app%3Ddb%2Ctier%21%3Dweb%2C%21canary"
                               "&fieldSelector=spec.nodeName%3Dn%201%26x%2Cenv%20in%20%28a%2Cb%29"
                               "&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ%3D%3D%2F%2B");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_format_time),
            cmocka_unit_test(test_time_round_trip),
            cmocka_unit_test(test_parse_time),
            cmocka_unit_test(test_parse_time_invalid),
            cmocka_unit_test(test_set_condition),
            cmocka_unit_test(test_set_condition_existing_list),
            cmocka_unit_test(test_selector_match_labels),
            cmocka_unit_test(test_selector_expressions),
            cmocka_unit_test(test_selector_invalid),
            cmocka_unit_test(test_keys),
            cmocka_unit_test(test_errno_for),
            cmocka_unit_test(test_status_error),
            cmocka_unit_test(test_paths),
            cmocka_unit_test(test_query),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
