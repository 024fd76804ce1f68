/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers on API objects: times, conditions, label selectors, Events. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube/kube-internal.h"

void kyb_kube_format_time(int64_t unix_ns, bool micro, char buf[40])
{
        time_t s = (time_t)(unix_ns / 1000000000);
        struct tm tm;
        size_t n;

        gmtime_r(&s, &tm);
        n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
        if (micro)
                snprintf(buf + n, 40 - n, ".%06ldZ", (long)(unix_ns % 1000000000 / 1000));
        else
                snprintf(buf + n, 40 - n, "Z");
}

static int two_digits(const char *s)
{
        if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
                return -1;
        return (s[0] - '0') * 10 + s[1] - '0';
}

int kyb_kube_parse_time(const char *s, int64_t *unix_ns)
{
        struct tm tm = {0};
        const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
        int64_t frac = 0, scale = 1000000000, off = 0;

        if (!p)
                return -EINVAL;
        if (*p == '.') {
                if (p[1] < '0' || p[1] > '9')
                        return -EINVAL;
                for (p++; *p >= '0' && *p <= '9'; p++) {
                        if (scale > 1) {
                                scale /= 10;
                                frac += (*p - '0') * scale;
                        }
                }
        }
        if (*p == '+' || *p == '-') {
                int hh, mm;

                /* Exactly hh:mm; sscanf would also take "+-1:00" or "+ 1:00". */
                if (strlen(p) != 6 || p[3] != ':' || (hh = two_digits(p + 1)) < 0 ||
                    (mm = two_digits(p + 4)) < 0 || hh > 23 || mm > 59)
                        return -EINVAL;
                off = (hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
        } else if (strcmp(p, "Z") && strcmp(p, "z")) {
                return -EINVAL;
        }
        *unix_ns = ((int64_t)timegm(&tm) - off) * 1000000000 + frac;
        return 0;
}

/* ---- conditions --------------------------------------------------------------- */

static json_t *find_condition(json_t *list, const char *type)
{
        size_t i;
        json_t *c;

        json_array_foreach(list, i, c)
        {
                const char *t = json_string_value(json_object_get(c, "type"));

                if (t && !strcmp(t, type))
                        return c;
        }
        return NULL;
}

static bool set_str(json_t *o, const char *key, const char *v)
{
        const char *old = json_string_value(json_object_get(o, key));

        if (old && !strcmp(old, v))
                return false;
        json_object_set_new(o, key, json_string(v));
        return true;
}

bool kyb_kube_set_condition(json_t *status, const char *type, const char *cond_status,
                            const char *reason, const char *message, int64_t generation,
                            int64_t now_ns)
{
        json_t *list = json_object_get(status, "conditions");
        json_t *c;
        bool changed = false;
        char now[40];

        if (!json_is_array(list)) {
                list = json_array();
                json_object_set_new(status, "conditions", list);
        }
        c = find_condition(list, type);
        if (!c) {
                c = json_pack("{s:s}", "type", type);
                json_array_append_new(list, c);
                changed = true;
        }
        if (set_str(c, "status", cond_status)) {
                kyb_kube_format_time(now_ns, false, now);
                json_object_set_new(c, "lastTransitionTime", json_string(now));
                changed = true;
        }
        changed |= set_str(c, "reason", reason ? reason : "Unknown");
        changed |= set_str(c, "message", message ? message : "");
        if (json_integer_value(json_object_get(c, "observedGeneration")) != generation) {
                json_object_set_new(c, "observedGeneration", json_integer(generation));
                changed = true;
        }
        return changed;
}

/* ---- label selectors ------------------------------------------------------------ */

static bool in_values(const json_t *values, const char *v)
{
        size_t i;
        json_t *e;

        json_array_foreach(values, i, e)
        {
                if (v && json_is_string(e) && !strcmp(json_string_value(e), v))
                        return true;
        }
        return false;
}

static int expression_matches(const json_t *expr, const json_t *labels, bool *match,
                              kyb_error **err)
{
        const char *key = json_string_value(json_object_get(expr, "key"));
        const char *op = json_string_value(json_object_get(expr, "operator"));
        const json_t *values = json_object_get(expr, "values");
        const char *v = json_string_value(json_object_get(labels, key ? key : ""));
        bool has_values = json_array_size(values) > 0;

        if (!key || !op)
                return kyb_error_setf(err, EINVAL, "selector expression needs key and operator");
        if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
                if (!has_values)
                        return kyb_error_setf(err, EINVAL, "selector %s %s needs values", key, op);
                *match = in_values(values, v) == !strcmp(op, "In");
        } else if (!strcmp(op, "Exists") || !strcmp(op, "DoesNotExist")) {
                if (has_values)
                        return kyb_error_setf(err, EINVAL, "selector %s %s takes no values", key,
                                              op);
                *match = (v != NULL) == !strcmp(op, "Exists");
        } else {
                return kyb_error_setf(err, EINVAL, "selector operator %s is not supported", op);
        }
        return 0;
}

