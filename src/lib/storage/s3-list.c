/* SPDX-License-Identifier: Apache-2.0 */
/* Listing (ListObjectsV2), HEAD and DELETE of S3 objects. */
#include <stdlib.h>
#include <string.h>

#include "storage/s3-internal.h"

int s3_head(const s3_client *c, CURL *h, const char *full_key, kyb_storage_object *o,
            kyb_error **err)
{
        s3_response resp = {0};
        int rc;

        rc = s3_perform(c, h, &(s3_request){.method = "HEAD", .key = full_key}, &resp, err);
        if (rc >= 0 && !resp.has_length)
                rc = kyb_error_setf(err, EBADMSG, "HEAD s3://%s/%s: no Content-Length", c->bucket,
                                    full_key);
        if (rc >= 0) {
                size_t n = strlen(resp.etag);
                const char *e = resp.etag;

                /* ETags arrive quoted; callers compare the bare value. */
                if (n >= 2 && e[0] == '"' && e[n - 1] == '"') {
                        e++;
                        n -= 2;
                }
                o->size = resp.content_length;
                o->mtime_ns = resp.mtime_ns;
                o->etag = strndup(e, n);
                if (!o->etag)
                        rc = kyb_error_set(err, ENOMEM, "HEAD");
        }
        s3_response_clear(&resp);
        return rc;
}

int s3_delete_full(const s3_client *c, CURL *h, const char *full_key, kyb_error **err)
{
        s3_response resp = {0};
        int rc;

        rc = s3_perform(c, h, &(s3_request){.method = "DELETE", .key = full_key}, &resp, err);
        s3_response_clear(&resp);
        return rc;
}

static void cleanup_curl(CURL **h)
{
        curl_easy_cleanup(*h);
}

#define _cleanup_curl_ _cleanup_(cleanup_curl)

static int with_full_key(kyb_storage *s, const char *key, char **full, CURL **h, kyb_error **err)
{
        int rc;

        rc = s3_full_key(s->impl, key, full, err);
        if (rc < 0)
                return rc;
        *h = curl_easy_init();
        if (!*h)
                return kyb_error_set(err, ENOMEM, "libcurl");
        return 0;
}

int s3_stat(kyb_storage *s, const char *key, kyb_storage_object *out, kyb_error **err)
{
        _cleanup_free_ char *full = NULL;
        _cleanup_curl_ CURL *h = NULL;
        int rc;

        rc = with_full_key(s, key, &full, &h, err);
        if (rc >= 0)
                rc = s3_head(s->impl, h, full, out, err);
        if (rc >= 0 && !(out->key = strdup(key)))
                rc = kyb_error_set(err, ENOMEM, "%s", key);
        if (rc < 0)
                kyb_storage_object_clear(out);
        return rc;
}

int s3_remove(kyb_storage *s, const char *key, kyb_error **err)
{
        _cleanup_free_ char *full = NULL;
        _cleanup_curl_ CURL *h = NULL;
        kyb_storage_object o = {0};
        int rc;

        rc = with_full_key(s, key, &full, &h, err);
        /* S3 deletes succeed for absent keys; the interface promises -ENOENT. */
        if (rc >= 0)
                rc = s3_head(s->impl, h, full, &o, err);
        kyb_storage_object_clear(&o);
        if (rc >= 0)
                rc = s3_delete_full(s->impl, h, full, err);
        return rc;
}

typedef struct page {
        kyb_storage_object *v;
        size_t n;
        size_t cap;
        char *token; /* NextContinuationToken; NULL on the last page */
} page;

static int parse_u64(const char *xml, size_t len, const char *tag, uint64_t *out)
{
        _cleanup_free_ char *s = NULL;
        char *end = NULL;

        if (s3_xml_text(xml, len, tag, &s) < 0)
                return -EBADMSG;
        *out = strtoull(s, &end, 10);
        return *s && !*end ? 0 : -EBADMSG;
}

