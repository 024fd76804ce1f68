/* SPDX-License-Identifier: Apache-2.0 */
/* What every controller's reconcile does with status: read, time, write, fail. */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "operator/operator-internal.h"

int64_t op_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *op_sget(const json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

int64_t op_generation(const json_t *obj)
{
        return json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
}

void op_set_time(json_t *st, const char *field, int64_t ns)
{
        char buf[40];

        kyb_kube_format_time(ns, false, buf);
        json_object_set_new(st, field, json_string(buf));
}

int64_t op_time_of(const json_t *o, const char *field, int64_t dflt)
{
        int64_t t;

        return kyb_kube_parse_time(op_sget(o, field), &t) == 0 ? t : dflt;
}

int op_rctx_init(op_rctx *r, kyb_operator *op, const kyb_kube_resource *res, json_t *obj,
                 uint64_t *requeue_ms, kyb_error **err)
{
        const json_t *st = json_object_get(obj, "status");

        *r = (op_rctx){
            .op = op, .res = res, .obj = obj, .now = op_now_ns(), .requeue_ms = requeue_ms};
        *requeue_ms = 0;
        r->status = json_is_object(st) ? json_deep_copy(st) : json_object();
        r->ns = kyb_kube_meta(obj, "namespace");
        r->name = kyb_kube_meta(obj, "name");
        return r->status ? 0 : kyb_error_set(err, ENOMEM, "status");
}

void op_rctx_clear(op_rctx *r)
{
        json_decref(r->status);
        r->status = NULL;
}

int op_write_status(op_rctx *r, const json_t *base, kyb_error **err)
{
        _cleanup_json_ json_t *obj = json_deep_copy(base ? base : r->obj);
        int rc;

        if (!obj)
                return kyb_error_set(err, ENOMEM, "status");
        json_object_set_new(r->status, "observedGeneration", json_integer(op_generation(obj)));
        json_object_set(obj, "status", r->status);
        rc = kyb_kube_update_status(r->op->c, r->res, obj, NULL, err);
        if (rc >= 0 && r->res == &KYB_KUBE_CHECKPOINT_REQUESTS)
                kyb_metric_add(r->op->transitions, op_sget(r->status, "phase"), 1);
        return rc;
}

void op_event(op_rctx *r, const char *type, const char *reason, const char *msg)
{
        _cleanup_error_ kyb_error *err = NULL;

        /* Events are best effort: a lost one must not fail the request. */
        if (kyb_kube_event(r->op->c, r->obj, type, reason, KYB_COMPONENT, msg, &err) < 0)
                kyb_log_debug("event %s on %s/%s: %s", reason, r->ns, r->name,
                              kyb_error_message(err));
}

int op_fail(op_rctx *r, const char *reason, kyb_error **err, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int rc;

        va_start(ap, fmt);
        rc = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (rc < 0)
                return kyb_error_set(err, ENOMEM, "failing %s", r->res->kind);
        json_object_set_new(r->status, "phase", json_string("Failed"));
        json_object_set_new(r->status, "message", json_string(msg));
        op_set_time(r->status, "completionTime", r->now);
        kyb_kube_set_condition(r->status, "Ready", "False", reason, msg, op_generation(r->obj),
                               r->now);
        if ((rc = op_write_status(r, NULL, err)) < 0)
                return rc;
        kyb_log_info("%s %s/%s failed: %s: %s", r->res->kind, r->ns, r->name, reason, msg);
        op_event(r, "Warning", reason, msg);
        return 0;
}
