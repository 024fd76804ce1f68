/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The restore flow: verify every file of the checkpoint against its
 * manifest, then let CRIU restore the tree detached from us. CRIU's logs go
 * to a scratch directory, never into the checkpoint, which must stay
 * byte-identical to its manifest. A lazy restore leaves a lazy-pages daemon
 * serving the remaining pages; a thread reaps it and only then releases the
 * checkpoint for deletion.
 *
 * A checkpoint of a container is restored by `runc restore -d` as a new
 * container (its own ID, the recorded or a given bundle) in the same or a
 * given containerd namespace; runc leaves its init to us to reap.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/validate.h"
#include "ckpt/devices.h"
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
        bool container;                  /* a container checkpoint: runc restores it */
        char ctr_ns[KYB_ID_MAX_LEN + 1]; /* the container to create */
        char ctr_id[KYB_ID_MAX_LEN + 1];
        const char *bundle; /* borrowed from the spec or the manifest */
} restore_ctx;

static const char *nonempty(const char *s)
{
        return s && *s ? s : NULL;
}

static const char *or_default(const char *s, const char *def)
{
        return s && *s ? s : def;
}

/* Which container a container checkpoint becomes, and the checks that a
 * process tree checkpoint is not asked to become one. */
static int pick_container(restore_ctx *c, kyb_error **err)
{
        const kyb_restore_spec *spec = c->spec;
        const kyb_manifest *m = c->ckpt.manifest;
        bool asked = nonempty(spec->container_id) || nonempty(spec->container_namespace) ||
                     nonempty(spec->bundle);

        if (m->target.kind != KYB_TARGET_CONTAINER) {
                if (asked)
                        return kyb_error_setf(err, EINVAL,
                                              "%s is a checkpoint of a process tree; only "
                                              "container checkpoints restore as containers",
                                              spec->checkpoint_id);
                return 0;
        }
        if (spec->lazy_pages)
                return kyb_error_setf(err, ENOTSUP, "lazy_pages: not supported for containers");
        c->container = true;
        snprintf(c->ctr_ns, sizeof(c->ctr_ns), "%s",
                 or_default(spec->container_namespace, m->target.container_namespace));
        snprintf(c->ctr_id, sizeof(c->ctr_id), "%s",
                 or_default(spec->container_id, m->target.container_id));
        c->bundle = or_default(spec->bundle, kyb_manifest_label(m, KYB_CONTAINER_BUNDLE_LABEL));
        if (!nonempty(c->bundle))
                return kyb_error_setf(err, EINVAL,
                                      "%s records no bundle (label %s): give the restore a "
                                      "bundle",
                                      spec->checkpoint_id, KYB_CONTAINER_BUNDLE_LABEL);
        return 0;
}

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
        rc = pick_container(c, err);
        if (rc < 0)
                return rc;
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

/*
 * runc detaches and leaves the restored init behind as an orphan. As a
 * child subreaper we inherit it and reap it like a restored process tree,
 * instead of leaving its zombie to an init that may not reap (some hosts,
 * the agent's own container); containerd's shim does the same for its
 * containers. A failure only costs that, so it is not an error.
 */
static void become_subreaper(void)
{
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

static int restore_devices(restore_ctx *c, kyb_error **err);

static int runc_restore(restore_ctx *c, const char *root, kyb_error **err)
{
        const kyb_manifest_criu *dumped = &c->ckpt.manifest->criu;
        const kyb_restore_spec *spec = c->spec;
        kyb_runc_restore_opts o = {
            .root = root,
            .images_dir = c->images_dir,
            .work_dir = c->work_dir,
            .bundle = c->bundle,
            .flags = {.tcp_established = spec->tcp_established || dumped->tcp_established,
                      .ext_unix_sk = spec->external_unix_sockets || dumped->external_unix_sockets,
                      .shell_job = spec->shell_job || dumped->shell_job,
                      .file_locks = spec->file_locks || dumped->file_locks},
            .timeout_ms = request_remaining_ms(&c->r),
        };
        pid_t pid = 0;
        int rc;

        become_subreaper();
        rc = kyb_runc_restore(c->r.e->runc, c->ctr_ns, c->ctr_id, &o, &pid, err);
        if (rc < 0)
                return rc;
        c->pid = pid;
        start_reaper(pid);
        return restore_devices(c, err);
}

/* Two restores into one container ID would race inside runc: the second is
 * refused up front, like a second request on one checkpoint target. */
static int restore_container(restore_ctx *c, kyb_error **err)
{
        _cleanup_free_ char *root = NULL;
        char key[300];
        int rc;

        request_step(&c->r, KYB_STEP_CRIU_RESTORE, "runc restore");
        snprintf(key, sizeof(key), "container %s/%s", c->ctr_ns, c->ctr_id);
        rc = engine_lock_target(c->r.e, key, "a restore", err);
        if (rc < 0)
                return rc;
        rc = kyb_runc_root_for_new(c->r.e->runc, c->ctr_ns, c->ctr_id, &root, err);
        if (rc >= 0)
                rc = runc_restore(c, root, err);
        engine_unlock_target(c->r.e, key);
        return rc;
}

/* The tree runs but its CUDA state is still in host memory: bring it back,
 * or take the tree down again rather than leave it stuck on a lock. */
static int restore_devices(restore_ctx *c, kyb_error **err)
{
        int rc = 0;

        if (c->spec->gpu_mode != KYB_GPU_MODE_OFF)
                rc = devices_restore(&c->r, c->ckpt.manifest, c->pid, c->spec->gpu_uuid_map,
                                     c->spec->n_gpu_uuid_map, err);
        if (rc < 0) {
                kill(c->pid, SIGKILL);
                return kyb_error_wrap(err, rc, "gpu");
        }
        return 0;
}

static int restore(restore_ctx *c, kyb_error **err)
{
        kyb_criu_result res = {0};
        kyb_criu_opts o;
        int rc;

        if (c->container)
                return restore_container(c, err);

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
        return restore_devices(c, err);
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

static int validate_container(const kyb_restore_spec *spec, kyb_error **err)
{
        int rc = 0;

        if (nonempty(spec->container_namespace))
                rc = kyb_validate_id("container namespace", spec->container_namespace, err);
        if (rc >= 0 && nonempty(spec->container_id))
                rc = kyb_validate_id("container id", spec->container_id, err);
        if (rc >= 0 && nonempty(spec->bundle) && spec->bundle[0] != '/')
                rc = kyb_error_setf(err, EINVAL, "bundle '%s' is not an absolute path",
                                    spec->bundle);
        return rc;
}

int kyb_engine_restore(kyb_engine *e, const kyb_restore_spec *spec, const kyb_request_hooks *hooks,
                       kyb_restore_result *out, kyb_error **err)
{
        restore_ctx c = {.spec = spec};
        int rc;

        request_init(&c.r, e, hooks, spec->timeout_ms);
        request_step(&c.r, KYB_STEP_VALIDATE, "validating request");
        rc = kyb_validate_id("checkpoint id", spec->checkpoint_id, err);
        if (rc >= 0)
                rc = validate_container(spec, err);
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
        memcpy(out->container_namespace, c.ctr_ns, sizeof(c.ctr_ns));
        memcpy(out->container_id, c.ctr_id, sizeof(c.ctr_id));
        out->n_steps = c.r.n_times;
        memcpy(out->steps, c.r.times, sizeof(out->steps));
        return 0;
}
