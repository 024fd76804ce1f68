/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "metrics/metrics.h"

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_kind;

typedef struct series {
        struct series *next;
        char *label_value; /* NULL for unlabelled metrics */
        double value;      /* counter/gauge value, histogram sum */
        unsigned long long count;
        unsigned long long *bucket_counts; /* histogram: cumulative at render */
} series;

struct kyb_metric {
        struct kyb_metric *next;
        kyb_metrics *registry;
        metric_kind kind;
        char *name;
        char *help;
        char *label;
        double *buckets;
        size_t n_buckets;
        series *series;
};

struct kyb_metrics {
        pthread_mutex_t lock;
        kyb_metric *first;
        kyb_metric *last;
};

int kyb_metrics_new(kyb_metrics **out, kyb_error **err)
{
        kyb_metrics *m = calloc(1, sizeof(*m));

        if (!m)
                return kyb_error_set(err, ENOMEM, "allocating metrics registry");
        pthread_mutex_init(&m->lock, NULL);
        *out = m;
        return 0;
}

static void metric_free(kyb_metric *metric)
{
        series *s = metric->series;

        while (s) {
                series *next = s->next;
                free(s->label_value);
                free(s->bucket_counts);
                free(s);
                s = next;
        }
        free(metric->name);
        free(metric->help);
        free(metric->label);
        free(metric->buckets);
        free(metric);
}

void kyb_metrics_free(kyb_metrics *m)
{
        if (!m)
                return;
        for (kyb_metric *metric = m->first, *next; metric; metric = next) {
                next = metric->next;
                metric_free(metric);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
}

static kyb_metric *metric_new(kyb_metrics *m, metric_kind kind, const char *name, const char *help,
                              const char *label)
{
        kyb_metric *metric = calloc(1, sizeof(*metric));

        if (!metric)
                return NULL;
        metric->registry = m;
        metric->kind = kind;
        metric->name = strdup(name);
        metric->help = strdup(help);
        metric->label = label ? strdup(label) : NULL;
        if (!metric->name || !metric->help || (label && !metric->label)) {
                metric_free(metric);
                return NULL;
        }
        return metric;
}

static kyb_metric *metric_register(kyb_metrics *m, kyb_metric *metric)
{
        if (!metric)
                return NULL;
        pthread_mutex_lock(&m->lock);
        if (m->last)
                m->last->next = metric;
        else
                m->first = metric;
        m->last = metric;
        pthread_mutex_unlock(&m->lock);
        return metric;
}

kyb_metric *kyb_metrics_counter(kyb_metrics *m, const char *name, const char *help,
                                const char *label)
{
        return metric_register(m, metric_new(m, METRIC_COUNTER, name, help, label));
}

kyb_metric *kyb_metrics_gauge(kyb_metrics *m, const char *name, const char *help, const char *label)
{
        return metric_register(m, metric_new(m, METRIC_GAUGE, name, help, label));
}

kyb_metric *kyb_metrics_histogram(kyb_metrics *m, const char *name, const char *help,
                                  const char *label, const double *buckets, size_t n_buckets)
{
        kyb_metric *metric = metric_new(m, METRIC_HISTOGRAM, name, help, label);

        if (!metric)
                return NULL;
        metric->buckets = calloc(n_buckets ? n_buckets : 1, sizeof(double));
        if (!metric->buckets) {
                metric_free(metric);
                return NULL;
        }
        memcpy(metric->buckets, buckets, n_buckets * sizeof(double));
        metric->n_buckets = n_buckets;
        return metric_register(m, metric);
}

/* Finds or creates the series for a label value; called with the lock held. */
static series *series_of(kyb_metric *metric, const char *label_value)
{
        const char *key = metric->label ? (label_value ? label_value : "") : NULL;
        series *s;

        for (s = metric->series; s; s = s->next)
                if ((!key && !s->label_value) ||
                    (key && s->label_value && !strcmp(key, s->label_value)))
                        return s;
        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        if (key && !(s->label_value = strdup(key))) {
                free(s);
                return NULL;
        }
        if (metric->kind == METRIC_HISTOGRAM &&
            !(s->bucket_counts = calloc(metric->n_buckets + 1, sizeof(*s->bucket_counts)))) {
                free(s->label_value);
                free(s);
                return NULL;
        }
        s->next = metric->series;
        metric->series = s;
        return s;
}

static void update(kyb_metric *metric, const char *label_value, double v, bool add)
{
        series *s;

        if (!metric)
                return;
        pthread_mutex_lock(&metric->registry->lock);
        s = series_of(metric, label_value);
        if (s)
                s->value = add ? s->value + v : v;
        pthread_mutex_unlock(&metric->registry->lock);
}

void kyb_metric_add(kyb_metric *counter, const char *label_value, double v)
{
        update(counter, label_value, v, true);
}

void kyb_metric_set(kyb_metric *gauge, const char *label_value, double v)
{
        update(gauge, label_value, v, false);
}

void kyb_metric_observe(kyb_metric *h, const char *label_value, double v)
{
        series *s;

        if (!h)
                return;
        pthread_mutex_lock(&h->registry->lock);
        s = series_of(h, label_value);
        if (s) {
                size_t i = 0;
                while (i < h->n_buckets && v > h->buckets[i])
                        i++;
                s->bucket_counts[i]++;
                s->count++;
                s->value += v;
        }
        pthread_mutex_unlock(&h->registry->lock);
}

double kyb_metric_value(kyb_metric *metric, const char *label_value)
{
        double v = 0;
        series *s;

        pthread_mutex_lock(&metric->registry->lock);
        s = series_of(metric, label_value);
        if (s)
                v = s->value;
        pthread_mutex_unlock(&metric->registry->lock);
        return v;
}

/* ------------------------------------------------------------------------ */
/* text exposition */

static void put_escaped(FILE *f, const char *s, bool quote_too)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else if (*s == '"' && quote_too)
                        fputs("\\\"", f);
                else
                        fputc(*s, f);
        }
}

