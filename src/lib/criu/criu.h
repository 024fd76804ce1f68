/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRIU client speaking CRIU's RPC protocol (see docs/criu.md).
 *
 * Every request spawns its own `criu swrk <fd>` connected through a
 * SOCK_SEQPACKET socketpair, sends one packed criu_req, answers CRIU's
 * notifications through the caller's callback and returns when the reply of
 * the request's type arrives; swrk is always reaped. A kyb_criu handle is
 * immutable after kyb_criu_open() (path, version, features), so any number
 * of threads may run requests on one handle at the same time.
 *
 * Errors read "criu dump pid 123: (00.012) Error (criu/cr-dump.c:2093): ...":
 * the last Error lines of CRIU's log file (and CRIU's cr_errmsg), with the
 * errno class CRIU reported (ESRCH for a missing task) or EIO.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

#define KYB_CRIU_DEFAULT_PATH "/usr/local/sbin/criu"

typedef struct kyb_criu kyb_criu;

typedef struct kyb_criu_version_info {
        int major, minor, sublevel, extra; /* 4.1.1: 4, 1, 1, 0 */
        char text[32];                     /* "4.1.1" */
        char gitid[64];                    /* "" when CRIU was not built from git */
} kyb_criu_version_info;

/* What this CRIU on this kernel can do (CRIU's FEATURE_CHECK request). */
typedef struct kyb_criu_feature_set {
        bool mem_track;   /* soft-dirty tracking: pre-dump, track_mem, parent images */
        bool lazy_pages;  /* non-cooperative userfaultfd: lazy restore */
        bool pidfd_store; /* pidfd_open + pidfd_getfd */
} kyb_criu_feature_set;

/* CRIU's --manage-cgroups modes; UNSET leaves the choice to CRIU. */
typedef enum kyb_criu_cg_mode {
        KYB_CRIU_CG_UNSET = 0,
        KYB_CRIU_CG_IGNORE,
        KYB_CRIU_CG_NONE,
        KYB_CRIU_CG_PROPS,
        KYB_CRIU_CG_SOFT,
        KYB_CRIU_CG_FULL,
        KYB_CRIU_CG_STRICT,
        KYB_CRIU_CG_DEFAULT,
} kyb_criu_cg_mode;

/* The moments CRIU stops and asks the client ("action scripts"). */
typedef enum kyb_criu_event {
        KYB_CRIU_EV_OTHER = 0, /* a name this client does not know: see ->name */
        KYB_CRIU_EV_PRE_DUMP,  /* dump: before the tasks are frozen */
        KYB_CRIU_EV_POST_DUMP, /* dump: images written, tasks still frozen */
        KYB_CRIU_EV_NETWORK_LOCK,
        KYB_CRIU_EV_NETWORK_UNLOCK,
        KYB_CRIU_EV_QUERY_EXT_FILES,
        KYB_CRIU_EV_PRE_RESTORE,
        KYB_CRIU_EV_SETUP_NAMESPACES,
        KYB_CRIU_EV_POST_SETUP_NAMESPACES,
        KYB_CRIU_EV_POST_RESTORE, /* tasks restored, not yet running */
        KYB_CRIU_EV_PRE_RESUME,
        KYB_CRIU_EV_POST_RESUME, /* tasks running; CRIU ignores a failure here */
        KYB_CRIU_EV_ORPHAN_PTS_MASTER,
        KYB_CRIU_EV_STATUS_READY,
        KYB_CRIU_EV_PRE_STREAM,
} kyb_criu_event;

typedef struct kyb_criu_notification {
        kyb_criu_event event;
        const char *name; /* CRIU's name: "pre-dump", "post-restore", ... */
        pid_t pid;        /* root task (setup-namespaces, post-restore), else 0 */
        int fd;           /* fd CRIU passed along (orphan-pts-master), else -1; it is
                             closed after the callback returns: dup() it to keep it */
} kyb_criu_notification;

/*
 * Called on the requesting thread for each notification, while CRIU waits.
 * Returning a negative errno (with *err set) answers the notification with
 * failure: CRIU aborts the operation (the dumped tree keeps running) and the
 * request fails with this error. The callback's run time counts against the
 * request's deadline but cannot be interrupted by it.
 */
typedef int (*kyb_criu_notify_fn)(const kyb_criu_notification *n, void *userdata, kyb_error **err);

typedef struct kyb_criu_ext_mount {
        const char *key; /* mount point inside the tree (dump) or key (restore) */
        const char *val; /* key (dump) or host path (restore) */
} kyb_criu_ext_mount;

/*
 * Options of one request; a zero-initialised struct is CRIU's defaults.
 * Strings and arrays are borrowed for the duration of the call.
 * Directories: a path wins over an fd; an fd is used only when it is > 2
 * (0 means unset, so zeroed options set nothing). The fds stay ours: CRIU
 * reaches them through /proc/<our pid>/fd, none is passed to the child.
 */
