/* SPDX-License-Identifier: Apache-2.0 */
/* Opening the store and writing checkpoints: transactions and commit. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "base/validate.h"
#include "store/digest.h"
#include "store/prehash.h"
#include "store/seal.h"
#include "store/store-internal.h"

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

/* mkdir -p for the parents of root; root itself is created 0700 by the caller. */
static int mkdir_parents(const char *root, kyb_error **err)
{
        _cleanup_free_ char *p = strdup(root);

        if (!p)
                return kyb_error_set(err, ENOMEM, "store %s", root);
        for (char *slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return kyb_error_set(err, errno, "creating %s", p);
                *slash = '/';
        }
        return 0;
}

static int open_root(kyb_store *s, kyb_error **err)
{
        struct stat st;
        int rc;

        rc = mkdir_parents(s->root, err);
        if (rc < 0)
                return rc;
        if (mkdir(s->root, 0700) < 0 && errno != EEXIST)
                return kyb_error_set(err, errno, "creating %s", s->root);
        s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->root_fd < 0)
                return kyb_error_set(err, errno, "opening %s", s->root);
        if (fstat(s->root_fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", s->root);
        /* Images hold process memory (keys, tokens): only root may read them. */
        if ((st.st_mode & 07777) != 0700 && fchmod(s->root_fd, 0700) < 0)
                return kyb_error_set(err, errno, "chmod 0700 %s", s->root);
        return 0;
}

static int lock_root(kyb_store *s, kyb_error **err)
{
        s->lock_fd =
            openat(s->root_fd, STORE_LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (s->lock_fd < 0)
                return kyb_error_set(err, errno, "opening %s/%s", s->root, STORE_LOCK_NAME);
        /* The crash cleanup below is only safe when no one else writes here. */
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return kyb_error_setf(err, EBUSY, "store %s is already open", s->root);
                return kyb_error_set(err, errno, "locking %s", s->root);
        }
        return 0;
}

static bool is_leftover(const char *name)
{
        return !strncmp(name, STORE_INPROGRESS_PREFIX, strlen(STORE_INPROGRESS_PREFIX)) ||
               !strncmp(name, STORE_DELETING_PREFIX, strlen(STORE_DELETING_PREFIX));
}

/* Removes in-progress and half-deleted directories of a previous run. */
static int remove_leftovers(kyb_store *s, kyb_error **err)
{
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int fd, rc;

        fd = openat(s->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                rc = kyb_error_set(err, errno, "reading %s", s->root);
                if (fd >= 0)
                        close(fd);
                return rc;
        }
        while ((errno = 0, de = readdir(d))) {
                if (!is_leftover(de->d_name))
                        continue;
                rc = kyb_fs_rm_rf_at(s->root_fd, de->d_name, NULL, err);
                if (rc < 0 && rc != -ENOENT)
                        return kyb_error_wrap(err, rc, "removing leftover %s/%s", s->root,
                                              de->d_name);
        }
        if (errno)
                return kyb_error_set(err, errno, "reading %s", s->root);
        return 0;
}

int kyb_store_open(const char *root, kyb_store **out, kyb_error **err)
{
        _cleanup_store_ kyb_store *s = NULL;
        int rc;

        *out = NULL;
        if (!root || !*root)
                return kyb_error_setf(err, EINVAL, "store: empty root directory");
        s = calloc(1, sizeof(*s));
        if (!s)
                return kyb_error_set(err, ENOMEM, "store %s", root);
        s->root_fd = s->lock_fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        s->root = strdup(root);
        if (!s->root)
                return kyb_error_set(err, ENOMEM, "store %s", root);
        if ((rc = open_root(s, err)) < 0 || (rc = lock_root(s, err)) < 0 ||
            (rc = remove_leftovers(s, err)) < 0)
                return rc;
        *out = TAKE_PTR(s);
        return 0;
}

void kyb_store_close(kyb_store *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n_refs; i++)
                free(s->refs[i].id);
        free(s->refs);
        store_seals_free(s);
        kyb_closep(&s->lock_fd);
        kyb_closep(&s->root_fd);
        pthread_mutex_destroy(&s->lock);
        free(s->root);
        free(s);
}

const char *kyb_store_root(const kyb_store *s)
{
        return s->root;
}

static void txn_free(kyb_store_txn *txn)
{
        store_prehash_free(txn->prehash);
        kyb_closep(&txn->images_fd);
        kyb_closep(&txn->dir_fd);
        free(txn->id);
        free(txn->name);
        free(txn->dir);
        free(txn->images_dir);
        free(txn);
}

