/* SPDX-License-Identifier: Apache-2.0 */
/* kyb_criu_opts -> CRIU's criu_opts, and the checks that come before it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/validate.h"
#include "criu/criu-internal.h"

int64_t kyb_criu_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *kyb_criu_op_name(kyb_criu_op op)
{
        switch (op) {
        case KYB_CRIU_OP_DUMP:
                return "dump";
        case KYB_CRIU_OP_PRE_DUMP:
                return "pre-dump";
        case KYB_CRIU_OP_RESTORE:
                return "restore";
        }
        return "?";
}

CriuReqType kyb_criu_op_req_type(kyb_criu_op op)
{
        switch (op) {
        case KYB_CRIU_OP_DUMP:
                return CRIU_REQ_TYPE__DUMP;
        case KYB_CRIU_OP_PRE_DUMP:
                return CRIU_REQ_TYPE__SINGLE_PRE_DUMP;
        case KYB_CRIU_OP_RESTORE:
                return CRIU_REQ_TYPE__RESTORE;
        }
        return CRIU_REQ_TYPE__EMPTY;
}

const char *kyb_criu_log_name(const kyb_criu_opts *o, kyb_criu_op op)
{
        if (o->log_file)
                return o->log_file;
        switch (op) {
        case KYB_CRIU_OP_DUMP:
                return "dump.log";
        case KYB_CRIU_OP_PRE_DUMP:
                return "pre-dump.log";
        case KYB_CRIU_OP_RESTORE:
                return "restore.log";
        }
        return "criu.log";
}

static bool is_dump(kyb_criu_op op)
{
        return op == KYB_CRIU_OP_DUMP || op == KYB_CRIU_OP_PRE_DUMP;
}

/* Options that only one side understands are mistakes, not no-ops: a
 * restore "with leave_running" would silently mean something else. */
static int validate_side(const kyb_criu_opts *o, kyb_criu_op op, kyb_error **err)
{
        if (is_dump(op)) {
                if (o->lazy_pages)
                        return kyb_error_setf(err, EINVAL, "lazy_pages is a restore option here");
                if (o->restore_sibling || o->root || o->orphan_pts_master)
                        return kyb_error_setf(err, EINVAL,
                                              "restore_sibling, root and orphan_pts_master "
                                              "are restore options");
                return kyb_validate_pid("pid", o->pid, err);
        }
        if (o->pid)
                return kyb_error_setf(err, EINVAL, "pid is a dump option");
        if (o->leave_running || o->track_mem || o->parent_img)
                return kyb_error_setf(err, EINVAL,
                                      "leave_running, track_mem and parent_img are dump "
                                      "options");
        return 0;
}

