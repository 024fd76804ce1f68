/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/lib/agent: the agent.proto method table. */
#pragma once

#include <time.h>

#include "agent/agent.h"
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
        struct timespec started;
};

extern const kyb_rpc_method kyb_agent_methods[];
extern const size_t kyb_agent_n_methods;

/* Health as the /healthz endpoint and the Health RPC both see it. */
int kyb_agent_health_check(void *agent, kyb_error **err);
