/* SPDX-License-Identifier: Apache-2.0 */
#define KYB_LOG_MODULE "agent"

#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/node.h"
#include "agent/service.h"
#include "base/log.h"

/* Only root may drive the agent: it can freeze and dump any process. The
 * socket's mode already says so; the credential check also covers a socket
 * whose mode was loosened by mistake. An agent run by another user for
 * tests admits that user as well. */
static int check_peer(void *userdata, const kyb_rpc_peer *peer, kyb_error **err)
{
        if (peer->uid == 0 || peer->uid == geteuid())
                return 0;
        kyb_log_warn("refused connection from pid %d uid %u gid %u", peer->pid, peer->uid,
                     peer->gid);
        return kyb_error_setf(err, EACCES, "uid %u may not use the agent", peer->uid);
}

static int make_dir(const char *path, mode_t mode, kyb_error **err)
{
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return kyb_error_set(err, errno, "creating %s", path);
        return 0;
}

static int prepare_dirs(const kyb_agent_config *cfg, kyb_error **err)
{
        _cleanup_free_ char *sock_copy = strdup(cfg->socket_path);

        if (!sock_copy)
                return kyb_error_set(err, ENOMEM, "allocating");
        return make_dir(dirname(sock_copy), 0755, err);
}

static const double step_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

static int register_metrics(kyb_agent *agent, kyb_error **err)
{
        int rc = kyb_metrics_new(&agent->metrics, err);

        if (rc < 0)
                return rc;
        agent->requests = kyb_metrics_counter(agent->metrics, "kybernate_agent_requests_total",
                                              "gRPC requests received", "method");
        agent->request_errors =
            kyb_metrics_counter(agent->metrics, "kybernate_agent_request_errors_total",
                                "gRPC requests that failed", "method");
        agent->checkpoints = kyb_metrics_counter(agent->metrics, "kybernate_checkpoints_total",
                                                 "checkpoints by result", "result");
        agent->restores = kyb_metrics_counter(agent->metrics, "kybernate_restores_total",
                                              "restores by result", "result");
        agent->checkpoint_bytes =
            kyb_metrics_counter(agent->metrics, "kybernate_checkpoint_bytes_total",
                                "bytes of checkpoints written", NULL);
        agent->step_seconds = kyb_metrics_histogram(
            agent->metrics, "kybernate_checkpoint_step_seconds", "duration of each checkpoint step",
            "step", step_buckets, KYB_ARRAY_SIZE(step_buckets));
        if (!agent->requests || !agent->request_errors || !agent->checkpoints || !agent->restores ||
            !agent->checkpoint_bytes || !agent->step_seconds)
                return kyb_error_set(err, ENOMEM, "registering metrics");
        return 0;
}

static int node_name_of(const kyb_agent_config *cfg, char **out, kyb_error **err)
{
        char host[256];

        if (cfg->node_name && *cfg->node_name) {
                *out = strdup(cfg->node_name);
        } else {
                if (gethostname(host, sizeof(host)) < 0)
                        return kyb_error_set(err, errno, "gethostname");
                host[sizeof(host) - 1] = '\0';
                *out = strdup(host);
        }
        return *out ? 0 : kyb_error_set(err, ENOMEM, "allocating");
}

static int start_engine(kyb_agent *agent, kyb_error **err)
{
        const kyb_agent_config *cfg = agent->cfg;
        kyb_engine_config ecfg = {
            .store_dir = cfg->store_dir,
            .work_dir = cfg->work_dir,
            .criu_path = cfg->criu_path && *cfg->criu_path ? cfg->criu_path : NULL,
            .runc_path = cfg->runc_path && *cfg->runc_path ? cfg->runc_path : NULL,
            .runc_root = cfg->runc_root && *cfg->runc_root ? cfg->runc_root : NULL,
            .node_name = agent->node_name,
            .default_timeout_ms = cfg->request_timeout_ms,
            .cuda_lib = cfg->cuda_lib && *cfg->cuda_lib ? cfg->cuda_lib : NULL,
            .nvml_lib = cfg->nvml_lib && *cfg->nvml_lib ? cfg->nvml_lib : NULL,
        };

        return kyb_engine_new(&ecfg, &agent->engine, err);
}

static int start_services(kyb_agent *agent, kyb_error **err)
{
        const kyb_agent_config *cfg = agent->cfg;
        kyb_rpc_server_options opts = {
            .socket_path = cfg->socket_path,
            .methods = kyb_agent_methods,
            .n_methods = kyb_agent_n_methods,
            .userdata = agent,
            .peer_check = check_peer,
            .max_concurrent_calls = (unsigned)cfg->max_concurrent,
        };
        int rc;

        if (cfg->metrics_address && *cfg->metrics_address) {
                rc = kyb_http_start(cfg->metrics_address, agent->metrics, kyb_agent_health_check,
                                    agent, &agent->http, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "metrics endpoint");
        }
        return kyb_rpc_server_start(&opts, &agent->rpc, err);
}

static void agent_free(kyb_agent *agent)
{
        kyb_agent_node_stop(agent);
        kyb_rpc_server_free(agent->rpc);
        kyb_http_stop(agent->http);
        kyb_engine_free(agent->engine);
        kyb_metrics_free(agent->metrics);
        free(agent->node_name);
        free(agent);
}

int kyb_agent_start(const kyb_agent_config *cfg, kyb_agent **out, kyb_error **err)
{
        kyb_agent *agent = calloc(1, sizeof(*agent));
        int rc;

        if (!agent)
                return kyb_error_set(err, ENOMEM, "allocating agent");
        agent->cfg = cfg;
        clock_gettime(CLOCK_MONOTONIC, &agent->started);
        rc = prepare_dirs(cfg, err);
        if (rc >= 0)
                rc = node_name_of(cfg, &agent->node_name, err);
        if (rc >= 0)
                rc = register_metrics(agent, err);
        if (rc >= 0)
                rc = start_engine(agent, err);
        if (rc >= 0)
                rc = start_services(agent, err);
        if (rc >= 0)
                rc = kyb_agent_node_start(agent, err);
        if (rc < 0) {
                agent_free(agent);
                return kyb_error_wrap(err, rc, "agent");
        }
        *out = agent;
        return 0;
}

int kyb_agent_metrics_port(const kyb_agent *agent)
{
        return agent->http ? kyb_http_port(agent->http) : -1;
}

void kyb_agent_stop(kyb_agent *agent)
{
        if (!agent)
                return;
        kyb_rpc_server_shutdown(agent->rpc, agent->cfg->shutdown_grace_ms);
        agent_free(agent);
}
