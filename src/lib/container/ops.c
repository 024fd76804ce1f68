/* SPDX-License-Identifier: Apache-2.0 */
/* runc checkpoint, restore and kill of one container; its spec.dump. */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/validate.h"
#include "container/container-internal.h"

#define CRIU_ERROR_LINES 4
#define LOG_TAIL_MAX     ((off_t)4 << 20) /* CRIU logs at runc's level 4 can be large */
#define SPEC_MAX         ((off_t)4 << 20)
#define KILL_TIMEOUT_MS  30000
#define PID_FILE         "init.pid"

/* The Error lines near the end of <dir>/<name>, or NULL. */
static char *log_errors(const char *dir, const char *name)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        off_t start;
        ssize_t n;

        if (dfd < 0)
                return NULL;
        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return NULL;
        start = st.st_size > LOG_TAIL_MAX ? st.st_size - LOG_TAIL_MAX : 0;
        buf = malloc((size_t)(st.st_size - start) + 1);
        if (!buf)
                return NULL;
        n = pread(fd, buf, (size_t)(st.st_size - start), start);
        if (n <= 0)
                return NULL;
        return kyb_runc_criu_errors(buf, (size_t)n, CRIU_ERROR_LINES);
}

/* Adds CRIU's own account of a failure to runc's. */
static int add_criu_errors(int rc, const char *work_dir, const char *log, kyb_error **err)
{
        _cleanup_free_ char *errs = log_errors(work_dir, log);

        if (!errs)
                return rc;
        if (err && *err)
                return kyb_error_setf(err, kyb_error_errno(*err), "%s; criu: %s",
                                      kyb_error_message(*err), errs);
        return kyb_error_setf(err, -rc, "criu: %s", errs);
}

int kyb_runc_checkpoint(const kyb_runc *r, const kyb_container *c,
                        const kyb_runc_checkpoint_opts *o, kyb_error **err)
{
        _cleanup_run_result_ kyb_run_result res = {0};
        _cleanup_strv_ kyb_strv argv = {0};
        char what[300];
        int rc = kyb_runc_checkpoint_argv(r, c, o, &argv, err);

        if (rc < 0)
                return rc;
        snprintf(what, sizeof(what), "runc checkpoint %s/%s", c->namespace_, c->id);
        rc = kyb_runc_run(r, argv.v, o->timeout_ms, what, &res, err);
        if (rc < 0)
                return add_criu_errors(rc, o->work_dir, "dump.log", err);
        return 0;
}

static int read_pid_file(const char *path, pid_t *pid, kyb_error **err)
{
        char buf[32] = "";
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t n;
        char *end;
        long long v;

        if (fd < 0)
                return kyb_error_set(err, errno, "runc restore: reading %s", path);
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return kyb_error_set(err, errno, "runc restore: reading %s", path);
        buf[n] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno || end == buf || (*end && *end != '\n'))
                return kyb_error_setf(err, EBADMSG, "runc restore: %s holds '%s', not a PID", path,
                                      buf);
        if (kyb_validate_pid("restored init pid", v, err) < 0)
                return -EBADMSG;
        *pid = (pid_t)v;
        return 0;
}

int kyb_runc_restore(const kyb_runc *r, const char *ns, const char *id,
                     const kyb_runc_restore_opts *o, pid_t *pid, kyb_error **err)
{
        _cleanup_run_result_ kyb_run_result res = {0};
        _cleanup_strv_ kyb_strv argv = {0};
        _cleanup_free_ char *pid_file = NULL;
        char what[300];
        int rc = kyb_validate_id("container namespace", ns, err);

        if (rc >= 0)
                rc = kyb_validate_id("container id", id, err);
        if (rc < 0)
                return rc;
        if (asprintf(&pid_file, "%s/%s", o->work_dir ? o->work_dir : "", PID_FILE) < 0)
                return kyb_error_set(err, ENOMEM, "runc restore");
        rc = kyb_runc_restore_argv(r, id, o, pid_file, &argv, err);
        if (rc < 0)
                return rc;
        snprintf(what, sizeof(what), "runc restore %s/%s", ns, id);
        rc = kyb_runc_run(r, argv.v, o->timeout_ms, what, &res, err);
        if (rc < 0)
                return add_criu_errors(rc, o->work_dir, "restore.log", err);
        return read_pid_file(pid_file, pid, err);
}

