/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the archive's source files; not a public interface. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <zstd.h>

#include "archive/archive.h"
#include "store/manifest.h"

/* Files are read and hashed this much at a time. */
#define ARCHIVE_CHUNK ((size_t)1 << 20)

/* zstd compression pushing each compressed piece into a sink. */
typedef struct zstd_out {
        ZSTD_CCtx *cctx;
        void *buf;
        size_t cap;
        kyb_archive_sink_fn sink;
        void *sink_ctx;
        uint64_t out_bytes;
} zstd_out;

int zstd_out_init(zstd_out *z, const kyb_archive_write_opts *opts, kyb_archive_sink_fn sink,
                  void *sink_ctx, kyb_error **err);
/* Compresses len bytes; end finishes the frame (then len may be 0). */
int zstd_out_write(zstd_out *z, const void *data, size_t len, bool end, kyb_error **err);
void zstd_out_clear(zstd_out *z);

/* zstd decompression pulling from a source, with a bound on its output. */
typedef struct zstd_in {
        ZSTD_DCtx *dctx;
        kyb_archive_source_fn source;
        void *source_ctx;
        void *in;
        size_t in_cap;
        ZSTD_inBuffer ib;
        void *out;
        size_t out_cap;
        bool source_eof;
        bool frame_done; /* the last frame seen so far is complete */
        uint64_t produced;
        uint64_t limit; /* more decompressed bytes than this fail with -EFBIG */
} zstd_in;

int zstd_in_init(zstd_in *z, kyb_archive_source_fn source, void *source_ctx, uint64_t limit,
                 kyb_error **err);
/*
 * Points *data at the next decompressed piece and returns its length; 0
 * once the source has ended on a complete frame. A damaged stream is
 * -EBADMSG, one that ends inside a frame -EBADMSG ("truncated").
 */
ssize_t zstd_in_read(zstd_in *z, const void **data, kyb_error **err);
void zstd_in_clear(zstd_in *z);

/* What extraction wrote: one regular file and the digest of its bytes. */
typedef struct extracted_file {
        char *path;
        uint64_t size;
        char sha256[KYB_SHA256_HEX_LEN + 1];
} extracted_file;

typedef struct extracted {
        extracted_file *v;
        size_t n;
        size_t cap;
} extracted;

int extracted_add(extracted *x, const char *path, uint64_t size,
                  const char sha256[KYB_SHA256_HEX_LEN + 1], kyb_error **err);
void extracted_clear(extracted *x);

/*
 * Reads dirfd/manifest.json and compares its file list with x: the first
 * missing or extra file, size or SHA-256 mismatch is -EBADMSG naming it.
 * Sorts x.
 */
int archive_verify_extracted(int dirfd, extracted *x, kyb_error **err);