void kyb_store_abort(kyb_store_txn *txn)
{
        if (!txn)
                return;
        if (!txn->published)
                (void)kyb_fs_rm_rf_at(txn->store->root_fd, txn->name, NULL, NULL);
        txn_free(txn);
}

/* Claims the in-progress name. mkdir is atomic, so of two racing begins one gets EEXIST. */
static int claim(kyb_store *s, const char *id, char **name, kyb_error **err)
{
        if (asprintf(name, "%s%s", STORE_INPROGRESS_PREFIX, id) < 0) {
                *name = NULL;
                return kyb_error_set(err, ENOMEM, "begin %s", id);
        }
        if (mkdirat(s->root_fd, *name, 0700) == 0)
                return 0;
        free(TAKE_PTR(*name));
        if (errno == EEXIST)
                return kyb_error_setf(err, EEXIST, "checkpoint %s is already being written", id);
        return kyb_error_set(err, errno, "creating checkpoint directory for %s", id);
}

/* Fills the claimed transaction; the caller aborts it on failure. */
static int txn_setup(kyb_store_txn *txn, kyb_error **err)
{
        kyb_store *s = txn->store;
        struct stat st;

        /* Checked after claiming: a commit of the same ID renames before we look. */
        if (fstatat(s->root_fd, txn->id, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return kyb_error_setf(err, EEXIST, "checkpoint %s already exists", txn->id);
        if (errno != ENOENT)
                return kyb_error_set(err, errno, "stat %s/%s", s->root, txn->id);
        txn->dir_fd =
            openat(s->root_fd, txn->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (txn->dir_fd < 0)
                return kyb_error_set(err, errno, "opening %s/%s", s->root, txn->name);
        if (mkdirat(txn->dir_fd, KYB_MANIFEST_IMAGES_DIR, 0755) < 0)
                return kyb_error_set(err, errno, "creating %s/%s/%s", s->root, txn->name,
                                     KYB_MANIFEST_IMAGES_DIR);
        if (asprintf(&txn->dir, "%s/%s", s->root, txn->name) < 0 ||
            asprintf(&txn->images_dir, "%s/%s", txn->dir, KYB_MANIFEST_IMAGES_DIR) < 0)
                return kyb_error_set(err, ENOMEM, "begin %s", txn->id);
        return 0;
}

int store_txn_new(kyb_store *s, const char *id, kyb_store_txn **out, kyb_error **err)
{
        _cleanup_store_txn_ kyb_store_txn *txn = NULL;
        _cleanup_free_ char *name = NULL;
        int rc;

        *out = NULL;
        rc = kyb_validate_id("checkpoint id", id, err);
        if (rc < 0)
                return rc;
        rc = claim(s, id, &name, err);
        if (rc < 0)
                return rc;
        txn = calloc(1, sizeof(*txn));
        if (!txn) {
                (void)unlinkat(s->root_fd, name, AT_REMOVEDIR);
                return kyb_error_set(err, ENOMEM, "begin %s", id);
        }
        *txn = (kyb_store_txn){.store = s, .name = TAKE_PTR(name), .dir_fd = -1, .images_fd = -1};
        txn->id = strdup(id);
        if (!txn->id)
                return kyb_error_set(err, ENOMEM, "begin %s", id);
        rc = txn_setup(txn, err);
        if (rc < 0)
                return rc;
        *out = TAKE_PTR(txn);
        return 0;
}

int kyb_store_begin(kyb_store *s, const char *id, kyb_store_txn **out, kyb_error **err)
{
        return store_txn_new(s, id, out, err);
}

const char *kyb_store_txn_id(const kyb_store_txn *txn)
{
        return txn->id;
}

const char *kyb_store_txn_dir(const kyb_store_txn *txn)
{
        return txn->dir;
}

const char *kyb_store_txn_images_dir(const kyb_store_txn *txn)
{
        return txn->images_dir;
}

int store_txn_publish(kyb_store_txn *txn, const char *manifest, size_t len, kyb_error **err)
{
        kyb_store *s = txn->store;
        int rc;

        rc = kyb_fs_write_at(txn->dir_fd, STORE_MANIFEST_TMP, KYB_MANIFEST_NAME, manifest, len,
                             0644, err);
        if (rc < 0)
                return rc;
        /* Every file was fsynced; now their names, so the rename publishes only durable data. */
        rc = kyb_fs_fsync_dirs(txn->dir_fd, err);
        if (rc < 0)
                return rc;
        if (renameat2(s->root_fd, txn->name, s->root_fd, txn->id, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST || errno == ENOTEMPTY)
                        return kyb_error_setf(err, EEXIST, "checkpoint %s already exists", txn->id);
                return kyb_error_set(err, errno, "publishing %s", txn->id);
        }
        txn->published = true;
        if (fsync(s->root_fd) < 0)
                return kyb_error_set(err, errno, "fsync %s", s->root);
        return 0;
}

int kyb_store_txn_follow_images(kyb_store_txn *txn, kyb_error **err)
{
        if (txn->prehash)
                return 0;
        txn->images_fd = openat(txn->dir_fd, KYB_MANIFEST_IMAGES_DIR,
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (txn->images_fd < 0)
                return kyb_error_set(err, errno, "opening %s", txn->images_dir);
        return store_prehash_start(txn->images_fd, &txn->prehash, err);
}

/* An image the tail-hasher followed: only its rest is read here. */
static int finish_followed(kyb_store_txn *txn, const kyb_fs_entry *e, int fd, uint64_t *size,
                           char sha[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        static const char prefix[] = KYB_MANIFEST_IMAGES_DIR "/";

        if (!txn->prehash || strncmp(e->path, prefix, sizeof(prefix) - 1))
                return 0;
        return store_prehash_finish(txn->prehash, e->path + sizeof(prefix) - 1, fd, size, sha, err);
}

/* Hashes and fsyncs one file of the transaction (CRIU does not fsync its images). */
static int hash_file(kyb_store_txn *txn, const kyb_fs_entry *e, kyb_manifest *m, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        char sha[KYB_SHA256_HEX_LEN + 1];
        uint64_t size = 0;
        int rc;

        fd = kyb_fs_open_beneath(txn->dir_fd, e->path, O_RDONLY, 0, err);
        if (fd < 0)
                return fd;
        rc = finish_followed(txn, e, fd, &size, sha, err);
        if (rc == 0) {
                rc = kyb_fs_hash_copy(fd, -1, e->path, UINT64_MAX, &size, sha, err);
                if (rc >= 0 && fsync(fd) < 0)
                        rc = kyb_error_set(err, errno, "fsync %s", e->path);
        }
        if (rc < 0)
                return rc;
        return kyb_manifest_add_file(m, e->path, size, sha, e->mode, err);
}

static int describe_files(kyb_store_txn *txn, kyb_manifest *m, kyb_error **err)
{
        _cleanup_fs_tree_ kyb_fs_tree tree = {0};
        int rc;

        rc = kyb_fs_scan(txn->dir_fd, EINVAL, &tree, err);
        if (rc < 0)
                return rc;
        if (tree.has_manifest)
                return kyb_error_setf(err, EINVAL, "%s is written by the store, not the caller",
                                      KYB_MANIFEST_NAME);
        kyb_manifest_clear_files(m);
        store_prehash_stop(txn->prehash);
        for (size_t i = 0; i < tree.n; i++) {
                rc = hash_file(txn, &tree.v[i], m, err);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

static int set_identity(kyb_store_txn *txn, kyb_manifest *m, kyb_error **err)
{
        char *id = strdup(txn->id);
        struct timespec ts;

        if (!id)
                return kyb_error_set(err, ENOMEM, "manifest");
        free(m->checkpoint_id);
        m->checkpoint_id = id;
        m->format_version = KYB_MANIFEST_FORMAT_VERSION;
        if (m->created_at_ns == 0) {
                clock_gettime(CLOCK_REALTIME, &ts);
                m->created_at_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        }
        return 0;
}

static int commit(kyb_store_txn *txn, kyb_manifest *m, kyb_error **err)
{
        _cleanup_free_ char *json = NULL;
        size_t len = 0;
        int rc;

        char sha[KYB_SHA256_HEX_LEN + 1];

        if ((rc = describe_files(txn, m, err)) < 0 || (rc = set_identity(txn, m, err)) < 0 ||
            (rc = kyb_manifest_to_json(m, &json, &len, err)) < 0 ||
            (rc = kyb_sha256_buf(json, len, sha, err)) < 0)
                return rc;
        rc = store_txn_publish(txn, json, len, err);
        /* Every file was just hashed by us: a restore need not read them again. */
        if (rc >= 0)
                store_seal(txn->store, txn->id, m, sha);
        return rc;
}

int kyb_store_commit(kyb_store_txn *txn, kyb_manifest *m, kyb_error **err)
{
        int rc = commit(txn, m, err);

        if (rc < 0)
                kyb_error_wrap(err, rc, "commit %s", txn->id);
        kyb_store_abort(txn);
        return rc;
}
