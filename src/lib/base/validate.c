/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>

#include "base/validate.h"

#define PID_MAX_LIMIT 4194304 /* kernel limit on 64-bit, see proc(5) */

static bool id_char_ok(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

static bool is_alnum(unsigned char c)
{
        return id_char_ok(c) && c != '.' && c != '_' && c != '-';
}

/* Describes the first offending byte so the message never echoes raw
 * control characters or invalid UTF-8 from an untrusted request. */
static int reject_char(const char *what, const char *id, size_t i, kyb_error **err)
{
        unsigned char c = (unsigned char)id[i];

        if (c == '/')
                return kyb_error_setf(err, EINVAL, "invalid %s: must not contain '/'", what);
        if (c < 0x20 || c == 0x7f)
                return kyb_error_setf(
                    err, EINVAL, "invalid %s: control character 0x%02x at offset %zu", what, c, i);
        if (c >= 0x80)
                return kyb_error_setf(
                    err, EINVAL, "invalid %s: non-ASCII byte 0x%02x at offset %zu", what, c, i);
        return kyb_error_setf(err, EINVAL,
                              "invalid %s: character '%c' at offset %zu is not allowed "
                              "(allowed: A-Z a-z 0-9 . _ -)",
                              what, c, i);
}

int kyb_validate_id(const char *what, const char *id, kyb_error **err)
{
        size_t len = id ? strnlen(id, KYB_ID_MAX_LEN + 1) : 0;

        what = what ? what : "id";
        if (len == 0)
                return kyb_error_setf(err, EINVAL, "invalid %s: must not be empty", what);
        if (len > KYB_ID_MAX_LEN)
                return kyb_error_setf(err, EINVAL, "invalid %s: longer than %d characters", what,
                                      KYB_ID_MAX_LEN);
        for (size_t i = 0; i < len; i++) {
                if (!id_char_ok((unsigned char)id[i]))
                        return reject_char(what, id, i, err);
        }
        if (!strcmp(id, ".") || !strcmp(id, ".."))
                return kyb_error_setf(err, EINVAL, "invalid %s '%s': not allowed", what, id);
        if (!is_alnum((unsigned char)id[0]))
                return kyb_error_setf(
                    err, EINVAL, "invalid %s '%s': must start with a letter or digit", what, id);
        return 0;
}

int kyb_path_join_id(const char *dir, const char *id, char **out, kyb_error **err)
{
        size_t dlen = dir ? strlen(dir) : 0;
        int rc;

        *out = NULL;
        if (dlen == 0)
                return kyb_error_setf(err, EINVAL, "join id: empty directory");
        rc = kyb_validate_id("id", id, err);
        if (rc < 0)
                return rc;
        /* "/" + id must not become "//id"; any other trailing slash likewise. */
        while (dlen > 1 && dir[dlen - 1] == '/')
                dlen--;
        if (asprintf(out, "%.*s%s%s", (int)dlen, dir, dir[dlen - 1] == '/' ? "" : "/", id) < 0) {
                *out = NULL;
                return kyb_error_set(err, ENOMEM, "join %s", id);
        }
        return 0;
}

int kyb_validate_pid(const char *what, int64_t pid, kyb_error **err)
{
        what = what ? what : "pid";
        if (pid <= 0 || pid > PID_MAX_LIMIT)
                return kyb_error_setf(err, EINVAL, "invalid %s %lld: must be in 1..%d", what,
                                      (long long)pid, PID_MAX_LIMIT);
        return 0;
}
