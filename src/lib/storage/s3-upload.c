/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Uploads to S3 with bounded memory.
 *
 * The producer fills part buffers; a full buffer goes to a queue served by
 * `inflight` worker threads, each with its own libcurl handle (and so its
 * own kept-alive connection). At most inflight + 1 buffers exist, so the
 * producer blocks when every worker is busy: memory is
 * (inflight + 1) * part_size whatever the object's size.
 *
 * An object that fits into one part is sent with one PUT. Larger ones are
 * multipart uploads: created when the first part is full, every part sent
 * with the digests the client is configured for (its SHA-256 as the signed
 * payload, optionally Content-MD5; S3 checks both), completed at commit,
 * and aborted on any failure so no part lingers. Either way a HEAD
 * afterwards compares the stored size with what was sent; a mismatch
 * deletes the object. Nothing is visible under the key before S3 accepts
 * the complete object.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3-internal.h"

#define CONTENT_TYPE   "application/octet-stream"
#define XML_TYPE       "application/xml"
#define ABORT_ATTEMPTS 3

typedef struct part_job {
        unsigned number;
        char *buf;
        size_t len;
} part_job;

typedef struct s3_writer {
        kyb_storage_writer base;
        const s3_client *c;
        char *key; /* full key */
        char *rel; /* as the caller named it */
        CURL *h;   /* this thread's requests: create, complete, abort, PUT, HEAD */
        char *upload_id;
        char *cur; /* the part being filled */
        size_t cur_len;
        uint64_t total;
        unsigned submitted;
        atomic_bool cancel;

        /* Shared with the workers, under mu. */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        part_job *queue; /* ring of inflight + 1 */
        size_t q_head, q_len, q_cap;
        char **free_bufs;
        size_t n_free, n_bufs;
        char **etags; /* by part number - 1 */
        size_t etags_cap;
        unsigned busy; /* parts queued or being sent */
        bool stop;
        int failure_rc;
        kyb_error *failure;
        uint64_t stored;

        /* Serialises progress calls so the reported total never goes back. */
        pthread_mutex_t progress_mu;
        uint64_t reported;

        pthread_t *threads;
        unsigned n_threads;
} s3_writer;

/* ---- the workers ------------------------------------------------------ */

static int upload_part(s3_writer *w, CURL *h, const part_job *job, char **etag, kyb_error **err)
{
        _cleanup_free_ char *query = NULL;
        s3_body_digests d;
        s3_response resp = {0};
        char num[16];
        int rc;

        snprintf(num, sizeof(num), "%u", job->number);
        if ((rc = s3_body_digests_compute(w->c, job->buf, job->len, &d, err)) < 0 ||
            (rc = s3_query_build((s3_param[]){{"partNumber", num}, {"uploadId", w->upload_id}}, 2,
                                 &query, err)) < 0)
                return rc;
        rc = s3_perform(w->c, h,
                        &(s3_request){.method = "PUT",
                                      .key = w->key,
                                      .query = query,
                                      .body = job->buf,
                                      .body_len = job->len,
                                      .payload_sha256 = d.sha256,
                                      .content_md5 = d.md5[0] ? d.md5 : NULL,
                                      .content_type = CONTENT_TYPE,
                                      .cancel = &w->cancel},
                        &resp, err);
        if (rc >= 0 && !resp.etag[0])
                rc =
                    kyb_error_setf(err, EBADMSG, "PUT part %u: no ETag in the answer", job->number);
        if (rc >= 0 && !(*etag = strdup(resp.etag)))
                rc = kyb_error_set(err, ENOMEM, "part %u", job->number);
        s3_response_clear(&resp);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "part %u", job->number);
        return 0;
}

/* Records a part's outcome and hands its buffer back; called with mu held. */
static void part_done(s3_writer *w, const part_job *job, int rc, char *etag, kyb_error **e)
{
        if (rc < 0 && w->failure_rc == 0) {
                w->failure_rc = rc;
                w->failure = TAKE_PTR(*e);
                /* The other parts are pointless now: stop their transfers. */
                atomic_store(&w->cancel, true);
        }
        if (rc >= 0 && etag) {
                w->etags[job->number - 1] = etag;
                w->stored += job->len;
        }
        w->free_bufs[w->n_free++] = job->buf;
        w->busy--;
        pthread_cond_broadcast(&w->cv);
}

