/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the archive tests: memory sinks and sources, hand-made tar + zstd streams. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "archive/archive.h"
#include "store-test-util.h"

/* A growable byte buffer that is a sink (appends) and a source (reads from pos). */
typedef struct membuf {
        unsigned char *data;
        size_t len;
        size_t cap;
        size_t pos;
        size_t chunk;      /* a source hands out at most this much per call (0: 7919) */
        size_t fail_after; /* a sink fails once it has more than this (0: never) */
        int fail_rc;       /* ... with this negative errno */
} membuf;

void mb_free(membuf *b);
void mb_append(membuf *b, const void *data, size_t len);
int mb_sink(void *ctx, const void *buf, size_t len, kyb_error **err);
ssize_t mb_source(void *ctx, void *buf, size_t len, kyb_error **err);

/* One entry of a hand-made archive. */
typedef struct tentry {
        const char *path;
        mode_t type;      /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFIFO; 0: AE_IFREG */
        const void *data; /* file content */
        size_t len;
        const char *link; /* symlink target, or hardlink target with hardlink set */
        bool hardlink;
        uint64_t declared; /* header size when larger than len: zero padding follows */
} tentry;

/* A tar + zstd stream of the entries, followed by zero_tail zero bytes inside the frame. */
void tb_build(const tentry *v, size_t n, uint64_t zero_tail, membuf *out);
/* Same, with garbage appended after the tar (and zero_tail zeros) inside the frame. */
void tb_build_trailing(const tentry *v, size_t n, uint64_t zero_tail, const void *trail,
                       size_t trail_len, membuf *out);

/* A committed checkpoint in a fresh store below tmp: returns its directory. */
char *ut_make_checkpoint(const char *tmp, size_t pages_size);

/* Reads a checkpoint directory into entries (sorted files then manifest.json). */
typedef struct ckpt_files {
        tentry v[16];
        char *paths[16];
        char *data[16];
        size_t n;
} ckpt_files;

void ut_load_checkpoint(const char *dir, ckpt_files *out);
void ut_free_checkpoint(ckpt_files *f);
/* The index of path in f, or fails the test. */
size_t ut_find(const ckpt_files *f, const char *path);

/* Decompresses a whole stream (test helper; no limits). */
void ut_unzstd(const membuf *in, membuf *out);

/* Both trees hold the same regular files with the same bytes. */
void ut_assert_same_tree(const char *a, const char *b);
