/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Requests to the API server: a pool of configured curl handles, JSON in
 * and out, and the API server's Status turned into kyb_error.
 *
 * Nothing here logs, and curl's verbose mode is never enabled: it would
 * print the Authorization header.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "kube/kube-internal.h"

#define MAX_RESPONSE (256u << 20) /* a list of 10,000 pods is ~100 MiB */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
/* Written once, inside curl_once. */
static CURLcode curl_init_result;
static bool curl_uses_openssl;

static void curl_init(void)
{
        const curl_version_info_data *v;

        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
        v = curl_version_info(CURLVERSION_NOW);
        curl_uses_openssl = v && v->ssl_version && !strncmp(v->ssl_version, "OpenSSL/", 8);
}

int kyb_kube_client_new(const kyb_kube_config *cfg, const kyb_kube_client_opts *opts,
                        kyb_kube_client **out, kyb_error **err)
{
        kyb_kube_client *c;
        int rc;

        pthread_once(&curl_once, curl_init);
        if (curl_init_result != CURLE_OK)
                return kyb_error_setf(err, EIO, "curl: %s", curl_easy_strerror(curl_init_result));
        if (!(c = calloc(1, sizeof(*c))))
                return kyb_error_set(err, ENOMEM, "kube client");
        if ((rc = kube_config_copy(&c->cfg, cfg, err)) < 0) {
                free(c);
                return rc;
        }
        c->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : 30000;
        c->user_agent = strdup(opts && opts->user_agent ? opts->user_agent : "kybernate");
        pthread_mutex_init(&c->mu, NULL);
        if (!c->user_agent) {
                kyb_kube_client_free(c);
                return kyb_error_set(err, ENOMEM, "kube client");
        }
        *out = c;
        return 0;
}

int kyb_kube_client_clone(const kyb_kube_client *c, unsigned timeout_ms, kyb_kube_client **out,
                          kyb_error **err)
{
        kyb_kube_client_opts o = {.timeout_ms = timeout_ms, .user_agent = c->user_agent};

        return kyb_kube_client_new(&c->cfg, &o, out, err);
}

void kyb_kube_client_set_timeout(kyb_kube_client *c, unsigned timeout_ms)
{
        c->timeout_ms = timeout_ms ? timeout_ms : 30000;
}

void kyb_kube_client_free(kyb_kube_client *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_idle; i++)
                curl_easy_cleanup(c->idle[i]);
        free(c->idle);
        free(c->user_agent);
        kube_config_clear(&c->cfg);
        pthread_mutex_destroy(&c->mu);
        free(c);
}

/* ---- handles ---------------------------------------------------------------- */

static int set_blob(CURL *h, CURLoption opt, char *data, size_t len)
{
        struct curl_blob b = {.data = data, .len = len, .flags = CURL_BLOB_COPY};

        return curl_easy_setopt(h, opt, &b) == CURLE_OK ? 0 : -ENOTSUP;
}

