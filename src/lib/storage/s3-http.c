/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One S3 request through libcurl: signing, transfer options, response
 * capture, error classification and retries with backoff.
 *
 * Nothing here logs: libcurl's verbose mode would print the Authorization
 * header, so it is never enabled. Messages name the method and the object
 * (s3://bucket/key), never a credential.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "store/digest.h"
#include "storage/s3-internal.h"

#define UPLOAD_BUFFER (512 << 10) /* libcurl's send buffer: fewer, larger writes */
#define BACKOFF_SLICE 20          /* ms between checks of the cancel flag while waiting */
#define MAX_SHIFT     20

void s3_response_clear(s3_response *r)
{
        free(r->body);
        *r = (s3_response){0};
}

int s3_digests(const void *data, size_t len, char sha256[KYB_SHA256_HEX_LEN + 1],
               char md5_b64[S3_MD5_B64_LEN + 1], kyb_error **err)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        int rc = 0;

        if (sha256)
                rc = kyb_sha256_buf(data, len, sha256, err);
        if (rc < 0 || !md5_b64)
                return rc;
        if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1 || n != 16)
                return kyb_error_setf(err, EIO, "md5: digest failed");
        EVP_EncodeBlock((unsigned char *)md5_b64, md, (int)n);
        return 0;
}

int s3_body_digests_compute(const s3_client *c, const void *data, size_t len, s3_body_digests *d,
                            kyb_error **err)
{
        *d = (s3_body_digests){0};
        if (!c->sign_payload)
                memcpy(d->sha256, S3_UNSIGNED_PAYLOAD, sizeof(S3_UNSIGNED_PAYLOAD));
        if (!c->sign_payload && !c->content_md5)
                return 0;
        return s3_digests(data, len, c->sign_payload ? d->sha256 : NULL,
                          c->content_md5 ? d->md5 : NULL, err);
}

static int add_header(struct curl_slist **h, kyb_error **err, const char *fmt, ...) _printf_(3, 4);

static int add_header(struct curl_slist **h, kyb_error **err, const char *fmt, ...)
{
        _cleanup_free_ char *line = NULL;
        struct curl_slist *n;
        va_list ap;
        int len;

        va_start(ap, fmt);
        len = vasprintf(&line, fmt, ap);
        va_end(ap);
        if (len < 0) {
                line = NULL;
                return kyb_error_set(err, ENOMEM, "request headers");
        }
        n = curl_slist_append(*h, line);
        explicit_bzero(line, (size_t)len); /* it may hold the session token */
        if (!n)
                return kyb_error_set(err, ENOMEM, "request headers");
        *h = n;
        return 0;
}

int s3_sign_setup(const s3_client *c, CURL *h, const char *payload_sha256,
                  struct curl_slist **headers, kyb_error **err)
{
        int rc;

        /* libcurl signs every header in the list, so all of these are covered. */
        rc = add_header(headers, err, "x-amz-content-sha256: %s", payload_sha256);
        if (rc >= 0 && c->creds.session_token)
                rc = add_header(headers, err, "x-amz-security-token: %s", c->creds.session_token);
        if (rc >= 0 && c->fixed_amz_date)
                rc = add_header(headers, err, "X-Amz-Date: %s", c->fixed_amz_date);
        if (rc < 0)
                return rc;
        if (curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4) != CURLE_OK ||
            curl_easy_setopt(h, CURLOPT_USERNAME, c->creds.access_key) != CURLE_OK ||
            curl_easy_setopt(h, CURLOPT_PASSWORD, c->creds.secret_key) != CURLE_OK)
                return kyb_error_setf(err, ENOTSUP, "libcurl without AWS SigV4 support");
        return 0;
}

static int xferinfo_cb(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
        const atomic_bool *cancel = ctx;

        return cancel && atomic_load(cancel) ? 1 : 0;
}

void s3_transfer_setup(const s3_client *c, CURL *h, const atomic_bool *cancel)
{
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
        /* No overall timeout (parts are large); a transfer that stalls fails instead. */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)c->stall_timeout_s);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)UPLOAD_BUFFER);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)cancel);
        if (c->connect_to)
                curl_easy_setopt(h, CURLOPT_CONNECT_TO, c->connect_to);
}

