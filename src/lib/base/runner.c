/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>

#include "base/runner.h"

#define TAIL_LINES    3
#define TAIL_LINE_MAX 200

/* Everything one kyb_run() call owns; torn down by run_ctx_close(). */
typedef struct run_ctx {
        const kyb_run_opts *opts;
        kyb_run_result *res;
        size_t max_output;
        int stdin_fd; /* owned only when it is /dev/null */
        int out_r, out_w;
        int err_r, err_w;
        int pidfd;
        bool killed;
} run_ctx;

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *program_name(const kyb_run_opts *opts)
{
        const char *slash = strrchr(opts->argv[0], '/');

        return slash && slash[1] ? slash + 1 : opts->argv[0];
}

static void close_fdp(int *fd)
{
        kyb_closep(fd);
        *fd = -1;
}

static void run_ctx_close(run_ctx *c)
{
        if (!c->opts->stdin_from_fd)
                close_fdp(&c->stdin_fd);
        close_fdp(&c->out_r);
        close_fdp(&c->out_w);
        close_fdp(&c->err_r);
        close_fdp(&c->err_w);
        close_fdp(&c->pidfd);
}

/* fds 0-2 are dup2() targets in the child; a source fd there would be
 * clobbered by an earlier dup2 (possible when our own std fds are closed). */
