/* SPDX-License-Identifier: Apache-2.0 */
/* Reading and removing checkpoints: get, list, delete, leases, gc. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/validate.h"
#include "store/seal.h"
#include "store/store-internal.h"

#define TRASH_ATTEMPTS 1000

void kyb_checkpoint_clear(kyb_checkpoint *c)
{
        if (!c)
                return;
        free(c->id);
        free(c->path);
        kyb_manifest_free(c->manifest);
        memset(c, 0, sizeof(*c));
}

void kyb_checkpoints_free(kyb_checkpoint *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                kyb_checkpoint_clear(&v[i]);
        free(v);
}

static int open_checkpoint(kyb_store *s, const char *id, kyb_error **err)
{
        int fd = openat(s->root_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd >= 0)
                return fd;
        /* A symlink or a file where a checkpoint should be is no checkpoint either. */
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                return kyb_error_setf(err, ENOENT, "checkpoint %s not found", id);
        return kyb_error_set(err, errno, "opening checkpoint %s", id);
}

static int load_manifest(int fd, const char *id, kyb_checkpoint *out, kyb_error **err)
{
        struct stat st;
        int rc;

        rc = kyb_manifest_read_at(fd, KYB_MANIFEST_NAME, &out->manifest, out->manifest_sha256, NULL,
                                  NULL, err);
        /* Commit publishes only with a manifest: a missing one means damage, not absence. */
        if (rc == -ENOENT)
                return kyb_error_setf(err, EBADMSG, "checkpoint %s: %s is missing", id,
                                      KYB_MANIFEST_NAME);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "checkpoint %s", id);
        if (fstatat(fd, KYB_MANIFEST_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return kyb_error_set(err, errno, "checkpoint %s: stat %s", id, KYB_MANIFEST_NAME);
        out->size_bytes = out->manifest->total_bytes + (uint64_t)st.st_size;
        return 0;
}

int store_load(kyb_store *s, const char *id, kyb_checkpoint *out, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        int rc;

        *out = (kyb_checkpoint){0};
        fd = open_checkpoint(s, id, err);
        if (fd < 0)
                return fd;
        rc = load_manifest(fd, id, out, err);
        if (rc >= 0) {
                out->id = strdup(id);
                if (!out->id || asprintf(&out->path, "%s/%s", s->root, id) < 0) {
                        out->path = NULL;
                        rc = kyb_error_set(err, ENOMEM, "checkpoint %s", id);
                }
        }
        if (rc < 0)
                kyb_checkpoint_clear(out);
        return rc;
}

int kyb_store_get(kyb_store *s, const char *id, kyb_checkpoint *out, kyb_error **err)
{
        int rc;

        *out = (kyb_checkpoint){0};
        rc = kyb_validate_id("checkpoint id", id, err);
        if (rc < 0)
                return rc;
        return store_load(s, id, out, err);
}

static bool matches(const kyb_manifest *m, const kyb_label *sel, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                const char *v = kyb_manifest_label(m, sel[i].key);

                if (!v || strcmp(v, sel[i].value ? sel[i].value : ""))
                        return false;
        }
        return true;
}

static int cmp_checkpoint(const void *a, const void *b)
{
        const kyb_checkpoint *x = a, *y = b;

        if (x->manifest->created_at_ns != y->manifest->created_at_ns)
                return x->manifest->created_at_ns < y->manifest->created_at_ns ? -1 : 1;
        return strcmp(x->id, y->id);
}

typedef struct checkpoint_vec {
        kyb_checkpoint *v;
        size_t n;
} checkpoint_vec;

static void checkpoint_vec_clear(checkpoint_vec *v)
{
        kyb_checkpoints_free(v->v, v->n);
}

