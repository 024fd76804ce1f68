/* SPDX-License-Identifier: Apache-2.0 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"

const char *kyb_strerror(int errnum)
{
        const char *s = strerrordesc_np(errnum);

        return s ? s : "Unknown error";
}

static int normalize_errno(int errnum)
{
        if (errnum < 0)
                errnum = -errnum;
        return errnum == 0 ? EIO : errnum;
}

int kyb_error_setv(kyb_error **err, int errnum, bool append_strerror, const char *fmt, va_list ap)
{
        int code = normalize_errno(errnum);
        char *body = NULL;
        char *msg = NULL;

        if (!err)
                return -code;
        if (vasprintf(&body, fmt, ap) < 0)
                body = NULL;
        if (append_strerror && errnum != 0 && body) {
                if (asprintf(&msg, "%s: %s", body, kyb_strerror(code)) < 0)
                        msg = NULL;
                free(body);
        } else {
                msg = body;
        }
        kyb_error_freep(err);
        *err = calloc(1, sizeof(**err));
        if (!*err) {
                free(msg);
                return -code;
        }
        (*err)->errnum = code;
        (*err)->msg = msg;
        return -code;
}

int kyb_error_set(kyb_error **err, int errnum, const char *fmt, ...)
{
        va_list ap;
        int rc;

        va_start(ap, fmt);
        rc = kyb_error_setv(err, errnum, true, fmt, ap);
        va_end(ap);
        return rc;
}

int kyb_error_setf(kyb_error **err, int errnum, const char *fmt, ...)
{
        va_list ap;
        int rc;

        va_start(ap, fmt);
        rc = kyb_error_setv(err, errnum, false, fmt, ap);
        va_end(ap);
        return rc;
}

int kyb_error_wrap(kyb_error **err, int fallback_rc, const char *fmt, ...)
{
        _cleanup_free_ char *ctx = NULL;
        char *msg = NULL;
        va_list ap;

        if (!err)
                return -normalize_errno(fallback_rc);
        va_start(ap, fmt);
        if (vasprintf(&ctx, fmt, ap) < 0)
                ctx = NULL;
        va_end(ap);
        if (!*err)
                return kyb_error_set(err, fallback_rc, "%s", ctx ? ctx : "error");
        if (ctx && asprintf(&msg, "%s: %s", ctx, kyb_error_message(*err)) >= 0) {
                free((*err)->msg);
                (*err)->msg = msg;
        }
        return -(*err)->errnum;
}

int kyb_error_move(kyb_error **dst, kyb_error **src)
{
        int code = *src ? (*src)->errnum : EIO;

        if (!dst) {
                kyb_error_freep(src);
                return -code;
        }
        kyb_error_freep(dst);
        *dst = TAKE_PTR(*src);
        return -code;
}

void kyb_error_free(kyb_error *err)
{
        if (!err)
                return;
        free(err->msg);
        free(err);
}