static int configure_tls(kyb_kube_client *c, CURL *h, kyb_error **err)
{
        const kyb_kube_config *cfg = &c->cfg;
        int rc = 0;

        if (cfg->insecure) {
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (cfg->ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
        if (cfg->ca_data)
                rc = set_blob(h, CURLOPT_CAINFO_BLOB, cfg->ca_data, cfg->ca_len);
        if (rc >= 0 && cfg->cert_file) {
                curl_easy_setopt(h, CURLOPT_SSLCERT, cfg->cert_file);
                curl_easy_setopt(h, CURLOPT_SSLKEY, cfg->key_file);
        }
        if (rc >= 0 && cfg->cert_data)
                rc = set_blob(h, CURLOPT_SSLCERT_BLOB, cfg->cert_data, cfg->cert_len);
        if (rc >= 0 && cfg->key_data)
                rc = set_blob(h, CURLOPT_SSLKEY_BLOB, cfg->key_data, cfg->key_len);
        return rc < 0 ? kyb_error_setf(err, ENOTSUP, "libcurl cannot take in-memory certificates")
                      : 0;
}

static int auth_header(kyb_kube_client *c, struct curl_slist **headers, kyb_error **err)
{
        _cleanup_free_ char *token = NULL, *line = NULL;
        const char *t = c->cfg.token;
        struct curl_slist *n;

        if (!t && c->cfg.token_file) {
                /* Projected service-account tokens rotate: read it each time. */
                FILE *f = fopen(c->cfg.token_file, "re");
                size_t cap = 0;

                if (!f)
                        return kyb_error_set(err, errno, "token file %s", c->cfg.token_file);
                if (getline(&token, &cap, f) < 0) {
                        fclose(f);
                        return kyb_error_setf(err, EINVAL, "token file %s is empty",
                                              c->cfg.token_file);
                }
                fclose(f);
                token[strcspn(token, "\r\n")] = '\0';
                t = token;
        }
        if (!t)
                return 0;
        if (asprintf(&line, "Authorization: Bearer %s", t) < 0 ||
            !(n = curl_slist_append(*headers, line)))
                return kyb_error_set(err, ENOMEM, "auth header");
        *headers = n;
        return 0;
}

int kube_handle_get(kyb_kube_client *c, CURL **out, struct curl_slist **headers, kyb_error **err)
{
        CURL *h = NULL;
        int rc;

        pthread_mutex_lock(&c->mu);
        if (c->n_idle)
                h = c->idle[--c->n_idle];
        pthread_mutex_unlock(&c->mu);
        if (!h && !(h = curl_easy_init()))
                return kyb_error_set(err, ENOMEM, "curl handle");
        curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        /* One request per handle at a time, so HTTP/2 multiplexes nothing;
         * HTTP/1.1 spares each pooled handle nghttp2's session and the 64 KiB
         * upload buffer HTTP/2 request bodies go through. */
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
        *headers = NULL;
        if ((rc = configure_tls(c, h, err)) < 0 || (rc = auth_header(c, headers, err)) < 0) {
                curl_slist_free_all(*headers);
                curl_easy_cleanup(h);
                return rc;
        }
        *out = h;
        return 0;
}

void kube_handle_put(kyb_kube_client *c, CURL *h, struct curl_slist *headers)
{
        curl_slist_free_all(headers);
        if (!h)
                return;
        /* Keeps the connection and TLS session, drops the request's options. */
        curl_easy_reset(h);
        pthread_mutex_lock(&c->mu);
        if (c->n_idle == c->cap_idle) {
                size_t cap = c->cap_idle ? c->cap_idle * 2 : 4;
                CURL **n = cap <= 64 ? realloc(c->idle, cap * sizeof(*n)) : NULL;

                if (!n) {
                        pthread_mutex_unlock(&c->mu);
                        curl_easy_cleanup(h);
                        return;
                }
                c->idle = n;
                c->cap_idle = cap;
        }
        c->idle[c->n_idle++] = h;
        pthread_mutex_unlock(&c->mu);
}

/* ---- paths -------------------------------------------------------------------- */

int kube_path(const kyb_kube_resource *r, const char *ns, const char *name, const char *sub,
              char **out, kyb_error **err)
{
        _cleanup_free_ char *base = NULL;
        int n;

        if (*r->group)
                n = asprintf(&base, "/apis/%s/%s", r->group, r->version);
        else
                n = asprintf(&base, "/api/%s", r->version);
        if (n < 0)
                return kyb_error_set(err, ENOMEM, "path");
        if (r->namespaced && ns)
                n = asprintf(out, "%s/namespaces/%s/%s%s%s%s%s", base, ns, r->plural,
                             name ? "/" : "", name ? name : "", sub ? "/" : "", sub ? sub : "");
        else
                n = asprintf(out, "%s/%s%s%s%s%s", base, r->plural, name ? "/" : "",
                             name ? name : "", sub ? "/" : "", sub ? sub : "");
        return n < 0 ? kyb_error_set(err, ENOMEM, "path") : 0;
}

int kube_query(char **path, const char *key, const char *value, kyb_error **err)
{
        char *enc, *n = NULL;

        if (!value)
                return 0;
        enc = curl_easy_escape(NULL, value, 0);
        if (!enc ||
            asprintf(&n, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', key, enc) < 0) {
                curl_free(enc);
                return kyb_error_set(err, ENOMEM, "query");
        }
        curl_free(enc);
        free(*path);
        *path = n;
        return 0;
}

/* ---- errors --------------------------------------------------------------------- */

int kube_errno_for(long http, const char *reason)
{
        switch (http) {
        case 400:
        case 422:
                return EINVAL;
        case 401:
                return EPERM;
        case 403:
                return EACCES;
        case 404:
                return ENOENT;
        case 405:
        case 415:
                return ENOTSUP;
        case 409:
                return reason && !strcmp(reason, "AlreadyExists") ? EEXIST : ESTALE;
        case 410:
                return ETIME;
        case 429:
                return EAGAIN;
        }
        return http >= 500 ? EAGAIN : EIO;
}

int kube_status_error(long http, const char *method, const char *path, const char *body, size_t len,
                      kyb_error **err)
{
        _cleanup_json_ json_t *st = body ? json_loadb(body, len, 0, NULL) : NULL;
        const char *reason = json_string_value(json_object_get(st, "reason"));
        const char *msg = json_string_value(json_object_get(st, "message"));

        return kyb_error_setf(err, kube_errno_for(http, reason), "%s %s: HTTP %ld%s%s%s%s", method,
                              path, http, reason ? " " : "", reason ? reason : "", msg ? ": " : "",
                              msg ? msg : "");
}

/* ---- requests -------------------------------------------------------------------- */

typedef struct buffer {
        char *data;
        size_t len, cap;
        bool too_big;
} buffer;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
        buffer *b = arg;
        size_t add = size * n;

        if (b->len + add + 1 > MAX_RESPONSE) {
                b->too_big = true;
                return 0;
        }
        if (b->len + add + 1 > b->cap) {
                size_t cap = KYB_MAX(b->cap * 2, b->len + add + 1);
                char *d = realloc(b->data, cap);

                if (!d)
                        return 0;
                b->data = d;
                b->cap = cap;
        }
        memcpy(b->data + b->len, p, add);
        b->len += add;
        b->data[b->len] = '\0';
        return add;
}

static int transport_error(CURLcode cc, const char *method, const char *path, kyb_error **err)
{
        int e = cc == CURLE_OPERATION_TIMEDOUT         ? ETIMEDOUT
                : cc == CURLE_COULDNT_CONNECT          ? ECONNREFUSED
                : cc == CURLE_PEER_FAILED_VERIFICATION ? EACCES
                                                       : EIO;

        return kyb_error_setf(err, e, "%s %s: %s", method, path, curl_easy_strerror(cc));
}

static int perform(kyb_kube_client *c, CURL *h, struct curl_slist *headers, const char *method,
                   const char *path, const char *payload, json_t **out, kyb_error **err)
{
        _cleanup_free_ char *url = NULL;
        buffer b = {0};
        long http = 0;
        CURLcode cc;
        int rc = 0;

        if (asprintf(&url, "%s%s", c->cfg.server, path) < 0)
                return kyb_error_set(err, ENOMEM, "url");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
        if (payload)
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
        if (b.too_big)
                rc = kyb_error_setf(err, EFBIG, "%s %s: response over %u MiB", method, path,
                                    MAX_RESPONSE >> 20);
        else if (cc != CURLE_OK)
                rc = transport_error(cc, method, path, err);
        else if (http < 200 || http > 299)
                rc = kube_status_error(http, method, path, b.data, b.len, err);
        else if (out && !(*out = json_loadb(b.data ? b.data : "", b.len, 0, NULL)))
                rc = kyb_error_setf(err, EBADMSG, "%s %s: response is not JSON", method, path);
        free(b.data);
        return rc;
}

int kyb_kube_request(kyb_kube_client *c, const char *method, const char *path,
                     const char *content_type, const json_t *body, json_t **out, kyb_error **err)
{
        _cleanup_free_ char *payload = NULL, *ct = NULL;
        struct curl_slist *headers = NULL, *n;
        CURL *h = NULL;
        int rc;

        if (out)
                *out = NULL;
        if (body && !(payload = json_dumps(body, JSON_COMPACT)))
                return kyb_error_set(err, ENOMEM, "%s %s: encoding body", method, path);
        if ((rc = kube_handle_get(c, &h, &headers, err)) < 0)
                return kyb_error_wrap(err, rc, "%s %s", method, path);
        if (asprintf(&ct, "Content-Type: %s", content_type ? content_type : "application/json") <
                0 ||
            !(n = curl_slist_append(headers, ct)) || !(headers = n) ||
            !(n = curl_slist_append(headers, "Accept: application/json")) || !(headers = n)) {
                kube_handle_put(c, h, headers);
                return kyb_error_set(err, ENOMEM, "%s %s", method, path);
        }
        rc = perform(c, h, headers, method, path, payload, out, err);
        kube_handle_put(c, h, headers);
        return rc;
}
