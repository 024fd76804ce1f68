/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoint artifacts as one tar + zstd stream (docs/storage.md).
 *
 * The writer turns a complete checkpoint directory (manifest.json and the
 * files it lists) into a tar stream in the layout of Kubernetes' container
 * checkpoint archives (checkpoint/, config.dump, spec.dump, ...), sorted by
 * path, with manifest.json as the last entry, compresses it with zstd and
 * pushes it to a sink. Nothing is buffered beyond a few MiB and nothing is
 * written to disk, so an artifact of any size streams straight to storage.
 *
 * The extractor reads such a stream from a source, treating it as hostile:
 * only regular files and directories below the destination, sizes and entry
 * counts bounded while decompressing, and every file checked against the
 * extracted manifest.json before success. On failure nothing is left.
 *
 * Both are thread-safe: every call owns its state.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

/* Receives the next piece of the compressed stream. 0 or a negative errno. */
typedef int (*kyb_archive_sink_fn)(void *ctx, const void *buf, size_t len, kyb_error **err);

/* Fills buf with up to len bytes of the compressed stream: the number of
 * bytes, 0 at the end of the stream, or a negative errno. */
typedef ssize_t (*kyb_archive_source_fn)(void *ctx, void *buf, size_t len, kyb_error **err);

/* Defaults that bound the compressor's memory (docs/storage.md, "Memory"). */
#define KYB_ARCHIVE_DEFAULT_MAX_THREADS 4
#define KYB_ARCHIVE_DEFAULT_JOB_SIZE    ((size_t)1 << 20)

typedef struct kyb_archive_write_opts {
        int level;        /* zstd level; 0: zstd's default (3); negative: fast levels */
        unsigned threads; /* zstd worker threads; 0: one per online CPU, at most 4 */
        size_t job_size;  /* bytes per zstd worker job (ZSTD_c_jobSize); 0: 1 MiB */
} kyb_archive_write_opts;

typedef struct kyb_archive_stats {
        uint64_t files;            /* regular files archived, manifest.json included */
        uint64_t file_bytes;       /* their summed size */
        uint64_t tar_bytes;        /* uncompressed tar stream */
        uint64_t compressed_bytes; /* what the sink received */
} kyb_archive_stats;

/*
 * Archives checkpoint_dir. Reads manifest.json (strictly, as the store
 * does), then archives every file it lists, opened without following
 * symbolic links, hashing each while it is read: a file whose size or
 * SHA-256 differs from the manifest fails with -EBADMSG. Files the manifest
 * does not list are not archived. opts and stats may be NULL. The sink's
 * errors are returned as they are; on failure the sink has received a
 * partial stream that the caller must discard.
 */
int kyb_archive_write(const char *checkpoint_dir, kyb_archive_sink_fn sink, void *sink_ctx,
                      const kyb_archive_write_opts *opts, kyb_archive_stats *stats,
                      kyb_error **err);

/* Defaults for a zero limit. */
#define KYB_ARCHIVE_DEFAULT_MAX_FILE_BYTES  ((uint64_t)256 << 30) /* 256 GiB */
#define KYB_ARCHIVE_DEFAULT_MAX_TOTAL_BYTES ((uint64_t)1 << 40)   /* 1 TiB */
#define KYB_ARCHIVE_DEFAULT_MAX_ENTRIES     100000

typedef struct kyb_archive_limits {
        uint64_t max_file_bytes;  /* one file; 0: the default */
        uint64_t max_total_bytes; /* all files together; 0: the default */
        uint64_t max_entries;     /* tar entries, directories included; 0: the default */
} kyb_archive_limits;

/*
 * Extracts the stream read from source into dest_dir, which must not exist
 * (its parent must): it is created 0755. Refuses with -EBADMSG, naming the
 * entry: absolute paths, ".." and other names the manifest rules refuse,
 * symbolic links, hard links, devices, FIFOs, sockets, sparse files,
 * duplicate entries, a damaged or truncated zstd stream, data after the tar
 * end, and any mismatch with the extracted manifest.json (a missing or extra
 * file, a size or SHA-256 mismatch). Exceeding a limit is -EFBIG; the
 * decompressed stream is bounded while it is inflated, so a zstd bomb stops
 * at the total limit. limits may be NULL (defaults). On any failure dest_dir
 * is removed again.
 */
int kyb_archive_extract(kyb_archive_source_fn source, void *source_ctx, const char *dest_dir,
                        const kyb_archive_limits *limits, kyb_error **err);
