/* SPDX-License-Identifier: Apache-2.0 */
/* The engine-backed methods: Checkpoint, Restore and the local store. */
#define KYB_LOG_MODULE "agent"

#include <string.h>

#include "agent/convert.h"
#include "agent/service.h"
#include "base/log.h"
#include "gpu/gpu.h"

typedef Kybernate__Agent__V1__CheckpointProgress CheckpointProgress;
typedef Kybernate__Agent__V1__RestoreProgress RestoreProgress;

/* Counts the request and, when it failed, the error; logs failures once. */
static int account(kyb_rpc_call *call, int rc, kyb_error **err)
{
        kyb_agent *agent = kyb_rpc_call_userdata(call);

        kyb_metric_add(agent->requests, kyb_rpc_call_method(call), 1);
        if (rc < 0) {
                kyb_metric_add(agent->request_errors, kyb_rpc_call_method(call), 1);
                kyb_log_warn("%s: %s", kyb_rpc_call_method(call), kyb_error_message(*err));
        }
        return rc;
}

typedef struct stream_ctx {
        kyb_rpc_call *call;
        bool restore;
        int send_rc; /* first failed send: the client is gone */
} stream_ctx;

static void send_progress(void *ctx, const kyb_progress *p)
{
        stream_ctx *s = ctx;
        CheckpointProgress cp = KYBERNATE__AGENT__V1__CHECKPOINT_PROGRESS__INIT;
        RestoreProgress rp = KYBERNATE__AGENT__V1__RESTORE_PROGRESS__INIT;

        if (s->send_rc < 0)
                return;
        cp.step = rp.step = (Kybernate__Agent__V1__Step)p->step;
        cp.message = rp.message = (char *)(p->message ? p->message : "");
        cp.bytes_done = rp.bytes_done = p->bytes_done;
        cp.bytes_total = rp.bytes_total = p->bytes_total;
        s->send_rc = kyb_rpc_call_send(s->call, s->restore ? &rp.base : &cp.base, NULL);
}

static bool stream_cancelled(void *ctx)
{
        stream_ctx *s = ctx;

        return s->send_rc < 0 || kyb_rpc_call_cancelled(s->call);
}

static void observe_checkpoint(kyb_agent *agent, const kyb_checkpoint *c)
{
        kyb_metric_add(agent->checkpoint_bytes, NULL, (double)c->size_bytes);
        for (size_t i = 0; i < c->manifest->n_steps; i++)
                kyb_metric_observe(agent->step_seconds, c->manifest->steps[i].name,
                                   (double)c->manifest->steps[i].duration_ms / 1000.0);
}

/* Retention by size: the checkpoint just made is held while older ones go. */
static void enforce_store_limit(kyb_agent *agent, const char *id)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store *store = kyb_engine_store(agent->engine);
        uint64_t freed = 0;
        int n;

        if (agent->cfg->store_max_bytes <= 0 || kyb_store_acquire(store, id, &err) < 0)
                return;
        n = kyb_store_gc(store, (uint64_t)agent->cfg->store_max_bytes, &freed, &err);
        kyb_store_release(store, id);
        if (n < 0)
                kyb_log_warn("store gc: %s", kyb_error_message(err));
        else if (n > 0)
                kyb_log_info("store gc: deleted %d checkpoint(s), %llu bytes", n,
                             (unsigned long long)freed);
}

static int send_checkpoint_result(kyb_rpc_call *call, const kyb_checkpoint *c, kyb_error **err)
{
        CheckpointProgress final = KYBERNATE__AGENT__V1__CHECKPOINT_PROGRESS__INIT;
        int rc;

        final.step = KYBERNATE__AGENT__V1__STEP__STEP_DONE;
        final.message = "checkpoint complete";
        final.bytes_done = final.bytes_total = c->size_bytes;
        final.result = kyb_agent_checkpoint_info(c);
        if (!final.result)
                return kyb_error_set(err, ENOMEM, "checkpoint result");
        rc = kyb_rpc_call_send(call, &final.base, err);
        protobuf_c_message_free_unpacked(&final.result->base, NULL);
        return rc;
}

