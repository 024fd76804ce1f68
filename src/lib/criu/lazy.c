/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lazy-pages daemon of a lazy restore. CRIU's RPC has no request that
 * starts it (PAGE_SERVER is the dump side's page server), so it is spawned
 * with an argv array. Not through base/runner: that runs a program to
 * completion, while this daemon must run alongside the restore and tell us
 * when its socket listens, through --status-fd (fd 3 in the child).
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "criu/criu-internal.h"

#define START_TIMEOUT_MS 10000

struct kyb_criu_lazy_pages {
        kyb_criu_proc proc;
        int log_dir_fd;
        char log_name[256];
};

static int validate(const kyb_criu *c, const kyb_criu_lazy_opts *o, kyb_error **err)
{
        if (!kyb_criu_features(c)->lazy_pages)
                return kyb_error_setf(err, ENOTSUP,
                                      "this kernel offers no non-cooperative userfaultfd");
        if (!o->images_dir)
                return kyb_error_setf(err, EINVAL, "no images directory given");
        if (o->log_level < 0 || o->log_level > 4)
                return kyb_error_setf(err, EINVAL, "log_level %d is not in 0..4", o->log_level);
        if (o->log_file && (!o->log_file[0] || strchr(o->log_file, '/')))
                return kyb_error_setf(err, EINVAL, "log_file '%s' must be a plain file name",
                                      o->log_file);
        return 0;
}

static int spawn_daemon(const kyb_criu *c, const kyb_criu_lazy_opts *o, kyb_criu_lazy_pages *lp,
                        int status_w, kyb_error **err)
{
        char fdarg[16], verbosity[8];
        const char *argv[16];
        size_t n = 0;

        snprintf(fdarg, sizeof(fdarg), "%d", KYB_CRIU_SWRK_FD);
        snprintf(verbosity, sizeof(verbosity), "-v%d", o->log_level);
        argv[n++] = kyb_criu_path(c);
        argv[n++] = "lazy-pages";
        argv[n++] = "--images-dir";
        argv[n++] = o->images_dir;
        if (o->work_dir) {
                argv[n++] = "--work-dir";
                argv[n++] = o->work_dir;
        }
        argv[n++] = "--status-fd";
        argv[n++] = fdarg;
        argv[n++] = "--log-file";
        argv[n++] = lp->log_name;
        if (o->log_level)
                argv[n++] = verbosity;
        argv[n] = NULL;
        return kyb_criu_spawn(argv, status_w, &lp->proc, err);
}

/* One byte on the status pipe: the socket listens. EOF: it died first. */
static int wait_ready(kyb_criu_lazy_pages *lp, int status_r, int64_t timeout_ms, kyb_error **err)
{
        struct pollfd p = {.fd = status_r, .events = POLLIN};
        char byte;
        ssize_t n;
        int rc;

        do {
                rc = poll(&p, 1, (int)KYB_MIN(timeout_ms, (int64_t)INT32_MAX));
        } while (rc < 0 && errno == EINTR);
        if (rc < 0)
                return kyb_error_set(err, errno, "poll lazy-pages status");
        if (rc == 0)
                return kyb_error_setf(err, ETIMEDOUT, "not ready after %lld ms",
                                      (long long)timeout_ms);
        n = read(status_r, &byte, 1);
        if (n == 1)
                return 0;
        /* It exited (or closed the pipe): collect how, then report. */
        kyb_criu_proc_wait(&lp->proc, kyb_criu_now_ms() + 1000, true, NULL);
        return kyb_error_setf(err, EIO, "exited before it was ready");
}

/* "criu lazy-pages: <why>: exited with code 1: <log Error lines>" */
static int fail_with_log(kyb_criu_lazy_pages *lp, int rc, kyb_error **err)
{
        _cleanup_free_ char *lines = NULL;
        _cleanup_free_ char *why = err && *err ? strdup(kyb_error_message(*err)) : NULL;
        const char *detail;
        char how[96];

        kyb_criu_log_errors(lp->log_dir_fd, lp->log_name, KYB_CRIU_LOG_ERROR_LINES, &lines);
        kyb_criu_proc_describe(&lp->proc, how, sizeof(how));
        detail = lines ? lines : lp->proc.out.buf;
        return kyb_error_setf(err, -rc, "criu lazy-pages: %s%s%s%s%.400s", why ? why : "",
                              why ? "; it " : "", how, detail[0] ? ": " : "", detail);
}

static int start(const kyb_criu *c, const kyb_criu_lazy_opts *o, kyb_criu_lazy_pages *lp,
                 kyb_error **err)
{
        const char *dir = o->work_dir ? o->work_dir : o->images_dir;
        int64_t timeout = o->start_timeout_ms > 0 ? o->start_timeout_ms : START_TIMEOUT_MS;
        _cleanup_close_ int status_r = -1;
        int p[2];
        int rc;

        snprintf(lp->log_name, sizeof(lp->log_name), "%s",
                 o->log_file ? o->log_file : "lazy-pages.log");
        lp->log_dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lp->log_dir_fd < 0)
                return kyb_error_set(err, errno, "open %s", dir);
        if (pipe2(p, O_CLOEXEC) < 0)
                return kyb_error_set(err, errno, "status pipe");
        status_r = p[0];
        rc = spawn_daemon(c, o, lp, p[1], err);
        close(p[1]); /* the child's copy is the only writer left */
        if (rc == 0)
                rc = wait_ready(lp, status_r, timeout, err);
        if (rc < 0 && lp->proc.pid > 0) {
                kyb_criu_proc_kill(&lp->proc);
                rc = fail_with_log(lp, rc, err);
        }
        return rc;
}

int kyb_criu_lazy_pages_start(const kyb_criu *c, const kyb_criu_lazy_opts *o,
                              kyb_criu_lazy_pages **out, kyb_error **err)
{
        kyb_criu_lazy_pages *lp;
        int rc;

        *out = NULL;
        rc = validate(c, o, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "criu lazy-pages");
        lp = calloc(1, sizeof(*lp));
        if (!lp)
                return kyb_error_set(err, ENOMEM, "criu lazy-pages");
        lp->proc = (kyb_criu_proc)KYB_CRIU_PROC_INIT;
        lp->log_dir_fd = -1;
        rc = start(c, o, lp, err);
        if (rc < 0) {
                kyb_criu_lazy_pages_free(lp);
                return rc;
        }
        *out = lp;
        return 0;
}

pid_t kyb_criu_lazy_pages_pid(const kyb_criu_lazy_pages *lp)
{
        return lp->proc.pid;
}

int kyb_criu_lazy_pages_wait(kyb_criu_lazy_pages *lp, int64_t timeout_ms, kyb_error **err)
{
        int64_t deadline = timeout_ms > 0 ? kyb_criu_now_ms() + timeout_ms : -1;
        int rc = kyb_criu_proc_wait(&lp->proc, deadline, false, err);

        if (rc < 0)
                return kyb_error_wrap(err, rc, "criu lazy-pages");
        if (lp->proc.status != 0)
                return fail_with_log(lp, -EIO, err);
        return 0;
}

void kyb_criu_lazy_pages_free(kyb_criu_lazy_pages *lp)
{
        if (!lp)
                return;
        kyb_criu_proc_release(&lp->proc);
        kyb_closep(&lp->log_dir_fd);
        free(lp);
}
