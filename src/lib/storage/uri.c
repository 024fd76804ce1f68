/* SPDX-License-Identifier: Apache-2.0 */
/* Location URIs (file:///dir, s3://bucket/prefix?options) and object keys. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage-internal.h"

#define FILE_SCHEME "file://"
#define S3_SCHEME   "s3://"
#define BUCKET_MIN  3
#define BUCKET_MAX  63
#define OPTION_MAX  512 /* one decoded query value */

void kyb_storage_uri_clear(kyb_storage_uri *u)
{
        free(u->bucket);
        free(u->path);
        free(u->endpoint);
        free(u->region);
        *u = (kyb_storage_uri){0};
}

int kyb_storage_check_key(const char *key, kyb_error **err)
{
        size_t len = key ? strnlen(key, KYB_STORAGE_KEY_MAX + 1) : 0;
        bool start = true;

        if (len == 0 || len > KYB_STORAGE_KEY_MAX)
                return kyb_error_setf(err, EINVAL, "object key of %zu bytes is not allowed", len);
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)key[i];

                if (c <= 0x20 || c >= 0x7f || c == '\\' || (start && (c == '.' || c == '/')))
                        return kyb_error_setf(err, EINVAL,
                                              "object key is not allowed (printable ASCII, no "
                                              "empty or hidden components, no '\\')");
                start = c == '/';
        }
        if (start)
                return kyb_error_setf(err, EINVAL, "object key ends with '/'");
        return 0;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char)tolower((unsigned char)c);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes [s, s+len): no NUL, no malformed escapes. */
static int decode(const char *s, size_t len, const char *what, char **out, kyb_error **err)
{
        char *d = malloc(len + 1);
        size_t j = 0;

        if (!d)
                return kyb_error_set(err, ENOMEM, "%s", what);
        for (size_t i = 0; i < len; i++) {
                int hi, lo;

                if (s[i] != '%') {
                        d[j++] = s[i];
                        continue;
                }
                hi = i + 2 < len ? hexval(s[i + 1]) : -1;
                lo = i + 2 < len ? hexval(s[i + 2]) : -1;
                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                        free(d);
                        return kyb_error_setf(err, EINVAL, "%s: bad percent escape", what);
                }
                d[j++] = (char)(hi << 4 | lo);
                i += 2;
        }
        d[j] = '\0';
        *out = d;
        return 0;
}

/* Printable ASCII; spaces only where allowed (directory names may have them). */
static bool printable_ex(const char *s, bool space)
{
        for (; *s; s++)
                if ((unsigned char)*s < (space ? 0x20 : 0x21) || (unsigned char)*s >= 0x7f)
                        return false;
        return true;
}

static bool printable(const char *s)
{
        return printable_ex(s, false);
}

static int parse_file(const char *rest, size_t len, kyb_storage_uri *u, kyb_error **err)
{
        int rc;

        /* file:///path or file://localhost/path; no other hosts. */
        if (len >= 9 && !strncmp(rest, "localhost", 9)) {
                rest += 9;
                len -= 9;
        }
        if (len == 0 || rest[0] != '/')
                return kyb_error_setf(err, EINVAL, "file URI needs an absolute path (file:///dir)");
        rc = decode(rest, len, "file URI", &u->path, err);
        if (rc < 0)
                return rc;
        if (!printable_ex(u->path, true))
                return kyb_error_setf(err, EINVAL, "file URI: path is not printable ASCII");
        for (size_t n = strlen(u->path); n > 1 && u->path[n - 1] == '/'; n--)
                u->path[n - 1] = '\0';
        u->scheme = KYB_STORAGE_FILE;
        return 0;
}

static int check_bucket(const char *b, size_t len, kyb_error **err)
{
        if (len < BUCKET_MIN || len > BUCKET_MAX)
                return kyb_error_setf(err, EINVAL, "S3 bucket name must have %d..%d characters",
                                      BUCKET_MIN, BUCKET_MAX);
        for (size_t i = 0; i < len; i++) {
                char c = b[i];

                if (!isalnum((unsigned char)c) && !(i > 0 && (c == '.' || c == '-' || c == '_')))
                        return kyb_error_setf(err, EINVAL, "S3 bucket name has a bad character");
        }
        return 0;
}

