/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to src/lib/store: hashing a checkpoint's images while CRIU is
 * still writing them.
 *
 * CRIU writes every image file front to back and never rewrites what it
 * wrote, so a thread can follow each file as it grows: hash the new bytes and
 * start their writeback (sync_file_range), on the other core, while CRIU
 * dumps. At commit the remaining tail is hashed and the fsync finds little
 * left to write, so publishing costs a fraction of re-reading everything.
 * A file that shrank or was replaced (another inode) is hashed again from
 * scratch at commit; and every restore verifies every file from scratch, so
 * a violated assumption can never produce a checkpoint that restores wrong
 * data, only one that is refused.
 */
#pragma once

#include <stdint.h>

#include "base/error.h"
#include "store/manifest.h"

typedef struct store_prehash store_prehash;

/* Starts following the files of the directory images_fd (borrowed). */
int store_prehash_start(int images_fd, store_prehash **out, kyb_error **err);

/* Stops the thread (the files are complete now); results stay available. */
void store_prehash_stop(store_prehash *p);

/*
 * The digest of `name` (relative to the images directory) if the tail-hasher
 * followed this very file (same inode, never shrank): hashes the rest, fsyncs
 * and returns 1 with *size and sha256 filled. 0: hash it the usual way.
 */
int store_prehash_finish(store_prehash *p, const char *name, int fd, uint64_t *size,
                         char sha256[KYB_SHA256_HEX_LEN + 1], kyb_error **err);

void store_prehash_free(store_prehash *p);