static bool next_job(s3_writer *w, part_job *job)
{
        while (!w->stop && w->q_len == 0)
                pthread_cond_wait(&w->cv, &w->mu);
        if (w->q_len == 0)
                return false;
        *job = w->queue[w->q_head];
        w->q_head = (w->q_head + 1) % w->q_cap;
        w->q_len--;
        return true;
}

/* Workers finish parts in any order; a smaller total read before a larger one
 * must not be reported after it. */
static void report_progress(s3_writer *w, uint64_t stored)
{
        pthread_mutex_lock(&w->progress_mu);
        if (stored > w->reported) {
                w->reported = stored;
                w->c->progress(w->c->progress_ctx, stored);
        }
        pthread_mutex_unlock(&w->progress_mu);
}

static void *worker(void *arg)
{
        s3_writer *w = arg;
        CURL *h = curl_easy_init();
        part_job job;

        pthread_mutex_lock(&w->mu);
        while (next_job(w, &job)) {
                _cleanup_error_ kyb_error *e = NULL;
                /* After a failure or an abort the queued parts are only handed back. */
                bool skip = w->failure_rc < 0 || atomic_load(&w->cancel);
                char *etag = NULL;
                uint64_t stored;
                int rc = 0;

                pthread_mutex_unlock(&w->mu);
                if (!skip)
                        rc = h ? upload_part(w, h, &job, &etag, &e)
                               : kyb_error_set(&e, ENOMEM, "part %u", job.number);
                pthread_mutex_lock(&w->mu);
                part_done(w, &job, rc, etag, &e);
                stored = w->stored;
                if (!skip && rc >= 0 && w->c->progress) {
                        pthread_mutex_unlock(&w->mu);
                        report_progress(w, stored);
                        pthread_mutex_lock(&w->mu);
                }
        }
        pthread_mutex_unlock(&w->mu);
        curl_easy_cleanup(h);
        return NULL;
}

static int start_workers(s3_writer *w, kyb_error **err)
{
        w->threads = calloc(w->c->inflight, sizeof(*w->threads));
        if (!w->threads)
                return kyb_error_set(err, ENOMEM, "upload workers");
        for (unsigned i = 0; i < w->c->inflight; i++) {
                int e = pthread_create(&w->threads[i], NULL, worker, w);

                if (e)
                        return kyb_error_set(err, e, "starting upload workers");
                w->n_threads++;
        }
        return 0;
}

static void stop_workers(s3_writer *w)
{
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        for (unsigned i = 0; i < w->n_threads; i++)
                pthread_join(w->threads[i], NULL);
        w->n_threads = 0;
}

/* ---- the producer ----------------------------------------------------- */

/* The workers' failure, copied for the caller (the writer keeps its own). */
static int failed(s3_writer *w, kyb_error **err)
{
        return kyb_error_setf(err, w->failure ? w->failure->errnum : EIO, "%s",
                              kyb_error_message(w->failure));
}

/* A buffer for the next part; waits while all of them are in flight. */
static int get_buffer(s3_writer *w, kyb_error **err)
{
        bool alloc = false;
        int rc = 0;

        pthread_mutex_lock(&w->mu);
        while (w->failure_rc == 0 && w->n_free == 0 && w->n_bufs > w->c->inflight)
                pthread_cond_wait(&w->cv, &w->mu);
        if (w->failure_rc < 0)
                rc = failed(w, err);
        else if (w->n_free > 0)
                w->cur = w->free_bufs[--w->n_free];
        else
                alloc = true;
        pthread_mutex_unlock(&w->mu);
        if (rc < 0 || !alloc)
                return rc;
        w->cur = malloc(w->c->part_size);
        if (!w->cur)
                return kyb_error_set(err, ENOMEM, "part buffer of %zu bytes", w->c->part_size);
        pthread_mutex_lock(&w->mu);
        w->n_bufs++;
        pthread_mutex_unlock(&w->mu);
        return 0;
}

