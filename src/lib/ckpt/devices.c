/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>

#include "ckpt/devices.h"
#include "gpu/gpu.h"

static int find(request *r, const kyb_checkpoint_spec *spec, int32_t root_pid,
                kyb_gpu_process **procs, size_t *n, kyb_error **err)
{
        kyb_gpu *g = r->e->gpu;

        *procs = NULL;
        *n = 0;
        if (!kyb_gpu_available(g)) {
                if (spec->gpu_mode != KYB_GPU_MODE_REQUIRED)
                        return 0;
                return kyb_error_setf(err, ENODEV, "gpu mode required: %s",
                                      kyb_gpu_unavailable_reason(g));
        }
        return kyb_gpu_find_processes(g, root_pid, procs, n, err);
}

int devices_pause(request *r, const kyb_checkpoint_spec *spec, int32_t root_pid, device_state *d,
                  kyb_error **err)
{
        kyb_gpu_process *procs = NULL;
        size_t n = 0;
        char msg[96];
        int rc;

        if (spec->gpu_mode == KYB_GPU_MODE_OFF)
                return 0;
        rc = find(r, spec, root_pid, &procs, &n, err);
        if (rc >= 0 && n == 0 && spec->gpu_mode == KYB_GPU_MODE_REQUIRED)
                rc = kyb_error_setf(err, ENODEV,
                                    "gpu mode required: no CUDA process in the tree of pid %d",
                                    root_pid);
        if (rc >= 0 && n > 0 && !(d->pids = calloc(n, sizeof(*d->pids))))
                rc = kyb_error_set(err, ENOMEM, "gpu");
        if (rc >= 0 && n > 0) {
                snprintf(msg, sizeof(msg), "locking and checkpointing %zu CUDA process(es)", n);
                request_step(r, KYB_STEP_GPU_CHECKPOINT, msg);
        }
        for (size_t i = 0; rc >= 0 && i < n; i++) {
                rc = kyb_gpu_hibernate(r->e->gpu, procs[i].pid, spec->gpu_lock_timeout_ms, NULL,
                                       err);
                if (rc >= 0) {
                        d->pids[d->n++] = procs[i].pid;
                        d->hibernated = true;
                }
        }
        kyb_gpu_processes_free(procs, n);
        if (rc < 0)
                devices_rollback(r, d);
        return rc;
}

int devices_resume(request *r, device_state *d, kyb_error **err)
{
        int rc = 0;

        if (!d->hibernated)
                return 0;
        request_step(r, KYB_STEP_GPU_RESTORE, "restoring and unlocking CUDA state");
        for (size_t i = 0; i < d->n; i++) {
                int one = kyb_gpu_resume(r->e->gpu, d->pids[i], NULL, err);
                if (one < 0 && rc == 0)
                        rc = one;
        }
        if (rc == 0)
                d->hibernated = false;
        return rc;
}

void devices_rollback(request *r, device_state *d)
{
        if (!d->hibernated)
                return;
        for (size_t i = 0; i < d->n; i++)
                kyb_gpu_rollback(r->e->gpu, d->pids[i], NULL);
        d->hibernated = false;
}

int devices_describe(request *r, const kyb_checkpoint_spec *spec, device_state *d, kyb_manifest *m,
                     kyb_error **err)
{
        m->gpu.mode = spec->gpu_mode;
        m->gpu.lock_timeout_ms = spec->gpu_lock_timeout_ms;
        if (!d->n)
                return 0;
        m->gpu.captured = true;
        return kyb_gpu_describe(r->e->gpu, d->pids, d->n, m, err);
}

void devices_clear(device_state *d)
{
        free(d->pids);
        *d = (device_state){0};
}
