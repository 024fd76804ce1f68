/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Durable storage of checkpoint artifacts (docs/storage.md): one interface,
 * two backends chosen by the URI of a location.
 *
 *   file:///path             a directory on a shared volume; objects appear
 *                            under their key only complete (temporary name,
 *                            fsync, atomic rename)
 *   s3://bucket[/prefix]     S3 or a compatible server, signed with SigV4 by
 *                            libcurl; large objects as parallel multipart
 *                            uploads with bounded memory, retried with
 *                            backoff, aborted on failure, checked after
 *                            upload
 *
 * S3 options may also be given in the URI's query, where they win over
 * kyb_storage_opts: `?endpoint=http://host:9000&region=eu-west-1&path-style=true`
 * (also `payload=signed|unsigned`, `content-md5=true|false`).
 *
 * Objects are named by keys relative to the location: printable ASCII
 * without '\', '/'-separated components that are not empty and do not start
 * with '.', at most 1024 bytes. Credentials (S3) come from
 * opts.credentials_dir (files access-key-id, secret-access-key and
 * optionally session-token: a mounted Kubernetes secret) or else from
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. They never
 * appear in an error message.
 *
 * A kyb_storage is immutable once open and may be used from several threads
 * at once; a writer or reader belongs to one thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "archive/archive.h"
#include "base/error.h"

#define KYB_STORAGE_KEY_MAX 1024
/* An upload holds (max_parts_in_flight + 1) * part_size bytes of parts: 24 MiB by default. */
#define KYB_STORAGE_MIN_PART_SIZE    ((size_t)5 << 20) /* S3: all parts but the last */
#define KYB_STORAGE_DEFAULT_PART     ((size_t)8 << 20)
#define KYB_STORAGE_MAX_PARTS        10000 /* S3's limit per multipart upload */
#define KYB_STORAGE_DEFAULT_INFLIGHT 2

typedef enum kyb_storage_scheme {
        KYB_STORAGE_FILE = 1,
        KYB_STORAGE_S3 = 2,
} kyb_storage_scheme;

typedef enum kyb_s3_addressing {
        KYB_S3_ADDRESSING_AUTO = 0, /* virtual-hosted on AWS for DNS-safe buckets, else path */
        KYB_S3_ADDRESSING_PATH = 1, /* http://endpoint/bucket/key */
        KYB_S3_ADDRESSING_VIRTUAL = 2,
} kyb_s3_addressing;

/*
 * What x-amz-content-sha256 says about the body of a part or object upload.
 * Signed: the SHA-256 of the bytes, which S3 verifies (a mismatch is
 * XAmzContentSHA256Mismatch); it costs one SHA-256 pass over the compressed
 * stream. Unsigned: "UNSIGNED-PAYLOAD", the headers stay signed and the body
 * relies on TLS in transit. Auto: signed over http://, unsigned over
 * https:// (what the AWS SDKs do). Either way the stored size is checked
 * after the upload and the archive's checksums when it is extracted.
 */
typedef enum kyb_s3_payload {
        KYB_S3_PAYLOAD_AUTO = 0,
        KYB_S3_PAYLOAD_SIGNED = 1,
        KYB_S3_PAYLOAD_UNSIGNED = 2,
} kyb_s3_payload;

/* A parsed location URI. */
typedef struct kyb_storage_uri {
        kyb_storage_scheme scheme;
        char *bucket;                 /* S3 */
        char *path;                   /* file: absolute directory; S3: prefix without outer '/' */
        char *endpoint;               /* ?endpoint=, NULL when absent */
        char *region;                 /* ?region=, NULL when absent */
        kyb_s3_addressing addressing; /* ?path-style=true|false; AUTO when absent */
        kyb_s3_payload payload;       /* ?payload=signed|unsigned; AUTO when absent */
        bool content_md5_set;         /* ?content-md5=true|false was given ... */
        bool content_md5;             /* ... with this value */
} kyb_storage_uri;

/* -EINVAL naming the problem; never echoes more of the URI than needed. */
int kyb_storage_uri_parse(const char *uri, kyb_storage_uri *out, kyb_error **err);
void kyb_storage_uri_clear(kyb_storage_uri *u);

/*
 * Splits the URI of one object into its location and key at the last '/'
 * of the path ("s3://b/p/x.tar.zst?region=r" -> "s3://b/p?region=r" and
 * "x.tar.zst"). Both are allocated.
 */
int kyb_storage_uri_split(const char *object_uri, char **location, char **key, kyb_error **err);

/* Checks a key (see the top of this file): -EINVAL otherwise. */
int kyb_storage_check_key(const char *key, kyb_error **err);

/* Called after every stored part with the bytes stored so far; from any thread. */
typedef void (*kyb_storage_progress_fn)(void *ctx, uint64_t bytes_stored);

/* Zero values mean the defaults given. */
/* S3 credentials held in memory (e.g. read from a Kubernetes Secret). */
typedef struct kyb_storage_credentials {
        const char *access_key_id;
        const char *secret_access_key;
        const char *session_token; /* NULL: none */
} kyb_storage_credentials;

