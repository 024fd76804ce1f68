/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming download: a GET driven through a curl multi handle from the
 * reader's own calls, so data flows at the consumer's pace. libcurl's
 * write callback fills a bounded buffer and pauses the transfer when it is
 * full; reading drains it and resumes. A transfer that breaks is retried
 * with backoff from the byte where it stopped (Range, If-Match on the first
 * answer's ETag, so a replaced object is noticed rather than spliced).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/s3-internal.h"

#define READ_BUFFER ((size_t)1 << 20)
#define POLL_MS     1000

typedef struct s3_reader {
        kyb_storage_reader base;
        const s3_client *c;
        char *key; /* full key */
        char *url;
        CURLM *multi;
        CURL *h;
        struct curl_slist *hdrs;
        bool running;
        bool paused;
        bool eof;
        char *buf;
        size_t start, end;
        uint64_t offset;       /* bytes of the object received (delivered or buffered) */
        uint64_t skip;         /* bytes this transfer repeats (a server that ignored Range) */
        uint64_t resumed_from; /* offset when this transfer started */
        bool checked;          /* this transfer's first body bytes were seen */
        long hdr_status;       /* status line of the answer whose headers arrive */
        uint64_t size;         /* from the first answer */
        bool size_known;
        char etag[S3_ETAG_MAX];
        s3_response resp; /* this transfer's status line, headers and error body */
        unsigned attempt;
        unsigned seed;
        char errbuf[CURL_ERROR_SIZE];
} s3_reader;

static bool ok_status(long s)
{
        return s == 200 || s == 206;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ctx)
{
        s3_reader *r = ctx;
        size_t len = size * n, drop;

        curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->resp.status);
        if (!ok_status(r->resp.status)) {
                /* An error document: keep its start for the message. */
                size_t keep =
                    KYB_MIN(len, S3_ERROR_BODY - KYB_MIN(r->resp.body_len, S3_ERROR_BODY));
                char *nb = keep ? realloc(r->resp.body, r->resp.body_len + keep + 1) : NULL;

                if (nb) {
                        memcpy(nb + r->resp.body_len, data, keep);
                        r->resp.body = nb;
                        r->resp.body_len += keep;
                        nb[r->resp.body_len] = '\0';
                }
                return len;
        }
        if (!r->checked) {
                r->checked = true;
                if (r->resp.status == 200 && r->resumed_from > 0)
                        r->skip = r->resumed_from; /* Range ignored: the whole object again */
        }
        drop = (size_t)KYB_MIN((uint64_t)len, r->skip);
        if (r->end + (len - drop) > READ_BUFFER && r->start > 0) {
                memmove(r->buf, r->buf + r->start, r->end - r->start);
                r->end -= r->start;
                r->start = 0;
        }
        if (r->end + (len - drop) > READ_BUFFER) {
                r->paused = true;
                return CURL_WRITEFUNC_PAUSE; /* delivered again after curl_easy_pause() */
        }
        r->skip -= drop;
        memcpy(r->buf + r->end, data + drop, len - drop);
        r->end += len - drop;
        r->offset += len - drop;
        return len;
}

static size_t header_cb(char *raw, size_t size, size_t n, void *ctx)
{
        s3_reader *r = ctx;
        size_t len = size * n;
        unsigned long long a, b, total;
        char line[512];

        /* libcurl's header lines are not NUL-terminated: parse a bounded copy. */
        snprintf(line, sizeof(line), "%.*s", (int)KYB_MIN(len, sizeof(line) - 1), raw);
        len = strlen(line);

        if (len > 5 && !strncasecmp(line, "HTTP/", 5)) {
                r->hdr_status = 0;
                sscanf(line, "%*s %ld", &r->hdr_status);
                return len;
        }
        /* Only a good answer describes the object; an error's headers describe the error. */
        if (!ok_status(r->hdr_status))
                return len;
        if (len > 14 && !strncasecmp(line, "Content-Range:", 14) &&
            sscanf(line + 14, " bytes %llu-%llu/%llu", &a, &b, &total) == 3 && !r->size_known) {
                r->size = total;
                r->size_known = true;
        }
        if (len > 5 && !strncasecmp(line, "ETag:", 5) && !r->etag[0]) {
                const char *v = line + 5;
                size_t vlen;

                while (*v == ' ' || *v == '\t')
                        v++;
                vlen = strcspn(v, "\r\n");
                if (vlen < sizeof(r->etag)) {
                        memcpy(r->etag, v, vlen);
                        r->etag[vlen] = '\0';
                }
        }
        if (len > 15 && !strncasecmp(line, "Content-Length:", 15) && !r->size_known &&
            r->offset == 0) {
                r->size = strtoull(line + 15, NULL, 10);
                r->size_known = true;
        }
        return len;
}