static int move_above_stdio(int *fd)
{
        int nfd;

        if (*fd > STDERR_FILENO)
                return 0;
        nfd = fcntl(*fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        if (nfd < 0)
                return -errno;
        close(*fd);
        *fd = nfd;
        return 0;
}

static int make_pipe(int *r, int *w)
{
        int p[2];
        int rc;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        *r = p[0];
        *w = p[1];
        rc = move_above_stdio(r);
        if (rc == 0)
                rc = move_above_stdio(w);
        /* Only our end is non-blocking; the file status flags are per end. */
        if (rc == 0 && fcntl(*r, F_SETFL, O_NONBLOCK) < 0)
                rc = -errno;
        return rc;
}

static int open_stdio(run_ctx *c, kyb_error **err)
{
        int rc;

        if (c->opts->stdin_from_fd) {
                c->stdin_fd = c->opts->stdin_fd;
        } else {
                c->stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (c->stdin_fd < 0)
                        return kyb_error_set(err, errno, "open /dev/null");
                rc = move_above_stdio(&c->stdin_fd);
                if (rc < 0)
                        return kyb_error_set(err, rc, "dup /dev/null");
        }
        rc = make_pipe(&c->out_r, &c->out_w);
        if (rc == 0)
                rc = make_pipe(&c->err_r, &c->err_w);
        if (rc < 0)
                return kyb_error_set(err, rc, "create output pipes");
        return 0;
}

static int build_file_actions(const run_ctx *c, posix_spawn_file_actions_t *fa)
{
        int rc = 0;

        if (c->opts->cwd)
                rc = posix_spawn_file_actions_addchdir_np(fa, c->opts->cwd);
        if (rc == 0)
                rc = posix_spawn_file_actions_adddup2(fa, c->stdin_fd, STDIN_FILENO);
        if (rc == 0)
                rc = posix_spawn_file_actions_adddup2(fa, c->out_w, STDOUT_FILENO);
        if (rc == 0)
                rc = posix_spawn_file_actions_adddup2(fa, c->err_w, STDERR_FILENO);
        /* O_CLOEXEC is only as good as every other thread and library in the
         * process; closing everything above 2 does not depend on them. */
        if (rc == 0)
                rc = posix_spawn_file_actions_addclosefrom_np(fa, STDERR_FILENO + 1);
        return rc;
}

/* The child starts with default dispositions and an empty mask, whatever
 * the calling thread blocked or the process ignored (e.g. SIGPIPE). */
static int build_attrs(posix_spawnattr_t *attr)
{
        sigset_t none, all;
        int rc;

        sigemptyset(&none);
        sigfillset(&all);
        rc = posix_spawnattr_setsigmask(attr, &none);
        if (rc == 0)
                rc = posix_spawnattr_setsigdefault(attr, &all);
        if (rc == 0)
                rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        return rc;
}

static int spawn_child(run_ctx *c, kyb_error **err)
{
        const kyb_run_opts *o = c->opts;
        char *const *argv = (char *const *)o->argv;
        char *const *envp = o->envp ? (char *const *)o->envp : environ;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        int rc;

        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        rc = build_file_actions(c, &fa);
        if (rc == 0)
                rc = build_attrs(&attr);
        if (rc == 0 && o->search_path)
                rc = posix_spawnp(&c->res->pid, argv[0], &fa, &attr, argv, envp);
        else if (rc == 0)
                rc = posix_spawn(&c->res->pid, argv[0], &fa, &attr, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) {
                c->res->pid = -1;
                if (o->cwd)
                        return kyb_error_set(err, rc, "spawn %s in %s", argv[0], o->cwd);
                return kyb_error_set(err, rc, "spawn %s", argv[0]);
        }
        return 0;
}

static void output_append(kyb_run_output *o, const char *buf, size_t n, size_t max)
{
        size_t keep = KYB_MIN(n, max - o->len);
        char *p;

        if (keep < n)
                o->truncated = true;
        if (keep == 0)
                return;
        p = realloc(o->data, o->len + keep + 1);
        if (!p) {
                o->truncated = true;
                return;
        }
        memcpy(p + o->len, buf, keep);
        o->len += keep;
        p[o->len] = '\0';
        o->data = p;
}

/* Reads one chunk; returns true when data arrived. Closes *fd at EOF. */
static bool read_chunk(int *fd, kyb_run_output *o, size_t max)
{
        char buf[16384];
        ssize_t n;

        if (*fd < 0)
                return false;
        do {
                n = read(*fd, buf, sizeof(buf));
        } while (n < 0 && errno == EINTR);
        if (n > 0) {
                output_append(o, buf, (size_t)n, max);
                return true;
        }
        if (n == 0 || errno != EAGAIN)
                close_fdp(fd);
        return false;
}

/* After the child is gone, take what it left in the pipes, but do not wait
 * for EOF: a grandchild may hold the write end open indefinitely. */
static void drain_outputs(run_ctx *c)
{
        while (read_chunk(&c->out_r, &c->res->out, c->max_output))
                ;
        while (read_chunk(&c->err_r, &c->res->err, c->max_output))
                ;
}

static void send_signal(run_ctx *c, int sig)
{
        /* Cannot hit a recycled pid: the pidfd pins our unreaped child. */
        pidfd_send_signal(c->pidfd, sig, NULL, 0);
        c->res->timed_out = true;
        if (sig == SIGKILL)
                c->killed = true;
}

/* Returns the new deadline, or -1 once the child has been sent SIGKILL. */
static int64_t on_deadline(run_ctx *c, bool term_sent)
{
        if (c->opts->term_grace_ms > 0 && !term_sent) {
                send_signal(c, SIGTERM);
                return now_ms() + c->opts->term_grace_ms;
        }
        send_signal(c, SIGKILL);
        return -1;
}

static int poll_timeout(int64_t deadline)
{
        int64_t left;

        if (deadline < 0)
                return -1;
        left = deadline - now_ms();
        return (int)KYB_MAX(0, KYB_MIN(left, (int64_t)INT32_MAX));
}

/* Pumps output until the child exits or the deadline kills it. */
static int wait_child(run_ctx *c, int64_t start, kyb_error **err)
{
        int64_t deadline = c->opts->timeout_ms > 0 ? start + c->opts->timeout_ms : -1;
        bool term_sent = false;

        for (;;) {
                struct pollfd p[3] = {
                    {.fd = c->pidfd, .events = POLLIN},
                    {.fd = c->out_r, .events = POLLIN},
                    {.fd = c->err_r, .events = POLLIN},
                };
                int n = poll(p, KYB_ARRAY_SIZE(p), poll_timeout(deadline));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int rc = kyb_error_set(err, errno, "poll %s", c->opts->argv[0]);
                        send_signal(c, SIGKILL);
                        return rc;
                }
                if (p[1].revents)
                        read_chunk(&c->out_r, &c->res->out, c->max_output);
                if (p[2].revents)
                        read_chunk(&c->err_r, &c->res->err, c->max_output);
                if (p[0].revents)
                        return 0;
                if (n == 0) {
                        deadline = on_deadline(c, term_sent);
                        term_sent = true;
                        if (deadline < 0)
                                return 0;
                }
        }
}

static int reap(run_ctx *c, kyb_error **err)
{
        siginfo_t si = {0};

        while (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED) < 0) {
                if (errno != EINTR)
                        return kyb_error_set(err, errno, "wait for %s", c->opts->argv[0]);
        }
        if (si.si_code == CLD_EXITED) {
                c->res->exit_code = si.si_status;
        } else {
                c->res->exit_code = -1;
                c->res->signal = si.si_status;
        }
        return 0;
}

