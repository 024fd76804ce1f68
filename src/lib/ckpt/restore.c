/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The restore flow: verify every file of the checkpoint against its
 * manifest, then let CRIU restore the tree detached from us. CRIU's logs go
 * to a scratch directory, never into the checkpoint, which must stay
 * byte-identical to its manifest. A lazy restore leaves a lazy-pages daemon
 * serving the remaining pages; a thread reaps it and only then releases the
 * checkpoint for deletion.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/validate.h"
#include "ckpt/request.h"
#include "store/fsutil.h"

typedef struct restore_ctx {
        request r;
        const kyb_restore_spec *spec;
        char key[160];
        kyb_checkpoint ckpt;
        bool acquired;
        char *work_dir;
        char *images_dir;
        kyb_criu_lazy_pages *lazy;
        pid_t pid;
} restore_ctx;

static int prepare(restore_ctx *c, kyb_error **err)
{
        kyb_engine *e = c->r.e;
        int rc;

        request_step(&c->r, KYB_STEP_VERIFY, "verifying images against the manifest");
        rc = kyb_store_acquire(e->store, c->spec->checkpoint_id, err);
        if (rc < 0)
                return rc;
        c->acquired = true;
        rc = kyb_store_get(e->store, c->spec->checkpoint_id, &c->ckpt, err);
        if (rc >= 0)
                rc = kyb_store_verify(e->store, c->spec->checkpoint_id, err);
        if (rc < 0)
                return rc;
        if (c->ckpt.manifest->criu.pre_dump)
                return kyb_error_setf(err, EINVAL,
                                      "%s is a pre-dump (memory only); restore the final dump "
                                      "that names it as parent",
                                      c->spec->checkpoint_id);
        if (asprintf(&c->images_dir, "%s/%s", c->ckpt.path, KYB_MANIFEST_IMAGES_DIR) < 0 ||
            asprintf(&c->work_dir, "%s/restore-%s-XXXXXX", e->cfg.work_dir,
                     c->spec->checkpoint_id) < 0)
                return kyb_error_set(err, ENOMEM, "restore paths");
        if (!mkdtemp(c->work_dir))
                return kyb_error_set(err, errno, "creating %s", c->work_dir);
        return 0;
}

/* Options recorded at dump time are needed again at restore time. */
static void criu_options(restore_ctx *c, kyb_criu_opts *o)
{
        const kyb_manifest_criu *dumped = &c->ckpt.manifest->criu;
        const kyb_restore_spec *spec = c->spec;

        *o = (kyb_criu_opts){
            .images_dir = c->images_dir,
            .work_dir = c->work_dir,
            .log_file = "restore.log",
            .shell_job = spec->shell_job || dumped->shell_job,
            .tcp_established = spec->tcp_established || dumped->tcp_established,
            .ext_unix_sk = spec->external_unix_sockets || dumped->external_unix_sockets,
            .file_locks = spec->file_locks || dumped->file_locks,
            .lazy_pages = spec->lazy_pages,
            /* The restored root becomes our child, so that we reap it when
             * it exits: an orphan would wait for an init that may not reap
             * (containers, some hosts). */
            .restore_sibling = true,
            .timeout_ms = request_remaining_ms(&c->r),
        };
}

static void *reap_child(void *arg)
{
        pid_t pid = (pid_t)(intptr_t)arg;

        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return NULL;
}

/* The waiting thread is detached: the tree may outlive the request. */
static void start_reaper(pid_t pid)
{
        pthread_attr_t attr;
        pthread_t thread;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_create(&thread, &attr, reap_child, (void *)(intptr_t)pid);
        pthread_attr_destroy(&attr);
}

static int start_lazy_pages(restore_ctx *c, kyb_error **err)
{
        kyb_criu_lazy_opts lo = {.images_dir = c->images_dir, .work_dir = c->work_dir};

        if (!c->spec->lazy_pages)
                return 0;
        return kyb_criu_lazy_pages_start(c->r.e->criu, &lo, &c->lazy, err);
}