static int add(struct curl_slist **l, const char *line, kyb_error **err)
{
        struct curl_slist *n = curl_slist_append(*l, line);

        if (!n)
                return kyb_error_set(err, ENOMEM, "download");
        *l = n;
        return 0;
}

/* Resuming: the rest of the same object, or a 412 if it was replaced. */
static int resume_headers(s3_reader *r, kyb_error **err)
{
        char line[S3_ETAG_MAX + 64];
        int rc;

        snprintf(line, sizeof(line), "Range: bytes=%llu-", (unsigned long long)r->offset);
        rc = add(&r->hdrs, line, err);
        if (rc >= 0 && r->etag[0]) {
                snprintf(line, sizeof(line), "If-Match: %s", r->etag);
                rc = add(&r->hdrs, line, err);
        }
        return rc;
}

static int start_transfer(s3_reader *r, kyb_error **err)
{
        int rc;

        curl_slist_free_all(r->hdrs);
        r->hdrs = NULL;
        s3_response_clear(&r->resp);
        r->skip = 0;
        r->resumed_from = r->offset;
        r->checked = false;
        r->hdr_status = 0;
        curl_easy_reset(r->h);
        s3_transfer_setup(r->c, r->h, NULL);
        rc = s3_sign_setup(r->c, r->h, S3_EMPTY_SHA256, &r->hdrs, err);
        if (rc >= 0 && r->offset > 0)
                rc = resume_headers(r, err);
        if (rc < 0)
                return rc;
        curl_easy_setopt(r->h, CURLOPT_URL, r->url);
        curl_easy_setopt(r->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdrs);
        curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(r->h, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(r->h, CURLOPT_HEADERDATA, r);
        r->errbuf[0] = '\0';
        curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, r->errbuf);
        if (curl_multi_add_handle(r->multi, r->h) != CURLM_OK)
                return kyb_error_setf(err, EIO, "download: libcurl refused the transfer");
        r->running = true;
        r->attempt++;
        return 0;
}

static int final_error(s3_reader *r, CURLcode cc, kyb_error **err)
{
        _cleanup_free_ char *code = NULL;
        char tries[48] = "";
        bool retry;

        if (r->attempt > 1)
                snprintf(tries, sizeof(tries), " (gave up after %u attempts)", r->attempt);
        if (cc != CURLE_OK)
                return kyb_error_setf(err, s3_curl_errno(cc, &retry), "GET s3://%s/%s: %s%s",
                                      r->c->bucket, r->key,
                                      r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc), tries);
        (void)s3_xml_text(r->resp.body, r->resp.body_len, "Code", &code);
        return kyb_error_setf(err, s3_status_errno(r->resp.status, code),
                              "GET s3://%s/%s: HTTP %ld%s%s%s", r->c->bucket, r->key,
                              r->resp.status, code ? " " : "", code ? code : "", tries);
}

