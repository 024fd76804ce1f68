/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint flow. The order of the steps is the contract of
 * docs/agent.md; the interesting part is where the checkpoint is committed:
 * when the workload is to be stopped, inside CRIU's post-dump notification,
 * while the tree is still frozen, so that a failed commit (full disk, I/O
 * error) makes CRIU resume the tree instead of killing it.
 *
 * Containers go through runc, which runs CRIU itself: we cannot answer the
 * post-dump notification there. So runc always dumps with --leave-running,
 * the checkpoint is committed while the container runs on, and only then,
 * when the request did not ask to leave it running, is the container
 * stopped (runc kill KILL, then wait until its init is gone). Every failure
 * before the kill leaves the container as it was and removes the partial
 * image. The price: what the container does between the dump and the kill
 * (the time the commit takes) is not in the checkpoint.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "base/validate.h"
#include "ckpt/devices.h"
#include "ckpt/request.h"
#include "store/fsutil.h"

typedef struct ckpt_ctx {
        request r;
        const kyb_checkpoint_spec *spec;
        char id[129];
        char key[160];
        kyb_store_txn *txn;
        kyb_manifest *m;
        bool committed;
        char parent_img[160]; /* relative to the images dir, as CRIU wants it */
        char *work_dir;       /* CRIU's logs: it keeps writing them after post-dump, so
                                 they cannot live in the checkpoint being published */
        kyb_container ctr;    /* container targets: its runc state */
        int init_pidfd;       /* container targets: its init, pinned while we work */
        bool stop_signalled;  /* the container was killed after its commit */
        device_state dev;     /* CUDA processes paused for the dump */
} ckpt_ctx;

/* A container that does not stop within this after SIGKILL is stuck in the
 * kernel; the committed checkpoint is kept and the request fails. */
#define CONTAINER_STOP_TIMEOUT_MS 10000

static int64_t realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* "pid-4242-20240501t120000-3fa9c2": sortable, unique enough, a valid ID. */
static int generate_id(const kyb_checkpoint_spec *spec, char *out, size_t len, kyb_error **err)
{
        time_t now = time(NULL);
        uint8_t rnd[3] = {0};
        char stamp[32], who[48];
        struct tm tm;

        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                return kyb_error_set(err, errno, "getrandom");
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dt%H%M%S", &tm);
        if (spec->target.kind == KYB_TARGET_PROCESS)
                snprintf(who, sizeof(who), "pid-%d", spec->target.pid);
        else
                snprintf(who, sizeof(who), "%.12s", spec->target.container_id);
        snprintf(out, len, "%s-%s-%02x%02x%02x", who, stamp, rnd[0], rnd[1], rnd[2]);
        return 0;
}

static int validate_target(const kyb_checkpoint_spec *spec, char *key, size_t len, kyb_error **err)
{
        const kyb_manifest_target *t = &spec->target;
        int rc;

        if (t->kind == KYB_TARGET_PROCESS) {
                rc = kyb_validate_pid("target pid", t->pid, err);
                snprintf(key, len, "pid %d", t->pid);
                return rc;
        }
        if (t->kind != KYB_TARGET_CONTAINER)
                return kyb_error_setf(err, EINVAL, "no target given");
        rc = kyb_validate_id("container namespace", t->container_namespace, err);
        if (rc >= 0)
                rc = kyb_validate_id("container id", t->container_id, err);
        snprintf(key, len, "container %s/%s", t->container_namespace ? t->container_namespace : "",
                 t->container_id ? t->container_id : "");
        return rc;
}

/* What runc checkpoint cannot do for us is refused, not ignored. */
static int validate_container_options(const kyb_checkpoint_spec *spec, kyb_error **err)
{
        const char *what = spec->pre_dump                        ? "pre_dump"
                           : spec->lazy_pages                    ? "lazy_pages"
                           : spec->parent_id && *spec->parent_id ? "parent_checkpoint_id"
                           : spec->ghost_limit_bytes             ? "ghost_limit_bytes"
                                                                 : NULL;

        if (what)
                return kyb_error_setf(err, ENOTSUP, "%s: not supported for container targets",
                                      what);
        return 0;
}

