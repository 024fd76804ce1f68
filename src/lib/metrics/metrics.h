/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small Prometheus metrics registry (counters, gauges, histograms with at
 * most one label) rendered in the text exposition format, plus an HTTP
 * endpoint (libmicrohttpd) serving /metrics and /healthz. Shared by the
 * agent, the sidecar and the operator. All operations are thread-safe.
 */
#pragma once

#include <stddef.h>

#include "base/error.h"

typedef struct kyb_metrics kyb_metrics;
typedef struct kyb_metric kyb_metric;
typedef struct kyb_http kyb_http;

int kyb_metrics_new(kyb_metrics **out, kyb_error **err);
void kyb_metrics_free(kyb_metrics *m);

/* Registration returns NULL only on allocation failure; the metric lives as
 * long as the registry. label may be NULL for an unlabelled metric. */
kyb_metric *kyb_metrics_counter(kyb_metrics *m, const char *name, const char *help,
                                const char *label);
kyb_metric *kyb_metrics_gauge(kyb_metrics *m, const char *name, const char *help,
                              const char *label);
/* buckets: ascending upper bounds; +Inf is implicit. */
kyb_metric *kyb_metrics_histogram(kyb_metrics *m, const char *name, const char *help,
                                  const char *label, const double *buckets, size_t n_buckets);

/* label_value is ignored (may be NULL) for unlabelled metrics. */
void kyb_metric_add(kyb_metric *counter, const char *label_value, double v);
void kyb_metric_set(kyb_metric *gauge, const char *label_value, double v);
void kyb_metric_observe(kyb_metric *histogram, const char *label_value, double v);

/* Current value of a counter or gauge series (0 if absent); for tests. */
double kyb_metric_value(kyb_metric *metric, const char *label_value);

/* The registry in Prometheus text format 0.0.4; caller frees. NULL on OOM. */
char *kyb_metrics_render(kyb_metrics *m);

/* Answers /healthz: 0 healthy, negative (with err) unhealthy. */
typedef int (*kyb_health_fn)(void *ctx, kyb_error **err);

/* Serves GET /metrics and /healthz on addr "HOST:PORT" (port 0 picks a free
 * one; see kyb_http_port). Loopback addresses are the norm. */
int kyb_http_start(const char *addr, kyb_metrics *m, kyb_health_fn health, void *health_ctx,
                   kyb_http **out, kyb_error **err);
int kyb_http_port(const kyb_http *h);
void kyb_http_stop(kyb_http *h);
