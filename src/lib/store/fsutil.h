/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File-system helpers of the store, all relative to directory fds and none
 * following symbolic links, so a tree handed to us (an artifact from the
 * sidecar, CRIU's output) cannot redirect a read, write or removal outside
 * itself. Internal to src/lib/store.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"
#include "store/manifest.h"

/* Hashing and copying read this much at a time: images are GiBs. */
#define KYB_FS_CHUNK ((size_t)4 << 20)

typedef struct kyb_fs_entry {
        char *path; /* relative, '/'-separated */
        uint64_t size;
        mode_t mode; /* permission bits */
} kyb_fs_entry;

typedef struct kyb_fs_tree {
        kyb_fs_entry *v; /* regular files, sorted by path (strcmp) */
        size_t n;
        bool has_manifest; /* a top-level manifest.json was seen (and not listed in v) */
} kyb_fs_tree;

void kyb_fs_tree_clear(kyb_fs_tree *t);

#define _cleanup_fs_tree_ _cleanup_(kyb_fs_tree_clear)

/*
 * Lists the regular files below dirfd. Symbolic links, devices, FIFOs and
 * sockets, and names that kyb_manifest_check_path() refuses, fail with
 * -bad_errno naming the entry. Empty directories are not listed.
 */
int kyb_fs_scan(int dirfd, int bad_errno, kyb_fs_tree *out, kyb_error **err);

/* Binary search in a scanned tree; NULL when absent. */
const kyb_fs_entry *kyb_fs_tree_find(const kyb_fs_tree *t, const char *path);

/*
 * Removes dirfd/name and everything below it, never following symbolic
 * links. Adds the sizes of removed regular files to *freed (may be NULL).
 * -ENOENT when name does not exist.
 */
int kyb_fs_rm_rf_at(int dirfd, const char *name, uint64_t *freed, kyb_error **err);

/* fsyncs every directory below dirfd and dirfd itself, deepest first. */
int kyb_fs_fsync_dirs(int dirfd, kyb_error **err);

/*
 * Opens dirfd/path component by component with O_NOFOLLOW. With O_CREAT in
 * flags, missing parent directories are created (0755) and the file is
 * created exclusively with exactly `mode`. Returns the fd.
 */
int kyb_fs_open_beneath(int dirfd, const char *path, int flags, mode_t mode, kyb_error **err);

/*
 * Reads in_fd to its end, hashing it and, when out_fd >= 0, writing every
 * byte to out_fd. More than `max` bytes fails with -EBADMSG. `name` is for
 * messages. *size receives the number of bytes read.
 */
int kyb_fs_hash_copy(int in_fd, int out_fd, const char *name, uint64_t max, uint64_t *size,
                     char sha256[KYB_SHA256_HEX_LEN + 1], kyb_error **err);

/* Writes dirfd/name through dirfd/tmp: write, fsync, rename. tmp is gone afterwards. */
int kyb_fs_write_at(int dirfd, const char *tmp, const char *name, const void *data, size_t len,
                    mode_t mode, kyb_error **err);
