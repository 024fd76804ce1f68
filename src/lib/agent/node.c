/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's node controller (src/lib/nodectl) wired to its engine:
 * CheckpointRequests assigned to this node become engine checkpoints of
 * the pod's containerd container (namespace k8s.io, where the CRI plugin
 * keeps Kubernetes containers).
 */
#define KYB_LOG_MODULE "agent"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/node.h"
#include "agent/service.h"
#include "base/log.h"
#include "ckpt/engine.h"
#include "nodectl/nodectl.h"

#define CRI_NAMESPACE "k8s.io"

static bool opt_bool(const json_t *o, const char *k)
{
        return json_is_true(json_object_get(o, k));
}

static kyb_gpu_mode gpu_mode(const json_t *o)
{
        const char *m = json_string_value(json_object_get(o, "gpuMode"));

        if (m && !strcmp(m, "Off"))
                return KYB_GPU_MODE_OFF;
        if (m && !strcmp(m, "Required"))
                return KYB_GPU_MODE_REQUIRED;
        return KYB_GPU_MODE_AUTO;
}

/* "criu_dump" -> "criuDump", the CRD's step names. */
static void camel(const char *in, char *out, size_t cap)
{
        size_t j = 0;

        for (bool up = false; *in && j + 1 < cap; in++) {
                if (*in == '_') {
                        up = true;
                        continue;
                }
                out[j++] = up ? (char)toupper((unsigned char)*in) : *in;
                up = false;
        }
        out[j] = '\0';
}

static void describe(const kyb_checkpoint *ck, json_t *st)
{
        const kyb_manifest *m = ck->manifest;
        json_t *steps = json_object(), *gpus = json_array();
        uint64_t total = 0;

        for (size_t i = 0; i < m->n_steps; i++) {
                char name[64];

                camel(m->steps[i].name, name, sizeof(name));
                json_object_set_new(steps, name, json_integer((json_int_t)m->steps[i].duration_ms));
                total += m->steps[i].duration_ms;
        }
        json_object_set_new(steps, "total", json_integer((json_int_t)total));
        for (size_t i = 0; m->gpu.captured && i < m->gpu.n_devices; i++)
                json_array_append_new(gpus, json_pack("{s:s, s:s}", "uuid", m->gpu.devices[i].uuid,
                                                      "model", m->gpu.devices[i].model));
        json_object_set_new(st, "imageBytes", json_integer((json_int_t)ck->size_bytes));
        json_object_set_new(st, "stepDurationsMillis", steps);
        json_object_set_new(st, "gpus", gpus);
}

static int node_checkpoint(void *ctx, const kyb_nodectl_job *job, json_t *st, kyb_error **err)
{
        kyb_agent *agent = ctx;
        const json_t *o = job->options;
        kyb_checkpoint ck = {0};
        json_int_t lock_s = json_integer_value(json_object_get(o, "gpuLockTimeoutSeconds"));
        json_int_t timeout_s = json_integer_value(json_object_get(o, "timeoutSeconds"));
        kyb_checkpoint_spec spec = {
            .id = job->checkpoint_id,
            .target = {.kind = KYB_TARGET_CONTAINER,
                       .container_namespace = (char *)CRI_NAMESPACE,
                       .container_id = (char *)job->container_id},
            .workload = {.pod_namespace = (char *)job->ns,
                         .pod_name = (char *)job->pod,
                         .pod_uid = (char *)job->pod_uid,
                         .container_name = (char *)job->container},
            .leave_running = opt_bool(o, "leaveRunning"),
            .tcp_established = opt_bool(o, "tcpEstablished"),
            .file_locks = opt_bool(o, "fileLocks"),
            .gpu_mode = gpu_mode(o),
            .gpu_lock_timeout_ms = (uint32_t)(lock_s * 1000),
            .timeout_ms = timeout_s * 1000,
        };
        int rc = kyb_engine_checkpoint(agent->engine, &spec, NULL, &ck, err);

        kyb_metric_add(agent->checkpoints, rc < 0 ? "error" : "ok", 1);
        if (rc < 0)
                return rc;
        describe(&ck, st);
        kyb_checkpoint_clear(&ck);
        return 0;
}

static bool node_exists(void *ctx, const char *id, json_t *st)
{
        kyb_agent *agent = ctx;
        kyb_checkpoint ck = {0};

        if (kyb_store_get(kyb_engine_store(agent->engine), id, &ck, NULL) < 0)
                return false;
        describe(&ck, st);
        kyb_checkpoint_clear(&ck);
        return true;
}

static bool wanted(const kyb_agent_config *cfg, kyb_error **err, int *rc)
{
        const char *mode = cfg->node_controller ? cfg->node_controller : "auto";

        *rc = 0;
        if (!strcmp(mode, "on"))
                return true;
        if (!strcmp(mode, "off"))
                return false;
        if (strcmp(mode, "auto")) {
                *rc = kyb_error_setf(err, EINVAL, "node-controller must be on, off or auto, not %s",
                                     mode);
                return false;
        }
        return (cfg->kubeconfig && *cfg->kubeconfig) || getenv("KUBERNETES_SERVICE_HOST");
}

int kyb_agent_node_start(kyb_agent *agent, kyb_error **err)
{
        const kyb_agent_config *cfg = agent->cfg;
        kyb_nodectl_engine engine = {node_checkpoint, node_exists, agent};
        kyb_kube_client_opts co = {.user_agent = "kybernate-agent"};
        kyb_nodectl_opts no = {
            .node_name = agent->node_name,
            .result_dir = cfg->upload_result_dir && *cfg->upload_result_dir ? cfg->upload_result_dir
                                                                            : cfg->store_dir,
            .upload_timeout_ms = cfg->upload_timeout_ms,
            .workers = (unsigned)cfg->node_workers,
        };
        int rc;

        if (!wanted(cfg, err, &rc))
                return rc;
        if ((rc = kyb_kube_config_load(cfg->kubeconfig && *cfg->kubeconfig ? cfg->kubeconfig : NULL,
                                       NULL, &agent->kube_cfg, err)) < 0 ||
            (rc = kyb_kube_client_new(agent->kube_cfg, &co, &agent->kube, err)) < 0 ||
            (rc = kyb_nodectl_start(agent->kube, &no, &engine, &agent->nodectl, err)) < 0)
                return kyb_error_wrap(err, rc, "node controller");
        kyb_log_info("node controller on for node %s (API server %s)", agent->node_name,
                     kyb_kube_config_server(agent->kube_cfg));
        return 0;
}

void kyb_agent_node_stop(kyb_agent *agent)
{
        kyb_nodectl_free(agent->nodectl);
        agent->nodectl = NULL;
        kyb_kube_client_free(agent->kube);
        agent->kube = NULL;
        kyb_kube_config_free(agent->kube_cfg);
        agent->kube_cfg = NULL;
}
