/* SPDX-License-Identifier: Apache-2.0 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"

/* The only mutable globals Kybernate allows: logging configuration. Relaxed
 * atomics suffice because the three values are independent. */
static _Atomic int log_level = KYB_LOG_INFO;
static _Atomic int log_format = KYB_LOG_TEXT;
static _Atomic int log_fd = STDERR_FILENO;
/* Serialises whole records within the process, where the kernel would not:
 * partial writes, pipe records over PIPE_BUF, files without atomic offsets. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};
static const char *const level_labels[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

typedef struct log_record {
        kyb_log_level level;
        const char *module;
        const char *file;
        int line;
        const char *msg;
        int errnum; /* > 0 only for kyb_log_write_error() records */
} log_record;

void kyb_log_setup(kyb_log_level level, kyb_log_format format, int fd)
{
        if ((int)level < KYB_LOG_ERROR)
                level = KYB_LOG_ERROR;
        if (level > KYB_LOG_TRACE)
                level = KYB_LOG_TRACE;
        atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
        atomic_store_explicit(&log_format, format == KYB_LOG_JSON ? KYB_LOG_JSON : KYB_LOG_TEXT,
                              memory_order_relaxed);
        atomic_store_explicit(&log_fd, fd < 0 ? STDERR_FILENO : fd, memory_order_relaxed);
}

bool kyb_log_enabled(kyb_log_level level)
{
        return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

const char *kyb_log_level_to_string(kyb_log_level level)
{
        if ((int)level < 0 || (size_t)level >= KYB_ARRAY_SIZE(level_names))
                return "unknown";
        return level_names[level];
}

int kyb_log_level_from_string(const char *s, kyb_log_level *out, kyb_error **err)
{
        if (s && !strcasecmp(s, "warning")) {
                *out = KYB_LOG_WARN;
                return 0;
        }
        for (size_t i = 0; s && i < KYB_ARRAY_SIZE(level_names); i++) {
                if (!strcasecmp(s, level_names[i])) {
                        *out = (kyb_log_level)i;
                        return 0;
                }
        }
        return kyb_error_setf(err, EINVAL,
                              "unknown log level '%s' (expected error, warn, info, debug, trace)",
                              s ? s : "");
}

int kyb_log_format_from_string(const char *s, kyb_log_format *out, kyb_error **err)
{
        if (s && !strcasecmp(s, "text")) {
                *out = KYB_LOG_TEXT;
                return 0;
        }
        if (s && !strcasecmp(s, "json")) {
                *out = KYB_LOG_JSON;
                return 0;
        }
        return kyb_error_setf(err, EINVAL, "unknown log format '%s' (expected text or json)",
                              s ? s : "");
}

/* RFC 3339, UTC, millisecond precision: 2024-05-01T12:00:00.123Z */
static void format_timestamp(char *buf, size_t size)
{
        struct timespec ts;
        struct tm tm;
        char date[24];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s.%03ldZ", date, ts.tv_nsec / 1000000);
}

/* Meson compiles with paths relative to the build directory
 * ("../src/lib/rpc/server.c"); the repository-relative part is what a reader
 * can open. */
static const char *source_path(const char *file)
{
        while (!strncmp(file, "../", 3) || !strncmp(file, "./", 2))
                file += file[1] == '/' ? 2 : 3;
        return file;
}

/* Text records must stay on one line so that line-oriented tools see one
 * record per line; control characters are escaped. */
static char *escape_text(const char *msg)
{
        size_t len = strlen(msg);
        char *out = malloc(len * 4 + 1);
        char *p = out;

        if (!out)
                return NULL;
        for (const unsigned char *s = (const unsigned char *)msg; *s; s++) {
                if (*s == '\n') {
                        *p++ = '\\';
                        *p++ = 'n';
                } else if (*s < 0x20 && *s != '\t') {
                        p += sprintf(p, "\\x%02x", *s);
                } else {
                        *p++ = (char)*s;
                }
        }
        *p = '\0';
        return out;
}

static char *render_text(const log_record *r, const char *ts)
{
        _cleanup_free_ char *msg = escape_text(r->msg);
        char *line = NULL;

        if (!msg)
                return NULL;
        if (asprintf(&line, "%s %-5s [%s] %s:%d: %s\n", ts, level_labels[r->level], r->module,
                     source_path(r->file), r->line, msg) < 0)
                return NULL;
        return line;
}

/* jansson refuses invalid UTF-8; a log line must never be lost over that. */
static json_t *json_string_lossy(const char *s)
{
        _cleanup_free_ char *copy = NULL;
        json_t *j = json_string(s);

        if (j)
                return j;
        copy = strdup(s);
        if (!copy)
                return NULL;
        for (char *p = copy; *p; p++) {
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        }
        return json_string(copy);
}

static const char *errno_name(int errnum, char *buf, size_t size)
{
        const char *name = strerrorname_np(errnum);

        if (name)
                return name;
        snprintf(buf, size, "%d", errnum);
        return buf;
}

static char *render_json(const log_record *r, const char *ts)
{
        json_t *o = json_object();
        char errbuf[16];
        char *dump;
        char *line = NULL;

        if (!o)
                return NULL;
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(level_names[r->level]));
        json_object_set_new(o, "module", json_string_lossy(r->module));
        json_object_set_new(o, "file", json_string_lossy(source_path(r->file)));
        json_object_set_new(o, "line", json_integer(r->line));
        json_object_set_new(o, "msg", json_string_lossy(r->msg));
        if (r->errnum > 0)
                json_object_set_new(o, "errno",
                                    json_string(errno_name(r->errnum, errbuf, sizeof(errbuf))));
        dump = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (dump && asprintf(&line, "%s\n", dump) < 0)
                line = NULL;
        free(dump);
        return line;
}