/* Without a pidfd there is no safe deadline; take the child down at once. */
static int abandon_child(run_ctx *c, int errnum, kyb_error **err)
{
        kill(c->res->pid, SIGKILL);
        while (waitpid(c->res->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return kyb_error_set(err, errnum, "pidfd_open for %s", c->opts->argv[0]);
}

static int finish(run_ctx *c, int64_t start, int rc, kyb_error **err)
{
        kyb_run_result *res = c->res;
        int64_t ms;

        res->duration_ms = now_ms() - start;
        if (!res->out.data)
                res->out.data = calloc(1, 1);
        if (!res->err.data)
                res->err.data = calloc(1, 1);
        if (rc < 0 || !res->timed_out)
                return rc;
        ms = c->opts->timeout_ms;
        return kyb_error_setf(err, ETIMEDOUT, "%s timed out after %lld ms, %s", c->opts->argv[0],
                              (long long)ms, c->killed ? "killed" : "terminated");
}

static int run_spawned(run_ctx *c, int64_t start, kyb_error **err)
{
        int rc, reaped;

        /* The child holds its own copies now; ours would keep the pipes from
         * ever reporting EOF. */
        close_fdp(&c->out_w);
        close_fdp(&c->err_w);
        c->pidfd = pidfd_open(c->res->pid, 0);
        if (c->pidfd < 0)
                return abandon_child(c, errno, err);
        rc = wait_child(c, start, err);
        reaped = reap(c, err);
        if (rc == 0)
                rc = reaped;
        drain_outputs(c);
        return rc;
}

int kyb_run(const kyb_run_opts *opts, kyb_run_result *res, kyb_error **err)
{
        run_ctx c = {
            .opts = opts,
            .res = res,
            .max_output = opts->max_output ? opts->max_output : KYB_RUN_DEFAULT_MAX_OUTPUT,
            .stdin_fd = -1,
            .out_r = -1,
            .out_w = -1,
            .err_r = -1,
            .err_w = -1,
            .pidfd = -1,
        };
        int64_t start = now_ms();
        int rc;

        *res = (kyb_run_result){.pid = -1, .exit_code = -1};
        if (!opts->argv || !opts->argv[0] || !opts->argv[0][0])
                return finish(&c, start, kyb_error_setf(err, EINVAL, "run: empty argv"), err);
        rc = open_stdio(&c, err);
        if (rc == 0)
                rc = spawn_child(&c, err);
        if (rc == 0)
                rc = run_spawned(&c, start, err);
        run_ctx_close(&c);
        return finish(&c, start, rc, err);
}

/* The last TAIL_LINES non-empty lines of stderr, oldest first, joined with
 * "; " so the error message stays on one line. */
static char *stderr_tail(const kyb_run_output *o)
{
        const char *line[TAIL_LINES];
        size_t len[TAIL_LINES];
        const char *end = o->data + o->len;
        char buf[TAIL_LINES * (TAIL_LINE_MAX + 2) + 1] = "";
        size_t pos = 0;
        int n = 0;

        while (n < TAIL_LINES) {
                while (end > o->data && isspace((unsigned char)end[-1]))
                        end--;
                if (end == o->data)
                        break;
                line[n] = end;
                while (line[n] > o->data && line[n][-1] != '\n')
                        line[n]--;
                len[n] = KYB_MIN((size_t)(end - line[n]), (size_t)TAIL_LINE_MAX);
                end = line[n++];
        }
        while (n-- > 0)
                pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "%s%.*s", pos ? "; " : "",
                                        (int)len[n], line[n]);
        return strdup(buf);
}

static int check_result(const kyb_run_opts *opts, const kyb_run_result *res, kyb_error **err)
{
        _cleanup_free_ char *tail = NULL;
        char how[64];

        if (res->signal == 0 && res->exit_code == 0)
                return 0;
        if (res->signal != 0)
                snprintf(how, sizeof(how), "killed by signal %d (SIG%s)", res->signal,
                         sigabbrev_np(res->signal) ? sigabbrev_np(res->signal) : "?");
        else
                snprintf(how, sizeof(how), "exited with code %d", res->exit_code);
        tail = res->err.data ? stderr_tail(&res->err) : NULL;
        if (tail && tail[0])
                return kyb_error_setf(err, EIO, "%s %s: %s", program_name(opts), how, tail);
        return kyb_error_setf(err, EIO, "%s %s", program_name(opts), how);
}

int kyb_run_check(const kyb_run_opts *opts, kyb_run_result *res, kyb_error **err)
{
        int rc = kyb_run(opts, res, err);

        if (rc < 0)
                return rc;
        return check_result(opts, res, err);
}

void kyb_run_result_free(kyb_run_result *res)
{
        if (!res)
                return;
        free(res->out.data);
        free(res->err.data);
        *res = (kyb_run_result){.pid = -1, .exit_code = -1};
}
