/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The s3:// backend's internals, shared by its sources and its unit tests.
 *
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4). libcurl 7.88 signs
 * the path and query exactly as they appear in the URL and signs every
 * header we add, so this code hands it canonical forms: keys percent-encoded
 * per S3 (unreserved characters and '/' kept), query parameters encoded and
 * sorted, and x-amz-content-sha256 always set (libcurl only hashes
 * CURLOPT_POSTFIELDS itself, and S3 requires the header).
 */
#pragma once

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/storage-internal.h"
#include "store/manifest.h"

#define S3_EMPTY_SHA256     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define S3_ETAG_MAX         256
#define S3_MD5_B64_LEN      24
#define S3_ERROR_BODY       ((size_t)64 << 10) /* kept of an error response */
#define S3_LIST_BODY        ((size_t)16 << 20) /* one page of a listing */
#define S3_SECRET_MAX       ((size_t)16 << 10) /* one credentials file */

typedef struct s3_credentials {
        char *access_key;
        char *secret_key;
        char *session_token; /* NULL without one */
} s3_credentials;

/* From dir (files access-key-id, secret-access-key, session-token) or the environment. */
int s3_credentials_load(const char *dir, s3_credentials *c, kyb_error **err);
/* Copies (and checks) credentials the caller holds in memory. */
int s3_credentials_copy(const kyb_storage_credentials *in, s3_credentials *c, kyb_error **err);
/* Wipes and frees. */
void s3_credentials_clear(s3_credentials *c);

typedef struct s3_client {
        char *bucket;
        char *prefix;   /* "" or "a/b": object keys are prefix + "/" + key */
        char *base_url; /* everything before "/<key>": ".../bucket" or "https://bucket.host" */
        bool virtual_hosted;
        char *sigv4; /* "aws:amz:<region>:s3" for CURLOPT_AWS_SIGV4 */
        char *shown; /* "s3://bucket/prefix" for messages */
        s3_credentials creds;
        size_t part_size;
        unsigned inflight;
        bool sign_payload; /* parts and objects carry their SHA-256, else UNSIGNED-PAYLOAD */
        bool content_md5;  /* parts and objects carry Content-MD5 too */
        unsigned max_attempts;
        unsigned retry_base_ms;
        unsigned retry_max_ms;
        unsigned connect_timeout_ms;
        unsigned stall_timeout_s;
        kyb_storage_progress_fn progress;
        void *progress_ctx;
        char *fixed_amz_date;          /* tests only: X-Amz-Date to sign with, not the clock */
        struct curl_slist *connect_to; /* tests only: CURLOPT_CONNECT_TO */
} s3_client;

/* Percent-encodes for a URL path (S3 rules): A-Z a-z 0-9 - . _ ~ and, if keep_slash, '/'. */
int s3_uri_encode(const char *s, bool keep_slash, char **out, kyb_error **err);

typedef struct s3_param {
        const char *key;
        const char *value; /* "" for a bare parameter: S3 signs "uploads=" */
} s3_param;

/* The canonical query string: encoded, sorted by key then value, joined by '&'. */
int s3_query_build(const s3_param *params, size_t n, char **out, kyb_error **err);

/* prefix + "/" + key (or key alone): the key as S3 knows it. */
int s3_full_key(const s3_client *c, const char *key, char **out, kyb_error **err);

/* The URL of an object (key: full key, NULL: the bucket) with a canonical query (may be NULL). */
int s3_url(const s3_client *c, const char *key, const char *query, char **out, kyb_error **err);

/*
 * The signing part of a request: CURLOPT_AWS_SIGV4 with the client's
 * provider/region/service, the key pair, and headers a signature covers
 * (x-amz-content-sha256, the session token, a fixed date in tests)
 * appended to *headers.
 */
int s3_sign_setup(const s3_client *c, CURL *h, const char *payload_sha256,
                  struct curl_slist **headers, kyb_error **err);

/* Common transfer options: timeouts, protocols, no signals, cancellation. */
void s3_transfer_setup(const s3_client *c, CURL *h, const atomic_bool *cancel);

typedef struct s3_request {
        const char *method; /* GET PUT POST DELETE HEAD */
        const char *key;    /* full key; NULL: the bucket */
        const char *query;  /* canonical query or NULL */
        const void *body;   /* PUT/POST body or NULL */
        size_t body_len;
        const char *payload_sha256; /* hex of body; NULL: computed here */
        const char *content_md5;    /* base64, or NULL */
        const char *content_type;   /* NULL: none */
        const char *range;          /* "bytes=0-9" or NULL */
        size_t max_response;        /* response bytes kept; 0: S3_ERROR_BODY */
        unsigned max_attempts;      /* 0: the client's */
        const atomic_bool *cancel;  /* set: give up (in-flight transfers abort) */
} s3_request;