typedef struct kyb_storage_opts {
        const char *endpoint;         /* S3 base URL; NULL: https://s3.<region>.amazonaws.com */
        const char *region;           /* NULL: us-east-1 */
        kyb_s3_addressing addressing; /* AUTO */
        const char *credentials_dir;  /* NULL: the AWS_* environment variables */
        const kyb_storage_credentials *credentials; /* wins over both when set */
        size_t part_size;                           /* 8 MiB; at least 5 MiB */
        unsigned max_parts_in_flight;               /* 2: parts uploaded in parallel */
        kyb_s3_payload payload;      /* AUTO: signed over http://, unsigned over https:// */
        bool content_md5;            /* false: no Content-MD5 (see docs/storage.md) */
        unsigned max_attempts;       /* 5: tries of one request (5xx, 429, timeouts, resets) */
        unsigned retry_base_ms;      /* 200: first backoff; doubles per retry, full jitter */
        unsigned retry_max_ms;       /* 10000: backoff ceiling */
        unsigned connect_timeout_ms; /* 10000 */
        unsigned stall_timeout_s;    /* 60: a transfer moving no byte for this long fails */
        kyb_storage_progress_fn progress;
        void *progress_ctx;
} kyb_storage_opts;

typedef struct kyb_storage kyb_storage;
typedef struct kyb_storage_writer kyb_storage_writer;
typedef struct kyb_storage_reader kyb_storage_reader;

/* One stored object. */
typedef struct kyb_storage_object {
        char *key; /* relative to the location */
        uint64_t size;
        int64_t mtime_ns; /* 0 when unknown */
        char *etag;       /* S3's ETag without quotes; NULL for files */
} kyb_storage_object;

void kyb_storage_object_clear(kyb_storage_object *o);
void kyb_storage_objects_free(kyb_storage_object *v, size_t n);

/*
 * Opens a location. Checks the URI, the options and (S3) loads the
 * credentials; contacts nothing. opts may be NULL.
 */
int kyb_storage_open(const char *uri, const kyb_storage_opts *opts, kyb_storage **out,
                     kyb_error **err);
void kyb_storage_close(kyb_storage *s);

static inline void kyb_storage_closep(kyb_storage **s)
{
        kyb_storage_close(*s);
        *s = NULL;
}

#define _cleanup_storage_ _cleanup_(kyb_storage_closep)

kyb_storage_scheme kyb_storage_get_scheme(const kyb_storage *s);

/*
 * Starts writing an object. Nothing is visible under key until commit
 * succeeds; a failed or aborted writer leaves nothing there (and leaves an
 * existing object of that key as it was).
 */
int kyb_storage_writer_open(kyb_storage *s, const char *key, kyb_storage_writer **out,
                            kyb_error **err);
/* Appends. May block while the parts in flight are all busy (backpressure). */
int kyb_storage_writer_write(kyb_storage_writer *w, const void *buf, size_t len, kyb_error **err);
/* Makes the object visible and checks its stored size; consumes w. info may be NULL. */
int kyb_storage_writer_commit(kyb_storage_writer *w, kyb_storage_object *info, kyb_error **err);
/* Discards everything written (aborts a multipart upload). NULL is a no-op. */
void kyb_storage_writer_abort(kyb_storage_writer *w);
/*
 * The same after a failure described by *err: when the clean-up itself
 * fails (the S3 multipart upload could not be aborted, so its parts stay
 * until a lifecycle rule removes them), *err says so too.
 */
void kyb_storage_writer_abort_after(kyb_storage_writer *w, kyb_error **err);
/* kyb_storage_writer_write as a kyb_archive_sink_fn (ctx is the writer). */
int kyb_storage_writer_sink(void *w, const void *buf, size_t len, kyb_error **err);

/* Opens an object for reading: -ENOENT when absent. */
int kyb_storage_reader_open(kyb_storage *s, const char *key, kyb_storage_reader **out,
                            kyb_error **err);
/* Up to len bytes; 0 at the end. A transfer that breaks is resumed where it stopped. */
ssize_t kyb_storage_reader_read(kyb_storage_reader *r, void *buf, size_t len, kyb_error **err);
void kyb_storage_reader_close(kyb_storage_reader *r);
/* kyb_storage_reader_read as a kyb_archive_source_fn (ctx is the reader). */
ssize_t kyb_storage_reader_source(void *r, void *buf, size_t len, kyb_error **err);

/* Objects below the location whose key starts with prefix (NULL: all), sorted by key. */
int kyb_storage_list(kyb_storage *s, const char *prefix, kyb_storage_object **out, size_t *n,
                     kyb_error **err);
/* -ENOENT when absent. */
int kyb_storage_stat(kyb_storage *s, const char *key, kyb_storage_object *out, kyb_error **err);
/* -ENOENT when absent. */
int kyb_storage_delete(kyb_storage *s, const char *key, kyb_error **err);

/*
 * The streaming pipeline: archives checkpoint_dir (kyb_archive_write)
 * straight into a writer for key and commits it, with memory bounded by the
 * writer's parts whatever the artifact's size. On failure nothing is stored
 * under key. aopts, stats and info may be NULL.
 */
int kyb_storage_upload_checkpoint(kyb_storage *s, const char *key, const char *checkpoint_dir,
                                  const kyb_archive_write_opts *aopts, kyb_archive_stats *stats,
                                  kyb_storage_object *info, kyb_error **err);

/* Streams key into kyb_archive_extract(dest_dir); verified, or nothing is left. */
int kyb_storage_download_checkpoint(kyb_storage *s, const char *key, const char *dest_dir,
                                    const kyb_archive_limits *limits, kyb_error **err);