static int set_prefix(kyb_storage_uri *u, const char *p, size_t len, kyb_error **err)
{
        int rc;

        while (len > 0 && p[0] == '/') {
                p++;
                len--;
        }
        while (len > 0 && p[len - 1] == '/')
                len--;
        rc = decode(p, len, "S3 prefix", &u->path, err);
        if (rc < 0)
                return rc;
        if (*u->path && kyb_storage_check_key(u->path, NULL) < 0)
                return kyb_error_setf(err, EINVAL, "S3 prefix is not a valid key prefix");
        return 0;
}

static int parse_s3(const char *rest, size_t len, kyb_storage_uri *u, kyb_error **err)
{
        const char *slash = memchr(rest, '/', len);
        size_t blen = slash ? (size_t)(slash - rest) : len;
        int rc;

        rc = check_bucket(rest, blen, err);
        if (rc < 0)
                return rc;
        u->bucket = strndup(rest, blen);
        if (!u->bucket)
                return kyb_error_set(err, ENOMEM, "S3 URI");
        u->scheme = KYB_STORAGE_S3;
        return set_prefix(u, rest + blen, len - blen, err);
}

static int check_endpoint(const char *e, kyb_error **err)
{
        const char *host;

        if (!strncmp(e, "http://", 7))
                host = e + 7;
        else if (!strncmp(e, "https://", 8))
                host = e + 8;
        else
                return kyb_error_setf(err, EINVAL,
                                      "S3 endpoint must start with http:// or https://");
        if (!*host || *host == '/' || !printable(e) || strpbrk(host, "@?#"))
                return kyb_error_setf(err, EINVAL,
                                      "S3 endpoint is not a plain http(s)://host[:port]");
        if (strchr(host, '/') && strspn(strchr(host, '/'), "/") != strlen(strchr(host, '/')))
                return kyb_error_setf(err, EINVAL, "S3 endpoint must not have a path");
        return 0;
}

