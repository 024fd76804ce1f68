/* SPDX-License-Identifier: Apache-2.0 */
/* Checking checkpoints against their manifest: verify and import. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "base/validate.h"
#include "store/seal.h"
#include "store/store-internal.h"

static int cmp_path_ptr(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first scanned file the manifest does not list: a merge of two sorted lists. */
static int check_extras(const kyb_manifest *m, const kyb_fs_tree *tree, kyb_error **err)
{
        _cleanup_free_ const char **paths = calloc(m->n_files + 1, sizeof(*paths));
        size_t j = 0;

        if (!paths)
                return kyb_error_set(err, ENOMEM, "checking files");
        for (size_t i = 0; i < m->n_files; i++)
                paths[i] = m->files[i].path;
        qsort(paths, m->n_files, sizeof(*paths), cmp_path_ptr);
        for (size_t i = 0; i < tree->n; i++) {
                while (j < m->n_files && strcmp(paths[j], tree->v[i].path) < 0)
                        j++;
                if (j == m->n_files || strcmp(paths[j], tree->v[i].path))
                        return kyb_error_setf(err, EBADMSG, "%s: not listed in the manifest",
                                              tree->v[i].path);
        }
        return 0;
}

int store_check_tree(const kyb_manifest *m, const kyb_fs_tree *tree, kyb_error **err)
{
        for (size_t i = 0; i < m->n_files; i++) {
                const kyb_manifest_file *f = &m->files[i];
                const kyb_fs_entry *e = kyb_fs_tree_find(tree, f->path);

                if (!e)
                        return kyb_error_setf(err, EBADMSG, "%s: missing", f->path);
                if (e->size != f->size)
                        return kyb_error_setf(err, EBADMSG, "%s: size %llu, manifest says %llu",
                                              f->path, (unsigned long long)e->size,
                                              (unsigned long long)f->size);
        }
        return check_extras(m, tree, err);
}

/* Compares what was read (and maybe copied) with the manifest's entry. */
static int check_digest(const kyb_manifest_file *f, uint64_t size, const char *sha, kyb_error **err)
{
        if (size != f->size)
                return kyb_error_setf(err, EBADMSG, "%s: size %llu, manifest says %llu", f->path,
                                      (unsigned long long)size, (unsigned long long)f->size);
        if (strcmp(sha, f->sha256))
                return kyb_error_setf(err, EBADMSG,
                                      "%s: SHA-256 mismatch (manifest %.16s..., file %.16s...)",
                                      f->path, f->sha256, sha);
        return 0;
}

/* Opens a file of an untrusted tree: no links followed, a regular file or nothing. */
static int open_regular(int dirfd, const char *path, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        /* O_NONBLOCK: a FIFO swapped in after the scan must not hang us. */
        fd = kyb_fs_open_beneath(dirfd, path, O_RDONLY | O_NONBLOCK, 0, err);
        if (fd == -ELOOP || fd == -ENOTDIR)
                return kyb_error_setf(err, EBADMSG, "%s: symbolic link not allowed", path);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", path);
        if (!S_ISREG(st.st_mode))
                return kyb_error_setf(err, EBADMSG, "%s: not a regular file", path);
        return TAKE_FD(fd);
}

static int verify_file(int dirfd, const kyb_manifest_file *f, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        char sha[KYB_SHA256_HEX_LEN + 1];
        uint64_t size = 0;
        int rc;

        fd = open_regular(dirfd, f->path, err);
        if (fd < 0)
                return fd;
        rc = kyb_fs_hash_copy(fd, -1, f->path, f->size, &size, sha, err);
        if (rc < 0)
                return rc;
        return check_digest(f, size, sha, err);
}