/* One <Contents> element: keys outside our rules are not ours and are skipped. */
static int add_object(const s3_client *c, page *p, const char *xml, size_t len, kyb_error **err)
{
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ char *mtime = NULL;
        size_t skip = *c->prefix ? strlen(c->prefix) + 1 : 0;
        kyb_storage_object *o;
        int64_t ns = 0;
        uint64_t size = 0;

        if (s3_xml_text(xml, len, "Key", &key) < 0 || parse_u64(xml, len, "Size", &size) < 0)
                return kyb_error_setf(err, EBADMSG, "list: malformed <Contents>");
        if (strlen(key) <= skip || kyb_storage_check_key(key + skip, NULL) < 0)
                return 0;
        if (s3_xml_text(xml, len, "LastModified", &mtime) >= 0)
                (void)kyb_time_parse_rfc3339(mtime, &ns, NULL);
        o = storage_objects_push(&p->v, &p->n, &p->cap, err);
        if (!o)
                return -ENOMEM;
        o->key = strdup(key + skip);
        o->size = size;
        o->mtime_ns = ns;
        if (!o->key)
                return kyb_error_set(err, ENOMEM, "list");
        return 0;
}

static int parse_page(const s3_client *c, const s3_response *resp, page *p, kyb_error **err)
{
        const char *cur = resp->body, *end = resp->body + resp->body_len, *inner;
        _cleanup_free_ char *truncated = NULL;
        size_t len;
        int rc;

        free(p->token);
        p->token = NULL;
        if (!resp->body || !strstr(resp->body, "<ListBucketResult"))
                return kyb_error_setf(err, EBADMSG, "list: not a ListBucketResult");
        while ((cur = s3_xml_next(cur, end, "Contents", &inner, &len))) {
                rc = add_object(c, p, inner, len, err);
                if (rc < 0)
                        return rc;
        }
        if (s3_xml_text(resp->body, resp->body_len, "IsTruncated", &truncated) >= 0 &&
            !strcmp(truncated, "true") &&
            s3_xml_text(resp->body, resp->body_len, "NextContinuationToken", &p->token) < 0)
                return kyb_error_setf(err, EBADMSG, "list: truncated without a continuation token");
        return 0;
}

static int list_page(const s3_client *c, CURL *h, const char *prefix, page *p, kyb_error **err)
{
        _cleanup_free_ char *query = NULL;
        s3_param params[3] = {{"list-type", "2"}, {"prefix", prefix}};
        s3_response resp = {0};
        size_t n = 2;
        int rc;

        if (p->token)
                params[n++] = (s3_param){"continuation-token", p->token};
        rc = s3_query_build(params, n, &query, err);
        if (rc < 0)
                return rc;
        rc = s3_perform(
            c, h, &(s3_request){.method = "GET", .query = query, .max_response = S3_LIST_BODY},
            &resp, err);
        if (rc >= 0)
                rc = parse_page(c, &resp, p, err);
        s3_response_clear(&resp);
        return rc;
}

int s3_list(kyb_storage *s, const char *prefix, kyb_storage_object **out, size_t *n,
            kyb_error **err)
{
        const s3_client *c = s->impl;
        _cleanup_free_ char *full = NULL;
        _cleanup_curl_ CURL *h = curl_easy_init();
        page p = {0};
        int rc;

        if (!h)
                return kyb_error_set(err, ENOMEM, "libcurl");
        /* Everything below the location's prefix: "prefix/" + the caller's prefix. */
        rc = s3_full_key(c, prefix ? prefix : "", &full, err);
        do {
                if (rc >= 0)
                        rc = list_page(c, h, full, &p, err);
        } while (rc >= 0 && p.token);
        free(p.token);
        if (rc < 0) {
                kyb_storage_objects_free(p.v, p.n);
                return rc;
        }
        storage_objects_sort(p.v, p.n);
        *out = p.v;
        *n = p.n;
        return 0;
}
