/* SPDX-License-Identifier: Apache-2.0 */
/* The s3:// backend: configuration, addressing and canonical URL parts. */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3-internal.h"

#define DEFAULT_REGION     "us-east-1"
#define DEFAULT_ATTEMPTS   5
#define DEFAULT_RETRY_BASE 200
#define DEFAULT_RETRY_MAX  10000
#define DEFAULT_CONNECT_MS 10000
#define DEFAULT_STALL_S    60
#define MAX_INFLIGHT       64
#define MAX_PART_SIZE      ((size_t)5 << 30) /* S3's limit for one part */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result; /* written once, inside curl_once */

static void curl_init(void)
{
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool unreserved(unsigned char c)
{
        return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int s3_uri_encode(const char *s, bool keep_slash, char **out, kyb_error **err)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t len = strlen(s);
        char *d = malloc(3 * len + 1);
        size_t j = 0;

        if (!d)
                return kyb_error_set(err, ENOMEM, "encoding");
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if (unreserved(c) || (keep_slash && c == '/')) {
                        d[j++] = (char)c;
                        continue;
                }
                d[j++] = '%';
                d[j++] = hex[c >> 4];
                d[j++] = hex[c & 0xf];
        }
        d[j] = '\0';
        *out = d;
        return 0;
}

typedef struct enc_param {
        char *key;
        char *value;
} enc_param;

static int cmp_param(const void *a, const void *b)
{
        const enc_param *x = a, *y = b;
        int c = strcmp(x->key, y->key);

        return c ? c : strcmp(x->value, y->value);
}

static void free_params(enc_param *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].key);
                free(v[i].value);
        }
        free(v);
}

static int join_params(const enc_param *v, size_t n, char **out, kyb_error **err)
{
        size_t len = 1, pos = 0;
        char *q;

        for (size_t i = 0; i < n; i++)
                len += strlen(v[i].key) + strlen(v[i].value) + 2;
        q = malloc(len);
        if (!q)
                return kyb_error_set(err, ENOMEM, "query");
        q[0] = '\0';
        for (size_t i = 0; i < n; i++)
                pos += (size_t)sprintf(q + pos, "%s%s=%s", i ? "&" : "", v[i].key, v[i].value);
        *out = q;
        return 0;
}

int s3_query_build(const s3_param *params, size_t n, char **out, kyb_error **err)
{
        enc_param *v = calloc(n + 1, sizeof(*v));
        int rc = 0;

        if (!v)
                return kyb_error_set(err, ENOMEM, "query");
        for (size_t i = 0; i < n && rc >= 0; i++) {
                rc = s3_uri_encode(params[i].key, false, &v[i].key, err);
                if (rc >= 0)
                        rc = s3_uri_encode(params[i].value ? params[i].value : "", false,
                                           &v[i].value, err);
        }
        if (rc >= 0) {
                /* Sorted by the encoded names, as SigV4's canonical query string is. */
                qsort(v, n, sizeof(*v), cmp_param);
                rc = join_params(v, n, out, err);
        }
        free_params(v, n);
        return rc;
}

int s3_full_key(const s3_client *c, const char *key, char **out, kyb_error **err)
{
        if (asprintf(out, "%s%s%s", c->prefix, *c->prefix ? "/" : "", key) < 0) {
                *out = NULL;
                return kyb_error_set(err, ENOMEM, "%s", key);
        }
        return 0;
}

int s3_url(const s3_client *c, const char *key, const char *query, char **out, kyb_error **err)
{
        _cleanup_free_ char *enc = NULL;
        int rc;

        if (key) {
                rc = s3_uri_encode(key, true, &enc, err);
                if (rc < 0)
                        return rc;
        }
        /* A bucket request needs the root path when the bucket is in the host name. */
        if (asprintf(out, "%s%s%s%s%s", c->base_url, key || c->virtual_hosted ? "/" : "",
                     enc ? enc : "", query ? "?" : "", query ? query : "") < 0) {
                *out = NULL;
                return kyb_error_set(err, ENOMEM, "URL");
        }
        return 0;
}