typedef struct kyb_criu_opts {
        pid_t pid;              /* dump, pre-dump: root of the tree; required */
        const char *images_dir; /* required (or images_dir_fd) */
        int images_dir_fd;
        const char *work_dir; /* logs and sockets; NULL: the images directory */
        int work_dir_fd;
        const char *parent_img; /* pre-dump/dump: previous image, relative to images_dir
                                   ("../pre1"); implies track_mem */
        bool track_mem;         /* soft-dirty tracking for a following incremental dump */
        bool leave_running;     /* dump: resume the tree afterwards */
        bool shell_job;
        bool tcp_established;
        bool ext_unix_sk;
        bool file_locks;
        bool manage_cgroups;           /* CRIU's manage_cgroups (soft mode) */
        kyb_criu_cg_mode cgroups_mode; /* explicit mode; overrides manage_cgroups */
        const kyb_criu_ext_mount *ext_mnt;
        size_t n_ext_mnt;
        const char *const *external; /* --external values, e.g. "mnt[/data]:data" */
        size_t n_external;
        uint32_t ghost_limit;      /* bytes; 0: CRIU's default (1 MiB) */
        bool lazy_pages;           /* restore: pages come from kyb_criu_lazy_pages_start() */
        int log_level;             /* 0: CRIU's default (2, warnings); 4: debug */
        const char *log_file;      /* a name inside work_dir; NULL: "<request>.log" */
        bool restore_sibling;      /* restore: the tree becomes our child; the caller reaps it */
        const char *root;          /* restore: root of a restored mount namespace ("/") */
        bool orphan_pts_master;    /* restore: pass the master of an orphaned pty */
        uint32_t freeze_timeout_s; /* CRIU's --timeout for freezing; 0: CRIU's default */
        int64_t timeout_ms;        /* deadline of the whole request; <= 0: none */
        kyb_criu_notify_fn notify; /* NULL: CRIU sends no notifications */
        void *notify_data;
} kyb_criu_opts;

typedef struct kyb_criu_result {
        pid_t pid;              /* restore: root task of the restored tree, else 0 */
        int64_t duration_ms;    /* spawn of criu swrk to its exit */
        unsigned notifications; /* notifications answered */
} kyb_criu_result;

/*
 * Runs `criu_path` (NULL: KYB_CRIU_DEFAULT_PATH) once with keep_open to ask
 * its VERSION and FEATURE_CHECK, and returns a handle that caches both.
 * Fails when criu does not start or is older than 3.15 (no SINGLE_PRE_DUMP).
 */
int kyb_criu_open(const char *criu_path, kyb_criu **out, kyb_error **err);
void kyb_criu_free(kyb_criu *c);

const kyb_criu_version_info *kyb_criu_version(const kyb_criu *c);
const kyb_criu_feature_set *kyb_criu_features(const kyb_criu *c);
const char *kyb_criu_path(const kyb_criu *c);

/*
 * The operations. res may be NULL; it is filled on success and, where
 * meaningful, on failure. Options that need a feature this kernel lacks
 * (track_mem, parent_img, pre-dump, lazy_pages) fail with -ENOTSUP before
 * CRIU runs.
 */
int kyb_criu_dump(const kyb_criu *c, const kyb_criu_opts *o, kyb_criu_result *res, kyb_error **err);
int kyb_criu_pre_dump(const kyb_criu *c, const kyb_criu_opts *o, kyb_criu_result *res,
                      kyb_error **err);
int kyb_criu_restore(const kyb_criu *c, const kyb_criu_opts *o, kyb_criu_result *res,
                     kyb_error **err);

/*
 * The lazy-pages daemon of a lazy restore (`criu lazy-pages`): CRIU's RPC has
 * no request for it, so it is spawned directly with an argv array. Start it
 * on the images, then restore with opts.lazy_pages and the same work
 * directory (the daemon's socket lives there); it exits once every page has
 * been delivered.
 */
typedef struct kyb_criu_lazy_opts {
        const char *images_dir;   /* required */
        const char *work_dir;     /* NULL: images_dir; must match the restore's */
        const char *log_file;     /* name inside work_dir; NULL: "lazy-pages.log" */
        int log_level;            /* 0: CRIU's default */
        int64_t start_timeout_ms; /* until its socket listens; <= 0: 10 s */
} kyb_criu_lazy_opts;

typedef struct kyb_criu_lazy_pages kyb_criu_lazy_pages;

/* Returns once the daemon listens; -ENOTSUP without userfaultfd support. */
int kyb_criu_lazy_pages_start(const kyb_criu *c, const kyb_criu_lazy_opts *o,
                              kyb_criu_lazy_pages **out, kyb_error **err);
pid_t kyb_criu_lazy_pages_pid(const kyb_criu_lazy_pages *lp);

/* Waits until the daemon has served everything and exited (<= 0: no limit),
 * reaps it, and fails with its log's Error lines when it exited non-zero.
 * -ETIMEDOUT leaves it running. */
int kyb_criu_lazy_pages_wait(kyb_criu_lazy_pages *lp, int64_t timeout_ms, kyb_error **err);

/* Kills a daemon that is still running, reaps it, frees lp. NULL is fine. */
void kyb_criu_lazy_pages_free(kyb_criu_lazy_pages *lp);

static inline void kyb_criu_freep(kyb_criu **c)
{
        kyb_criu_free(*c);
        *c = NULL;
}

static inline void kyb_criu_lazy_pages_freep(kyb_criu_lazy_pages **lp)
{
        kyb_criu_lazy_pages_free(*lp);
        *lp = NULL;
}

#define _cleanup_criu_            _cleanup_(kyb_criu_freep)
#define _cleanup_criu_lazy_pages_ _cleanup_(kyb_criu_lazy_pages_freep)

/* "pre-dump" -> KYB_CRIU_EV_PRE_DUMP; unknown names -> KYB_CRIU_EV_OTHER. */
kyb_criu_event kyb_criu_event_from_name(const char *name);
const char *kyb_criu_event_name(kyb_criu_event ev);
