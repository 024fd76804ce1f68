/* SPDX-License-Identifier: Apache-2.0 */
/* The public CRIU client: handle, version/feature probe, dump/pre-dump/restore. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "criu/criu-internal.h"

#define OPEN_TIMEOUT_MS 30000 /* VERSION + FEATURE_CHECK (kerndat probing) */
#define EXIT_GRACE_MS   5000  /* for swrk to exit after a broken conversation */
#define REPLY_GRACE_MS  30000 /* for swrk to exit after its reply, without a deadline */

struct kyb_criu {
        char *path;
        kyb_criu_version_info version;
        kyb_criu_feature_set features;
};

/* ---- one swrk process and its socket ------------------------------------ */

typedef struct swrk {
        kyb_criu_proc proc;
        int sk;
        kyb_criu_session s;
        int64_t start_ms;
} swrk;

static int swrk_start(const char *criu_path, int64_t deadline_ms, swrk *w, kyb_error **err)
{
        char fdarg[16];
        const char *argv[] = {criu_path, "swrk", fdarg, NULL};
        int sv[2];
        int rc;

        w->proc = (kyb_criu_proc)KYB_CRIU_PROC_INIT;
        w->sk = -1;
        w->start_ms = kyb_criu_now_ms();
        kyb_criu_session_init(&w->s, -1, -1, -1, NULL); /* swrk_release() works from here */
        snprintf(fdarg, sizeof(fdarg), "%d", KYB_CRIU_SWRK_FD);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return kyb_error_set(err, errno, "socketpair for criu swrk");
        rc = kyb_criu_spawn(argv, sv[1], &w->proc, err);
        close(sv[1]); /* swrk holds the only other end: its exit means EOF */
        if (rc < 0) {
                close(sv[0]);
                return rc;
        }
        w->sk = sv[0];
        kyb_criu_session_init(&w->s, w->sk, w->proc.pidfd, w->proc.errfd, &w->proc.out);
        w->s.deadline_ms = deadline_ms;
        return 0;
}

/* Closes our end (swrk treats EOF as "no more requests") and waits for the
 * exit until the deadline; a swrk that outlives it is killed. */
static int swrk_finish(swrk *w, int64_t deadline_ms, kyb_error **err)
{
        kyb_closep(&w->sk);
        w->sk = -1;
        return kyb_criu_proc_wait(&w->proc, deadline_ms, true, err);
}

static void swrk_release(swrk *w)
{
        kyb_closep(&w->sk);
        w->sk = -1;
        kyb_criu_session_clear(&w->s);
        kyb_criu_proc_release(&w->proc);
}

/* ---- open: VERSION and FEATURE_CHECK on one keep_open connection -------- */

static void set_version(kyb_criu_version_info *v, const CriuVersion *pb)
{
        v->major = pb->major_number;
        v->minor = pb->minor_number;
        v->sublevel = pb->has_sublevel ? pb->sublevel : 0;
        v->extra = pb->has_extra ? pb->extra : 0;
        if (pb->has_sublevel)
                snprintf(v->text, sizeof(v->text), "%d.%d.%d", v->major, v->minor, v->sublevel);
        else
                snprintf(v->text, sizeof(v->text), "%d.%d", v->major, v->minor);
        snprintf(v->gitid, sizeof(v->gitid), "%s", pb->gitid ? pb->gitid : "");
}

static int ask_version(swrk *w, kyb_criu *c, kyb_error **err)
{
        CriuReq req = CRIU_REQ__INIT;
        CriuResp *resp = NULL;
        int rc;

        req.type = CRIU_REQ_TYPE__VERSION;
        req.has_keep_open = true;
        req.keep_open = true;
        rc = kyb_criu_session_call(&w->s, &req, &resp, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "VERSION");
        if (!resp->success || !resp->version)
                rc = kyb_error_setf(err, ENOTSUP, "VERSION not answered (CRIU older than 3.0?)");
        else
                set_version(&c->version, resp->version);
        criu_resp__free_unpacked(resp, NULL);
        return rc;
}