int s3_client_set_fixed_date(kyb_storage *s, const char *amz_date, kyb_error **err)
{
        s3_client *c = s->impl;

        free(c->fixed_amz_date);
        c->fixed_amz_date = amz_date ? strdup(amz_date) : NULL;
        if (amz_date && !c->fixed_amz_date)
                return kyb_error_set(err, ENOMEM, "date");
        return 0;
}

int s3_client_set_connect_to(kyb_storage *s, const char *spec, kyb_error **err)
{
        s3_client *c = s->impl;
        struct curl_slist *l = curl_slist_append(NULL, spec);

        if (!l)
                return kyb_error_set(err, ENOMEM, "connect-to");
        curl_slist_free_all(c->connect_to);
        c->connect_to = l;
        return 0;
}

static void client_free(void *impl)
{
        s3_client *c = impl;

        if (!c)
                return;
        free(c->bucket);
        free(c->prefix);
        free(c->base_url);
        free(c->sigv4);
        free(c->shown);
        free(c->fixed_amz_date);
        curl_slist_free_all(c->connect_to);
        s3_credentials_clear(&c->creds);
        free(c);
}

static const storage_backend s3_backend = {
    .writer_open = s3_writer_open,
    .reader_open = s3_reader_open,
    .list = s3_list,
    .stat = s3_stat,
    .remove = s3_remove,
    .close = client_free,
};

/* Bucket names that are valid host name labels can go into the host name. */
static bool dns_safe(const char *bucket)
{
        for (const char *p = bucket; *p; p++)
                if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
                        return false;
        return true;
}

static int build_base_url(s3_client *c, const char *endpoint, const char *region,
                          kyb_s3_addressing addressing, kyb_error **err)
{
        _cleanup_free_ char *aws = NULL;
        const char *host;
        size_t scheme_len;
        int n;

        if (!endpoint) {
                if (asprintf(&aws, "https://s3.%s.amazonaws.com", region) < 0) {
                        aws = NULL;
                        return kyb_error_set(err, ENOMEM, "S3 endpoint");
                }
                endpoint = aws;
        }
        if (addressing == KYB_S3_ADDRESSING_AUTO)
                addressing =
                    aws && dns_safe(c->bucket) ? KYB_S3_ADDRESSING_VIRTUAL : KYB_S3_ADDRESSING_PATH;
        c->virtual_hosted = addressing == KYB_S3_ADDRESSING_VIRTUAL;
        host = strstr(endpoint, "://") + 3;
        scheme_len = (size_t)(host - endpoint);
        /* The endpoint has no path (checked when parsed): drop trailing slashes. */
        n = (int)strcspn(host, "/");
        if (c->virtual_hosted)
                n = asprintf(&c->base_url, "%.*s%s.%.*s", (int)scheme_len, endpoint, c->bucket, n,
                             host);
        else
                n = asprintf(&c->base_url, "%.*s%.*s/%s", (int)scheme_len, endpoint, n, host,
                             c->bucket);
        if (n < 0) {
                c->base_url = NULL;
                return kyb_error_set(err, ENOMEM, "S3 endpoint");
        }
        return 0;
}

static int check_opts(const kyb_storage_opts *o, kyb_error **err)
{
        if (o->part_size &&
            (o->part_size < KYB_STORAGE_MIN_PART_SIZE || o->part_size > MAX_PART_SIZE))
                return kyb_error_setf(err, EINVAL, "part size %zu outside 5 MiB..5 GiB",
                                      o->part_size);
        if (o->max_parts_in_flight > MAX_INFLIGHT)
                return kyb_error_setf(err, EINVAL, "at most %d parts in flight", MAX_INFLIGHT);
        if (o->payload > KYB_S3_PAYLOAD_UNSIGNED)
                return kyb_error_setf(err, EINVAL, "payload signing mode %d unknown", o->payload);
        return 0;
}

#define OR(v, d) ((v) ? (v) : (d))

static char *format(const char *fmt, ...) _printf_(1, 2);

