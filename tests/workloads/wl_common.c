/* SPDX-License-Identifier: Apache-2.0 */
/* Shared protocol code of the test workloads; see wl_common.h. */
#include "wl_common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char wl_common_help[] =
    "Common options:\n"
    "  --status FILE          append status lines to FILE (default: stdout)\n"
    "  --ctl FILE             control file polled every tick (default: STATUS.ctl;\n"
    "                         none when writing status to stdout)\n"
    "  --interval-ms N        tick length in milliseconds\n"
    "  --verify-timeout-ms N  how long a verify waits for fresh progress (10000)\n"
    "  --verify-exit          exit after every verify (0: ok, 1: fail)\n"
    "  --help                 this text\n"
    "Control commands (one per file, written atomically by rename):\n"
    "  mark                   answer \"mark <progress>\"\n"
    "  verify [min=N]         wait for 2 more units of progress, check the whole\n"
    "                         state, answer \"ok ...\" or \"fail <reason>\";\n"
    "                         fails if progress < N (state went backwards)\n"
    "  verify-exit [min=N]    as verify, then exit 0 (ok) or 1 (fail)\n"
    "  stop                   answer \"stopped ...\" and exit 0\n";

static volatile sig_atomic_t wl_stop_signal;

static void wl_on_signal(int sig)
{
        wl_stop_signal = sig;
}

uint64_t wl_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int wl_parse_u64(const char *s, uint64_t *out)
{
        char *end;
        unsigned long long v;

        if (!s || !*s || *s == '-')
                return -1;
        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || *end)
                return -1;
        *out = v;
        return 0;
}

int wl_parse_size(const char *s, uint64_t *out)
{
        char *end;
        unsigned long long v;
        unsigned shift = 0;

        if (!s || !*s || *s == '-')
                return -1;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -1;
        switch (*end) {
        case 'k':
        case 'K':
                shift = 10;
                end++;
                break;
        case 'm':
        case 'M':
                shift = 20;
                end++;
                break;
        case 'g':
        case 'G':
                shift = 30;
                end++;
                break;
        case 't':
        case 'T':
                shift = 40;
                end++;
                break;
        default:
                break;
        }
        if (shift && (end[0] == 'i' && end[1] == 'B'))
                end += 2;
        else if (end[0] == 'B')
                end++;
        if (*end)
                return -1;
        if (shift && v > (UINT64_MAX >> shift))
                return -1;
        *out = (uint64_t)v << shift;
        return 0;
}

int wl_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
        const char *a = argv[*i];
        size_t n = strlen(name);

        if (strncmp(a, name, n) != 0)
                return 0;
        if (a[n] == '=') {
                *value = a + n + 1;
                return 1;
        }
        if (a[n] != '\0')
                return 0;
        if (*i + 1 >= argc) {
                fprintf(stderr, "option %s needs a value\n", name);
                return -1;
        }
        *value = argv[++*i];
        return 1;
}

int wl_parse_common(struct wl *w, int argc, char **argv, int *i)
{
        const char *v = NULL;
        uint64_t n;
        int r;

        if ((r = wl_opt_value(argc, argv, i, "--status", &v)) != 0) {
                w->status_path = v;
                return r;
        }
        if ((r = wl_opt_value(argc, argv, i, "--ctl", &v)) != 0) {
                w->ctl_path = v;
                return r;
        }
        if ((r = wl_opt_value(argc, argv, i, "--interval-ms", &v)) != 0) {
                if (r < 0)
                        return r;
                if (wl_parse_u64(v, &n) || n > 60000) {
                        fprintf(stderr, "bad --interval-ms: %s\n", v);
                        return -1;
                }
                w->interval_ms = (unsigned)n;
                return 1;
        }
        if ((r = wl_opt_value(argc, argv, i, "--verify-timeout-ms", &v)) != 0) {
                if (r < 0)
                        return r;
                if (wl_parse_u64(v, &n) || n == 0 || n > 3600000) {
                        fprintf(stderr, "bad --verify-timeout-ms: %s\n", v);
                        return -1;
                }
                w->verify_timeout_ms = (unsigned)n;
                return 1;
        }
        if (strcmp(argv[*i], "--verify-exit") == 0) {
                w->verify_exit = true;
                return 1;
        }
        return 0;
}

