/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Appends root and its descendants (through /proc/<pid>/task/<tid>/children). */
static void tree_pids(int32_t root, int32_t *out, size_t *n, size_t max)
{
        char path[64], buf[4096];
        size_t first = *n;

        if (*n == max)
                return;
        out[(*n)++] = root;
        for (size_t i = first; i < *n; i++) {
                snprintf(path, sizeof(path), "/proc/%d/task/%d/children", out[i], out[i]);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                size_t len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[len] = '\0';
                for (char *s = strtok(buf, " \n"); s && *n < max; s = strtok(NULL, " \n"))
                        out[(*n)++] = (int32_t)atoi(s);
        }
}

static bool is_checkpointed(kyb_gpu *g, int32_t pid)
{
        kyb_gpu_info info = {0};
        bool yes = false;

        if (kyb_gpu_status(g, pid, &info, NULL) < 0)
                return false;
        for (size_t i = 0; i < info.n_processes; i++)
                if (info.processes[i].pid == pid && info.processes[i].state_known &&
                    info.processes[i].state == KYB_CUDA_CHECKPOINTED)
                        yes = true;
        kyb_gpu_info_clear(&info);
        return yes;
}

/* The k-th restored CUDA process continues the k-th recorded one. */
static int resume_restored(request *r, const kyb_manifest *m, int32_t pid, size_t k,
                           const kyb_gpu_uuid_pair *pairs, size_t n_pairs, kyb_error **err)
{
        kyb_gpu_source *sources = NULL;
        size_t n_sources = 0;
        int rc = 0;

        if (k < m->gpu.n_processes)
                rc = kyb_gpu_sources_from_manifest(&m->gpu, m->gpu.processes[k].pid, &sources,
                                                   &n_sources, err);
        if (rc >= 0) {
                kyb_gpu_uuid_map map = {
                    .pairs = pairs, .n_pairs = n_pairs, .sources = sources, .n_sources = n_sources};
                rc = kyb_gpu_resume(r->e->gpu, pid, &map, err);
        }
        free(sources);
        return rc < 0 ? kyb_error_wrap(err, rc, "cuda pid %d", pid) : 0;
}

int devices_restore(request *r, const kyb_manifest *m, int32_t root_pid,
                    const kyb_gpu_uuid_pair *pairs, size_t n_pairs, kyb_error **err)
{
        int32_t pids[1024];
        size_t n = 0, found = 0;
        int rc = 0;

        if (!m->gpu.captured)
                return 0;
        if (!kyb_gpu_available(r->e->gpu))
                return kyb_error_setf(err, ENODEV, "the checkpoint holds CUDA state: %s",
                                      kyb_gpu_unavailable_reason(r->e->gpu));
        request_step(r, KYB_STEP_GPU_RESTORE, "restoring and unlocking CUDA state");
        tree_pids(root_pid, pids, &n, KYB_ARRAY_SIZE(pids));
        for (size_t i = 0; rc >= 0 && i < n; i++)
                if (is_checkpointed(r->e->gpu, pids[i]))
                        rc = resume_restored(r, m, pids[i], found++, pairs, n_pairs, err);
        if (rc >= 0 && found == 0)
                rc = kyb_error_setf(err, ENODEV,
                                    "the checkpoint recorded %zu CUDA process(es) but none of "
                                    "the restored tree is in the CHECKPOINTED state",
                                    m->gpu.n_processes);
        return rc;
}
