/* SPDX-License-Identifier: Apache-2.0 */
/* Resume (restore + unlock) and the validation of a GPU UUID map. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gpu/gpu-internal.h"

/* Where the process comes from: the caller's list, or the handle's record. */
typedef struct map_sources {
        gpu_record rec; /* owns the copies when taken from the record */
        bool known;
} map_sources;

static int load_sources(kyb_gpu *g, int32_t pid, const kyb_gpu_uuid_map *map, map_sources *src,
                        kyb_error **err)
{
        memset(src, 0, sizeof(*src));
        if (map->n_sources == 0) {
                src->known = gpu_records_get(g, pid, &src->rec);
                return 0;
        }
        src->rec.gpus = calloc(map->n_sources, sizeof(*src->rec.gpus));
        if (!src->rec.gpus)
                return kyb_error_set(err, ENOMEM, "gpu uuid map");
        for (size_t i = 0; i < map->n_sources; i++) {
                snprintf(src->rec.gpus[i].uuid, KYB_GPU_UUID_MAX, "%s",
                         map->sources[i].uuid ? map->sources[i].uuid : "");
                snprintf(src->rec.gpus[i].model, KYB_GPU_NAME_MAX, "%s",
                         map->sources[i].model ? map->sources[i].model : "");
        }
        src->rec.n_gpus = map->n_sources;
        src->known = true;
        return 0;
}

static const gpu_ref *find_source(const map_sources *src, const char *uuid)
{
        for (size_t i = 0; i < src->rec.n_gpus; i++)
                if (!strcasecmp(src->rec.gpus[i].uuid, uuid))
                        return &src->rec.gpus[i];
        return NULL;
}

static const kyb_gpu_uuid_pair *find_pair(const kyb_gpu_uuid_map *map, const char *old_uuid)
{
        for (size_t i = 0; i < map->n_pairs; i++)
                if (map->pairs[i].old_uuid && !strcasecmp(map->pairs[i].old_uuid, old_uuid))
                        return &map->pairs[i];
        return NULL;
}

/* The model the process ran on: recorded, or that GPU here if it is. */
static const char *source_model(const map_sources *src, const gpu_snapshot *s, const char *uuid)
{
        const gpu_ref *ref = find_source(src, uuid);
        const kyb_nvml_device *dev;

        if (ref && ref->model[0])
                return ref->model;
        dev = gpu_snapshot_device(s, uuid);
        return dev ? dev->name : NULL;
}

static int check_pair(int32_t pid, const kyb_gpu_uuid_pair *p, const map_sources *src,
                      const gpu_snapshot *s, kyb_cuda_gpu_pair *out, kyb_error **err)
{
        const kyb_nvml_device *target;
        const char *model;
        int rc = kyb_cuda_uuid_parse(p->old_uuid, &out->old_uuid, err);

        if (rc >= 0)
                rc = kyb_cuda_uuid_parse(p->new_uuid, &out->new_uuid, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "gpu uuid map for pid %d", pid);
        if (src->known && !find_source(src, p->old_uuid))
                return kyb_error_setf(err, EINVAL,
                                      "gpu uuid map for pid %d: %s is not a GPU the process was "
                                      "checkpointed on",
                                      pid, p->old_uuid);
        target = gpu_snapshot_device(s, p->new_uuid);
        if (!target)
                return kyb_error_setf(err, EINVAL,
                                      "gpu uuid map for pid %d: %s is not a GPU of this node", pid,
                                      p->new_uuid);
        model = source_model(src, s, p->old_uuid);
        if (model && strcmp(model, target->name) != 0)
                return kyb_error_setf(err, EINVAL,
                                      "gpu uuid map for pid %d: cannot restore from %s (%s) onto "
                                      "%s (%s): different models",
                                      pid, p->old_uuid, model, p->new_uuid, target->name);
        return 0;
}

/* Every GPU the process was checkpointed on must be listed (the driver's
 * rule); checked here to name the missing one. */
static int check_complete(int32_t pid, const kyb_gpu_uuid_map *map, const map_sources *src,
                          kyb_error **err)
{
        for (size_t i = 0; i < src->rec.n_gpus; i++)
                if (!find_pair(map, src->rec.gpus[i].uuid))
                        return kyb_error_setf(err, EINVAL,
                                              "gpu uuid map for pid %d lacks %s, which the "
                                              "process was checkpointed on",
                                              pid, src->rec.gpus[i].uuid);
        return 0;
}

static int build_pairs(kyb_gpu *g, int32_t pid, const kyb_gpu_uuid_map *map,
                       kyb_cuda_gpu_pair **out, kyb_error **err)
{
        map_sources src;
        gpu_snapshot s;
        int rc = load_sources(g, pid, map, &src, err);

        if (rc < 0)
                return rc;
        rc = gpu_snapshot_take(g, &s, err);
        if (rc < 0) {
                gpu_record_clear(&src.rec);
                return kyb_error_wrap(err, rc, "gpu resume pid %d", pid);
        }
        *out = calloc(map->n_pairs, sizeof(**out));
        if (!*out)
                rc = kyb_error_set(err, ENOMEM, "gpu uuid map");
        for (size_t i = 0; rc >= 0 && i < map->n_pairs; i++)
                rc = check_pair(pid, &map->pairs[i], &src, &s, &(*out)[i], err);
        if (rc >= 0 && src.known)
                rc = check_complete(pid, map, &src, err);
        gpu_snapshot_clear(&s);
        gpu_record_clear(&src.rec);
        return rc;
}

/* Restore; a failed restore may still have got as far as LOCKED (memory
 * back on the GPU), in which case unlocking lets the process run. */
static int restore(kyb_gpu *g, int32_t pid, const kyb_cuda_gpu_pair *pairs, size_t n,
                   kyb_error **err)
{
        kyb_cuda_state state;
        int rc = kyb_cuda_restore(g->cuda, pid, pairs, n, err);

        if (rc < 0 && gpu_state(g, pid, &state, NULL) >= 0 && state == KYB_CUDA_LOCKED)
                (void)kyb_cuda_unlock(g->cuda, pid, NULL);
        return rc;
}

static int resume_checkpointed(kyb_gpu *g, int32_t pid, const kyb_gpu_uuid_map *map,
                               kyb_error **err)
{
        _cleanup_free_ kyb_cuda_gpu_pair *pairs = NULL;
        size_t n = map ? map->n_pairs : 0;
        int rc = 0;

        if (n > 0)
                rc = build_pairs(g, pid, map, &pairs, err);
        if (rc >= 0)
                rc = restore(g, pid, pairs, n, err);
        return rc;
}

int kyb_gpu_resume(kyb_gpu *g, int32_t pid, const kyb_gpu_uuid_map *map, kyb_error **err)
{
        kyb_cuda_state state;
        int rc = gpu_require(g, err);

        if (rc >= 0)
                rc = gpu_require_process(g, pid, err);
        if (rc >= 0)
                rc = gpu_state(g, pid, &state, err);
        if (rc < 0)
                return rc;
        if (state == KYB_CUDA_FAILED)
                return kyb_error_setf(err, EIO, "gpu resume pid %d: CUDA state is FAILED", pid);
        if (state == KYB_CUDA_CHECKPOINTED)
                rc = resume_checkpointed(g, pid, map, err);
        /* LOCKED: restored before, the unlock is what is left to do. */
        if (rc >= 0 && state != KYB_CUDA_RUNNING)
                rc = kyb_cuda_unlock(g->cuda, pid, err);
        if (rc >= 0)
                gpu_records_drop(g, pid);
        return rc;
}
