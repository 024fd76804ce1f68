/* SPDX-License-Identifier: Apache-2.0 */
/* Streaming zstd in both directions, between libarchive and our sinks and sources. */
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "archive/archive-internal.h"

/* Decompression window bound (128 MiB, zstd's own default): a stream asking
 * for more is refused rather than allowed to claim memory. */
#define ZSTD_WINDOW_LOG_MAX 27

/* One worker per CPU, capped: every worker holds its own buffers (about
 * 3 MiB at 1 MiB jobs), and a few workers already compress faster than a
 * node uploads. */
static unsigned default_threads(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        return n > 0 ? (unsigned)KYB_MIN(n, KYB_ARCHIVE_DEFAULT_MAX_THREADS) : 1;
}

static int set_param(zstd_out *z, ZSTD_cParameter p, int value, const char *what, kyb_error **err)
{
        size_t r = ZSTD_CCtx_setParameter(z->cctx, p, value);

        if (ZSTD_isError(r))
                return kyb_error_setf(err, EINVAL, "zstd: %s %d: %s", what, value,
                                      ZSTD_getErrorName(r));
        return 0;
}

/*
 * zstd sizes a job from the window (8 MiB at level 3) and keeps several
 * jobs' input and output per worker: 57 MiB for two workers. 1 MiB jobs
 * need 10 MiB and cost under 1 % of ratio on binary data; zstd raises
 * values below its minimum (512 KiB) itself.
 */
static int set_job_size(zstd_out *z, size_t job_size, kyb_error **err)
{
        size_t size = job_size ? job_size : KYB_ARCHIVE_DEFAULT_JOB_SIZE;

        if (size > INT_MAX)
                return kyb_error_setf(err, EINVAL, "zstd: job size %zu too large", size);
        return set_param(z, ZSTD_c_jobSize, (int)size, "job size", err);
}

int zstd_out_init(zstd_out *z, const kyb_archive_write_opts *opts, kyb_archive_sink_fn sink,
                  void *sink_ctx, kyb_error **err)
{
        int level = opts ? opts->level : 0;
        unsigned threads = opts && opts->threads ? opts->threads : default_threads();
        int rc;

        *z = (zstd_out){.sink = sink, .sink_ctx = sink_ctx, .cap = ZSTD_CStreamOutSize()};
        if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
                return kyb_error_setf(err, EINVAL, "zstd: level %d outside %d..%d", level,
                                      ZSTD_minCLevel(), ZSTD_maxCLevel());
        z->cctx = ZSTD_createCCtx();
        z->buf = malloc(z->cap);
        if (!z->cctx || !z->buf)
                return kyb_error_set(err, ENOMEM, "zstd");
        if ((rc = set_param(z, ZSTD_c_compressionLevel, level, "level", err)) < 0 ||
            (rc = set_param(z, ZSTD_c_checksumFlag, 1, "checksum", err)) < 0)
                return rc;
        /* A libzstd built without threads refuses workers: compress in this thread then. */
        if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, (int)threads))) {
                (void)ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, 0);
                return 0;
        }
        return set_job_size(z, opts ? opts->job_size : 0, err);
}

int zstd_out_write(zstd_out *z, const void *data, size_t len, bool end, kyb_error **err)
{
        ZSTD_inBuffer ib = {data, len, 0};

        for (;;) {
                ZSTD_outBuffer ob = {z->buf, z->cap, 0};
                size_t r =
                    ZSTD_compressStream2(z->cctx, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_continue);
                int rc;

                if (ZSTD_isError(r))
                        return kyb_error_setf(err, EIO, "zstd: %s", ZSTD_getErrorName(r));
                if (ob.pos > 0) {
                        rc = z->sink(z->sink_ctx, z->buf, ob.pos, err);
                        if (rc < 0)
                                return rc;
                        z->out_bytes += ob.pos;
                }
                if (end ? r == 0 : ib.pos == ib.size)
                        return 0;
        }
}

void zstd_out_clear(zstd_out *z)
{
        ZSTD_freeCCtx(z->cctx);
        free(z->buf);
        *z = (zstd_out){0};
}

int zstd_in_init(zstd_in *z, kyb_archive_source_fn source, void *source_ctx, uint64_t limit,
                 kyb_error **err)
{
        *z = (zstd_in){.source = source,
                       .source_ctx = source_ctx,
                       .in_cap = ZSTD_DStreamInSize(),
                       .out_cap = ZSTD_DStreamOutSize(),
                       .limit = limit};
        z->dctx = ZSTD_createDCtx();
        z->in = malloc(z->in_cap);
        z->out = malloc(z->out_cap);
        if (!z->dctx || !z->in || !z->out)
                return kyb_error_set(err, ENOMEM, "zstd");
        if (ZSTD_isError(ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
                return kyb_error_setf(err, EIO, "zstd: cannot bound the window size");
        return 0;
}

static int refill(zstd_in *z, kyb_error **err)
{
        ssize_t n;

        if (z->ib.pos < z->ib.size || z->source_eof)
                return 0;
        n = z->source(z->source_ctx, z->in, z->in_cap, err);
        if (n < 0)
                return (int)n;
        if (n == 0)
                z->source_eof = true;
        z->ib = (ZSTD_inBuffer){z->in, (size_t)n, 0};
        return 0;
}

ssize_t zstd_in_read(zstd_in *z, const void **data, kyb_error **err)
{
        for (;;) {
                ZSTD_outBuffer ob = {z->out, z->out_cap, 0};
                size_t r, consumed_before;
                int rc;

                rc = refill(z, err);
                if (rc < 0)
                        return rc;
                consumed_before = z->ib.pos;
                /* Called with no input left too: the decoder may still hold output. */
                r = ZSTD_decompressStream(z->dctx, &ob, &z->ib);
                if (ZSTD_isError(r))
                        return kyb_error_setf(err, EBADMSG, "zstd: corrupt stream: %s",
                                              ZSTD_getErrorName(r));
                /* A call that moved nothing says nothing about the frame (after its
                 * end the decoder already asks for the next frame's header). */
                if (ob.pos > 0 || z->ib.pos != consumed_before)
                        z->frame_done = r == 0;
                if (ob.pos > 0) {
                        z->produced += ob.pos;
                        if (z->produced > z->limit)
                                return kyb_error_setf(
                                    err, EFBIG,
                                    "decompressed stream exceeds the limit of %llu bytes",
                                    (unsigned long long)z->limit);
                        *data = z->out;
                        return (ssize_t)ob.pos;
                }
                if (z->source_eof && z->ib.pos == z->ib.size) {
                        if (!z->frame_done)
                                return kyb_error_setf(err, EBADMSG, "zstd: truncated stream");
                        return 0;
                }
        }
}

void zstd_in_clear(zstd_in *z)
{
        ZSTD_freeDCtx(z->dctx);
        free(z->in);
        free(z->out);
        *z = (zstd_in){0};
}