static int validate(ckpt_ctx *c, kyb_error **err)
{
        const kyb_checkpoint_spec *spec = c->spec;
        int rc = validate_target(spec, c->key, sizeof(c->key), err);

        if (rc < 0)
                return rc;
        if (spec->id && *spec->id) {
                rc = kyb_validate_id("checkpoint id", spec->id, err);
                snprintf(c->id, sizeof(c->id), "%s", spec->id);
        } else {
                rc = generate_id(spec, c->id, sizeof(c->id), err);
        }
        if (rc >= 0 && spec->parent_id && *spec->parent_id)
                rc = kyb_validate_id("parent checkpoint id", spec->parent_id, err);
        if (rc >= 0 && spec->pre_dump && spec->leave_running)
                rc = kyb_error_setf(err, EINVAL,
                                    "pre-dump always leaves the workload running; drop "
                                    "leave-running");
        if (rc >= 0 && spec->target.kind == KYB_TARGET_CONTAINER)
                rc = validate_container_options(spec, err);
        return rc;
}

static int resolve_parent(ckpt_ctx *c, kyb_error **err)
{
        kyb_checkpoint parent = {0};
        int rc;

        if (!c->spec->parent_id || !*c->spec->parent_id)
                return 0;
        rc = kyb_store_get(c->r.e->store, c->spec->parent_id, &parent, err);
        kyb_checkpoint_clear(&parent);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "parent checkpoint");
        return 0;
}

/* The pidfd pins the init that runc named: the stop after the commit
 * cannot hit a recycled PID. */
static int resolve_container(ckpt_ctx *c, kyb_error **err)
{
        const kyb_manifest_target *t = &c->spec->target;
        int rc = kyb_runc_find(c->r.e->runc, t->container_namespace, t->container_id,
                               request_remaining_ms(&c->r), &c->ctr, err);

        if (rc < 0)
                return rc;
        if (c->ctr.status != KYB_CONTAINER_RUNNING || c->ctr.pid <= 0)
                return kyb_error_setf(err, EBUSY, "container %s/%s is %s, not running",
                                      c->ctr.namespace_, c->ctr.id,
                                      kyb_container_status_name(c->ctr.status));
        c->init_pidfd = pidfd_open(c->ctr.pid, 0);
        if (c->init_pidfd < 0 && errno == ESRCH)
                return kyb_error_setf(err, EBUSY, "container %s/%s is stopping, not running",
                                      c->ctr.namespace_, c->ctr.id);
        if (c->init_pidfd < 0)
                return kyb_error_set(err, errno, "pidfd_open of init pid %d", c->ctr.pid);
        return 0;
}

static int resolve(ckpt_ctx *c, kyb_error **err)
{
        char path[64];
        struct stat st;

        if (c->spec->target.kind == KYB_TARGET_CONTAINER)
                return resolve_container(c, err);
        snprintf(path, sizeof(path), "/proc/%d", c->spec->target.pid);
        if (stat(path, &st) < 0)
                return kyb_error_set(err, errno == ENOENT ? ESRCH : errno, "process %d",
                                     c->spec->target.pid);
        return resolve_parent(c, err);
}

static int pause_devices(ckpt_ctx *c, kyb_error **err)
{
        int32_t root =
            c->spec->target.kind == KYB_TARGET_CONTAINER ? c->ctr.pid : c->spec->target.pid;

        return devices_pause(&c->r, c->spec, root, &c->dev, err);
}

