/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the store's source files; not a public interface. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

#include "store/fsutil.h"
#include "store/store.h"

#define STORE_INPROGRESS_PREFIX ".inprogress-"
#define STORE_DELETING_PREFIX   ".deleting-"
#define STORE_LOCK_NAME         ".lock"
#define STORE_MANIFEST_TMP      ".manifest.json.tmp" /* hidden: no listed file can be named so */

typedef struct store_ref {
        char *id;
        unsigned count;
} store_ref;

struct kyb_store {
        char *root;
        int root_fd;
        int lock_fd;          /* holds the flock for the store's lifetime */
        pthread_mutex_t lock; /* guards refs and delete_seq, orders acquire against delete */
        store_ref *refs;
        size_t n_refs;
        unsigned long delete_seq;
        struct store_seal *seals; /* checkpoints whose files were hashed (seal.h) */
};

struct kyb_store_txn {
        kyb_store *store;
        char *id;
        char *name;       /* STORE_INPROGRESS_PREFIX + id, below root */
        char *dir;        /* root/name */
        char *images_dir; /* dir/checkpoint */
        int dir_fd;
        int images_fd;                 /* -1 until images are followed */
        struct store_prehash *prehash; /* NULL unless kyb_store_txn_follow_images() */
        bool published;
};

/* Creates <root>/.inprogress-<id> (and its checkpoint/) after the ID checks. */
int store_txn_new(kyb_store *s, const char *id, kyb_store_txn **out, kyb_error **err);

/* Writes manifest.json from data, fsyncs the tree, renames the directory to its ID. */
int store_txn_publish(kyb_store_txn *txn, const char *manifest, size_t len, kyb_error **err);

/* Reads <root>/<id>: its manifest, size and path. */
int store_load(kyb_store *s, const char *id, kyb_checkpoint *out, kyb_error **err);

/*
 * The manifest's files against a scanned tree, sizes only: the first file
 * that is missing or has another size, then the first file the manifest
 * does not list. -EBADMSG naming it.
 */
int store_check_tree(const kyb_manifest *m, const kyb_fs_tree *tree, kyb_error **err);
