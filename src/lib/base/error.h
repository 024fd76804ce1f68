/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb_error: the one error convention of Kybernate (see docs/errors.md).
 *
 * A fallible function returns a negative errno value and, when it was given a
 * non-NULL `kyb_error **err`, stores an error object there that carries the
 * errno and a human-readable message. Callers on a module boundary wrap the
 * error with their own context so the final message reads like a path:
 * "restore pod/x: criu: open inventory.img: No such file or directory".
 * Library code never prints; the outermost caller logs the message once.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include "base/macro.h"

typedef struct kyb_error {
        int errnum; /* positive errno value describing the failure class */
        char *msg;  /* full message, context first */
} kyb_error;

/*
 * Records a new error. Appends ": strerror(errnum)" to the message when
 * errnum is non-zero. Returns -errnum (or -EIO when errnum is 0) so callers
 * can write `return kyb_error_set(err, errno, "opening %s", path);`.
 * If *err already holds an error, it is replaced.
 */
int kyb_error_set(kyb_error **err, int errnum, const char *fmt, ...) _printf_(3, 4);

/* Like kyb_error_set but never appends strerror: for errors whose message
 * already says everything (bad input, protocol violations). */
int kyb_error_setf(kyb_error **err, int errnum, const char *fmt, ...) _printf_(3, 4);

int kyb_error_setv(kyb_error **err, int errnum, bool append_strerror, const char *fmt, va_list ap)
    _printf_(4, 0);

/*
 * Prefixes the message of an existing error with "<context>: " and returns
 * its negative errno. If *err is NULL (the callee reported no details), a new
 * error "<context>: <strerror(-fallback_rc)>" is created from fallback_rc.
 */
int kyb_error_wrap(kyb_error **err, int fallback_rc, const char *fmt, ...) _printf_(3, 4);

/* Moves *src into *dst (freeing what *dst held). Returns the negative errno. */
int kyb_error_move(kyb_error **dst, kyb_error **src);

void kyb_error_free(kyb_error *err);

static inline void kyb_error_freep(kyb_error **err)
{
        if (*err) {
                kyb_error_free(*err);
                *err = NULL;
        }
}

#define _cleanup_error_ _cleanup_(kyb_error_freep)

static inline const char *kyb_error_message(const kyb_error *err)
{
        return err && err->msg ? err->msg : "unknown error";
}

static inline int kyb_error_errno(const kyb_error *err)
{
        return err ? err->errnum : 0;
}

/* strerror without the static buffer of strerror(): thread-safe. */
const char *kyb_strerror(int errnum);