static int fill_manifest_identity(ckpt_ctx *c, kyb_error **err)
{
        const kyb_checkpoint_spec *spec = c->spec;
        kyb_manifest *m = c->m;
        const kyb_manifest_workload *w = &spec->workload;
        int rc = 0;

#define DUP(dst, src)                                                                              \
        do {                                                                                       \
                if ((src) && !((dst) = strdup(src)))                                               \
                        rc = -ENOMEM;                                                              \
        } while (0)
        DUP(m->node, c->r.e->cfg.node_name);
        DUP(m->workload.pod_namespace, w->pod_namespace);
        DUP(m->workload.pod_name, w->pod_name);
        DUP(m->workload.pod_uid, w->pod_uid);
        DUP(m->workload.container_name, w->container_name);
        DUP(m->workload.image, w->image);
        m->target.kind = spec->target.kind;
        m->target.pid = spec->target.pid;
        DUP(m->target.container_namespace, spec->target.container_namespace);
        DUP(m->target.container_id, spec->target.container_id);
        DUP(m->criu.version, kyb_criu_version(c->r.e->criu)->text);
        DUP(m->criu.parent_id, spec->parent_id ? spec->parent_id : "");
        DUP(m->gpu.driver_version, "");
#undef DUP
        if (rc < 0)
                return kyb_error_set(err, ENOMEM, "building manifest");
        return 0;
}

static int build_manifest(ckpt_ctx *c, kyb_error **err)
{
        const kyb_checkpoint_spec *spec = c->spec;
        kyb_manifest *m;
        int rc = kyb_manifest_new(&c->m, err);

        if (rc < 0)
                return rc;
        m = c->m;
        m->created_at_ns = realtime_ns();
        m->criu.leave_running = spec->leave_running || spec->pre_dump;
        m->criu.tcp_established = spec->tcp_established;
        m->criu.file_locks = spec->file_locks;
        m->criu.shell_job = spec->shell_job;
        m->criu.external_unix_sockets = spec->external_unix_sockets;
        m->criu.pre_dump = spec->pre_dump;
        m->criu.lazy_pages = spec->lazy_pages;
        rc = fill_manifest_identity(c, err);
        if (rc >= 0)
                rc = devices_describe(&c->r, spec, &c->dev, m, err);
        for (size_t i = 0; rc >= 0 && i < spec->n_labels; i++)
                rc = kyb_manifest_set_label(m, spec->labels[i].key, spec->labels[i].value, err);
        /* A restore needs the bundle again; the manifest's format has no
         * field for it, labels are its extension point. */
        if (rc >= 0 && c->ctr.bundle)
                rc = kyb_manifest_set_label(m, KYB_CONTAINER_BUNDLE_LABEL, c->ctr.bundle, err);
        return rc;
}

static int record_steps(ckpt_ctx *c, kyb_error **err)
{
        int rc = 0;

        for (size_t i = 0; rc >= 0 && i < c->r.n_times; i++)
                rc = kyb_manifest_add_step(c->m, kyb_step_name(c->r.times[i].step),
                                           (uint64_t)(c->r.times[i].duration_ns / 1000000), 0, err);
        return rc;
}

/* manifest + publish: the checkpoint becomes visible in one rename. */
static int commit(ckpt_ctx *c, kyb_error **err)
{
        int rc;

        request_step(&c->r, KYB_STEP_MANIFEST, "writing manifest");
        rc = build_manifest(c, err);
        if (rc >= 0)
                rc = record_steps(c, err);
        if (rc < 0)
                return rc;
        request_step(&c->r, KYB_STEP_PUBLISH, "hashing and publishing images");
        rc = kyb_store_commit(TAKE_PTR(c->txn), c->m, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "publish");
        c->committed = true;
        return 0;
}

static int on_criu_event(const kyb_criu_notification *n, void *userdata, kyb_error **err)
{
        ckpt_ctx *c = userdata;

        if (n->event != KYB_CRIU_EV_POST_DUMP || c->spec->leave_running)
                return 0;
        /* Still frozen: a failure here makes CRIU resume the tree. */
        return commit(c, err);
}

