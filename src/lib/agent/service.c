/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "agent/convert.h"
#include "agent/service.h"
#include "gpu/gpu.h"
#include "kyb-version.h"

#define API          "kybernate.agent.v1"
#define METHOD(name) "/" API ".Agent/" name

typedef Kybernate__Agent__V1__ComponentHealth ComponentHealth;
typedef Kybernate__Agent__V1__HealthResponse HealthResponse;
typedef Kybernate__Agent__V1__VersionResponse VersionResponse;

static kyb_agent *agent_of(kyb_rpc_call *call)
{
        kyb_agent *agent = kyb_rpc_call_userdata(call);

        kyb_metric_add(agent->requests, kyb_rpc_call_method(call), 1);
        return agent;
}

/* ------------------------------------------------------------------------ */
/* health */

static int check_store(const kyb_agent *agent, kyb_error **err)
{
        if (access(agent->cfg->store_dir, W_OK | X_OK) < 0)
                return kyb_error_set(err, errno, "store %s", agent->cfg->store_dir);
        return 0;
}

int kyb_agent_health_check(void *ctx, kyb_error **err)
{
        return check_store(ctx, err);
}

static ComponentHealth *component(const char *name, bool ok, const char *message)
{
        ComponentHealth *c = malloc(sizeof(*c));

        if (!c)
                return NULL;
        kybernate__agent__v1__component_health__init(c);
        c->name = strdup(name);
        c->ok = ok;
        c->message = strdup(message);
        if (!c->name || !c->message) {
                free(c->name);
                free(c->message);
                free(c);
                return NULL;
        }
        return c;
}

static int fill_health(kyb_agent *agent, HealthResponse *resp, kyb_error **err)
{
        _cleanup_error_ kyb_error *store_err = NULL;
        bool store_ok = check_store(agent, &store_err) >= 0;

        resp->components = calloc(3, sizeof(*resp->components));
        if (!resp->components)
                return kyb_error_set(err, ENOMEM, "health");
        resp->components[resp->n_components++] =
            component("store", store_ok, store_ok ? "writable" : kyb_error_message(store_err));
        resp->components[resp->n_components++] =
            component("criu", true, kyb_engine_criu_version(agent->engine));
        /* No GPU is a fact, not a fault: the agent serves CPU workloads. */
        resp->components[resp->n_components++] =
            component("gpu", kyb_gpu_available(kyb_engine_gpu(agent->engine)),
                      kyb_gpu_available(kyb_engine_gpu(agent->engine))
                          ? "CUDA checkpoint API available"
                          : kyb_gpu_unavailable_reason(kyb_engine_gpu(agent->engine)));
        for (size_t i = 0; i < resp->n_components; i++)
                if (!resp->components[i])
                        return kyb_error_set(err, ENOMEM, "health");
        resp->status = store_ok ? KYBERNATE__AGENT__V1__SERVING_STATUS__SERVING_STATUS_SERVING
                                : KYBERNATE__AGENT__V1__SERVING_STATUS__SERVING_STATUS_NOT_SERVING;
        return 0;
}

static int health(kyb_rpc_call *call, const ProtobufCMessage *request, ProtobufCMessage **response,
                  kyb_error **err)
{
        HealthResponse *resp = malloc(sizeof(*resp));
        int rc;

        if (!resp)
                return kyb_error_set(err, ENOMEM, "health");
        kybernate__agent__v1__health_response__init(resp);
        rc = fill_health(agent_of(call), resp, err);
        if (rc < 0) {
                protobuf_c_message_free_unpacked(&resp->base, NULL);
                return rc;
        }
        *response = &resp->base;
        return 0;
}

static int version(kyb_rpc_call *call, const ProtobufCMessage *request, ProtobufCMessage **response,
                   kyb_error **err)
{
        VersionResponse *resp = malloc(sizeof(*resp));
        kyb_agent *agent = agent_of(call);

        if (!resp)
                return kyb_error_set(err, ENOMEM, "version");
        kybernate__agent__v1__version_response__init(resp);
        resp->version = strdup(KYB_VERSION);
        resp->api = strdup(API);
        resp->criu_version = strdup(kyb_engine_criu_version(agent->engine));
        if (!resp->version || !resp->api || !resp->criu_version) {
                protobuf_c_message_free_unpacked(&resp->base, NULL);
                return kyb_error_set(err, ENOMEM, "version");
        }
        *response = &resp->base;
        return 0;
}

#define UNARY(name, fn, req)                                                                       \
        {                                                                                          \
                .path = METHOD(name), .request_type = &kybernate__agent__v1__##req##__descriptor,  \
                .unary = fn                                                                        \
        }
#define STREAM(name, fn, req)                                                                      \
        {                                                                                          \
                .path = METHOD(name), .request_type = &kybernate__agent__v1__##req##__descriptor,  \
                .stream = fn                                                                       \
        }

const kyb_rpc_method kyb_agent_methods[] = {
    STREAM("Checkpoint", kyb_agent_checkpoint, checkpoint_request),
    STREAM("Restore", kyb_agent_restore, restore_request),
    UNARY("PrepareRestore", kyb_agent_prepare_restore, prepare_restore_request),
    UNARY("ListCheckpoints", kyb_agent_list_checkpoints, list_checkpoints_request),
    UNARY("GetCheckpoint", kyb_agent_get_checkpoint, get_checkpoint_request),
    UNARY("DeleteCheckpoint", kyb_agent_delete_checkpoint, delete_checkpoint_request),
    UNARY("GpuHibernate", kyb_agent_gpu_hibernate, gpu_hibernate_request),
    UNARY("GpuResume", kyb_agent_gpu_resume, gpu_resume_request),
    UNARY("GpuStatus", kyb_agent_gpu_status, gpu_status_request),
    UNARY("Health", health, health_request),
    UNARY("Version", version, version_request),
};

const size_t kyb_agent_n_methods = sizeof(kyb_agent_methods) / sizeof(kyb_agent_methods[0]);