static int ask_features(swrk *w, kyb_criu *c, kyb_error **err)
{
        CriuFeatures want = CRIU_FEATURES__INIT;
        CriuReq req = CRIU_REQ__INIT;
        CriuResp *resp = NULL;
        int rc;

        want.has_mem_track = want.mem_track = true;
        want.has_lazy_pages = want.lazy_pages = true;
        want.has_pidfd_store = want.pidfd_store = true;
        req.type = CRIU_REQ_TYPE__FEATURE_CHECK;
        req.features = &want;
        rc = kyb_criu_session_call(&w->s, &req, &resp, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "FEATURE_CHECK");
        if (!resp->success || !resp->features) {
                rc = kyb_error_setf(err, EIO, "FEATURE_CHECK failed (kernel probing in criu)");
        } else {
                c->features.mem_track = resp->features->mem_track;
                c->features.lazy_pages = resp->features->lazy_pages;
                c->features.pidfd_store = resp->features->pidfd_store;
        }
        criu_resp__free_unpacked(resp, NULL);
        return rc;
}

static int probe(kyb_criu *c, kyb_error **err)
{
        int64_t deadline = kyb_criu_now_ms() + OPEN_TIMEOUT_MS;
        swrk w;
        int rc = swrk_start(c->path, deadline, &w, err);

        if (rc == 0)
                rc = ask_version(&w, c, err);
        if (rc == 0)
                rc = ask_features(&w, c, err);
        if (rc == 0)
                rc = swrk_finish(&w, deadline, err);
        if (rc < 0 && w.proc.out.len)
                kyb_error_wrap(err, rc, "criu said '%.200s'", w.proc.out.buf);
        swrk_release(&w);
        return rc;
}

static bool version_supported(const kyb_criu_version_info *v)
{
        /* SINGLE_PRE_DUMP (one pre-dump per swrk) came with 3.15. */
        return v->major > 3 || (v->major == 3 && v->minor >= 15);
}

int kyb_criu_open(const char *criu_path, kyb_criu **out, kyb_error **err)
{
        kyb_criu *c = calloc(1, sizeof(*c));
        int rc;

        *out = NULL;
        if (!c)
                return kyb_error_set(err, ENOMEM, "criu: open");
        c->path = strdup(criu_path ? criu_path : KYB_CRIU_DEFAULT_PATH);
        if (!c->path) {
                kyb_criu_free(c);
                return kyb_error_set(err, ENOMEM, "criu: open");
        }
        rc = probe(c, err);
        if (rc == 0 && !version_supported(&c->version))
                rc = kyb_error_setf(err, ENOTSUP, "version %s is too old (need 3.15 or newer)",
                                    c->version.text);
        if (rc < 0) {
                rc = kyb_error_wrap(err, rc, "criu %s", c->path);
                kyb_criu_free(c);
                return rc;
        }
        *out = c;
        return 0;
}

void kyb_criu_free(kyb_criu *c)
{
        if (!c)
                return;
        free(c->path);
        free(c);
}

const kyb_criu_version_info *kyb_criu_version(const kyb_criu *c)
{
        return &c->version;
}

const kyb_criu_feature_set *kyb_criu_features(const kyb_criu *c)
{
        return &c->features;
}

const char *kyb_criu_path(const kyb_criu *c)
{
        return c->path;
}

/* ---- dump / pre-dump / restore ------------------------------------------ */

typedef struct request {
        const kyb_criu *c;
        const kyb_criu_opts *o;
        kyb_criu_op op;
        char ctx[160]; /* "criu dump pid 123" */
        int images_fd, work_fd;
        bool own_images, own_work;
        int64_t deadline_ms;
        swrk w;
} request;

static void request_close(request *r)
{
        if (r->own_images)
                kyb_closep(&r->images_fd);
        if (r->own_work)
                kyb_closep(&r->work_fd);
        swrk_release(&r->w);
}

/* A path is opened here so CRIU gets it through our fd table, resolved
 * against our cwd, whatever swrk's cwd becomes. */