typedef struct capture {
        s3_response *resp;
        size_t max;
} capture;

static size_t body_cb(char *data, size_t size, size_t n, void *ctx)
{
        capture *cap = ctx;
        s3_response *r = cap->resp;
        size_t len = size * n, keep = len;
        char *nb;

        if (r->body_len + keep > cap->max) {
                keep = cap->max - r->body_len;
                r->body_truncated = true;
        }
        if (keep == 0)
                return len;
        nb = realloc(r->body, r->body_len + keep + 1);
        if (!nb)
                return 0; /* libcurl fails the transfer with CURLE_WRITE_ERROR */
        memcpy(nb + r->body_len, data, keep);
        r->body = nb;
        r->body_len += keep;
        r->body[r->body_len] = '\0';
        return len;
}

/* "Name: value\r\n" -> value without surrounding blanks, when the name matches. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
        size_t n = strlen(name);
        const char *v, *end = line + len;

        if (len <= n || strncasecmp(line, name, n) || line[n] != ':')
                return NULL;
        for (v = line + n + 1; v < end && (*v == ' ' || *v == '\t'); v++)
                ;
        while (end > v && strchr(" \t\r\n", end[-1]))
                end--;
        *vlen = (size_t)(end - v);
        return v;
}

static size_t header_cb(char *line, size_t size, size_t n, void *ctx)
{
        s3_response *r = ctx;
        size_t len = size * n, vlen = 0;
        char tmp[128];
        const char *v;

        if (len >= 5 && !strncasecmp(line, "HTTP/", 5)) {
                /* A new response (after 100 Continue, say): forget the previous one's. */
                r->etag[0] = '\0';
                r->has_length = false;
                r->mtime_ns = 0;
        } else if ((v = header_value(line, len, "ETag", &vlen)) && vlen < sizeof(r->etag)) {
                memcpy(r->etag, v, vlen);
                r->etag[vlen] = '\0';
        } else if ((v = header_value(line, len, "Content-Length", &vlen)) && vlen < sizeof(tmp)) {
                memcpy(tmp, v, vlen);
                tmp[vlen] = '\0';
                r->content_length = strtoull(tmp, NULL, 10);
                r->has_length = true;
        } else if ((v = header_value(line, len, "Last-Modified", &vlen)) && vlen < sizeof(tmp)) {
                time_t t;

                memcpy(tmp, v, vlen);
                tmp[vlen] = '\0';
                t = curl_getdate(tmp, NULL);
                r->mtime_ns = t > 0 ? (int64_t)t * 1000000000 : 0;
        }
        return len;
}

static int set_method(CURL *h, const s3_request *req)
{
        if (!strcmp(req->method, "HEAD"))
                return curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        if (!strcmp(req->method, "GET"))
                return curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (!strcmp(req->method, "PUT") || !strcmp(req->method, "POST")) {
                /* From memory: libcurl sends it again as it is on every attempt. */
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        }
        if (strcmp(req->method, "POST"))
                return curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        return CURLE_OK;
}

typedef struct try_state {
        const char *url;
        const char *sha;
        CURLcode cc;
        char errbuf[CURL_ERROR_SIZE];
} try_state;

static int build_headers(const s3_client *c, CURL *h, const s3_request *req, const char *sha,
                         struct curl_slist **hdrs, kyb_error **err)
{
        int rc;

        rc = s3_sign_setup(c, h, sha, hdrs, err);
        if (rc >= 0 && req->content_type)
                rc = add_header(hdrs, err, "Content-Type: %s", req->content_type);
        if (rc >= 0 && req->content_md5)
                rc = add_header(hdrs, err, "Content-MD5: %s", req->content_md5);
        if (rc >= 0 && req->range)
                rc = add_header(hdrs, err, "Range: %s", req->range);
        return rc;
}

