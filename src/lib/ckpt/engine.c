/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "ckpt/request.h"
#include "gpu/gpu.h"

const char *kyb_step_name(kyb_step step)
{
        static const char *const names[] = {
            [KYB_STEP_VALIDATE] = "validate",
            [KYB_STEP_RESOLVE] = "resolve",
            [KYB_STEP_GPU_LOCK] = "gpu_lock",
            [KYB_STEP_GPU_CHECKPOINT] = "gpu_checkpoint",
            [KYB_STEP_CRIU_DUMP] = "criu_dump",
            [KYB_STEP_CRIU_RESTORE] = "criu_restore",
            [KYB_STEP_GPU_RESTORE] = "gpu_restore",
            [KYB_STEP_GPU_UNLOCK] = "gpu_unlock",
            [KYB_STEP_MANIFEST] = "manifest",
            [KYB_STEP_PUBLISH] = "publish",
            [KYB_STEP_VERIFY] = "verify",
            [KYB_STEP_ROLLBACK] = "rollback",
            [KYB_STEP_DONE] = "done",
        };

        if ((size_t)step < KYB_ARRAY_SIZE(names) && names[step])
                return names[step];
        return "start";
}

static int copy_config(kyb_engine_config *dst, const kyb_engine_config *src, kyb_error **err)
{
        *dst = *src;
        dst->store_dir = strdup(src->store_dir);
        dst->work_dir = strdup(src->work_dir);
        dst->criu_path = src->criu_path ? strdup(src->criu_path) : NULL;
        dst->runc_path = src->runc_path ? strdup(src->runc_path) : NULL;
        dst->runc_root = src->runc_root ? strdup(src->runc_root) : NULL;
        dst->node_name = strdup(src->node_name ? src->node_name : "");
        dst->cuda_lib = src->cuda_lib ? strdup(src->cuda_lib) : NULL;
        dst->nvml_lib = src->nvml_lib ? strdup(src->nvml_lib) : NULL;
        if (!dst->store_dir || !dst->work_dir || !dst->node_name ||
            (src->criu_path && !dst->criu_path) || (src->runc_path && !dst->runc_path) ||
            (src->runc_root && !dst->runc_root) || (src->cuda_lib && !dst->cuda_lib) ||
            (src->nvml_lib && !dst->nvml_lib))
                return kyb_error_set(err, ENOMEM, "engine config");
        return 0;
}

static void free_config(kyb_engine_config *cfg)
{
        free((char *)cfg->store_dir);
        free((char *)cfg->work_dir);
        free((char *)cfg->criu_path);
        free((char *)cfg->cuda_lib);
        free((char *)cfg->nvml_lib);
        free((char *)cfg->runc_path);
        free((char *)cfg->runc_root);
        free((char *)cfg->node_name);
}

/* runc is not started here: a node without containers needs none. It gets
 * the engine's CRIU so that containers are dumped by the same CRIU 4.x as
 * process trees, not by whatever "criu" runc would find in $PATH. */
static int open_runc(const kyb_engine_config *cfg, kyb_runc **out, kyb_error **err)
{
        kyb_runc_config rc = {
            .runc_path = cfg->runc_path,
            .root_templates = cfg->runc_root,
            .criu_path = cfg->criu_path ? cfg->criu_path : KYB_CRIU_DEFAULT_PATH,
        };

        return kyb_runc_new(&rc, out, err);
}

/* Never fails for a missing GPU: the handle then reports why it is
 * unavailable, and only requests that need a GPU fail. */
static int open_gpu(kyb_engine *e, kyb_error **err)
{
        kyb_gpu_config gcfg = {.cuda_lib = e->cfg.cuda_lib, .nvml_lib = e->cfg.nvml_lib};
        int rc = kyb_gpu_open(&gcfg, &e->gpu, err);

        return rc < 0 ? kyb_error_wrap(err, rc, "gpu") : 0;
}

int kyb_engine_new(const kyb_engine_config *cfg, kyb_engine **out, kyb_error **err)
{
        kyb_engine *e = calloc(1, sizeof(*e));
        int rc;

        if (!e)
                return kyb_error_set(err, ENOMEM, "allocating engine");
        pthread_mutex_init(&e->lock, NULL);
        rc = copy_config(&e->cfg, cfg, err);
        if (rc >= 0)
                rc = kyb_mkdir_p(cfg->work_dir, 0700, err);
        if (rc >= 0)
                rc = kyb_store_open(cfg->store_dir, &e->store, err);
        if (rc >= 0)
                rc = open_gpu(e, err);
        if (rc >= 0 && (rc = kyb_criu_open(cfg->criu_path, &e->criu, err)) < 0)
                kyb_error_wrap(err, rc, "criu");
        if (rc >= 0 && (rc = open_runc(cfg, &e->runc, err)) < 0)
                kyb_error_wrap(err, rc, "runc");
        if (rc < 0) {
                kyb_engine_free(e);
                return rc;
        }
        *out = e;
        return 0;
}

void kyb_engine_free(kyb_engine *e)
{
        if (!e)
                return;
        kyb_criu_free(e->criu);
        kyb_gpu_free(e->gpu);
        kyb_runc_free(e->runc);
        kyb_store_close(e->store);
        free_config(&e->cfg);
        while (e->locks)
                engine_unlock_target(e, e->locks->key);
        pthread_mutex_destroy(&e->lock);
        free(e);
}

struct kyb_gpu *kyb_engine_gpu(kyb_engine *e)
{
        return e->gpu;
}

kyb_store *kyb_engine_store(kyb_engine *e)
{
        return e->store;
}

const char *kyb_engine_criu_version(const kyb_engine *e)
{
        return kyb_criu_version(e->criu)->text;
}