/* A transfer ended: done, retry from where it stopped, or fail. */
static int finished(s3_reader *r, CURLcode cc, kyb_error **err)
{
        _cleanup_free_ char *code = NULL;
        bool retry = false;

        curl_multi_remove_handle(r->multi, r->h);
        r->running = false;
        /* A transfer that made progress earns a fresh budget of attempts. */
        if (r->offset > r->resumed_from)
                r->attempt = 0;
        if (cc == CURLE_OK && ok_status(r->resp.status)) {
                if (!r->size_known || r->offset == r->size) {
                        r->eof = true;
                        return 0;
                }
                if (r->attempt >= r->c->max_attempts)
                        return kyb_error_setf(err, ECONNRESET,
                                              "GET s3://%s/%s: ended after %llu of %llu bytes",
                                              r->c->bucket, r->key, (unsigned long long)r->offset,
                                              (unsigned long long)r->size);
                retry = true; /* the connection closed early without curl noticing */
        } else if (cc != CURLE_OK) {
                (void)s3_curl_errno(cc, &retry);
        } else {
                (void)s3_xml_text(r->resp.body, r->resp.body_len, "Code", &code);
                retry = s3_status_retryable(r->resp.status, code);
        }
        if (!retry || r->attempt >= r->c->max_attempts)
                return final_error(r, cc, err);
        s3_backoff(r->c, r->attempt + 1, &r->seed, NULL);
        return 0;
}

static int pump(s3_reader *r, kyb_error **err)
{
        CURLMsg *msg;
        int still = 0, left = 0, rc;

        if (!r->running && (rc = start_transfer(r, err)) < 0)
                return rc;
        if (curl_multi_perform(r->multi, &still) != CURLM_OK)
                return kyb_error_setf(err, EIO, "download: libcurl failed");
        while ((msg = curl_multi_info_read(r->multi, &left)))
                if (msg->msg == CURLMSG_DONE)
                        return finished(r, msg->data.result, err);
        if (still && r->start == r->end && !r->paused)
                curl_multi_poll(r->multi, NULL, 0, POLL_MS, NULL);
        return 0;
}

static ssize_t s3r_read(kyb_storage_reader *base, void *buf, size_t len, kyb_error **err)
{
        s3_reader *r = (s3_reader *)base;
        size_t n;
        int rc;

        while (r->start == r->end && !r->eof) {
                rc = pump(r, err);
                if (rc < 0)
                        return rc;
        }
        n = KYB_MIN(len, r->end - r->start);
        memcpy(buf, r->buf + r->start, n);
        r->start += n;
        if (r->start == r->end) {
                r->start = r->end = 0;
                if (r->paused) {
                        r->paused = false;
                        curl_easy_pause(r->h, CURLPAUSE_CONT);
                }
        }
        return (ssize_t)n;
}

static void s3r_close(kyb_storage_reader *base)
{
        s3_reader *r = (s3_reader *)base;

        if (r->running)
                curl_multi_remove_handle(r->multi, r->h);
        curl_easy_cleanup(r->h);
        curl_multi_cleanup(r->multi);
        curl_slist_free_all(r->hdrs);
        s3_response_clear(&r->resp);
        free(r->buf);
        free(r->url);
        free(r->key);
        free(r);
}

static const reader_ops s3_reader_ops = {s3r_read, s3r_close};

int s3_reader_open(kyb_storage *s, const char *key, kyb_storage_reader **out, kyb_error **err)
{
        s3_reader *r = calloc(1, sizeof(*r));
        int rc;

        if (!r)
                return kyb_error_set(err, ENOMEM, "%s", key);
        r->base.ops = &s3_reader_ops;
        r->c = s->impl;
        r->seed = s3_seed();
        r->buf = malloc(READ_BUFFER);
        r->h = curl_easy_init();
        r->multi = curl_multi_init();
        rc = s3_full_key(r->c, key, &r->key, err);
        if (rc >= 0)
                rc = s3_url(r->c, r->key, NULL, &r->url, err);
        if (rc >= 0 && (!r->buf || !r->h || !r->multi))
                rc = kyb_error_set(err, ENOMEM, "%s", key);
        /* The first transfer starts now so that a missing object fails here (-ENOENT). */
        while (rc >= 0 && r->start == r->end && !r->eof)
                rc = pump(r, err);
        if (rc < 0) {
                s3r_close(&r->base);
                return rc;
        }
        *out = &r->base;
        return 0;
}