static int verify(kyb_store *s, const char *id, kyb_error **err)
{
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_fs_tree_ kyb_fs_tree tree = {0};
        _cleanup_close_ int fd = -1;
        int rc;

        rc = store_load(s, id, &c, err);
        if (rc < 0)
                return rc;
        fd = openat(s->root_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return kyb_error_set(err, errno, "opening %s", id);
        /* Sizes and names of everything first: a truncated file fails before GiBs are hashed. */
        if ((rc = kyb_fs_scan(fd, EBADMSG, &tree, err)) < 0 ||
            (rc = store_check_tree(c.manifest, &tree, err)) < 0)
                return rc;
        if (store_seal_intact(s, id, c.manifest, c.manifest_sha256))
                return 0;
        for (size_t i = 0; i < c.manifest->n_files; i++) {
                rc = verify_file(fd, &c.manifest->files[i], err);
                if (rc < 0) {
                        store_unseal(s, id);
                        return rc;
                }
        }
        store_seal(s, id, c.manifest, c.manifest_sha256);
        return 0;
}

int kyb_store_verify(kyb_store *s, const char *id, kyb_error **err)
{
        int rc;

        rc = kyb_validate_id("checkpoint id", id, err);
        if (rc < 0)
                return rc;
        rc = verify(s, id, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "verify %s", id);
        return 0;
}

/* Copies one file, hashing the bytes as they are written: what is stored is what was checked. */
static int copy_file(int src_fd, int dst_fd, const kyb_manifest_file *f, kyb_error **err)
{
        _cleanup_close_ int in = -1;
        _cleanup_close_ int out = -1;
        char sha[KYB_SHA256_HEX_LEN + 1];
        uint64_t size = 0;
        int rc;

        in = open_regular(src_fd, f->path, err);
        if (in < 0)
                return in;
        out = kyb_fs_open_beneath(dst_fd, f->path, O_WRONLY | O_CREAT, f->mode, err);
        if (out < 0)
                return out;
        if ((rc = kyb_fs_hash_copy(in, out, f->path, f->size, &size, sha, err)) < 0 ||
            (rc = check_digest(f, size, sha, err)) < 0)
                return rc;
        if (fsync(out) < 0)
                return kyb_error_set(err, errno, "fsync %s", f->path);
        return 0;
}

typedef struct artifact {
        kyb_manifest *manifest;
        char *raw; /* manifest.json as read, stored byte for byte */
        size_t raw_len;
} artifact;

static void artifact_clear(artifact *a)
{
        kyb_manifest_free(a->manifest);
        free(a->raw);
}

/* Reads the artifact's manifest and checks the tree's shape against it. */
static int read_artifact(int src_fd, artifact *a, kyb_error **err)
{
        _cleanup_fs_tree_ kyb_fs_tree tree = {0};
        int rc;

        rc = kyb_manifest_read_at(src_fd, KYB_MANIFEST_NAME, &a->manifest, NULL, &a->raw,
                                  &a->raw_len, err);
        if (rc == -ENOENT)
                return kyb_error_setf(err, EBADMSG, "%s is missing", KYB_MANIFEST_NAME);
        if (rc < 0)
                return rc;
        rc = kyb_fs_scan(src_fd, EBADMSG, &tree, err);
        if (rc < 0)
                return rc;
        return store_check_tree(a->manifest, &tree, err);
}

static int import(kyb_store *s, const char *src_dir, const char *id, kyb_checkpoint *out,
                  kyb_error **err)
{
        _cleanup_(artifact_clear) artifact a = {0};
        _cleanup_store_txn_ kyb_store_txn *txn = NULL;
        _cleanup_close_ int src_fd = -1;
        int rc;

        src_fd = open(src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (src_fd < 0)
                return kyb_error_set(err, errno, "opening %s", src_dir);
        rc = read_artifact(src_fd, &a, err);
        if (rc < 0)
                return rc;
        id = id && *id ? id : a.manifest->checkpoint_id;
        rc = store_txn_new(s, id, &txn, err);
        if (rc < 0)
                return rc;
        for (size_t i = 0; i < a.manifest->n_files; i++) {
                rc = copy_file(src_fd, txn->dir_fd, &a.manifest->files[i], err);
                if (rc < 0)
                        return rc;
        }
        rc = store_txn_publish(txn, a.raw, a.raw_len, err);
        if (rc < 0 || !out)
                return rc;
        return store_load(s, id, out, err);
}

int kyb_store_import(kyb_store *s, const char *src_dir, const char *id, kyb_checkpoint *out,
                     kyb_error **err)
{
        int rc;

        if (out)
                *out = (kyb_checkpoint){0};
        if (!src_dir || !*src_dir)
                return kyb_error_setf(err, EINVAL, "import: empty artifact path");
        rc = import(s, src_dir, id, out, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "import %s", src_dir);
        return 0;
}