/* Loads one directory entry into vec when it is a matching checkpoint. */
static int list_entry(kyb_store *s, const char *name, const kyb_label *sel, size_t n_sel,
                      checkpoint_vec *vec, kyb_error **err)
{
        kyb_checkpoint c, *nv;
        int rc;

        /* Dot names are ours (in progress, being deleted, the lock); others are no IDs. */
        if (name[0] == '.' || kyb_validate_id(NULL, name, NULL) < 0)
                return 0;
        rc = store_load(s, name, &c, NULL);
        if (rc == -ENOMEM)
                return kyb_error_set(err, ENOMEM, "listing %s", s->root);
        /* Deleted meanwhile, or damaged: get() and verify() are where that is reported. */
        if (rc < 0)
                return 0;
        if (!matches(c.manifest, sel, n_sel)) {
                kyb_checkpoint_clear(&c);
                return 0;
        }
        nv = reallocarray(vec->v, vec->n + 1, sizeof(*nv));
        if (!nv) {
                kyb_checkpoint_clear(&c);
                return kyb_error_set(err, ENOMEM, "listing %s", s->root);
        }
        vec->v = nv;
        vec->v[vec->n++] = c;
        return 0;
}

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

int kyb_store_list(kyb_store *s, const kyb_label *selector, size_t n_selector, kyb_checkpoint **out,
                   size_t *n_out, kyb_error **err)
{
        _cleanup_(checkpoint_vec_clear) checkpoint_vec vec = {0};
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int fd, rc;

        *out = NULL;
        *n_out = 0;
        fd = openat(s->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                rc = kyb_error_set(err, errno, "listing %s", s->root);
                if (fd >= 0)
                        close(fd);
                return rc;
        }
        while ((errno = 0, de = readdir(d))) {
                rc = list_entry(s, de->d_name, selector, n_selector, &vec, err);
                if (rc < 0)
                        return rc;
        }
        if (errno)
                return kyb_error_set(err, errno, "listing %s", s->root);
        if (vec.n)
                qsort(vec.v, vec.n, sizeof(*vec.v), cmp_checkpoint);
        *n_out = vec.n;
        vec.n = 0;
        *out = TAKE_PTR(vec.v);
        return 0;
}

/* Caller holds s->lock. */
static store_ref *find_ref(kyb_store *s, const char *id)
{
        for (size_t i = 0; i < s->n_refs; i++) {
                if (!strcmp(s->refs[i].id, id))
                        return &s->refs[i];
        }
        return NULL;
}

/* Caller holds s->lock. Renames the checkpoint out of sight under a fresh trash name. */
static int move_to_trash(kyb_store *s, const char *id, char **trash, kyb_error **err)
{
        for (int i = 0; i < TRASH_ATTEMPTS; i++) {
                if (asprintf(trash, "%s%s.%lu", STORE_DELETING_PREFIX, id, s->delete_seq++) < 0) {
                        *trash = NULL;
                        return kyb_error_set(err, ENOMEM, "delete %s", id);
                }
                if (renameat2(s->root_fd, id, s->root_fd, *trash, RENAME_NOREPLACE) == 0)
                        return 0;
                free(TAKE_PTR(*trash));
                if (errno == ENOENT)
                        return kyb_error_setf(err, ENOENT, "checkpoint %s not found", id);
                if (errno != EEXIST)
                        return kyb_error_set(err, errno, "delete %s", id);
        }
        return kyb_error_setf(err, EEXIST, "delete %s: no free trash name", id);
}

static int lock_and_trash(kyb_store *s, const char *id, char **trash, kyb_error **err)
{
        store_ref *ref;
        int rc;

        pthread_mutex_lock(&s->lock);
        ref = find_ref(s, id);
        if (ref)
                rc = kyb_error_setf(err, EBUSY, "checkpoint %s is in use (%u restore%s)", id,
                                    ref->count, ref->count == 1 ? "" : "s");
        else
                rc = move_to_trash(s, id, trash, err);
        pthread_mutex_unlock(&s->lock);
        return rc;
}

static int remove_companions(kyb_store *s, const char *id, kyb_error **err)
{
        static const char *const suffixes[] = {KYB_STORE_POD_SPEC_SUFFIX,
                                               KYB_STORE_UPLOAD_RESULT_SUFFIX};

        for (size_t i = 0; i < KYB_ARRAY_SIZE(suffixes); i++) {
                _cleanup_free_ char *name = NULL;

                if (asprintf(&name, "%s%s", id, suffixes[i]) < 0)
                        return kyb_error_set(err, ENOMEM, "delete %s", id);
                if (unlinkat(s->root_fd, name, 0) < 0 && errno != ENOENT)
                        return kyb_error_set(err, errno, "delete %s: %s", id, name);
        }
        return 0;
}