static int restore(restore_ctx *c, kyb_error **err)
{
        kyb_criu_result res = {0};
        kyb_criu_opts o;
        int rc;

        request_step(&c->r, KYB_STEP_CRIU_RESTORE,
                     c->spec->lazy_pages ? "criu restore (lazy pages)" : "criu restore");
        rc = start_lazy_pages(c, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "criu lazy-pages");
        criu_options(c, &o);
        rc = kyb_criu_restore(c->r.e->criu, &o, &res, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "criu (logs in %s)", c->work_dir);
        c->pid = res.pid;
        start_reaper(res.pid);
        return 0;
}

typedef struct lazy_waiter {
        kyb_engine *e;
        kyb_criu_lazy_pages *lazy;
        char *checkpoint_id;
        char *work_dir;
} lazy_waiter;

static void *wait_lazy_pages(void *arg)
{
        lazy_waiter *w = arg;

        kyb_criu_lazy_pages_wait(w->lazy, 0, NULL);
        kyb_criu_lazy_pages_free(w->lazy);
        kyb_store_release(w->e->store, w->checkpoint_id);
        kyb_fs_rm_rf_at(AT_FDCWD, w->work_dir, NULL, NULL);
        free(w->checkpoint_id);
        free(w->work_dir);
        free(w);
        return NULL;
}

/* Hands the running daemon, the store reference and the scratch directory
 * to a detached thread. false: the caller keeps them (and waits inline). */
static bool hand_off_lazy_pages(restore_ctx *c)
{
        lazy_waiter *w = calloc(1, sizeof(*w));
        pthread_attr_t attr;
        pthread_t thread;
        int rc;

        if (!w || !(w->checkpoint_id = strdup(c->spec->checkpoint_id))) {
                free(w);
                return false;
        }
        *w = (lazy_waiter){.e = c->r.e,
                           .lazy = c->lazy,
                           .checkpoint_id = w->checkpoint_id,
                           .work_dir = c->work_dir};
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&thread, &attr, wait_lazy_pages, w);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
                free(w->checkpoint_id);
                free(w);
                return false;
        }
        c->lazy = NULL;
        c->work_dir = NULL;
        c->acquired = false;
        return true;
}

static void cleanup(restore_ctx *c, bool ok)
{
        if (ok && c->lazy)
                hand_off_lazy_pages(c);
        if (c->lazy) {
                if (ok)
                        kyb_criu_lazy_pages_wait(c->lazy, 0, NULL);
                kyb_criu_lazy_pages_free(c->lazy);
        }
        /* Keep the logs of a failed restore for the operator to read. */
        if (ok && c->work_dir)
                kyb_fs_rm_rf_at(AT_FDCWD, c->work_dir, NULL, NULL);
        if (c->acquired)
                kyb_store_release(c->r.e->store, c->spec->checkpoint_id);
        kyb_checkpoint_clear(&c->ckpt);
        free(c->images_dir);
        free(c->work_dir);
}

int kyb_engine_restore(kyb_engine *e, const kyb_restore_spec *spec, const kyb_request_hooks *hooks,
                       kyb_restore_result *out, kyb_error **err)
{
        restore_ctx c = {.spec = spec};
        int rc;

        request_init(&c.r, e, hooks, spec->timeout_ms);
        request_step(&c.r, KYB_STEP_VALIDATE, "validating request");
        rc = kyb_validate_id("checkpoint id", spec->checkpoint_id, err);
        if (rc >= 0 && spec->gpu_mode == KYB_GPU_MODE_REQUIRED)
                rc = kyb_error_setf(err, ENODEV,
                                    "gpu mode required: this agent build cannot restore CUDA "
                                    "state yet");
        snprintf(c.key, sizeof(c.key), "checkpoint %s", rc >= 0 ? spec->checkpoint_id : "?");
        if (rc >= 0)
                rc = engine_lock_target(e, c.key, "a restore", err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "restore %s", c.key);
        rc = prepare(&c, err);
        if (rc >= 0)
                rc = request_check(&c.r, err);
        if (rc >= 0)
                rc = restore(&c, err);
        cleanup(&c, rc >= 0);
        engine_unlock_target(e, c.key);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "restore %s", c.key);
        request_step(&c.r, KYB_STEP_DONE, "restore complete");
        request_finish(&c.r);
        out->pid = c.pid;
        out->n_steps = c.r.n_times;
        memcpy(out->steps, c.r.times, sizeof(out->steps));
        return 0;
}