int wl_setup(struct wl *w)
{
        struct sigaction sa;

        if (!w->verify_timeout_ms)
                w->verify_timeout_ms = 10000;
        if (!w->ctl_path && w->status_path) {
                size_t n = strlen(w->status_path) + 5;
                char *p = malloc(n);

                if (!p)
                        return -1;
                snprintf(p, n, "%s.ctl", w->status_path);
                w->ctl_path = p;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = wl_on_signal;
        sigemptyset(&sa.sa_mask);
        /* no SA_RESTART: sleeps and poll() return early */
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        return 0;
}

static void wl_vstatus(struct wl *w, const char *fmt, va_list ap)
{
        char line[WL_MSG_MAX + 128];
        int n;
        int fd;

        n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        if (n < 0)
                return;
        if ((size_t)n > sizeof(line) - 2)
                n = (int)sizeof(line) - 2;
        line[n++] = '\n';
        if (!w->status_path) {
                (void)wl_write_full(STDOUT_FILENO, line, (size_t)n);
                return;
        }
        /* Open per record: CRIU then never sees the file. One O_APPEND
         * write keeps lines whole. */
        fd = open(w->status_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        (void)wl_write_full(fd, line, (size_t)n);
        close(fd);
}

void wl_status(struct wl *w, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        wl_vstatus(w, fmt, ap);
        va_end(ap);
}

void wl_error(struct wl *w, const char *fmt, ...)
{
        va_list ap;

        if (w->error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(w->error, sizeof(w->error), fmt, ap);
        va_end(ap);
        wl_status(w, "error %s: %s", w->name, w->error);
}

void wl_ready(struct wl *w, const char *fmt, ...)
{
        char details[WL_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(details, sizeof(details), fmt, ap);
        va_end(ap);
        wl_status(w, "ready %d %s %s", (int)getpid(), w->name, details);
}

void wl_tick_sleep(const struct wl *w)
{
        struct timespec ts = {
            .tv_sec = w->interval_ms / 1000,
            .tv_nsec = (long)(w->interval_ms % 1000) * 1000000L,
        };

        nanosleep(&ts, NULL);
}

int wl_read_full(int fd, void *buf, size_t len)
{
        char *p = buf;

        while (len) {
                ssize_t n = read(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -1;
                if (n == 0) {
                        errno = 0;
                        return -1;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int wl_write_full(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int wl_finish_verify(struct wl *w, uint64_t progress)
{
        char msg[WL_MSG_MAX];
        bool ok = false;
        bool do_exit = w->vexit || w->verify_exit;

        w->vpending = false;
        msg[0] = '\0';
        if (w->error[0])
                wl_status(w, "fail %s: %s", w->name, w->error);
        else if (!w->check(w->ctx, msg, sizeof(msg)))
                wl_status(w, "fail %s: %s", w->name, msg);
        else if (w->vhave_min && progress < w->vmin)
                wl_status(w,
                          "fail %s: progress %" PRIu64 " < min %" PRIu64 " (state went backwards)",
                          w->name, progress, w->vmin);
        else if (w->have_mark && progress <= w->mark)
                wl_status(w, "fail %s: progress %" PRIu64 " did not pass mark %" PRIu64, w->name,
                          progress, w->mark);
        else
                ok = true;
        if (ok) {
                if (w->have_mark)
                        wl_status(w, "ok %s progress=%" PRIu64 " mark=%" PRIu64 " %s", w->name,
                                  progress, w->mark, msg);
                else
                        wl_status(w, "ok %s progress=%" PRIu64 " mark=none %s", w->name, progress,
                                  msg);
        }
        if (do_exit)
                return ok ? 0 : 1;
        return -1;
}

static int wl_command(struct wl *w, char *line)
{
        char *save = NULL;
        char *cmd = strtok_r(line, " \t", &save);
        char *arg;
        bool have_min = false;
        uint64_t min = 0;

        if (!cmd)
                return -1;
        while ((arg = strtok_r(NULL, " \t", &save))) {
                if (strncmp(arg, "min=", 4) == 0 && wl_parse_u64(arg + 4, &min) == 0) {
                        have_min = true;
                } else {
                        wl_status(w, "fail %s: bad argument '%s' to '%s'", w->name, arg, cmd);
                        return -1;
                }
        }
        if (strcmp(cmd, "mark") == 0) {
                w->mark = w->progress(w->ctx);
                w->have_mark = true;
                wl_status(w, "mark %" PRIu64, w->mark);
        } else if (strcmp(cmd, "verify") == 0 || strcmp(cmd, "verify-exit") == 0) {
                w->vpending = true;
                w->vexit = strcmp(cmd, "verify-exit") == 0;
                w->vhave_min = have_min;
                w->vmin = min;
                w->vstart = w->progress(w->ctx);
                w->vdeadline_ns = wl_now_ns() + (uint64_t)w->verify_timeout_ms * 1000000ULL;
        } else if (strcmp(cmd, "stop") == 0) {
                wl_status(w, "stopped %s progress=%" PRIu64, w->name, w->progress(w->ctx));
                return 0;
        } else {
                wl_status(w, "fail %s: unknown command '%s'", w->name, cmd);
        }
        return -1;
}

static int wl_poll_ctl(struct wl *w)
{
        char taken[4096];
        char buf[1024];
        ssize_t n;
        int fd;
        char *save = NULL;
        char *line;
        int rc = -1;

        if (!w->ctl_path)
                return -1;
        /* Claim the file first so a command written later is not lost. */
        snprintf(taken, sizeof(taken), "%s.taken", w->ctl_path);
        if (rename(w->ctl_path, taken) < 0)
                return -1;
        fd = open(taken, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        unlink(taken);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        for (line = strtok_r(buf, "\n", &save); line && rc < 0; line = strtok_r(NULL, "\n", &save))
                rc = wl_command(w, line);
        return rc;
}

int wl_service(struct wl *w)
{
        int rc;

        if (wl_stop_signal) {
                wl_status(w, "stopped %s signal=%d progress=%" PRIu64, w->name, (int)wl_stop_signal,
                          w->progress(w->ctx));
                return 0;
        }
        if (!w->vpending) {
                rc = wl_poll_ctl(w);
                if (rc >= 0)
                        return rc;
        }
        if (w->vpending) {
                uint64_t p = w->progress(w->ctx);
                /* an error fails at once; otherwise wait for fresh progress */
                if (w->error[0] || p >= w->vstart + 2)
                        return wl_finish_verify(w, p);
                if (wl_now_ns() > w->vdeadline_ns) {
                        w->vpending = false;
                        wl_status(w,
                                  "fail %s: no progress for %u ms (stuck at %" PRIu64
                                  ", verify started at %" PRIu64 ")",
                                  w->name, w->verify_timeout_ms, p, w->vstart);
                        if (w->vexit || w->verify_exit)
                                return 1;
                }
        }
        return -1;
}
