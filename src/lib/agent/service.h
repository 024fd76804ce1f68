/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/lib/agent: the agent.proto method table. */
#pragma once

#include <time.h>

#include "agent/agent.h"
#include "ckpt/engine.h"
#include "metrics/metrics.h"
#include "rpc/server.h"

struct kyb_agent {
        const kyb_agent_config *cfg;
        char *node_name;
        kyb_rpc_server *rpc;
        kyb_metrics *metrics;
        kyb_http *http;
        kyb_metric *requests;       /* by method */
        kyb_metric *request_errors; /* by method */
        kyb_metric *checkpoints;    /* by result */
        kyb_metric *restores;       /* by result */
        kyb_metric *checkpoint_bytes;
        kyb_metric *step_seconds; /* histogram by step */
        kyb_engine *engine;
        struct timespec started;
        /* The node controller (node.c); NULL when off. */
        struct kyb_kube_config *kube_cfg;
        struct kyb_kube_client *kube;
        struct kyb_nodectl *nodectl;
};

extern const kyb_rpc_method kyb_agent_methods[];
extern const size_t kyb_agent_n_methods;

/* Engine-backed handlers (checkpoints.c). */
int kyb_agent_checkpoint(kyb_rpc_call *call, const ProtobufCMessage *request, kyb_error **err);
int kyb_agent_restore(kyb_rpc_call *call, const ProtobufCMessage *request, kyb_error **err);
int kyb_agent_get_checkpoint(kyb_rpc_call *call, const ProtobufCMessage *request,
                             ProtobufCMessage **response, kyb_error **err);
int kyb_agent_list_checkpoints(kyb_rpc_call *call, const ProtobufCMessage *request,
                               ProtobufCMessage **response, kyb_error **err);
int kyb_agent_delete_checkpoint(kyb_rpc_call *call, const ProtobufCMessage *request,
                                ProtobufCMessage **response, kyb_error **err);
int kyb_agent_prepare_restore(kyb_rpc_call *call, const ProtobufCMessage *request,
                              ProtobufCMessage **response, kyb_error **err);

/* GPU methods (gpu.c). */
int kyb_agent_gpu_hibernate(kyb_rpc_call *call, const ProtobufCMessage *request,
                            ProtobufCMessage **response, kyb_error **err);
int kyb_agent_gpu_resume(kyb_rpc_call *call, const ProtobufCMessage *request,
                         ProtobufCMessage **response, kyb_error **err);
int kyb_agent_gpu_status(kyb_rpc_call *call, const ProtobufCMessage *request,
                         ProtobufCMessage **response, kyb_error **err);

/* Health as the /healthz endpoint and the Health RPC both see it. */
int kyb_agent_health_check(void *agent, kyb_error **err);
