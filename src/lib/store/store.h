/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node-local checkpoint store (docs/store.md).
 *
 *     <root>/                    0700, owned by the agent
 *       .lock                    flock()ed by the one open kyb_store
 *       <id>/                    a complete checkpoint: manifest.json exists
 *         manifest.json
 *         checkpoint/            CRIU images
 *         config.dump, spec.dump, rootfs-diff.tar   (optional)
 *       .inprogress-<id>/        being written; removed by the next open
 *       .deleting-<id>.<n>/      being deleted; removed by the next open
 *
 * A checkpoint is written inside a transaction and becomes visible in one
 * rename, after every file and manifest.json are on disk. Every function is
 * thread-safe on one kyb_store; a transaction belongs to one thread. IDs are
 * checked with kyb_validate_id() before they become paths.
 */
#pragma once

#include <stdint.h>

#include "base/error.h"
#include "store/manifest.h"

typedef struct kyb_store kyb_store;
typedef struct kyb_store_txn kyb_store_txn;

/* One checkpoint as the store sees it (agent.proto's CheckpointInfo). */
typedef struct kyb_checkpoint {
        char *id;   /* directory name in the store; the manifest's checkpointId after import
                       may differ when the artifact was stored under another ID */
        char *path; /* <root>/<id> */
        kyb_manifest *manifest;
        char manifest_sha256[KYB_SHA256_HEX_LEN + 1];
        uint64_t size_bytes; /* listed files plus manifest.json: what delete frees */
} kyb_checkpoint;

void kyb_checkpoint_clear(kyb_checkpoint *c);
void kyb_checkpoints_free(kyb_checkpoint *v, size_t n);

/*
 * Opens the store at root, creating it (and missing parents) with mode 0700,
 * takes its lock (-EBUSY when another kyb_store holds it, in this process or
 * another) and removes what a crash left: in-progress and half-deleted
 * directories.
 */
int kyb_store_open(const char *root, kyb_store **out, kyb_error **err);

/* Closes the store. Transactions must be committed or aborted first. */
void kyb_store_close(kyb_store *s);

static inline void kyb_store_closep(kyb_store **s)
{
        kyb_store_close(*s);
        *s = NULL;
}

#define _cleanup_store_ _cleanup_(kyb_store_closep)

const char *kyb_store_root(const kyb_store *s);

/*
 * Starts writing checkpoint `id`. -EINVAL for a bad ID, -EEXIST when the ID
 * exists or another transaction is writing it (of two concurrent begins,
 * exactly one succeeds).
 */
int kyb_store_begin(kyb_store *s, const char *id, kyb_store_txn **out, kyb_error **err);

const char *kyb_store_txn_id(const kyb_store_txn *txn);
/* The in-progress checkpoint directory: config.dump, spec.dump, rootfs-diff.tar go here. */
const char *kyb_store_txn_dir(const kyb_store_txn *txn);
/* <txn dir>/checkpoint, created by begin: CRIU's images directory. */
const char *kyb_store_txn_images_dir(const kyb_store_txn *txn);

/*
 * Starts hashing the files of the images directory while they are being
 * written (by CRIU), so that the commit has little left to read and fsync.
 * Optional; the commit hashes whatever was not followed.
 */
int kyb_store_txn_follow_images(kyb_store_txn *txn, kyb_error **err);

/*
 * Publishes the transaction: hashes and fsyncs every file, replaces m's file
 * list and totals with what is on disk, sets m's checkpoint ID (and its
 * creation time when 0), writes manifest.json last, fsyncs the directories
 * and renames the directory to <root>/<id>. Consumes txn in every case; on
 * failure nothing of it remains on disk. -EINVAL when the directory holds
 * something other than regular files and directories, or manifest.json.
 */
int kyb_store_commit(kyb_store_txn *txn, kyb_manifest *m, kyb_error **err);

/* Removes the in-progress directory and frees txn. NULL is a no-op. */
void kyb_store_abort(kyb_store_txn *txn);

static inline void kyb_store_abortp(kyb_store_txn **txn)
{
        kyb_store_abort(*txn);
        *txn = NULL;
}

#define _cleanup_store_txn_ _cleanup_(kyb_store_abortp)

/*
 * Complete checkpoints carrying all labels of the selector (n == 0: all),
 * oldest first (creation time, then ID). Directories whose manifest cannot
 * be read are left out; get() and verify() report them.
 */
int kyb_store_list(kyb_store *s, const kyb_label *selector, size_t n_selector, kyb_checkpoint **out,
                   size_t *n_out, kyb_error **err);

/* -ENOENT when absent, -EBADMSG when its manifest is unreadable. */
int kyb_store_get(kyb_store *s, const char *id, kyb_checkpoint *out, kyb_error **err);

/*
 * Files beside a checkpoint's directory that belong to it: the node agent's
 * copy of the pod spec and the sidecar's upload result. They go when the
 * checkpoint goes.
 */
#define KYB_STORE_POD_SPEC_SUFFIX      ".pod.json"
#define KYB_STORE_UPLOAD_RESULT_SUFFIX ".upload.json"

/*
 * Deletes a checkpoint and its companion files; *freed_bytes (may be NULL)
 * receives the bytes of the removed checkpoint files. -EBUSY while it is
 * acquired, -ENOENT when absent.
 */
int kyb_store_delete(kyb_store *s, const char *id, uint64_t *freed_bytes, kyb_error **err);

/* Marks a checkpoint in use (a restore reads it) so delete and gc spare it.
 * Counted: each acquire needs one release. -ENOENT when absent. */
int kyb_store_acquire(kyb_store *s, const char *id, kyb_error **err);
void kyb_store_release(kyb_store *s, const char *id);

/*
 * Checks every file against the manifest: present, a regular file, size and
 * SHA-256. Files not in the manifest, symbolic links and special files are
 * refused too. -EBADMSG naming the first bad file.
 */
int kyb_store_verify(kyb_store *s, const char *id, kyb_error **err);

/*
 * Deletes the oldest checkpoints that are not acquired until the store holds
 * at most max_total_bytes (or only acquired ones are left). Returns the
 * number deleted; *freed_bytes (may be NULL) receives their bytes.
 */
int kyb_store_gc(kyb_store *s, uint64_t max_total_bytes, uint64_t *freed_bytes, kyb_error **err);

/*
 * Brings an extracted artifact (src_dir with manifest.json and its files)
 * into the store as `id` (NULL or "": the manifest's checkpointId). Symbolic
 * links, special files, files not in the manifest and manifest paths that
 * leave the directory are refused with -EBADMSG. Files are copied and hashed
 * in one pass, so what is stored is exactly what was checked; src_dir is not
 * modified. manifest.json is stored byte for byte. out (may be NULL)
 * receives the stored checkpoint.
 */
int kyb_store_import(kyb_store *s, const char *src_dir, const char *id, kyb_checkpoint *out,
                     kyb_error **err);