static int perform_once(const s3_client *c, CURL *h, const s3_request *req, try_state *a,
                        s3_response *resp, kyb_error **err)
{
        struct curl_slist *hdrs = NULL;
        capture cap = {resp, req->max_response ? req->max_response : S3_ERROR_BODY};
        int rc;

        curl_easy_reset(h);
        s3_transfer_setup(c, h, req->cancel);
        rc = build_headers(c, h, req, a->sha, &hdrs, err);
        if (rc >= 0 && (set_method(h, req) != CURLE_OK ||
                        curl_easy_setopt(h, CURLOPT_URL, a->url) != CURLE_OK))
                rc = kyb_error_setf(err, EINVAL, "%s: libcurl refused the request", req->method);
        if (rc < 0) {
                curl_slist_free_all(hdrs);
                return rc;
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &cap);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
        a->errbuf[0] = '\0';
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->errbuf);
        a->cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        /* The list and the error buffer die here: no dangling pointers in h. */
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        curl_slist_free_all(hdrs);
        return 0;
}

int s3_curl_errno(CURLcode code, bool *retry)
{
        *retry = false;
        switch (code) {
        case CURLE_COULDNT_CONNECT:
                *retry = true;
                return ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                *retry = true;
                return EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                *retry = true;
                return ETIMEDOUT;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
                *retry = true;
                return ECONNRESET;
        case CURLE_OUT_OF_MEMORY:
                return ENOMEM;
        case CURLE_ABORTED_BY_CALLBACK:
                return ECANCELED;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_BAD_FUNCTION_ARGUMENT:
                return EINVAL;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
                return EPROTO;
        default:
                return EIO;
        }
}

static bool code_is(const char *code, const char *const *list, size_t n)
{
        for (size_t i = 0; code && i < n; i++)
                if (!strcmp(code, list[i]))
                        return true;
        return false;
}

int s3_status_errno(long status, const char *code)
{
        static const char *const bad_key[] = {"InvalidAccessKeyId", "SignatureDoesNotMatch",
                                              "ExpiredToken", "InvalidToken",
                                              "TokenRefreshRequired"};
        static const char *const bad_data[] = {"BadDigest", "InvalidDigest",
                                               "XAmzContentSHA256Mismatch"};

        if (status == 401 || (status == 403 && code_is(code, bad_key, KYB_ARRAY_SIZE(bad_key))))
                return EKEYREJECTED;
        if (status == 400 && code_is(code, bad_data, KYB_ARRAY_SIZE(bad_data)))
                return EBADMSG;
        switch (status) {
        case 400:
                return EINVAL;
        case 403:
                return EACCES;
        case 404:
                return ENOENT;
        case 405:
        case 501:
                return ENOTSUP;
        case 409:
        case 412: /* If-Match failed: the object changed under a download */
                return EBUSY;
        case 416:
                return ERANGE;
        default:
                return EIO;
        }
}

bool s3_status_retryable(long status, const char *code)
{
        if (status >= 500 || status == 429 || status == 408)
                return true;
        return status == 400 && code && !strcmp(code, "RequestTimeout");
}

unsigned s3_seed(void)
{
        unsigned seed = 0;

        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
                seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)pthread_self();
        return seed;
}

bool s3_backoff(const s3_client *c, unsigned attempt, unsigned *seed, const atomic_bool *cancel)
{
        unsigned shift = attempt >= 2 ? KYB_MIN(attempt - 2, MAX_SHIFT) : 0;
        uint64_t cap = KYB_MIN((uint64_t)c->retry_base_ms << shift, (uint64_t)c->retry_max_ms);
        /* Equal jitter: at least half the backoff, so retries of many clients spread out. */
        uint64_t ms = cap / 2 + (uint64_t)rand_r(seed) % (cap / 2 + 1);

        while (ms > 0) {
                uint64_t slice = KYB_MIN(ms, (uint64_t)BACKOFF_SLICE);
                struct timespec ts = {0, (long)slice * 1000000};

                if (cancel && atomic_load(cancel))
                        return false;
                nanosleep(&ts, NULL);
                ms -= slice;
        }
        return !(cancel && atomic_load(cancel));
}