/* Region names end up in libcurl's colon-separated signing parameter. */
static int check_region(const char *r, kyb_error **err)
{
        size_t n = strlen(r);

        if (n == 0 || n > 64 || strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
                return kyb_error_setf(err, EINVAL, "S3 region must be 1..64 of [a-z0-9-]");
        return 0;
}

static int parse_bool(const char *name, const char *v, bool *out, kyb_error **err)
{
        if (!strcmp(v, "true") || !strcmp(v, "1")) {
                *out = true;
                return 0;
        }
        if (!strcmp(v, "false") || !strcmp(v, "0")) {
                *out = false;
                return 0;
        }
        return kyb_error_setf(err, EINVAL, "%s must be true or false", name);
}

static int parse_payload(const char *v, kyb_s3_payload *out, kyb_error **err)
{
        if (!strcmp(v, "signed")) {
                *out = KYB_S3_PAYLOAD_SIGNED;
                return 0;
        }
        if (!strcmp(v, "unsigned")) {
                *out = KYB_S3_PAYLOAD_UNSIGNED;
                return 0;
        }
        return kyb_error_setf(err, EINVAL, "payload must be signed or unsigned");
}

/* The options that tune uploads rather than say where the location is. */
static int set_upload_option(kyb_storage_uri *u, const char *k, const char *v, kyb_error **err)
{
        int rc;

        if (!strcmp(k, "payload") && u->payload == KYB_S3_PAYLOAD_AUTO)
                return parse_payload(v, &u->payload, err);
        if (!strcmp(k, "content-md5") && !u->content_md5_set) {
                rc = parse_bool(k, v, &u->content_md5, err);
                u->content_md5_set = rc >= 0;
                return rc;
        }
        return kyb_error_setf(err, EINVAL, "unknown or repeated URI option '%.32s'",
                              printable(k) ? k : "?");
}

static int set_option(kyb_storage_uri *u, const char *k, char **v, kyb_error **err)
{
        bool b = false;
        int rc;

        if (!strcmp(k, "endpoint") && !u->endpoint) {
                rc = check_endpoint(*v, err);
                if (rc >= 0)
                        u->endpoint = TAKE_PTR(*v);
                return rc;
        }
        if (!strcmp(k, "region") && !u->region) {
                rc = check_region(*v, err);
                if (rc >= 0)
                        u->region = TAKE_PTR(*v);
                return rc;
        }
        if (!strcmp(k, "path-style") && u->addressing == KYB_S3_ADDRESSING_AUTO) {
                rc = parse_bool(k, *v, &b, err);
                if (rc >= 0)
                        u->addressing = b ? KYB_S3_ADDRESSING_PATH : KYB_S3_ADDRESSING_VIRTUAL;
                return rc;
        }
        return set_upload_option(u, k, *v, err);
}

static int parse_query(const char *q, kyb_storage_uri *u, kyb_error **err)
{
        while (*q) {
                size_t len = strcspn(q, "&");
                const char *eq = memchr(q, '=', len);
                _cleanup_free_ char *k = NULL;
                _cleanup_free_ char *v = NULL;
                int rc;

                if (!eq || len > OPTION_MAX)
                        return kyb_error_setf(err, EINVAL, "URI option without a value");
                if ((rc = decode(q, (size_t)(eq - q), "URI option", &k, err)) < 0 ||
                    (rc = decode(eq + 1, len - (size_t)(eq - q) - 1, "URI option", &v, err)) < 0 ||
                    (rc = set_option(u, k, &v, err)) < 0)
                        return rc;
                q += len;
                if (*q == '&')
                        q++;
        }
        return 0;
}

static int parse(const char *uri, kyb_storage_uri *u, kyb_error **err)
{
        const char *q = strchr(uri, '?');
        size_t len = q ? (size_t)(q - uri) : strlen(uri);
        int rc;

        if (!strncmp(uri, FILE_SCHEME, strlen(FILE_SCHEME))) {
                if (q)
                        return kyb_error_setf(err, EINVAL, "file URI takes no options");
                return parse_file(uri + strlen(FILE_SCHEME), len - strlen(FILE_SCHEME), u, err);
        }
        if (strncmp(uri, S3_SCHEME, strlen(S3_SCHEME)))
                return kyb_error_setf(err, EINVAL, "storage URI must start with file:// or s3://");
        rc = parse_s3(uri + strlen(S3_SCHEME), len - strlen(S3_SCHEME), u, err);
        if (rc < 0 || !q)
                return rc;
        return parse_query(q + 1, u, err);
}

int kyb_storage_uri_parse(const char *uri, kyb_storage_uri *out, kyb_error **err)
{
        int rc;

        *out = (kyb_storage_uri){0};
        if (!uri || !*uri)
                return kyb_error_setf(err, EINVAL, "empty storage URI");
        rc = parse(uri, out, err);
        if (rc < 0)
                kyb_storage_uri_clear(out);
        return rc;
}

int kyb_storage_uri_split(const char *object_uri, char **location, char **key, kyb_error **err)
{
        const char *sep = object_uri ? strstr(object_uri, "://") : NULL;
        const char *q, *path, *last;
        size_t end;

        *location = *key = NULL;
        if (!sep)
                return kyb_error_setf(err, EINVAL, "object URI needs a scheme");
        q = strchr(sep + 3, '?');
        end = q ? (size_t)(q - object_uri) : strlen(object_uri);
        path = memchr(sep + 3, '/', end - (size_t)(sep + 3 - object_uri));
        last = path ? memrchr(path, '/', end - (size_t)(path - object_uri)) : NULL;
        if (!last || (size_t)(last - object_uri) + 1 >= end)
                return kyb_error_setf(err, EINVAL, "object URI names no object");
        /* The root of a path keeps its slash: file:///x lives in file:///. */
        if (asprintf(location, "%.*s%s", (int)(last - object_uri + (last == path)), object_uri,
                     q ? q : "") < 0) {
                *location = NULL;
                return kyb_error_set(err, ENOMEM, "splitting the object URI");
        }
        *key = strndup(last + 1, end - (size_t)(last - object_uri) - 1);
        if (!*key) {
                free(*location);
                *location = NULL;
                return kyb_error_set(err, ENOMEM, "splitting the object URI");
        }
        return 0;
}