int kyb_agent_checkpoint(kyb_rpc_call *call, const ProtobufCMessage *request, kyb_error **err)
{
        const Kybernate__Agent__V1__CheckpointRequest *req = (const void *)request;
        kyb_agent *agent = kyb_rpc_call_userdata(call);
        stream_ctx s = {.call = call};
        kyb_request_hooks hooks = {
            .progress = send_progress, .cancelled = stream_cancelled, .ctx = &s};
        _cleanup_free_ kyb_label *labels = NULL;
        kyb_checkpoint_spec spec;
        kyb_checkpoint c = {0};
        int rc = kyb_agent_checkpoint_spec(req, &spec, &labels, err);

        if (rc >= 0)
                rc = kyb_engine_checkpoint(agent->engine, &spec, &hooks, &c, err);
        kyb_metric_add(agent->checkpoints, rc < 0 ? "failed" : "succeeded", 1);
        if (rc >= 0) {
                observe_checkpoint(agent, &c);
                enforce_store_limit(agent, c.id);
                kyb_log_info("checkpoint %s: %s, %llu bytes", c.id, c.path,
                             (unsigned long long)c.size_bytes);
                rc = send_checkpoint_result(call, &c, err);
        }
        kyb_checkpoint_clear(&c);
        return account(call, rc, err);
}

int kyb_agent_restore(kyb_rpc_call *call, const ProtobufCMessage *request, kyb_error **err)
{
        const Kybernate__Agent__V1__RestoreRequest *req = (const void *)request;
        kyb_agent *agent = kyb_rpc_call_userdata(call);
        stream_ctx s = {.call = call, .restore = true};
        kyb_request_hooks hooks = {
            .progress = send_progress, .cancelled = stream_cancelled, .ctx = &s};
        RestoreProgress final = KYBERNATE__AGENT__V1__RESTORE_PROGRESS__INIT;
        _cleanup_free_ kyb_gpu_uuid_pair *pairs = NULL;
        kyb_restore_result res = {0};
        kyb_restore_spec spec;
        int rc = kyb_agent_restore_spec(req, &spec, &pairs, err);

        if (rc >= 0)
                rc = kyb_engine_restore(agent->engine, &spec, &hooks, &res, err);
        kyb_metric_add(agent->restores, rc < 0 ? "failed" : "succeeded", 1);
        if (rc >= 0) {
                kyb_log_info("restore %s: pid %d", req->checkpoint_id, res.pid);
                final.step = KYBERNATE__AGENT__V1__STEP__STEP_DONE;
                final.message = "restore complete";
                final.result = kyb_agent_restore_result(&res);
                rc = final.result ? kyb_rpc_call_send(call, &final.base, err)
                                  : kyb_error_set(err, ENOMEM, "restore result");
                if (final.result)
                        protobuf_c_message_free_unpacked(&final.result->base, NULL);
        }
        return account(call, rc, err);
}

int kyb_agent_get_checkpoint(kyb_rpc_call *call, const ProtobufCMessage *request,
                             ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__GetCheckpointRequest *req = (const void *)request;
        kyb_agent *agent = kyb_rpc_call_userdata(call);
        kyb_checkpoint c = {0};
        int rc = kyb_store_get(kyb_engine_store(agent->engine), req->checkpoint_id, &c, err);

        if (rc >= 0) {
                Kybernate__Agent__V1__CheckpointInfo *ci = kyb_agent_checkpoint_info(&c);
                rc = ci ? 0 : kyb_error_set(err, ENOMEM, "checkpoint info");
                *response = ci ? &ci->base : NULL;
        }
        kyb_checkpoint_clear(&c);
        if (rc < 0)
                kyb_error_wrap(err, rc, "get %s", req->checkpoint_id);
        return account(call, rc, err);
}