static int open_dir(const char *what, const char *path, int fd, int *out, bool *own,
                    kyb_error **err)
{
        struct stat st;

        *out = -1;
        *own = false;
        if (path) {
                *out = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (*out < 0)
                        return kyb_error_set(err, errno, "open %s %s", what, path);
                *own = true;
                return 0;
        }
        if (fd <= 2)
                return 0;
        if (fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "%s fd %d", what, fd);
        if (!S_ISDIR(st.st_mode))
                return kyb_error_setf(err, ENOTDIR, "%s fd %d is not a directory", what, fd);
        *out = fd;
        return 0;
}

static void set_context(request *r)
{
        const char *name = kyb_criu_op_name(r->op);

        if (r->op != KYB_CRIU_OP_RESTORE)
                snprintf(r->ctx, sizeof(r->ctx), "criu %s pid %d", name, (int)r->o->pid);
        else if (r->o->images_dir)
                snprintf(r->ctx, sizeof(r->ctx), "criu %s from %s", name, r->o->images_dir);
        else
                snprintf(r->ctx, sizeof(r->ctx), "criu %s", name);
}

static int prepare(request *r, kyb_error **err)
{
        int rc = kyb_criu_opts_validate(r->o, r->op, err);

        if (rc == 0)
                rc = kyb_criu_opts_check_features(r->o, r->op, &r->c->features, err);
        if (rc == 0)
                rc = open_dir("images dir", r->o->images_dir, r->o->images_dir_fd, &r->images_fd,
                              &r->own_images, err);
        if (rc == 0)
                rc = open_dir("work dir", r->o->work_dir, r->o->work_dir_fd, &r->work_fd,
                              &r->own_work, err);
        return rc;
}

/* Where CRIU writes its log: the work dir, which defaults to the images. */
static int log_dir_fd(const request *r)
{
        return r->work_fd >= 0 ? r->work_fd : r->images_fd;
}

static char *log_errors(const request *r)
{
        char *lines = NULL;

        kyb_criu_log_errors(log_dir_fd(r), kyb_criu_log_name(r->o, r->op), KYB_CRIU_LOG_ERROR_LINES,
                            &lines);
        return lines;
}

static int fail_reply(request *r, const CriuResp *resp, kyb_error **err)
{
        _cleanup_free_ char *lines = log_errors(r);
        int errnum = resp->has_cr_errno && resp->cr_errno > 0 ? resp->cr_errno : EIO;

        return kyb_criu_fail(err, errnum, r->ctx, resp->cr_errmsg, lines, r->w.proc.out.buf);
}

static int64_t grace_deadline(int64_t deadline_ms)
{
        int64_t grace = kyb_criu_now_ms() + EXIT_GRACE_MS;

        return deadline_ms >= 0 ? KYB_MIN(deadline_ms, grace) : grace;
}

/* No usable reply (deadline, swrk crash, protocol error): say so, then add
 * what CRIU managed to log. */
static int fail_session(request *r, int rc, kyb_error **err)
{
        _cleanup_free_ char *lines = NULL;
        char how[96];

        if (rc == -ETIMEDOUT)
                kyb_criu_proc_kill(&r->w.proc);
        else /* EOF on its socket makes a live swrk give up: a short grace */
                swrk_finish(&r->w, grace_deadline(r->deadline_ms), NULL);
        lines = log_errors(r);
        kyb_criu_proc_describe(&r->w.proc, how, sizeof(how));
        if (rc == -ETIMEDOUT)
                kyb_error_setf(err, ETIMEDOUT, "timed out after %lld ms; criu swrk killed",
                               (long long)r->o->timeout_ms);
        if (lines)
                return kyb_error_wrap(err, rc, "%s: %s (criu swrk %s)", r->ctx, lines, how);
        if (r->w.proc.out.len)
                return kyb_error_wrap(err, rc, "%s: criu swrk %s, saying '%.300s'", r->ctx, how,
                                      r->w.proc.out.buf);
        return kyb_error_wrap(err, rc, "%s: criu swrk %s", r->ctx, how);
}

/* A callback's failure is the cause even when CRIU carried on regardless
 * (it ignores a failed post-resume): the caller must hear about it. */