static void put_labels(FILE *f, const kyb_metric *metric, const series *s, const char *le)
{
        bool any = metric->label || le;

        if (!any)
                return;
        fputc('{', f);
        if (metric->label) {
                fprintf(f, "%s=\"", metric->label);
                put_escaped(f, s->label_value, true);
                fputc('"', f);
        }
        if (le)
                fprintf(f, "%sle=\"%s\"", metric->label ? "," : "", le);
        fputc('}', f);
}

static void put_value(FILE *f, double v)
{
        if (isinf(v))
                fputs(v > 0 ? "+Inf" : "-Inf", f);
        else
                fprintf(f, "%.17g", v);
}

static void render_histogram_series(FILE *f, const kyb_metric *metric, const series *s)
{
        unsigned long long cumulative = 0;
        char le[64];

        for (size_t i = 0; i <= metric->n_buckets; i++) {
                cumulative += s->bucket_counts[i];
                if (i < metric->n_buckets)
                        snprintf(le, sizeof(le), "%.17g", metric->buckets[i]);
                else
                        strcpy(le, "+Inf");
                fprintf(f, "%s_bucket", metric->name);
                put_labels(f, metric, s, le);
                fprintf(f, " %llu\n", cumulative);
        }
        fprintf(f, "%s_sum", metric->name);
        put_labels(f, metric, s, NULL);
        fputc(' ', f);
        put_value(f, s->value);
        fprintf(f, "\n%s_count", metric->name);
        put_labels(f, metric, s, NULL);
        fprintf(f, " %llu\n", s->count);
}

static void render_metric(FILE *f, const kyb_metric *metric)
{
        static const char *const type_names[] = {"counter", "gauge", "histogram"};

        fprintf(f, "# HELP %s ", metric->name);
        put_escaped(f, metric->help, false);
        fprintf(f, "\n# TYPE %s %s\n", metric->name, type_names[metric->kind]);
        for (const series *s = metric->series; s; s = s->next) {
                if (metric->kind == METRIC_HISTOGRAM) {
                        render_histogram_series(f, metric, s);
                        continue;
                }
                fputs(metric->name, f);
                put_labels(f, metric, s, NULL);
                fputc(' ', f);
                put_value(f, s->value);
                fputc('\n', f);
        }
        /* An unlabelled metric with no series yet still reports zero. */
        if (!metric->series && !metric->label && metric->kind != METRIC_HISTOGRAM)
                fprintf(f, "%s 0\n", metric->name);
}

char *kyb_metrics_render(kyb_metrics *m)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return NULL;
        pthread_mutex_lock(&m->lock);
        for (const kyb_metric *metric = m->first; metric; metric = metric->next)
                render_metric(f, metric);
        pthread_mutex_unlock(&m->lock);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