static int target(const s3_client *c, const s3_request *req, char **out)
{
        int n = req->key ? asprintf(out, "s3://%s/%s", c->bucket, req->key)
                         : asprintf(out, "s3://%s", c->bucket);

        if (n < 0)
                *out = NULL;
        return n < 0 ? -ENOMEM : 0;
}

/* The final error of a request, with S3's code and message when it sent them. */
static int fail(const s3_client *c, const s3_request *req, const try_state *a,
                const s3_response *resp, kyb_error **err)
{
        _cleanup_free_ char *what = NULL;
        _cleanup_free_ char *code = NULL;
        _cleanup_free_ char *msg = NULL;
        char tries[48] = "";
        bool retry;

        if (target(c, req, &what) < 0)
                return kyb_error_set(err, ENOMEM, "%s", req->method);
        if (resp->attempts > 1)
                snprintf(tries, sizeof(tries), " (gave up after %u attempts)", resp->attempts);
        if (a->cc != CURLE_OK)
                return kyb_error_setf(err, s3_curl_errno(a->cc, &retry), "%s %s: %s%s", req->method,
                                      what, a->errbuf[0] ? a->errbuf : curl_easy_strerror(a->cc),
                                      tries);
        (void)s3_xml_text(resp->body, resp->body_len, "Code", &code);
        (void)s3_xml_text(resp->body, resp->body_len, "Message", &msg);
        return kyb_error_setf(err, s3_status_errno(resp->status, code), "%s %s: HTTP %ld%s%s%s%s%s",
                              req->method, what, resp->status, code ? " " : "", code ? code : "",
                              msg ? ": " : "", msg ? msg : "", tries);
}

static bool should_retry(const try_state *a, const s3_response *resp)
{
        _cleanup_free_ char *code = NULL;
        bool retry = false;

        if (a->cc != CURLE_OK) {
                (void)s3_curl_errno(a->cc, &retry);
                return retry;
        }
        (void)s3_xml_text(resp->body, resp->body_len, "Code", &code);
        return s3_status_retryable(resp->status, code);
}

static bool cancelled(const s3_request *req)
{
        return req->cancel && atomic_load(req->cancel);
}

static int run(const s3_client *c, CURL *h, const s3_request *req, try_state *a, s3_response *resp,
               kyb_error **err)
{
        unsigned max = req->max_attempts ? req->max_attempts : c->max_attempts;
        unsigned seed = s3_seed();
        int rc;

        for (unsigned n = 1;; n++) {
                s3_response_clear(resp);
                resp->attempts = n;
                rc = perform_once(c, h, req, a, resp, err);
                if (rc < 0)
                        return rc;
                if (a->cc == CURLE_OK && resp->status >= 200 && resp->status < 300)
                        return 0;
                if (cancelled(req))
                        return kyb_error_setf(err, ECANCELED, "%s: cancelled", req->method);
                if (!should_retry(a, resp) || n >= max)
                        return fail(c, req, a, resp, err);
                if (!s3_backoff(c, n + 1, &seed, req->cancel))
                        return kyb_error_setf(err, ECANCELED, "%s: cancelled", req->method);
        }
}

int s3_perform(const s3_client *c, CURL *h, const s3_request *req, s3_response *resp,
               kyb_error **err)
{
        _cleanup_free_ char *url = NULL;
        char sha[KYB_SHA256_HEX_LEN + 1];
        try_state a = {0};
        int rc;

        *resp = (s3_response){0};
        rc = s3_url(c, req->key, req->query, &url, err);
        if (rc < 0)
                return rc;
        a.url = url;
        a.sha = req->payload_sha256;
        if (!a.sha) {
                rc = kyb_sha256_buf(req->body ? req->body : "", req->body_len, sha, err);
                if (rc < 0)
                        return rc;
                a.sha = sha;
        }
        rc = run(c, h, req, &a, resp, err);
        if (rc >= 0 && resp->body_truncated)
                return kyb_error_setf(err, EBADMSG, "%s: response larger than expected",
                                      req->method);
        return rc;
}