static void write_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                buf += n;
                len -= (size_t)n;
        }
}

static void emit(kyb_log_level level, const char *module, const char *file, int line_no,
                 const char *msg, int errnum)
{
        log_record r = {
            .level = (int)level < 0 || level > KYB_LOG_TRACE ? KYB_LOG_ERROR : level,
            .module = module ? module : "kyb",
            .file = file ? file : "?",
            .line = line_no,
            .msg = msg,
            .errnum = errnum,
        };
        _cleanup_free_ char *line = NULL;
        char ts[40];

        format_timestamp(ts, sizeof(ts));
        if (atomic_load_explicit(&log_format, memory_order_relaxed) == KYB_LOG_JSON)
                line = render_json(&r, ts);
        else
                line = render_text(&r, ts);
        /* One write per record, unlike stdio's buffered fragments: other
         * processes sharing the fd (pipes up to PIPE_BUF, O_APPEND files) see
         * whole lines too. */
        if (!line)
                return;
        pthread_mutex_lock(&write_lock);
        write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), line, strlen(line));
        pthread_mutex_unlock(&write_lock);
}

void kyb_log_writev(kyb_log_level level, const char *module, const char *file, int line,
                    const char *fmt, va_list ap)
{
        int saved_errno = errno;
        _cleanup_free_ char *msg = NULL;

        if (vasprintf(&msg, fmt, ap) >= 0)
                emit(level, module, file, line, msg, 0);
        else
                msg = NULL;
        errno = saved_errno;
}

void kyb_log_write(kyb_log_level level, const char *module, const char *file, int line,
                   const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        kyb_log_writev(level, module, file, line, fmt, ap);
        va_end(ap);
}

void kyb_log_write_error(const char *module, const char *file, int line, const kyb_error *err,
                         const char *fmt, ...)
{
        int saved_errno = errno;
        _cleanup_free_ char *ctx = NULL;
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&ctx, fmt, ap) < 0)
                ctx = NULL;
        va_end(ap);
        if (ctx && asprintf(&msg, "%s: %s", ctx, kyb_error_message(err)) >= 0)
                emit(KYB_LOG_ERROR, module, file, line, msg, kyb_error_errno(err));
        else
                msg = NULL;
        errno = saved_errno;
}

int kyb_log_configure(const char *level, const char *format, kyb_error **err)
{
        kyb_log_level lvl;
        kyb_log_format fmt;
        int rc = kyb_log_level_from_string(level, &lvl, err);

        if (rc >= 0)
                rc = kyb_log_format_from_string(format, &fmt, err);
        if (rc < 0)
                return rc;
        kyb_log_setup(lvl, fmt, -1);
        return 0;
}
