/* SPDX-License-Identifier: Apache-2.0 */
/* NVML's view of the node at one moment: devices and compute processes. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gpu/gpu-internal.h"

void gpu_snapshot_clear(gpu_snapshot *s)
{
        for (size_t i = 0; s->procs && i < s->n_devices; i++)
                free(s->procs[i]);
        free(s->procs);
        free(s->n_procs);
        free(s->devices);
        memset(s, 0, sizeof(*s));
}

static int alloc_snapshot(gpu_snapshot *s, unsigned int count, kyb_error **err)
{
        if (count == 0)
                return 0;
        s->devices = calloc(count, sizeof(*s->devices));
        s->procs = calloc(count, sizeof(*s->procs));
        s->n_procs = calloc(count, sizeof(*s->n_procs));
        if (!s->devices || !s->procs || !s->n_procs)
                return kyb_error_set(err, ENOMEM, "gpu snapshot");
        return 0;
}

int gpu_snapshot_take(kyb_gpu *g, gpu_snapshot *s, kyb_error **err)
{
        unsigned int count = 0;
        int rc;

        memset(s, 0, sizeof(*s));
        rc = kyb_nvml_device_count(g->nvml, &count, err);
        if (rc >= 0)
                rc = alloc_snapshot(s, count, err);
        for (unsigned int i = 0; rc >= 0 && i < count; i++) {
                rc = kyb_nvml_device_info(g->nvml, i, &s->devices[i], err);
                s->n_devices = i + 1;
                if (rc >= 0)
                        rc = kyb_nvml_compute_processes(g->nvml, i, &s->procs[i], &s->n_procs[i],
                                                        err);
        }
        if (rc < 0)
                gpu_snapshot_clear(s);
        return rc;
}

const kyb_nvml_device *gpu_snapshot_device(const gpu_snapshot *s, const char *uuid)
{
        for (size_t i = 0; i < s->n_devices; i++)
                if (!strcasecmp(s->devices[i].uuid, uuid))
                        return &s->devices[i];
        return NULL;
}

static int add_ref(gpu_record *r, const kyb_nvml_device *dev, const kyb_nvml_process *p,
                   kyb_error **err)
{
        gpu_ref *grown = realloc(r->gpus, (r->n_gpus + 1) * sizeof(*grown));
        gpu_ref *ref;

        if (!grown)
                return kyb_error_set(err, ENOMEM, "gpu snapshot");
        r->gpus = grown;
        ref = &r->gpus[r->n_gpus++];
        memset(ref, 0, sizeof(*ref));
        snprintf(ref->uuid, sizeof(ref->uuid), "%s", dev->uuid);
        snprintf(ref->model, sizeof(ref->model), "%s", dev->name);
        ref->memory_bytes = p->used_memory_bytes;
        r->memory_bytes += p->used_memory_bytes;
        return 0;
}

int gpu_snapshot_record(const gpu_snapshot *s, int32_t pid, gpu_record *out, kyb_error **err)
{
        memset(out, 0, sizeof(*out));
        out->pid = pid;
        for (size_t d = 0; d < s->n_devices; d++) {
                for (size_t j = 0; j < s->n_procs[d]; j++) {
                        int rc;

                        if (s->procs[d][j].pid != pid)
                                continue;
                        rc = add_ref(out, &s->devices[d], &s->procs[d][j], err);
                        if (rc < 0) {
                                gpu_record_clear(out);
                                return rc;
                        }
                        break;
                }
        }
        return out->n_gpus > 0;
}
