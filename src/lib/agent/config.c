/* SPDX-License-Identifier: Apache-2.0 */
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"

#define OPT(name, type, field, def, min, max, help)                                                \
        {                                                                                          \
                name, type, offsetof(kyb_agent_config, field), def, min, max, help                 \
        }

const kyb_config_option kyb_agent_options[] = {
    OPT("socket-path", KYB_CONFIG_STRING, socket_path, "/run/kybernate/agent.sock", 0, 0,
        "gRPC socket (created mode 0600, root only)"),
    OPT("store-dir", KYB_CONFIG_STRING, store_dir, "/var/lib/kybernate/checkpoints", 0, 0,
        "local checkpoint store"),
    OPT("store-max-bytes", KYB_CONFIG_SIZE, store_max_bytes, "0", 0, INT64_MAX,
        "after each checkpoint, delete the oldest unused ones above this total; 0: no limit"),
    OPT("work-dir", KYB_CONFIG_STRING, work_dir, "/var/lib/kybernate/work", 0, 0,
        "scratch space of requests; logs of failed restores stay here"),
    OPT("request-timeout", KYB_CONFIG_DURATION, request_timeout_ms, "30m", 0, 86400000,
        "deadline of a checkpoint or restore that sets none; 0 means none"),
    OPT("metrics-address", KYB_CONFIG_STRING, metrics_address, "127.0.0.1:9464", 0, 0,
        "HOST:PORT for /metrics and /healthz; empty disables"),
    OPT("node-name", KYB_CONFIG_STRING, node_name, "", 0, 0,
        "node name recorded in checkpoints; empty means the host name"),
    OPT("criu-path", KYB_CONFIG_STRING, criu_path, "", 0, 0,
        "CRIU binary; empty means /usr/local/sbin/criu (installed by scripts/setup.sh)"),
    OPT("runc-path", KYB_CONFIG_STRING, runc_path, "runc", 0, 0,
        "runc binary for container targets; a name without '/' is searched in PATH"),
    OPT("runc-root", KYB_CONFIG_STRING, runc_root, "/run/containerd/runc/{namespace}", 0, 0,
        "runc state roots of containerd namespaces, ':'-separated, tried in order; "
        "{namespace} is replaced by the container's namespace"),
    OPT("cuda-lib", KYB_CONFIG_STRING, cuda_lib, "", 0, 0,
        "CUDA driver library; empty means libcuda.so.1 from the loader path"),
    OPT("nvml-lib", KYB_CONFIG_STRING, nvml_lib, "", 0, 0,
        "NVML library; empty means libnvidia-ml.so.1 from the loader path"),
    OPT("log-level", KYB_CONFIG_STRING, log_level, "info", 0, 0,
        "error, warn, info, debug or trace"),
    OPT("log-format", KYB_CONFIG_STRING, log_format, "text", 0, 0, "text or json"),
    OPT("shutdown-grace", KYB_CONFIG_DURATION, shutdown_grace_ms, "30s", 0, 3600000,
        "time in-flight requests get to finish on SIGTERM"),
    OPT("max-concurrent", KYB_CONFIG_INT64, max_concurrent, "16", 1, 1024,
        "requests handled at once; more get RESOURCE_EXHAUSTED"),
    OPT("node-controller", KYB_CONFIG_STRING, node_controller, "auto", 0, 0,
        "run CheckpointRequests assigned to this node: on, off, or auto (on when a "
        "kubeconfig is given or the agent runs in a pod)"),
    OPT("kubeconfig", KYB_CONFIG_STRING, kubeconfig, "", 0, 0,
        "kubeconfig of the node controller; empty means in-cluster"),
    OPT("node-workers", KYB_CONFIG_INT64, node_workers, "2", 1, 64,
        "CheckpointRequests the node controller runs at once"),
    OPT("upload-result-dir", KYB_CONFIG_STRING, upload_result_dir, "", 0, 0,
        "where the sidecar writes <id>.upload.json; empty means the store directory"),
    OPT("upload-timeout", KYB_CONFIG_DURATION, upload_timeout_ms, "1h", 1000, 604800000,
        "a checkpoint whose upload the sidecar has not reported by then fails"),
};

const size_t kyb_agent_n_options = sizeof(kyb_agent_options) / sizeof(kyb_agent_options[0]);