int kyb_store_delete(kyb_store *s, const char *id, uint64_t *freed_bytes, kyb_error **err)
{
        _cleanup_free_ char *trash = NULL;
        uint64_t freed = 0;
        int rc;

        if (freed_bytes)
                *freed_bytes = 0;
        rc = kyb_validate_id("checkpoint id", id, err);
        if (rc < 0)
                return rc;
        rc = lock_and_trash(s, id, &trash, err);
        if (rc < 0)
                return rc;
        store_unseal(s, id);
        /* Out of sight already; what fails to go now goes at the next open. */
        rc = kyb_fs_rm_rf_at(s->root_fd, trash, &freed, err);
        if (freed_bytes)
                *freed_bytes = freed;
        if (rc < 0)
                return kyb_error_wrap(err, rc, "delete %s", id);
        if ((rc = remove_companions(s, id, err)) < 0)
                return rc;
        if (fsync(s->root_fd) < 0)
                return kyb_error_set(err, errno, "delete %s: fsync %s", id, s->root);
        return 0;
}

static int add_ref(kyb_store *s, const char *id, kyb_error **err)
{
        store_ref *ref = find_ref(s, id);
        store_ref *nv;
        char *copy;

        if (ref) {
                ref->count++;
                return 0;
        }
        copy = strdup(id);
        nv = copy ? reallocarray(s->refs, s->n_refs + 1, sizeof(*nv)) : NULL;
        if (!nv) {
                free(copy);
                return kyb_error_set(err, ENOMEM, "acquire %s", id);
        }
        s->refs = nv;
        s->refs[s->n_refs++] = (store_ref){copy, 1};
        return 0;
}

int kyb_store_acquire(kyb_store *s, const char *id, kyb_error **err)
{
        struct stat st;
        int rc;

        rc = kyb_validate_id("checkpoint id", id, err);
        if (rc < 0)
                return rc;
        /* Under the lock: delete renames under it too, so it sees our reference or we see it gone.
         */
        pthread_mutex_lock(&s->lock);
        if (fstatat(s->root_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                rc = kyb_error_setf(err, ENOENT, "checkpoint %s not found", id);
        else
                rc = add_ref(s, id, err);
        pthread_mutex_unlock(&s->lock);
        return rc;
}

void kyb_store_release(kyb_store *s, const char *id)
{
        store_ref *ref;

        if (!id)
                return;
        pthread_mutex_lock(&s->lock);
        ref = find_ref(s, id);
        if (ref && --ref->count == 0) {
                free(ref->id);
                *ref = s->refs[--s->n_refs];
        }
        pthread_mutex_unlock(&s->lock);
}

/* Deletes v[i] for gc; returns < 0 only for failures that must stop it. */
static int gc_one(kyb_store *s, const kyb_checkpoint *c, uint64_t *total, uint64_t *freed,
                  int *deleted, kyb_error **err)
{
        _cleanup_error_ kyb_error *e = NULL;
        uint64_t f = 0;
        int rc;

        rc = kyb_store_delete(s, c->id, &f, &e);
        *freed += f;
        if (rc == 0)
                (*deleted)++;
        if (rc == 0 || rc == -ENOENT) /* gone, by us or by someone else meanwhile */
                *total -= KYB_MIN(*total, c->size_bytes);
        if (rc == 0 || rc == -ENOENT || rc == -EBUSY) /* acquired ones are spared */
                return 0;
        return kyb_error_move(err, &e);
}

int kyb_store_gc(kyb_store *s, uint64_t max_total_bytes, uint64_t *freed_bytes, kyb_error **err)
{
        kyb_checkpoint *v = NULL;
        uint64_t total = 0, freed = 0;
        size_t n = 0;
        int rc, deleted = 0;

        if (freed_bytes)
                *freed_bytes = 0;
        rc = kyb_store_list(s, NULL, 0, &v, &n, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "gc");
        for (size_t i = 0; i < n; i++)
                total += v[i].size_bytes;
        /* v is oldest first. */
        for (size_t i = 0; i < n && total > max_total_bytes && rc >= 0; i++)
                rc = gc_one(s, &v[i], &total, &freed, &deleted, err);
        kyb_checkpoints_free(v, n);
        if (freed_bytes)
                *freed_bytes = freed;
        if (rc < 0)
                return kyb_error_wrap(err, rc, "gc");
        return deleted;
}