typedef struct s3_response {
        long status;
        char *body; /* NUL-terminated */
        size_t body_len;
        bool body_truncated;
        char etag[S3_ETAG_MAX]; /* quotes included, as sent */
        uint64_t content_length;
        bool has_length;
        int64_t mtime_ns;
        unsigned attempts;
} s3_response;

void s3_response_clear(s3_response *r);

/*
 * Runs a request on h (reset first, so its connections are reused), retrying
 * transport failures, 408, 429, 5xx and S3's RequestTimeout with
 * exponential backoff and jitter. 0 on a 2xx answer; otherwise an error
 * naming the method, the object, the HTTP status and S3's error code
 * (-ENOENT 404, -EACCES 403, -EKEYREJECTED bad credentials, -EBADMSG bad
 * digest, -EIO 5xx, ...), with the number of attempts when it retried.
 * resp is filled in both cases.
 */
int s3_perform(const s3_client *c, CURL *h, const s3_request *req, s3_response *resp,
               kyb_error **err);

/* The errno for a final HTTP status and S3 error code. */
int s3_status_errno(long status, const char *code);
/* The errno for a libcurl failure; *retry says whether trying again may help. */
int s3_curl_errno(CURLcode code, bool *retry);
/* Whether an HTTP answer is worth another attempt. */
bool s3_status_retryable(long status, const char *code);

/*
 * Sleeps before attempt `attempt` (2, 3, ...): a random time between half
 * and all of min(retry_max_ms, retry_base_ms * 2^(attempt-2)). Returns false
 * when cancel was set meanwhile.
 */
bool s3_backoff(const s3_client *c, unsigned attempt, unsigned *seed, const atomic_bool *cancel);
unsigned s3_seed(void);

/* First <tag>text</tag> in [xml, xml+len), unescaped: 0, -ENOENT, -ENOMEM. */
int s3_xml_text(const char *xml, size_t len, const char *tag, char **out);
/* The next <tag>...</tag> element at or after p: its inner text span, or NULL. */
const char *s3_xml_next(const char *p, const char *end, const char *tag, const char **inner,
                        size_t *inner_len);

/* Hex SHA-256 and base64 MD5 of a buffer; either output may be NULL (not computed). */
int s3_digests(const void *data, size_t len, char sha256[KYB_SHA256_HEX_LEN + 1],
               char md5_b64[S3_MD5_B64_LEN + 1], kyb_error **err);

/* What a PUT of some bytes carries, as the client is configured. */
typedef struct s3_body_digests {
        char sha256[KYB_SHA256_HEX_LEN + 1]; /* hex, or UNSIGNED-PAYLOAD */
        char md5[S3_MD5_B64_LEN + 1];        /* base64; "" without Content-MD5 */
} s3_body_digests;

/* Computes only the digests the client sends: none with an unsigned payload and no MD5. */
int s3_body_digests_compute(const s3_client *c, const void *data, size_t len, s3_body_digests *d,
                            kyb_error **err);

/* The backend's operations (s3-upload.c, s3-download.c, s3-list.c). */
int s3_writer_open(kyb_storage *s, const char *key, kyb_storage_writer **out, kyb_error **err);
int s3_reader_open(kyb_storage *s, const char *key, kyb_storage_reader **out, kyb_error **err);
int s3_list(kyb_storage *s, const char *prefix, kyb_storage_object **out, size_t *n,
            kyb_error **err);
int s3_stat(kyb_storage *s, const char *key, kyb_storage_object *out, kyb_error **err);
int s3_remove(kyb_storage *s, const char *key, kyb_error **err);
/* HEAD of a full key into o (o->key stays NULL). */
int s3_head(const s3_client *c, CURL *h, const char *full_key, kyb_storage_object *o,
            kyb_error **err);

/* DELETE of a full key (no existence check). */
int s3_delete_full(const s3_client *c, CURL *h, const char *full_key, kyb_error **err);

/* Tests only: sign with this X-Amz-Date ("20150830T123600Z") instead of the clock. */
int s3_client_set_fixed_date(kyb_storage *s, const char *amz_date, kyb_error **err);
/* Tests only: connect to host:port instead ("HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT"). */
int s3_client_set_connect_to(kyb_storage *s, const char *spec, kyb_error **err);