int kyb_kube_selector_matches(const json_t *selector, const json_t *labels, bool *match,
                              kyb_error **err)
{
        const char *k;
        json_t *v;
        size_t i;
        bool all = true;
        int rc;

        /* Every requirement is checked, not only those before the first
         * mismatch: whether a selector is invalid must not depend on the
         * labels it is tried on. */
        *match = false;
        json_object_foreach((json_t *)json_object_get(selector, "matchLabels"), k, v)
        {
                const char *have = json_string_value(json_object_get(labels, k));

                if (!json_is_string(v))
                        return kyb_error_setf(err, EINVAL, "selector label %s is not a string", k);
                if (!have || strcmp(have, json_string_value(v)))
                        all = false;
        }
        json_array_foreach(json_object_get(selector, "matchExpressions"), i, v)
        {
                bool m = false;

                if ((rc = expression_matches(v, labels, &m, err)) < 0)
                        return rc;
                all = all && m;
        }
        *match = all;
        return 0;
}

/* ---- Events ---------------------------------------------------------------------- */

static json_t *involved(const json_t *obj)
{
        json_t *ref = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "kind",
                                json_string_value(json_object_get(obj, "kind")), "apiVersion",
                                json_string_value(json_object_get(obj, "apiVersion")), "namespace",
                                kyb_kube_meta(obj, "namespace"), "name", kyb_kube_meta(obj, "name"),
                                "uid", kyb_kube_meta(obj, "uid"), "resourceVersion",
                                kyb_kube_meta(obj, "resourceVersion"));
        return ref;
}

int kyb_kube_event(kyb_kube_client *c, const json_t *obj, const char *type, const char *reason,
                   const char *component, const char *message, kyb_error **err)
{
        const char *ns = kyb_kube_meta(obj, "namespace");
        struct timespec ts;
        char now[40], prefix[300];
        _cleanup_json_ json_t *ev = NULL;

        clock_gettime(CLOCK_REALTIME, &ts);
        kyb_kube_format_time((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, false, now);
        snprintf(prefix, sizeof(prefix), "%.240s.", kyb_kube_meta(obj, "name") ?: "object");
        ev = json_pack("{s:{s:s, s:s}, s:o, s:s, s:s, s:s, s:{s:s}, s:s, s:s, s:i}", "metadata",
                       "generateName", prefix, "namespace", ns && *ns ? ns : "default",
                       "involvedObject", involved(obj), "type", type, "reason", reason, "message",
                       message, "source", "component", component, "firstTimestamp", now,
                       "lastTimestamp", now, "count", 1);
        if (!ev)
                return kyb_error_set(err, ENOMEM, "event");
        return kyb_kube_create(c, &KYB_KUBE_EVENTS, ns && *ns ? ns : "default", ev, NULL, err);
}