static char *format(const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

static void copy_tuning(s3_client *c, const kyb_storage_opts *o)
{
        c->part_size = OR(o->part_size, KYB_STORAGE_DEFAULT_PART);
        c->inflight = OR(o->max_parts_in_flight, KYB_STORAGE_DEFAULT_INFLIGHT);
        c->max_attempts = OR(o->max_attempts, DEFAULT_ATTEMPTS);
        c->retry_base_ms = OR(o->retry_base_ms, DEFAULT_RETRY_BASE);
        c->retry_max_ms = OR(o->retry_max_ms, DEFAULT_RETRY_MAX);
        c->connect_timeout_ms = OR(o->connect_timeout_ms, DEFAULT_CONNECT_MS);
        c->stall_timeout_s = OR(o->stall_timeout_s, DEFAULT_STALL_S);
        c->progress = o->progress;
        c->progress_ctx = o->progress_ctx;
}

/*
 * Without TLS nothing else protects a body in transit, so auto signs it
 * there; over https the SHA-256 pass over every part buys little (AWS's
 * SDKs skip it too). Content-MD5 is off unless asked for: a signed payload
 * is the stronger check, and MD5 costs more CPU than SHA-256 with SHA-NI.
 */
static void set_integrity(s3_client *c, const kyb_storage_uri *u, const kyb_storage_opts *o)
{
        kyb_s3_payload p = u->payload ? u->payload : o->payload;

        if (p == KYB_S3_PAYLOAD_AUTO)
                p = strncmp(c->base_url, "https://", 8) ? KYB_S3_PAYLOAD_SIGNED
                                                        : KYB_S3_PAYLOAD_UNSIGNED;
        c->sign_payload = p == KYB_S3_PAYLOAD_SIGNED;
        c->content_md5 = u->content_md5_set ? u->content_md5 : o->content_md5;
}

/* Options from the URI win over the caller's defaults. */
static int configure(s3_client *c, const kyb_storage_uri *u, const kyb_storage_opts *o,
                     kyb_error **err)
{
        const char *region = u->region ? u->region : OR(o->region, DEFAULT_REGION);
        const char *endpoint = u->endpoint ? u->endpoint : o->endpoint;
        kyb_s3_addressing addressing = u->addressing ? u->addressing : o->addressing;
        int rc;

        if (region != u->region &&
            strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(region))
                return kyb_error_setf(err, EINVAL, "S3 region must be of [a-z0-9-]");
        c->bucket = strdup(u->bucket);
        c->prefix = strdup(u->path ? u->path : "");
        if (c->bucket && c->prefix) {
                /* The signing parameter is provider1:provider2:region:service. */
                c->sigv4 = format("aws:amz:%s:s3", region);
                c->shown = format("s3://%s%s%s", c->bucket, *c->prefix ? "/" : "", c->prefix);
        }
        if (!c->bucket || !c->prefix || !c->sigv4 || !c->shown)
                return kyb_error_set(err, ENOMEM, "S3");
        rc = build_base_url(c, endpoint, region, addressing, err);
        if (rc < 0)
                return rc;
        copy_tuning(c, o);
        set_integrity(c, u, o);
        return 0;
}

int storage_s3_open(kyb_storage *s, const kyb_storage_uri *u, const kyb_storage_opts *opts,
                    kyb_error **err)
{
        s3_client *c;
        int rc;

        rc = check_opts(opts, err);
        if (rc < 0)
                return rc;
        pthread_once(&curl_once, curl_init);
        if (curl_init_result != CURLE_OK)
                return kyb_error_setf(err, EIO, "libcurl: %s",
                                      curl_easy_strerror(curl_init_result));
        c = calloc(1, sizeof(*c));
        if (!c)
                return kyb_error_set(err, ENOMEM, "S3");
        rc = configure(c, u, opts, err);
        if (rc >= 0)
                rc = opts->credentials ? s3_credentials_copy(opts->credentials, &c->creds, err)
                                       : s3_credentials_load(opts->credentials_dir, &c->creds, err);
        if (rc < 0) {
                client_free(c);
                return rc;
        }
        s->ops = &s3_backend;
        s->impl = c;
        return 0;
}
