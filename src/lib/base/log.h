/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Structured logging (see docs/logging.md).
 *
 * A source file names its module by defining KYB_LOG_MODULE before it
 * includes any header (log.h may come in through another header):
 *
 *     #define KYB_LOG_MODULE "rpc"
 *     #include "base/log.h"
 *
 * The level test happens before the arguments are evaluated, so a disabled
 * kyb_log_debug(...) costs one atomic load. Every record is written with a
 * single write() so concurrent threads never interleave inside a line.
 * The configuration (level, format, fd) is the one process-wide mutable state
 * Kybernate allows; it is atomic and may be changed at any time.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include "base/error.h"

#ifndef KYB_LOG_MODULE
#define KYB_LOG_MODULE "kyb"
#endif

typedef enum kyb_log_level {
        KYB_LOG_ERROR = 0,
        KYB_LOG_WARN,
        KYB_LOG_INFO,
        KYB_LOG_DEBUG,
        KYB_LOG_TRACE,
} kyb_log_level;

typedef enum kyb_log_format {
        KYB_LOG_TEXT = 0, /* "2024-05-01T12:00:00.123Z INFO  [rpc] file.c:42: msg" */
        KYB_LOG_JSON,     /* one JSON object per line */
} kyb_log_format;

/*
 * Sets the maximum level that is written, the format and the output fd
 * (negative: stderr). The fd is borrowed: the caller keeps it open for as
 * long as it is configured. Defaults: KYB_LOG_INFO, KYB_LOG_TEXT, stderr.
 */
void kyb_log_setup(kyb_log_level level, kyb_log_format format, int fd);

bool kyb_log_enabled(kyb_log_level level);

/* kyb_log_setup() from option strings ("info", "json"), to stderr. */
int kyb_log_configure(const char *level, const char *format, kyb_error **err);

/* Parses "error", "warn" (or "warning"), "info", "debug", "trace". */
int kyb_log_level_from_string(const char *s, kyb_log_level *out, kyb_error **err);

/* Parses "text" or "json". */
int kyb_log_format_from_string(const char *s, kyb_log_format *out, kyb_error **err);

const char *kyb_log_level_to_string(kyb_log_level level);

/* Writes one record unconditionally; use the macros below instead. Keeps
 * errno unchanged so `kyb_log_warn("...: %m")` style callers stay simple. */
void kyb_log_write(kyb_log_level level, const char *module, const char *file, int line,
                   const char *fmt, ...) _printf_(5, 6);

void kyb_log_writev(kyb_log_level level, const char *module, const char *file, int line,
                    const char *fmt, va_list ap) _printf_(5, 0);

/* Writes "<context>: <error message>" at error level; JSON adds "errno". */
void kyb_log_write_error(const char *module, const char *file, int line, const kyb_error *err,
                         const char *fmt, ...) _printf_(5, 6);

#define kyb_log(level, ...)                                                                        \
        do {                                                                                       \
                if (kyb_log_enabled(level))                                                        \
                        kyb_log_write((level), KYB_LOG_MODULE, __FILE__, __LINE__, __VA_ARGS__);   \
        } while (0)

#define kyb_log_error(...) kyb_log(KYB_LOG_ERROR, __VA_ARGS__)
#define kyb_log_warn(...)  kyb_log(KYB_LOG_WARN, __VA_ARGS__)
#define kyb_log_info(...)  kyb_log(KYB_LOG_INFO, __VA_ARGS__)
#define kyb_log_debug(...) kyb_log(KYB_LOG_DEBUG, __VA_ARGS__)
#define kyb_log_trace(...) kyb_log(KYB_LOG_TRACE, __VA_ARGS__)

/*
 * Logs a kyb_error once, at the outermost caller, with what was being done:
 *     kyb_log_error_ctx(err, "restore %s", pod);
 */
#define kyb_log_error_ctx(err, ...)                                                                \
        do {                                                                                       \
                if (kyb_log_enabled(KYB_LOG_ERROR))                                                \
                        kyb_log_write_error(KYB_LOG_MODULE, __FILE__, __LINE__, (err),             \
                                            __VA_ARGS__);                                          \
        } while (0)