static int validate_log_file(const char *name, kyb_error **err)
{
        /* CRIU opens it inside the work directory and refuses subdirectories. */
        if (name && (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")))
                return kyb_error_setf(err, EINVAL,
                                      "log_file '%s' must be a plain file name (it is created "
                                      "in the work directory)",
                                      name);
        return 0;
}

static int validate_lists(const kyb_criu_opts *o, kyb_error **err)
{
        if (o->n_ext_mnt && !o->ext_mnt)
                return kyb_error_setf(err, EINVAL, "n_ext_mnt is %zu but ext_mnt is NULL",
                                      o->n_ext_mnt);
        for (size_t i = 0; i < o->n_ext_mnt; i++)
                if (!o->ext_mnt[i].key || !o->ext_mnt[i].val)
                        return kyb_error_setf(err, EINVAL, "ext_mnt[%zu] lacks a key or value", i);
        if (o->n_external && !o->external)
                return kyb_error_setf(err, EINVAL, "n_external is %zu but external is NULL",
                                      o->n_external);
        for (size_t i = 0; i < o->n_external; i++)
                if (!o->external[i] || !o->external[i][0])
                        return kyb_error_setf(err, EINVAL, "external[%zu] is empty", i);
        return 0;
}

int kyb_criu_opts_validate(const kyb_criu_opts *o, kyb_criu_op op, kyb_error **err)
{
        int rc;

        if (!o->images_dir && o->images_dir_fd <= 2)
                return kyb_error_setf(err, EINVAL, "no images directory given");
        if (o->log_level < 0 || o->log_level > 4)
                return kyb_error_setf(err, EINVAL, "log_level %d is not in 0..4", o->log_level);
        if (o->cgroups_mode < KYB_CRIU_CG_UNSET || o->cgroups_mode > KYB_CRIU_CG_DEFAULT)
                return kyb_error_setf(err, EINVAL, "unknown cgroups_mode %d", o->cgroups_mode);
        rc = validate_side(o, op, err);
        if (rc == 0)
                rc = validate_log_file(o->log_file, err);
        if (rc == 0)
                rc = validate_lists(o, err);
        return rc;
}

static bool wants_mem_track(const kyb_criu_opts *o, kyb_criu_op op)
{
        return op == KYB_CRIU_OP_PRE_DUMP || o->track_mem || o->parent_img;
}

int kyb_criu_opts_check_features(const kyb_criu_opts *o, kyb_criu_op op,
                                 const kyb_criu_feature_set *f, kyb_error **err)
{
        /* Without these CRIU would fail late (pre-dump even hits a BUG()
         * without soft-dirty support): say what is missing up front. */
        if (wants_mem_track(o, op) && !f->mem_track)
                return kyb_error_setf(err, ENOTSUP,
                                      "%s needs memory tracking, which this kernel does not "
                                      "offer (no soft-dirty bits: CONFIG_MEM_SOFT_DIRTY)",
                                      op == KYB_CRIU_OP_PRE_DUMP ? "pre-dump"
                                      : o->parent_img            ? "parent_img"
                                                                 : "track_mem");
        if (o->lazy_pages && !f->lazy_pages)
                return kyb_error_setf(err, ENOTSUP,
                                      "lazy_pages needs non-cooperative userfaultfd, which "
                                      "this kernel does not offer");
        return 0;
}

static const CriuCgMode cg_modes[] = {
    [KYB_CRIU_CG_IGNORE] = CRIU_CG_MODE__IGNORE,   [KYB_CRIU_CG_NONE] = CRIU_CG_MODE__CG_NONE,
    [KYB_CRIU_CG_PROPS] = CRIU_CG_MODE__PROPS,     [KYB_CRIU_CG_SOFT] = CRIU_CG_MODE__SOFT,
    [KYB_CRIU_CG_FULL] = CRIU_CG_MODE__FULL,       [KYB_CRIU_CG_STRICT] = CRIU_CG_MODE__STRICT,
    [KYB_CRIU_CG_DEFAULT] = CRIU_CG_MODE__DEFAULT,
};

#define SET_BOOL(pb, field, value)                                                                 \
        do {                                                                                       \
                if (value) {                                                                       \
                        (pb)->has_##field = true;                                                  \
                        (pb)->field = true;                                                        \
                }                                                                                  \
        } while (0)

/* Booleans are sent only when set, so CRIU's defaults stay in charge of
 * everything the caller did not ask for. */
static void map_flags(const kyb_criu_opts *o, kyb_criu_op op, CriuOpts *pb)
{
        SET_BOOL(pb, leave_running, o->leave_running && op == KYB_CRIU_OP_DUMP);
        SET_BOOL(pb, track_mem, o->track_mem || o->parent_img);
        SET_BOOL(pb, shell_job, o->shell_job);
        SET_BOOL(pb, tcp_established, o->tcp_established);
        SET_BOOL(pb, ext_unix_sk, o->ext_unix_sk);
        SET_BOOL(pb, file_locks, o->file_locks);
        SET_BOOL(pb, manage_cgroups, o->manage_cgroups);
        SET_BOOL(pb, lazy_pages, o->lazy_pages);
        SET_BOOL(pb, rst_sibling, o->restore_sibling);
        SET_BOOL(pb, orphan_pts_master, o->orphan_pts_master);
        /* CRIU only sends notifications when asked to. */
        SET_BOOL(pb, notify_scripts, o->notify != NULL);
        if (o->cgroups_mode != KYB_CRIU_CG_UNSET) {
                pb->has_manage_cgroups_mode = true;
                pb->manage_cgroups_mode = cg_modes[o->cgroups_mode];
        }
        if (o->ghost_limit) {
                pb->has_ghost_limit = true;
                pb->ghost_limit = o->ghost_limit;
        }
        if (o->freeze_timeout_s) {
                pb->has_timeout = true;
                pb->timeout = o->freeze_timeout_s;
        }
        if (is_dump(op)) {
                pb->has_pid = true;
                pb->pid = o->pid;
        }
}

static int map_ext_mnt(const kyb_criu_opts *o, kyb_criu_pb_opts *b, kyb_error **err)
{
        if (!o->n_ext_mnt)
                return 0;
        b->mnt = calloc(o->n_ext_mnt, sizeof(*b->mnt));
        b->mnt_ptr = calloc(o->n_ext_mnt, sizeof(*b->mnt_ptr));
        if (!b->mnt || !b->mnt_ptr)
                return kyb_error_set(err, ENOMEM, "ext_mnt");
        for (size_t i = 0; i < o->n_ext_mnt; i++) {
                ext_mount_map__init(&b->mnt[i]);
                b->mnt[i].key = (char *)o->ext_mnt[i].key;
                b->mnt[i].val = (char *)o->ext_mnt[i].val;
                b->mnt_ptr[i] = &b->mnt[i];
        }
        b->opts.n_ext_mnt = o->n_ext_mnt;
        b->opts.ext_mnt = b->mnt_ptr;
        return 0;
}

int kyb_criu_pb_opts_build(const kyb_criu_opts *o, kyb_criu_op op, int images_fd, int work_fd,
                           kyb_criu_pb_opts *b, kyb_error **err)
{
        CriuOpts *pb = &b->opts;

        *b = (kyb_criu_pb_opts){0};
        criu_opts__init(pb);
        /* images_dir_fd is required on the wire; -1 makes CRIU use the path. */
        pb->images_dir_fd = images_fd;
        if (images_fd < 0)
                pb->images_dir = (char *)o->images_dir;
        if (work_fd >= 0) {
                pb->has_work_dir_fd = true;
                pb->work_dir_fd = work_fd;
        }
        pb->log_file = (char *)kyb_criu_log_name(o, op);
        if (o->log_level) {
                pb->has_log_level = true;
                pb->log_level = o->log_level;
        }
        pb->parent_img = (char *)o->parent_img;
        pb->root = (char *)o->root;
        map_flags(o, op, pb);
        pb->n_external = o->n_external;
        pb->external = (char **)o->external;
        return map_ext_mnt(o, b, err);
}

void kyb_criu_pb_opts_free(kyb_criu_pb_opts *b)
{
        free(b->mnt);
        free(b->mnt_ptr);
        *b = (kyb_criu_pb_opts){0};
}

static const char *const event_names[] = {
    [KYB_CRIU_EV_PRE_DUMP] = "pre-dump",
    [KYB_CRIU_EV_POST_DUMP] = "post-dump",
    [KYB_CRIU_EV_NETWORK_LOCK] = "network-lock",
    [KYB_CRIU_EV_NETWORK_UNLOCK] = "network-unlock",
    [KYB_CRIU_EV_QUERY_EXT_FILES] = "query-ext-files",
    [KYB_CRIU_EV_PRE_RESTORE] = "pre-restore",
    [KYB_CRIU_EV_SETUP_NAMESPACES] = "setup-namespaces",
    [KYB_CRIU_EV_POST_SETUP_NAMESPACES] = "post-setup-namespaces",
    [KYB_CRIU_EV_POST_RESTORE] = "post-restore",
    [KYB_CRIU_EV_PRE_RESUME] = "pre-resume",
    [KYB_CRIU_EV_POST_RESUME] = "post-resume",
    [KYB_CRIU_EV_ORPHAN_PTS_MASTER] = "orphan-pts-master",
    [KYB_CRIU_EV_STATUS_READY] = "status-ready",
    [KYB_CRIU_EV_PRE_STREAM] = "pre-stream",
};

kyb_criu_event kyb_criu_event_from_name(const char *name)
{
        for (size_t i = 1; name && i < KYB_ARRAY_SIZE(event_names); i++)
                if (event_names[i] && !strcmp(event_names[i], name))
                        return (kyb_criu_event)i;
        return KYB_CRIU_EV_OTHER;
}

const char *kyb_criu_event_name(kyb_criu_event ev)
{
        if ((size_t)ev < KYB_ARRAY_SIZE(event_names) && event_names[ev])
                return event_names[ev];
        return "other";
}
