/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small S3 look-alike for unit tests: an HTTP/1.1 server on 127.0.0.1
 * (a thread per connection, keep-alive, Expect: 100-continue) that keeps
 * objects and multipart uploads in memory, records every request, and
 * fails on command. Path-style addressing: /<bucket>/<key>.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fs3_request {
        char method[16];
        char *path;    /* raw, percent-encoded, as sent */
        char *query;   /* raw, "" when none */
        char *headers; /* "Name: value\r\n" lines as sent */
        unsigned char *body;
        size_t body_len;
} fs3_request;

typedef struct fs3_object {
        char *key; /* decoded, without the bucket */
        unsigned char *data;
        size_t len;
} fs3_object;

typedef struct fs3_upload {
        char id[32];
        char *key;
        fs3_object parts[64]; /* by part number - 1 */
        bool aborted;
} fs3_upload;

typedef struct fake_s3 {
        int port;
        pthread_mutex_t mu;
        /* everything below is guarded by mu */
        fs3_request *log;
        size_t n_log;
        fs3_object *objects;
        size_t n_objects;
        fs3_upload *uploads;
        size_t n_uploads;

        /* Failure knobs. */
        const char *fail_match; /* requests whose "METHOD ?query" contains this ... */
        unsigned fail_count;    /* ... fail this many times (UINT32_MAX: always) ... */
        int fail_status;        /* ... with this status (0: drop the connection) */
        const char *fail_code;  /* S3 error code in the body */
        int all_status;         /* every request answers this (0: off) */
        size_t drop_get_after;  /* the first plain GET sends this many body bytes, then closes */
        bool complete_error;    /* CompleteMultipartUpload answers 200 with an <Error> */
        long head_size_delta;   /* HEAD reports a wrong size */

        /* internals */
        int listen_fd;
        pthread_t thread;
        pthread_t conns[256];
        int conn_fds[256];
        size_t n_conns;
        bool stopping;
} fake_s3;

void fs3_start(fake_s3 *f);
void fs3_stop(fake_s3 *f);

/* The value of a header of a recorded request, or NULL (copied into buf). */
const char *fs3_header(const fs3_request *r, const char *name, char *buf, size_t cap);
/* Number of recorded requests whose "METHOD ?query" contains match. */
size_t fs3_count(fake_s3 *f, const char *match);
const fs3_object *fs3_find(fake_s3 *f, const char *key);
void fs3_put(fake_s3 *f, const char *key, const void *data, size_t len);
