/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The processes this handle hibernated, with the GPUs they used. NVML stops
 * listing a process once its device memory is checkpointed, so this is the
 * only place that still knows which GPUs (and models) a hibernated process
 * needs back. Entries carry the process start time so a PID reused by
 * another process is not mistaken for the hibernated one.
 */
#include <string.h>

#include "gpu/gpu-internal.h"

void gpu_record_clear(gpu_record *r)
{
        free(r->gpus);
        memset(r, 0, sizeof(*r));
}

int gpu_record_copy(gpu_record *dst, const gpu_record *src)
{
        *dst = *src;
        dst->gpus = NULL;
        if (src->n_gpus == 0)
                return 0;
        dst->gpus = malloc(src->n_gpus * sizeof(*dst->gpus));
        if (!dst->gpus) {
                dst->n_gpus = 0;
                return -ENOMEM;
        }
        memcpy(dst->gpus, src->gpus, src->n_gpus * sizeof(*dst->gpus));
        return 0;
}

static ssize_t find_locked(const kyb_gpu *g, int32_t pid)
{
        for (size_t i = 0; i < g->n_records; i++)
                if (g->records[i].pid == pid)
                        return (ssize_t)i;
        return -1;
}

static void remove_locked(kyb_gpu *g, size_t i)
{
        gpu_record_clear(&g->records[i]);
        g->records[i] = g->records[--g->n_records];
}

/* Whether the recorded process is still the one running under its PID. */
static bool still_alive(const kyb_gpu *g, const gpu_record *r)
{
        uint64_t now;

        if (!gpu_proc_exists(g, r->pid))
                return false;
        now = gpu_proc_start_time(g, r->pid);
        return r->start_time == 0 || now == 0 || now == r->start_time;
}

int gpu_records_put(kyb_gpu *g, gpu_record *r, kyb_error **err)
{
        gpu_record *grown;
        ssize_t i;
        int rc = 0;

        pthread_mutex_lock(&g->lock);
        i = find_locked(g, r->pid);
        if (i >= 0) {
                gpu_record_clear(&g->records[i]);
                g->records[i] = *r;
        } else if ((grown = realloc(g->records, (g->n_records + 1) * sizeof(*grown)))) {
                g->records = grown;
                g->records[g->n_records++] = *r;
        } else {
                gpu_record_clear(r);
                rc = kyb_error_set(err, ENOMEM, "gpu records");
        }
        pthread_mutex_unlock(&g->lock);
        if (rc == 0)
                memset(r, 0, sizeof(*r));
        return rc;
}

bool gpu_records_get(kyb_gpu *g, int32_t pid, gpu_record *out)
{
        bool found = false;
        ssize_t i;

        memset(out, 0, sizeof(*out));
        pthread_mutex_lock(&g->lock);
        i = find_locked(g, pid);
        if (i >= 0 && !still_alive(g, &g->records[i]))
                remove_locked(g, (size_t)i);
        else if (i >= 0)
                found = gpu_record_copy(out, &g->records[i]) == 0;
        pthread_mutex_unlock(&g->lock);
        return found;
}

void gpu_records_drop(kyb_gpu *g, int32_t pid)
{
        ssize_t i;

        pthread_mutex_lock(&g->lock);
        i = find_locked(g, pid);
        if (i >= 0)
                remove_locked(g, (size_t)i);
        pthread_mutex_unlock(&g->lock);
}

int gpu_records_pids(kyb_gpu *g, int32_t **out, size_t *n_out, kyb_error **err)
{
        int rc = 0;

        *out = NULL;
        *n_out = 0;
        pthread_mutex_lock(&g->lock);
        for (size_t i = g->n_records; i-- > 0;)
                if (!still_alive(g, &g->records[i]))
                        remove_locked(g, i);
        if (g->n_records > 0) {
                *out = calloc(g->n_records, sizeof(**out));
                if (!*out)
                        rc = kyb_error_set(err, ENOMEM, "gpu records");
        }
        for (size_t i = 0; *out && i < g->n_records; i++)
                (*out)[i] = g->records[i].pid;
        if (*out)
                *n_out = g->n_records;
        pthread_mutex_unlock(&g->lock);
        return rc;
}
