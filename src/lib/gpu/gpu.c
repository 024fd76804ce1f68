/* SPDX-License-Identifier: Apache-2.0 */
/* The handle: opening the driver libraries (or recording why not), the
 * table of hibernated processes, freeing results. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gpu/gpu-internal.h"

/* Records why the GPU cannot be used; the handle stays usable for the rest. */
static int set_unavailable(kyb_gpu *g, kyb_error **cause)
{
        g->unavailable_errno = kyb_error_errno(*cause) ? kyb_error_errno(*cause) : ENODEV;
        g->unavailable_reason = strdup(kyb_error_message(*cause));
        kyb_cuda_closep(&g->cuda);
        kyb_nvml_closep(&g->nvml);
        return g->unavailable_reason ? 0 : -ENOMEM;
}

/* cuInit here rather than on first use: "no GPU" (CUDA_ERROR_NO_DEVICE)
 * belongs to availability, not to the first hibernate. */
static int open_drivers(kyb_gpu *g, const kyb_gpu_config *cfg, kyb_error **cause)
{
        int rc = kyb_cuda_open(cfg->cuda_lib, &g->cuda, cause);

        if (rc >= 0)
                rc = kyb_nvml_open(cfg->nvml_lib, &g->nvml, cause);
        if (rc >= 0)
                rc = kyb_cuda_init(g->cuda, cause);
        if (rc >= 0)
                rc = kyb_nvml_driver_version(g->nvml, g->driver_version, cause);
        return rc;
}

int kyb_gpu_open(const kyb_gpu_config *cfg, kyb_gpu **out, kyb_error **err)
{
        static const kyb_gpu_config defaults = {0};
        _cleanup_error_ kyb_error *cause = NULL;
        kyb_gpu *g;

        if (!cfg)
                cfg = &defaults;
        *out = NULL;
        g = calloc(1, sizeof(*g));
        if (!g)
                return kyb_error_set(err, ENOMEM, "gpu");
        pthread_mutex_init(&g->lock, NULL);
        g->default_lock_timeout_ms = cfg->default_lock_timeout_ms ? cfg->default_lock_timeout_ms
                                                                  : KYB_GPU_DEFAULT_LOCK_TIMEOUT_MS;
        g->proc_root = strdup(cfg->proc_root ? cfg->proc_root : "/proc");
        if (!g->proc_root || (open_drivers(g, cfg, &cause) < 0 && set_unavailable(g, &cause) < 0)) {
                kyb_gpu_free(g);
                return kyb_error_set(err, ENOMEM, "gpu");
        }
        *out = g;
        return 0;
}

void kyb_gpu_free(kyb_gpu *g)
{
        if (!g)
                return;
        kyb_cuda_close(g->cuda);
        kyb_nvml_close(g->nvml);
        for (size_t i = 0; i < g->n_records; i++)
                gpu_record_clear(&g->records[i]);
        free(g->records);
        pthread_mutex_destroy(&g->lock);
        free(g->unavailable_reason);
        free(g->proc_root);
        free(g);
}

bool kyb_gpu_available(const kyb_gpu *g)
{
        return g->unavailable_errno == 0;
}

const char *kyb_gpu_unavailable_reason(const kyb_gpu *g)
{
        return g->unavailable_reason;
}

int kyb_gpu_unavailable_errno(const kyb_gpu *g)
{
        return g->unavailable_errno;
}

int gpu_require(const kyb_gpu *g, kyb_error **err)
{
        if (kyb_gpu_available(g))
                return 0;
        return kyb_error_setf(err, g->unavailable_errno, "%s",
                              g->unavailable_reason ? g->unavailable_reason : "no GPU");
}

int gpu_require_process(const kyb_gpu *g, int32_t pid, kyb_error **err)
{
        if (pid <= 0)
                return kyb_error_setf(err, EINVAL, "invalid pid %d", pid);
        if (!gpu_proc_exists(g, pid))
                return kyb_error_setf(err, ENOENT, "no process %d", pid);
        return 0;
}

int gpu_state(kyb_gpu *g, int32_t pid, kyb_cuda_state *out, kyb_error **err)
{
        _cleanup_error_ kyb_error *cause = NULL;
        int rc = kyb_cuda_get_state(g->cuda, pid, out, &cause);

        /* Drivers answer a PID without CUDA state with INVALID_VALUE or
         * NOT_FOUND: for the caller that is "no such CUDA process". */
        if (rc == -EINVAL || rc == -ENOENT)
                return kyb_error_setf(err, ENOENT, "pid %d is not a CUDA process (%s)", pid,
                                      kyb_error_message(cause));
        return rc < 0 ? kyb_error_move(err, &cause) : 0;
}

void kyb_gpu_processes_free(kyb_gpu_process *procs, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < procs[i].n_gpu_uuids; j++)
                        free(procs[i].gpu_uuids[j]);
                free(procs[i].gpu_uuids);
        }
        free(procs);
}

void kyb_gpu_info_clear(kyb_gpu_info *info)
{
        free(info->devices);
        kyb_gpu_processes_free(info->processes, info->n_processes);
        memset(info, 0, sizeof(*info));
}

int gpu_process_from_record(kyb_gpu_process *p, const gpu_record *r, kyb_error **err)
{
        p->pid = r->pid;
        p->device_memory_bytes = r->memory_bytes;
        p->gpu_uuids = calloc(r->n_gpus + 1, sizeof(char *));
        if (!p->gpu_uuids)
                return kyb_error_set(err, ENOMEM, "gpu process");
        for (size_t i = 0; i < r->n_gpus; i++) {
                p->gpu_uuids[i] = strdup(r->gpus[i].uuid);
                if (!p->gpu_uuids[i])
                        return kyb_error_set(err, ENOMEM, "gpu process");
                p->n_gpu_uuids = i + 1;
        }
        return 0;
}

int kyb_gpu_sources_from_manifest(const kyb_manifest_gpu *mg, int32_t pid, kyb_gpu_source **out,
                                  size_t *n_out, kyb_error **err)
{
        const kyb_manifest_gpu_process *p = NULL;

        *out = NULL;
        *n_out = 0;
        for (size_t i = 0; i < mg->n_processes && !p; i++)
                if (mg->processes[i].pid == pid)
                        p = &mg->processes[i];
        if (!p)
                return kyb_error_setf(err, ENOENT, "manifest has no GPU process %d", pid);
        if (p->n_gpu_uuids == 0)
                return 0;
        *out = calloc(p->n_gpu_uuids, sizeof(**out));
        if (!*out)
                return kyb_error_set(err, ENOMEM, "gpu sources");
        for (size_t i = 0; i < p->n_gpu_uuids; i++) {
                (*out)[i].uuid = p->gpu_uuids[i];
                for (size_t d = 0; d < mg->n_devices; d++)
                        if (mg->devices[d].uuid &&
                            !strcasecmp(mg->devices[d].uuid, p->gpu_uuids[i]))
                                (*out)[i].model = mg->devices[d].model;
        }
        *n_out = p->n_gpu_uuids;
        return 0;
}
