/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-operator: the cluster controllers (docs/operator.md).
 *
 * Informers keep CheckpointRequests and Pods cached; a work queue feeds
 * worker threads that reconcile one request at a time (level-triggered and
 * idempotent: a reconcile reads the cached object, decides, writes status
 * conditionally on its resourceVersion, and is simply retried on conflict).
 * Only the elected leader runs workers; the others keep warm caches.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"

typedef struct kyb_operator_config {
        char *kubeconfig; /* NULL: $KUBECONFIG, in-cluster, ~/.kube/config */
        char *context;
        char *watch_namespace; /* NULL: all namespaces */
        bool leader_elect;
        char *lease_namespace;
        char *lease_name;
        char *identity; /* NULL: hostname + pid */
        int64_t lease_ms, renew_deadline_ms, retry_ms;
        char *metrics_address; /* "" : none */
        int64_t workers;
        int64_t pod_wait_ms;        /* a request's pod may appear this late */
        int64_t request_timeout_ms; /* a request not finished by then fails */
        char *sidecar_image;        /* the fetch init container of restore pods */
        char *log_level, *log_format;
} kyb_operator_config;

#define KYB_OPERATOR_ENV_PREFIX "KYBERNATE_OPERATOR"
extern const kyb_config_option kyb_operator_options[];
extern const size_t kyb_operator_n_options;

typedef struct kyb_operator kyb_operator;

int kyb_operator_new(const kyb_operator_config *cfg, kyb_operator **out, kyb_error **err);
/* Runs until kyb_operator_stop() (returns 0) or until leadership is lost
 * (returns -ENOLCK: the process should exit so that it restarts clean). */
int kyb_operator_run(kyb_operator *op, kyb_error **err);
/* Async-signal-unsafe but thread-safe: call it from a signal thread. */
void kyb_operator_stop(kyb_operator *op);
int kyb_operator_metrics_port(const kyb_operator *op);
void kyb_operator_free(kyb_operator *op);