/* true once the process behind pidfd has exited (or waiting ran out). */
static bool wait_exit(int pidfd, int64_t timeout_ms)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        struct timespec start, now;
        int64_t left = timeout_ms;
        int n;

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                n = poll(&p, 1, (int)KYB_MAX(0, KYB_MIN(left, (int64_t)INT32_MAX)));
                if (n > 0)
                        return true;
                if (n == 0 || errno != EINTR)
                        return false;
                clock_gettime(CLOCK_MONOTONIC, &now);
                left = timeout_ms - ((now.tv_sec - start.tv_sec) * 1000 +
                                     (now.tv_nsec - start.tv_nsec) / 1000000);
        }
}

int kyb_runc_kill(const kyb_runc *r, const kyb_container *c, int init_pidfd, int64_t timeout_ms,
                  bool *signalled, kyb_error **err)
{
        _cleanup_run_result_ kyb_run_result res = {0};
        _cleanup_strv_ kyb_strv argv = {0};
        _cleanup_error_ kyb_error *kill_err = NULL;
        int64_t t = timeout_ms > 0 ? timeout_ms : KILL_TIMEOUT_MS;
        char what[300];
        int rc;

        *signalled = false;
        if (init_pidfd < 0)
                return kyb_error_setf(err, EINVAL, "stop %s/%s: no handle on its init",
                                      c->namespace_, c->id);
        kyb_runc_argv_prefix(r, c->root, "kill", &argv);
        kyb_strv_push(&argv, c->id);
        kyb_strv_push(&argv, "KILL");
        if (argv.oom)
                return kyb_error_set(err, ENOMEM, "runc argv");
        snprintf(what, sizeof(what), "runc kill %s/%s", c->namespace_, c->id);
        rc = kyb_runc_run(r, argv.v, KYB_MIN(t, (int64_t)KILL_TIMEOUT_MS), what, &res, &kill_err);
        /* runc refuses to signal a container that already stopped by itself. */
        if (rc < 0 && !wait_exit(init_pidfd, 0))
                return kyb_error_move(err, &kill_err);
        *signalled = rc >= 0;
        if (!wait_exit(init_pidfd, t))
                return kyb_error_setf(err, ETIMEDOUT,
                                      "stop %s/%s: init pid %d still there %" PRId64
                                      " ms after SIGKILL",
                                      c->namespace_, c->id, c->pid, t);
        return 0;
}

static int read_spec(const char *bundle, char **buf, size_t *len, kyb_error **err)
{
        _cleanup_close_ int dfd = open(bundle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1;
        struct stat st;
        ssize_t n;

        if (dfd < 0)
                return kyb_error_set(err, errno, "bundle %s", bundle);
        fd = openat(dfd, "config.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "bundle %s: config.json", bundle);
        if (!S_ISREG(st.st_mode) || st.st_size > SPEC_MAX)
                return kyb_error_setf(err, EINVAL,
                                      "bundle %s: config.json is not a regular file of at most "
                                      "%lld bytes",
                                      bundle, (long long)SPEC_MAX);
        *buf = malloc((size_t)st.st_size + 1);
        if (!*buf)
                return kyb_error_set(err, ENOMEM, "bundle %s: config.json", bundle);
        n = read(fd, *buf, (size_t)st.st_size);
        if (n != (ssize_t)st.st_size)
                return kyb_error_set(err, n < 0 ? errno : EIO, "bundle %s: reading config.json",
                                     bundle);
        *len = (size_t)n;
        return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
        while (len) {
                ssize_t n = write(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

int kyb_container_save_spec(const char *bundle, const char *dir, const char *name, kyb_error **err)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_close_ int dfd = -1;
        _cleanup_close_ int fd = -1;
        size_t len = 0;
        int rc = read_spec(bundle, &buf, &len, err);

        if (rc < 0)
                return rc;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return kyb_error_set(err, errno, "opening %s", dir);
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return kyb_error_set(err, errno, "creating %s/%s", dir, name);
        /* The spec holds the container's environment, secrets included; the
         * mode is part of the manifest, so no umask decides it either. */
        if (fchmod(fd, 0600) < 0)
                return kyb_error_set(err, errno, "chmod %s/%s", dir, name);
        rc = write_all(fd, buf, len);
        if (rc < 0)
                return kyb_error_set(err, -rc, "writing %s/%s", dir, name);
        return 0;
}