static int list_into(kyb_agent *agent, const Kybernate__Agent__V1__ListCheckpointsRequest *req,
                     Kybernate__Agent__V1__ListCheckpointsResponse *resp, kyb_error **err)
{
        _cleanup_free_ kyb_label *selector = calloc(req->n_label_selector + 1, sizeof(kyb_label));
        kyb_checkpoint *v = NULL;
        size_t n = 0;
        int rc;

        if (!selector)
                return kyb_error_set(err, ENOMEM, "list");
        for (size_t i = 0; i < req->n_label_selector; i++)
                selector[i] =
                    (kyb_label){req->label_selector[i]->key, req->label_selector[i]->value};
        rc = kyb_store_list(kyb_engine_store(agent->engine), selector, req->n_label_selector, &v,
                            &n, err);
        if (rc < 0)
                return rc;
        resp->checkpoints = calloc(n ? n : 1, sizeof(*resp->checkpoints));
        for (size_t i = 0; resp->checkpoints && i < n; i++) {
                Kybernate__Agent__V1__CheckpointInfo *ci = kyb_agent_checkpoint_info(&v[i]);
                if (ci)
                        resp->checkpoints[resp->n_checkpoints++] = ci;
        }
        kyb_checkpoints_free(v, n);
        return resp->checkpoints ? 0 : kyb_error_set(err, ENOMEM, "list");
}

int kyb_agent_list_checkpoints(kyb_rpc_call *call, const ProtobufCMessage *request,
                               ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__ListCheckpointsRequest *req = (const void *)request;
        Kybernate__Agent__V1__ListCheckpointsResponse *resp = malloc(sizeof(*resp));
        int rc;

        if (!resp)
                return account(call, kyb_error_set(err, ENOMEM, "list"), err);
        kybernate__agent__v1__list_checkpoints_response__init(resp);
        if (req->page_token && *req->page_token)
                rc = kyb_error_setf(err, EINVAL,
                                    "page_token: paging is not supported yet; "
                                    "leave it empty to get every checkpoint");
        else
                rc = list_into(kyb_rpc_call_userdata(call), req, resp, err);
        if (rc < 0)
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        else
                *response = &resp->base;
        return account(call, rc, err);
}

int kyb_agent_delete_checkpoint(kyb_rpc_call *call, const ProtobufCMessage *request,
                                ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__DeleteCheckpointRequest *req = (const void *)request;
        kyb_agent *agent = kyb_rpc_call_userdata(call);
        Kybernate__Agent__V1__DeleteCheckpointResponse *resp = malloc(sizeof(*resp));
        uint64_t freed = 0;
        int rc;

        if (!resp)
                return account(call, kyb_error_set(err, ENOMEM, "delete"), err);
        kybernate__agent__v1__delete_checkpoint_response__init(resp);
        rc = kyb_store_delete(kyb_engine_store(agent->engine), req->checkpoint_id, &freed, err);
        if (rc < 0) {
                free(resp);
                kyb_error_wrap(err, rc, "delete %s", req->checkpoint_id);
        } else {
                resp->freed_bytes = freed;
                *response = &resp->base;
        }
        return account(call, rc, err);
}

int kyb_agent_prepare_restore(kyb_rpc_call *call, const ProtobufCMessage *request,
                              ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__PrepareRestoreRequest *req = (const void *)request;
        kyb_agent *agent = kyb_rpc_call_userdata(call);
        Kybernate__Agent__V1__PrepareRestoreResponse *resp = NULL;
        kyb_checkpoint c = {0};
        int rc = 0;

        if (!req->artifact_path || req->artifact_path[0] != '/')
                rc = kyb_error_setf(err, EINVAL, "artifact_path must be an absolute path");
        if (rc >= 0)
                rc = kyb_store_import(kyb_engine_store(agent->engine), req->artifact_path,
                                      req->checkpoint_id, &c, err);
        if (rc >= 0 && !(resp = malloc(sizeof(*resp))))
                rc = kyb_error_set(err, ENOMEM, "prepare restore");
        if (rc >= 0) {
                kybernate__agent__v1__prepare_restore_response__init(resp);
                resp->checkpoint = kyb_agent_checkpoint_info(&c);
                *response = &resp->base;
        } else {
                kyb_error_wrap(err, rc, "prepare restore from %s",
                               req->artifact_path ? req->artifact_path : "");
        }
        kyb_checkpoint_clear(&c);
        return account(call, rc, err);
}