static void criu_options(ckpt_ctx *c, kyb_criu_opts *o)
{
        const kyb_checkpoint_spec *spec = c->spec;

        *o = (kyb_criu_opts){
            .pid = spec->target.pid,
            .images_dir = kyb_store_txn_images_dir(c->txn),
            .work_dir = c->work_dir,
            .log_file = spec->pre_dump ? "pre-dump.log" : "dump.log",
            .leave_running = spec->leave_running,
            .shell_job = spec->shell_job,
            .tcp_established = spec->tcp_established,
            .ext_unix_sk = spec->external_unix_sockets,
            .file_locks = spec->file_locks,
            .ghost_limit = spec->ghost_limit_bytes,
            .timeout_ms = request_remaining_ms(&c->r),
            .notify = on_criu_event,
            .notify_data = c,
        };
        if (spec->parent_id && *spec->parent_id) {
                /* <store>/.inprogress-<id>/checkpoint -> <store>/<parent>/checkpoint;
                 * the same depth after the rename into place. */
                snprintf(c->parent_img, sizeof(c->parent_img), "../../%s/%s", spec->parent_id,
                         KYB_MANIFEST_IMAGES_DIR);
                o->parent_img = c->parent_img;
        }
}

static int make_work_dir(ckpt_ctx *c, kyb_error **err)
{
        if (asprintf(&c->work_dir, "%s/dump-%s-XXXXXX", c->r.e->cfg.work_dir, c->id) < 0)
                return kyb_error_set(err, ENOMEM, "work directory");
        if (!mkdtemp(c->work_dir))
                return kyb_error_set(err, errno, "creating %s", c->work_dir);
        return 0;
}

/* After the commit: the checkpoint exists, the container is to go. A kill
 * that was delivered keeps the checkpoint even if the wait times out (the
 * container goes, just later); a kill that failed rolls back. */
static int stop_container(ckpt_ctx *c, kyb_error **err)
{
        bool signalled = false;
        int rc;

        request_progress(&c->r, "stopping container", 0, 0);
        rc = kyb_runc_kill(c->r.e->runc, &c->ctr, c->init_pidfd, CONTAINER_STOP_TIMEOUT_MS,
                           &signalled, err);
        c->stop_signalled = signalled;
        if (rc < 0 && signalled)
                return kyb_error_wrap(err, rc, "checkpoint %s kept, but the container did not stop",
                                      c->id);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "stopping the container after its checkpoint");
        return 0;
}

/* After a successful dump: a workload that keeps running gets its GPU state
 * back before the checkpoint is published; a stopped one is gone. */
static int finish_dump(ckpt_ctx *c, kyb_error **err)
{
        int rc = 0;

        if (c->spec->leave_running || c->spec->pre_dump)
                rc = devices_resume(&c->r, &c->dev, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "resuming CUDA state");
        return c->committed ? 0 : commit(c, err);
}

static int dump_container(ckpt_ctx *c, kyb_error **err)
{
        const kyb_checkpoint_spec *spec = c->spec;
        kyb_runc_checkpoint_opts o = {
            .images_dir = kyb_store_txn_images_dir(c->txn),
            .work_dir = c->work_dir,
            .leave_running = true, /* see the top of this file */
            .flags = {.tcp_established = spec->tcp_established,
                      .ext_unix_sk = spec->external_unix_sockets,
                      .shell_job = spec->shell_job,
                      .file_locks = spec->file_locks},
            .timeout_ms = request_remaining_ms(&c->r),
        };
        int rc;

        request_step(&c->r, KYB_STEP_CRIU_DUMP, "runc checkpoint");
        rc = kyb_container_save_spec(c->ctr.bundle, kyb_store_txn_dir(c->txn),
                                     KYB_CONTAINER_SPEC_DUMP, err);
        if (rc >= 0)
                rc = kyb_store_txn_follow_images(c->txn, err);
        if (rc >= 0)
                rc = kyb_runc_checkpoint(c->r.e->runc, &c->ctr, &o, err);
        if (rc >= 0)
                rc = finish_dump(c, err);
        if (rc >= 0 && !spec->leave_running)
                rc = stop_container(c, err);
        return rc;
}