static int create_upload(s3_writer *w, kyb_error **err)
{
        s3_response resp = {0};
        int rc;

        rc = s3_perform(w->c, w->h,
                        &(s3_request){.method = "POST",
                                      .key = w->key,
                                      .query = "uploads=",
                                      .content_type = CONTENT_TYPE,
                                      .cancel = &w->cancel},
                        &resp, err);
        if (rc >= 0 && s3_xml_text(resp.body, resp.body_len, "UploadId", &w->upload_id) < 0)
                rc = kyb_error_setf(err, EBADMSG, "create multipart upload: no UploadId");
        s3_response_clear(&resp);
        if (rc >= 0)
                rc = start_workers(w, err);
        return rc;
}

static int grow_etags(s3_writer *w, kyb_error **err)
{
        size_t cap = w->etags_cap ? 2 * w->etags_cap : 64;
        char **nv;

        if (w->submitted < w->etags_cap)
                return 0;
        nv = reallocarray(w->etags, cap, sizeof(*nv));
        if (!nv)
                return kyb_error_set(err, ENOMEM, "part list");
        memset(nv + w->etags_cap, 0, (cap - w->etags_cap) * sizeof(*nv));
        w->etags = nv;
        w->etags_cap = cap;
        return 0;
}

/* Queues the current buffer as the next part. */
static int submit(s3_writer *w, kyb_error **err)
{
        int rc = 0;

        if (w->submitted >= KYB_STORAGE_MAX_PARTS)
                return kyb_error_setf(err, EFBIG,
                                      "more than %d parts of %zu bytes: use a larger part size",
                                      KYB_STORAGE_MAX_PARTS, w->c->part_size);
        pthread_mutex_lock(&w->mu);
        if (w->failure_rc < 0)
                rc = failed(w, err);
        if (rc >= 0)
                rc = grow_etags(w, err);
        if (rc >= 0) {
                w->queue[(w->q_head + w->q_len) % w->q_cap] =
                    (part_job){++w->submitted, TAKE_PTR(w->cur), w->cur_len};
                w->q_len++;
                w->busy++;
                w->cur_len = 0;
                pthread_cond_broadcast(&w->cv);
        }
        pthread_mutex_unlock(&w->mu);
        return rc;
}

static int flush_part(s3_writer *w, kyb_error **err)
{
        int rc;

        if (!w->upload_id) {
                rc = create_upload(w, err);
                if (rc < 0)
                        return rc;
        }
        return submit(w, err);
}

static int s3w_write(kyb_storage_writer *base, const void *buf, size_t len, kyb_error **err)
{
        s3_writer *w = (s3_writer *)base;
        const char *p = buf;
        int rc = 0;

        /* A part failed for good: stop the producer now, not when this part is full. */
        if (atomic_load(&w->cancel)) {
                pthread_mutex_lock(&w->mu);
                rc = failed(w, err);
                pthread_mutex_unlock(&w->mu);
                return rc;
        }
        while (len > 0) {
                size_t n;

                if (!w->cur && (rc = get_buffer(w, err)) < 0)
                        return rc;
                n = KYB_MIN(len, w->c->part_size - w->cur_len);
                memcpy(w->cur + w->cur_len, p, n);
                w->cur_len += n;
                w->total += n;
                p += n;
                len -= n;
                if (w->cur_len == w->c->part_size && (rc = flush_part(w, err)) < 0)
                        return rc;
        }
        return 0;
}

/* ---- commit and abort ------------------------------------------------- */

