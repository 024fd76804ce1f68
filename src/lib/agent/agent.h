/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-agent as a library: configuration, the gRPC service of
 * agent.proto on the root-only Unix socket, and the metrics endpoint.
 * cmd/kybernate-agent only parses its arguments and calls this.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"

typedef struct kyb_agent_config {
        char *socket_path;
        char *store_dir;
        char *work_dir;
        char *metrics_address; /* "" disables the HTTP endpoint */
        char *node_name;       /* "" means the host name */
        char *criu_path;
        char *cuda_lib;
        char *nvml_lib;
        char *runc_path; /* "" or a name without '/': searched in $PATH */
        char *runc_root; /* ':'-separated templates, "{namespace}" replaced */
        char *log_level;
        char *log_format;
        int64_t shutdown_grace_ms;
        int64_t max_concurrent;
        int64_t request_timeout_ms;
        int64_t store_max_bytes; /* 0: unlimited */
        char *node_controller;   /* "auto", "on", "off" */
        char *kubeconfig;        /* "" : in-cluster */
        int64_t node_workers;
        char *upload_result_dir; /* "" : store_dir */
        int64_t upload_timeout_ms;
} kyb_agent_config;

#define KYB_AGENT_ENV_PREFIX   "KYBERNATE_AGENT"
#define KYB_AGENT_DEFAULT_FILE "/etc/kybernate/agent.yaml"

extern const kyb_config_option kyb_agent_options[];
extern const size_t kyb_agent_n_options;

typedef struct kyb_agent kyb_agent;

int kyb_agent_start(const kyb_agent_config *cfg, kyb_agent **out, kyb_error **err);

/* The bound metrics port, or -1 when disabled. */
int kyb_agent_metrics_port(const kyb_agent *agent);

/* Stops accepting work, lets in-flight requests finish within the configured
 * grace period, then cancels the rest (they roll back) and frees. */
void kyb_agent_stop(kyb_agent *agent);