static int dump(ckpt_ctx *c, kyb_error **err)
{
        kyb_criu_opts o;
        int rc = make_work_dir(c, err);

        if (rc < 0)
                return rc;
        if (c->spec->target.kind == KYB_TARGET_CONTAINER)
                return dump_container(c, err);

        request_step(&c->r, KYB_STEP_CRIU_DUMP, c->spec->pre_dump ? "criu pre-dump" : "criu dump");
        criu_options(c, &o);
        /* Hash the images on the other core while CRIU writes them. */
        rc = kyb_store_txn_follow_images(c->txn, err);
        if (rc < 0)
                return rc;
        if (c->spec->pre_dump)
                rc = kyb_criu_pre_dump(c->r.e->criu, &o, NULL, err);
        else
                rc = kyb_criu_dump(c->r.e->criu, &o, NULL, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "criu (logs in %s)", c->work_dir);
        return finish_dump(c, err);
}

/* After a failure: nothing half-written stays. A checkpoint committed in
 * post-dump whose dump then failed is deleted again: CRIU resumed the tree,
 * so that image may not match what keeps running. */
static void rollback(ckpt_ctx *c)
{
        if (c->stop_signalled)
                return; /* the checkpoint is all that is left of the container */
        request_step(&c->r, KYB_STEP_ROLLBACK, "removing partial checkpoint");
        devices_rollback(&c->r, &c->dev);
        kyb_store_abort(TAKE_PTR(c->txn));
        if (c->committed)
                kyb_store_delete(c->r.e->store, c->id, NULL, NULL);
}

static int run_locked(ckpt_ctx *c, kyb_error **err)
{
        int rc;

        request_step(&c->r, KYB_STEP_RESOLVE, "resolving target");
        rc = resolve(c, err);
        if (rc >= 0)
                rc = request_check(&c->r, err);
        if (rc >= 0)
                rc = pause_devices(c, err);
        if (rc >= 0)
                rc = kyb_store_begin(c->r.e->store, c->id, &c->txn, err);
        if (rc >= 0)
                rc = request_check(&c->r, err);
        if (rc >= 0)
                rc = dump(c, err);
        if (rc < 0)
                rollback(c);
        else if (c->work_dir)
                kyb_fs_rm_rf_at(AT_FDCWD, c->work_dir, NULL, NULL);
        return rc;
}

int kyb_engine_checkpoint(kyb_engine *e, const kyb_checkpoint_spec *spec,
                          const kyb_request_hooks *hooks, kyb_checkpoint *out, kyb_error **err)
{
        ckpt_ctx c = {.spec = spec, .init_pidfd = -1};
        int rc;

        request_init(&c.r, e, hooks, spec->timeout_ms);
        request_step(&c.r, KYB_STEP_VALIDATE, "validating request");
        rc = validate(&c, err);
        if (rc >= 0)
                rc = engine_lock_target(e, c.key, c.id, err);
        if (rc >= 0) {
                rc = run_locked(&c, err);
                engine_unlock_target(e, c.key);
        }
        if (rc >= 0) {
                request_step(&c.r, KYB_STEP_DONE, "checkpoint complete");
                rc = kyb_store_get(e->store, c.id, out, err);
        }
        kyb_manifest_free(c.m);
        kyb_container_clear(&c.ctr);
        devices_clear(&c.dev);
        if (c.init_pidfd >= 0)
                close(c.init_pidfd);
        free(c.work_dir);
        request_finish(&c.r);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "checkpoint %s", c.key[0] ? c.key : "(invalid)");
        return 0;
}