static int put_single(s3_writer *w, kyb_error **err)
{
        s3_body_digests d;
        s3_response resp = {0};
        int rc;

        rc = s3_body_digests_compute(w->c, w->cur ? w->cur : "", w->cur_len, &d, err);
        if (rc < 0)
                return rc;
        rc = s3_perform(w->c, w->h,
                        &(s3_request){.method = "PUT",
                                      .key = w->key,
                                      .body = w->cur,
                                      .body_len = w->cur_len,
                                      .payload_sha256 = d.sha256,
                                      .content_md5 = d.md5[0] ? d.md5 : NULL,
                                      .content_type = CONTENT_TYPE},
                        &resp, err);
        s3_response_clear(&resp);
        return rc;
}

static int complete_body(s3_writer *w, char **out, kyb_error **err)
{
        size_t cap = 128 + (size_t)w->submitted * (64 + S3_ETAG_MAX), pos;
        char *xml = malloc(cap);

        if (!xml)
                return kyb_error_set(err, ENOMEM, "complete multipart upload");
        pos = (size_t)snprintf(xml, cap,
                               "<CompleteMultipartUpload "
                               "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        for (unsigned i = 0; i < w->submitted; i++) {
                /* ETags are quoted hex; no character here needs escaping. */
                if (strpbrk(w->etags[i], "<>&")) {
                        free(xml);
                        return kyb_error_setf(err, EBADMSG, "part %u: odd ETag", i + 1);
                }
                pos += (size_t)snprintf(xml + pos, cap - pos,
                                        "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                                        i + 1, w->etags[i]);
        }
        snprintf(xml + pos, cap - pos, "</CompleteMultipartUpload>");
        *out = xml;
        return 0;
}

/* S3 may answer 200 and report the failure in the body: that is a failure too. */
static int check_complete_body(const s3_response *resp, kyb_error **err)
{
        _cleanup_free_ char *code = NULL;

        if (!resp->body || !strstr(resp->body, "<Error>"))
                return 0;
        (void)s3_xml_text(resp->body, resp->body_len, "Code", &code);
        return kyb_error_setf(err, EIO, "complete multipart upload: %s", code ? code : "error");
}

static int complete_upload(s3_writer *w, kyb_error **err)
{
        _cleanup_free_ char *xml = NULL;
        _cleanup_free_ char *query = NULL;
        s3_response resp = {0};
        int rc;

        if ((rc = complete_body(w, &xml, err)) < 0 ||
            (rc = s3_query_build((s3_param[]){{"uploadId", w->upload_id}}, 1, &query, err)) < 0)
                return rc;
        rc = s3_perform(w->c, w->h,
                        &(s3_request){.method = "POST",
                                      .key = w->key,
                                      .query = query,
                                      .body = xml,
                                      .body_len = strlen(xml),
                                      .content_type = XML_TYPE},
                        &resp, err);
        if (rc >= 0)
                rc = check_complete_body(&resp, err);
        /* A retried complete whose first try succeeded finds no upload: check the object. */
        if (rc == -ENOENT && resp.attempts > 1) {
                if (err)
                        kyb_error_freep(err);
                rc = 0;
        }
        s3_response_clear(&resp);
        return rc;
}

/* Best effort: nothing to do about a failure but tell the caller. */
static void abort_upload(s3_writer *w, int rc, kyb_error **err)
{
        _cleanup_error_ kyb_error *e = NULL;
        _cleanup_free_ char *query = NULL;
        _cleanup_free_ char *orig = NULL;
        s3_response resp = {0};
        int arc;

        if (!w->upload_id)
                return;
        arc = s3_query_build((s3_param[]){{"uploadId", w->upload_id}}, 1, &query, &e);
        if (arc >= 0)
                arc = s3_perform(w->c, w->h,
                                 &(s3_request){.method = "DELETE",
                                               .key = w->key,
                                               .query = query,
                                               .max_attempts = ABORT_ATTEMPTS},
                                 &resp, &e);
        s3_response_clear(&resp);
        if (arc >= 0 || !err || !*err)
                return;
        orig = strdup(kyb_error_message(*err));
        kyb_error_setf(err, -rc, "%s; the multipart upload was not aborted either: %s",
                       orig ? orig : "", kyb_error_message(e));
}

static int check_stored(s3_writer *w, kyb_storage_object *info, kyb_error **err)
{
        kyb_storage_object o = {0};
        int rc;

        rc = s3_head(w->c, w->h, w->key, &o, err);
        if (rc >= 0 && o.size != w->total) {
                rc = kyb_error_setf(err, EBADMSG, "stored object has %llu bytes, %llu were sent",
                                    (unsigned long long)o.size, (unsigned long long)w->total);
                (void)s3_delete_full(w->c, w->h, w->key, NULL);
        }
        if (rc >= 0 && info) {
                o.key = strdup(w->rel);
                if (!o.key)
                        rc = kyb_error_set(err, ENOMEM, "%s", w->rel);
                *info = o;
                o = (kyb_storage_object){0};
        }
        kyb_storage_object_clear(&o);
        return rc;
}

static void writer_free(s3_writer *w)
{
        atomic_store(&w->cancel, true);
        stop_workers(w);
        for (size_t i = 0; i < w->n_free; i++)
                free(w->free_bufs[i]);
        for (size_t i = 0; i < w->etags_cap; i++)
                free(w->etags[i]);
        free(w->free_bufs);
        free(w->etags);
        free(w->queue);
        free(w->threads);
        free(w->cur);
        free(w->upload_id);
        free(w->key);
        free(w->rel);
        kyb_error_free(w->failure);
        curl_easy_cleanup(w->h);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        pthread_mutex_destroy(&w->progress_mu);
        free(w);
}

static void s3w_abort(kyb_storage_writer *base, kyb_error **err)
{
        s3_writer *w = (s3_writer *)base;

        atomic_store(&w->cancel, true);
        stop_workers(w);
        abort_upload(w, err && *err ? -(*err)->errnum : -ECANCELED, err);
        writer_free(w);
}

static int finish_multipart(s3_writer *w, kyb_error **err)
{
        int rc = 0;

        if (w->cur_len > 0)
                rc = submit(w, err);
        pthread_mutex_lock(&w->mu);
        while (w->busy > 0)
                pthread_cond_wait(&w->cv, &w->mu);
        if (rc >= 0 && w->failure_rc < 0)
                rc = failed(w, err);
        pthread_mutex_unlock(&w->mu);
        stop_workers(w);
        if (rc >= 0)
                rc = complete_upload(w, err);
        return rc;
}

static int s3w_commit(kyb_storage_writer *base, kyb_storage_object *info, kyb_error **err)
{
        s3_writer *w = (s3_writer *)base;
        int rc;

        rc = w->upload_id ? finish_multipart(w, err) : put_single(w, err);
        if (rc >= 0)
                rc = check_stored(w, info, err);
        else
                abort_upload(w, rc, err);
        if (rc >= 0 && w->c->progress && !w->upload_id)
                w->c->progress(w->c->progress_ctx, w->total);
        writer_free(w);
        return rc;
}

static const writer_ops s3_writer_ops = {s3w_write, s3w_commit, s3w_abort};

int s3_writer_open(kyb_storage *s, const char *key, kyb_storage_writer **out, kyb_error **err)
{
        const s3_client *c = s->impl;
        s3_writer *w = calloc(1, sizeof(*w));
        int rc;

        if (!w)
                return kyb_error_set(err, ENOMEM, "%s", key);
        w->base.ops = &s3_writer_ops;
        w->c = c;
        pthread_mutex_init(&w->mu, NULL);
        pthread_mutex_init(&w->progress_mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        w->q_cap = c->inflight + 1;
        w->queue = calloc(w->q_cap, sizeof(*w->queue));
        w->free_bufs = calloc(c->inflight + 1, sizeof(*w->free_bufs));
        w->rel = strdup(key);
        w->h = curl_easy_init();
        rc = s3_full_key(c, key, &w->key, err);
        if (rc >= 0 && (!w->queue || !w->free_bufs || !w->rel || !w->h))
                rc = kyb_error_set(err, ENOMEM, "%s", key);
        if (rc < 0) {
                writer_free(w);
                return rc;
        }
        *out = &w->base;
        return 0;
}