static int fail_notify(request *r, kyb_error **err)
{
        kyb_criu_session *s = &r->w.s;

        kyb_error_move(err, &s->notify_err);
        return kyb_error_wrap(err, -EIO, "%s: %s notification", r->ctx,
                              s->notify_failed ? s->notify_failed : "?");
}

static int build_req(request *r, kyb_criu_pb_opts *pb, CriuReq *req, kyb_error **err)
{
        int rc = kyb_criu_pb_opts_build(r->o, r->op, r->images_fd, r->work_fd, pb, err);

        criu_req__init(req);
        req->type = kyb_criu_op_req_type(r->op);
        req->opts = &pb->opts;
        return rc;
}

static int converse(request *r, CriuResp **resp, kyb_error **err)
{
        _cleanup_(kyb_criu_pb_opts_free) kyb_criu_pb_opts pb = {0};
        CriuReq req;
        int rc = build_req(r, &pb, &req, err);

        if (rc == 0)
                rc = swrk_start(r->c->path, r->deadline_ms, &r->w, err);
        if (rc == 0) {
                r->w.s.notify = r->o->notify;
                r->w.s.notify_data = r->o->notify_data;
                rc = kyb_criu_session_call(&r->w.s, &req, resp, err);
                if (rc < 0)
                        rc = fail_session(r, rc, err);
        }
        return rc;
}

static void fill_result(const request *r, const CriuResp *resp, kyb_criu_result *res)
{
        if (!res)
                return;
        res->notifications = r->w.s.notifications;
        res->duration_ms = kyb_criu_now_ms() - r->w.start_ms;
        if (resp && resp->restore && resp->success)
                res->pid = resp->restore->pid;
}

static int finish(request *r, CriuResp *resp, kyb_criu_result *res, kyb_error **err)
{
        int rc;

        /* After the reply swrk only cleans up; reap it before reporting so
         * no request leaves a child behind, and never wait forever. */
        rc = swrk_finish(
            &r->w, r->deadline_ms >= 0 ? r->deadline_ms : kyb_criu_now_ms() + REPLY_GRACE_MS, err);
        fill_result(r, resp, res);
        if (r->w.s.notify_err)
                return fail_notify(r, err);
        if (!resp->success)
                return fail_reply(r, resp, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "%s", r->ctx);
        return 0;
}

static int run(const kyb_criu *c, kyb_criu_op op, const kyb_criu_opts *o, kyb_criu_result *res,
               kyb_error **err)
{
        request r = {.c = c, .o = o, .op = op, .images_fd = -1, .work_fd = -1};
        CriuResp *resp = NULL;
        int rc;

        r.w = (swrk){.proc = KYB_CRIU_PROC_INIT, .sk = -1};
        if (res)
                *res = (kyb_criu_result){0};
        r.deadline_ms = o->timeout_ms > 0 ? kyb_criu_now_ms() + o->timeout_ms : -1;
        set_context(&r);
        rc = prepare(&r, err);
        if (rc < 0)
                rc = kyb_error_wrap(err, rc, "%s", r.ctx);
        else
                rc = converse(&r, &resp, err);
        if (rc == 0)
                rc = finish(&r, resp, res, err);
        else if (r.w.proc.pid > 0 && r.w.s.notify_err)
                rc = fail_notify(&r, err);
        if (resp)
                criu_resp__free_unpacked(resp, NULL);
        request_close(&r);
        return rc;
}

int kyb_criu_dump(const kyb_criu *c, const kyb_criu_opts *o, kyb_criu_result *res, kyb_error **err)
{
        return run(c, KYB_CRIU_OP_DUMP, o, res, err);
}

int kyb_criu_pre_dump(const kyb_criu *c, const kyb_criu_opts *o, kyb_criu_result *res,
                      kyb_error **err)
{
        return run(c, KYB_CRIU_OP_PRE_DUMP, o, res, err);
}

int kyb_criu_restore(const kyb_criu *c, const kyb_criu_opts *o, kyb_criu_result *res,
                     kyb_error **err)
{
        return run(c, KYB_CRIU_OP_RESTORE, o, res, err);
}
