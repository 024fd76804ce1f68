/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file:// backend: a directory, usually a shared volume. An object is
 * written under a hidden temporary name in its final directory, fsynced,
 * checked and renamed over its key, and the directory is fsynced: readers
 * see the old object or the complete new one, never a partial one, and
 * after a crash only a hidden temporary file can be left (lists skip it).
 * Paths are resolved below the root's fd without following links.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "storage/storage-internal.h"
#include "store/fsutil.h"

#define TMP_PREFIX ".kyb-upload-"
#define LIST_DEPTH 64

typedef struct file_storage {
        char *root;
        size_t progress_every;
        kyb_storage_progress_fn progress;
        void *progress_ctx;
} file_storage;

typedef struct file_writer {
        kyb_storage_writer base;
        const file_storage *fs;
        int dirfd; /* the object's directory */
        int fd;
        char *key;
        char *name; /* last component of key */
        char tmp[sizeof(TMP_PREFIX) + 16];
        uint64_t written;
        uint64_t reported;
} file_writer;

typedef struct file_reader {
        kyb_storage_reader base;
        int fd;
        char *key;
} file_reader;

static int open_root(const file_storage *fs, bool create, kyb_error **err)
{
        int fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int rc;

        if (fd < 0 && errno == ENOENT && create) {
                rc = kyb_mkdir_p(fs->root, 0755, err);
                if (rc < 0)
                        return rc;
                fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (fd < 0)
                return kyb_error_set(err, errno, "opening %s", fs->root);
        return fd;
}

/*
 * Opens the directory holding key below the root (creating it when asked)
 * and points *name at key's last component.
 */
static int open_parent(const file_storage *fs, const char *key, bool create, const char **name,
                       kyb_error **err)
{
        _cleanup_free_ char *copy = strdup(key);
        char *slash = copy ? strrchr(copy, '/') : NULL;
        _cleanup_close_ int cur = -1;
        char *save = NULL;

        if (!copy)
                return kyb_error_set(err, ENOMEM, "%s", key);
        cur = open_root(fs, create, err);
        if (cur < 0)
                return cur;
        *name = strrchr(key, '/') ? strrchr(key, '/') + 1 : key;
        if (!slash)
                return TAKE_FD(cur);
        *slash = '\0';
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int next;

                if (create && mkdirat(cur, c, 0755) < 0 && errno != EEXIST)
                        return kyb_error_set(err, errno, "creating the directory of %s", key);
                next = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return kyb_error_set(err, errno == ELOOP ? ENOTDIR : errno,
                                             "opening the directory of %s", key);
                kyb_closep(&cur);
                cur = next;
        }
        return TAKE_FD(cur);
}

static int write_all(int fd, const char *key, const void *data, size_t len, kyb_error **err)
{
        const char *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "writing %s", key);
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static void report(file_writer *w, bool final)
{
        if (!w->fs->progress || (!final && w->written - w->reported < w->fs->progress_every))
                return;
        w->reported = w->written;
        w->fs->progress(w->fs->progress_ctx, w->written);
}

static int fw_write(kyb_storage_writer *base, const void *buf, size_t len, kyb_error **err)
{
        file_writer *w = (file_writer *)base;
        int rc;

        rc = write_all(w->fd, w->key, buf, len, err);
        if (rc < 0)
                return rc;
        w->written += len;
        report(w, false);
        return 0;
}

static void fw_free(file_writer *w)
{
        kyb_closep(&w->fd);
        if (w->tmp[0])
                (void)unlinkat(w->dirfd, w->tmp, 0);
        kyb_closep(&w->dirfd);
        free(w->key);
        free(w);
}

static void fw_abort(kyb_storage_writer *base, kyb_error **err)
{
        fw_free((file_writer *)base);
}

/* Data durable and of the expected size, then the name; then the name durable. */
static int publish(file_writer *w, kyb_storage_object *info, kyb_error **err)
{
        struct stat st;

        if (fsync(w->fd) < 0)
                return kyb_error_set(err, errno, "fsync %s", w->key);
        if (fstat(w->fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", w->key);
        if ((uint64_t)st.st_size != w->written)
                return kyb_error_setf(err, EIO, "%s: stored %llu bytes of %llu", w->key,
                                      (unsigned long long)st.st_size,
                                      (unsigned long long)w->written);
        if (renameat(w->dirfd, w->tmp, w->dirfd, w->name) < 0)
                return kyb_error_set(err, errno, "renaming to %s", w->key);
        w->tmp[0] = '\0';
        if (fsync(w->dirfd) < 0)
                return kyb_error_set(err, errno, "fsync the directory of %s", w->key);
        if (info) {
                info->key = strdup(w->key);
                info->size = w->written;
                info->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                if (!info->key)
                        return kyb_error_set(err, ENOMEM, "%s", w->key);
        }
        return 0;
}

static int fw_commit(kyb_storage_writer *base, kyb_storage_object *info, kyb_error **err)
{
        file_writer *w = (file_writer *)base;
        int rc;

        rc = publish(w, info, err);
        if (rc >= 0)
                report(w, true);
        fw_free(w);
        return rc;
}

static const writer_ops file_writer_ops = {fw_write, fw_commit, fw_abort};

static int tmp_name(char buf[sizeof(TMP_PREFIX) + 16], kyb_error **err)
{
        uint64_t r;

        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
                return kyb_error_set(err, errno, "getrandom");
        snprintf(buf, sizeof(TMP_PREFIX) + 16, TMP_PREFIX "%016llx", (unsigned long long)r);
        return 0;
}

static int file_writer_open(kyb_storage *s, const char *key, kyb_storage_writer **out,
                            kyb_error **err)
{
        const file_storage *fs = s->impl;
        file_writer *w = calloc(1, sizeof(*w));
        const char *name = NULL;
        int rc;

        if (!w)
                return kyb_error_set(err, ENOMEM, "%s", key);
        *w = (file_writer){.base.ops = &file_writer_ops, .fs = fs, .dirfd = -1, .fd = -1};
        w->key = strdup(key);
        if (!w->key) {
                fw_free(w);
                return kyb_error_set(err, ENOMEM, "%s", key);
        }
        rc = w->dirfd = open_parent(fs, key, true, &name, err);
        if (rc >= 0) {
                w->name = w->key + (name - key);
                rc = tmp_name(w->tmp, err);
        }
        if (rc >= 0) {
                w->fd = openat(w->dirfd, w->tmp,
                               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (w->fd < 0)
                        rc = kyb_error_set(err, errno, "creating a temporary file for %s", key);
        }
        if (rc < 0) {
                if (w->fd < 0)
                        w->tmp[0] = '\0';
                fw_free(w);
                return rc;
        }
        *out = &w->base;
        return 0;
}

static ssize_t fr_read(kyb_storage_reader *base, void *buf, size_t len, kyb_error **err)
{
        file_reader *r = (file_reader *)base;
        ssize_t n;

        do
                n = read(r->fd, buf, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return kyb_error_set(err, errno, "reading %s", r->key);
        return n;
}

static void fr_close(kyb_storage_reader *base)
{
        file_reader *r = (file_reader *)base;

        kyb_closep(&r->fd);
        free(r->key);
        free(r);
}

static const reader_ops file_reader_ops = {fr_read, fr_close};

static int open_object(const file_storage *fs, const char *key, kyb_error **err)
{
        _cleanup_close_ int root = -1;
        _cleanup_close_ int fd = -1;
        struct stat st;

        root = open_root(fs, false, err);
        if (root < 0)
                return root;
        fd = kyb_fs_open_beneath(root, key, O_RDONLY | O_NONBLOCK, 0, err);
        if (fd == -ELOOP || fd == -ENOTDIR)
                return kyb_error_setf(err, ENOENT, "%s: not a regular file", key);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", key);
        if (!S_ISREG(st.st_mode))
                return kyb_error_setf(err, ENOENT, "%s: not a regular file", key);
        return TAKE_FD(fd);
}

static int file_reader_open(kyb_storage *s, const char *key, kyb_storage_reader **out,
                            kyb_error **err)
{
        file_reader *r;
        int fd;

        fd = open_object(s->impl, key, err);
        if (fd < 0)
                return fd;
        r = calloc(1, sizeof(*r));
        if (!r || !(r->key = strdup(key))) {
                free(r);
                close(fd);
                return kyb_error_set(err, ENOMEM, "%s", key);
        }
        r->base.ops = &file_reader_ops;
        r->fd = fd;
        *out = &r->base;
        return 0;
}

static int fill_object(kyb_storage_object *o, const char *key, const struct stat *st,
                       kyb_error **err)
{
        o->key = strdup(key);
        if (!o->key)
                return kyb_error_set(err, ENOMEM, "%s", key);
        o->size = (uint64_t)st->st_size;
        o->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
        return 0;
}

static int file_stat(kyb_storage *s, const char *key, kyb_storage_object *out, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open_object(s->impl, key, err);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", key);
        return fill_object(out, key, &st, err);
}

static int file_remove(kyb_storage *s, const char *key, kyb_error **err)
{
        _cleanup_close_ int dirfd = -1;
        const char *name = NULL;
        struct stat st;

        dirfd = open_parent(s->impl, key, false, &name, err);
        if (dirfd < 0)
                return dirfd;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return kyb_error_set(err, errno, "%s", key);
        if (!S_ISREG(st.st_mode))
                return kyb_error_setf(err, ENOENT, "%s: not a regular file", key);
        if (unlinkat(dirfd, name, 0) < 0)
                return kyb_error_set(err, errno, "removing %s", key);
        if (fsync(dirfd) < 0)
                return kyb_error_set(err, errno, "fsync the directory of %s", key);
        return 0;
}

typedef struct lister {
        const char *prefix;
        kyb_storage_object *v;
        size_t n;
        size_t cap;
} lister;

static int list_dir(lister *l, int dirfd, const char *rel, int depth, kyb_error **err);

static int list_entry(lister *l, int dirfd, const char *rel, const char *name, int depth,
                      kyb_error **err)
{
        _cleanup_free_ char *key = NULL;
        _cleanup_close_ int sub = -1;
        kyb_storage_object *o;
        struct stat st;

        if (name[0] == '.') /* ., .., and writers' temporary files */
                return 0;
        if (asprintf(&key, "%s%s%s", rel, *rel ? "/" : "", name) < 0) {
                key = NULL;
                return kyb_error_set(err, ENOMEM, "listing");
        }
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : kyb_error_set(err, errno, "stat %s", key);
        if (S_ISDIR(st.st_mode) && depth < LIST_DEPTH) {
                sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        return kyb_error_set(err, errno, "opening %s", key);
                return list_dir(l, sub, key, depth + 1, err);
        }
        if (!S_ISREG(st.st_mode) || kyb_storage_check_key(key, NULL) < 0 ||
            (l->prefix && strncmp(key, l->prefix, strlen(l->prefix))))
                return 0;
        o = storage_objects_push(&l->v, &l->n, &l->cap, err);
        if (!o)
                return -ENOMEM;
        return fill_object(o, key, &st, err);
}

static int list_dir(lister *l, int dirfd, const char *rel, int depth, kyb_error **err)
{
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        int rc = 0;

        if (!d) {
                rc = kyb_error_set(err, errno, "reading %s", *rel ? rel : "the root");
                if (fd >= 0)
                        close(fd);
                return rc;
        }
        while (rc >= 0 && (errno = 0, de = readdir(d)))
                rc = list_entry(l, dirfd, rel, de->d_name, depth, err);
        if (rc >= 0 && errno)
                rc = kyb_error_set(err, errno, "reading %s", *rel ? rel : "the root");
        closedir(d);
        return rc;
}

static int file_list(kyb_storage *s, const char *prefix, kyb_storage_object **out, size_t *n,
                     kyb_error **err)
{
        const file_storage *fs = s->impl;
        _cleanup_close_ int root = -1;
        lister l = {.prefix = prefix};
        int rc;

        root = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0 && errno == ENOENT)
                return 0; /* nothing stored yet */
        if (root < 0)
                return kyb_error_set(err, errno, "opening %s", fs->root);
        rc = list_dir(&l, root, "", 0, err);
        if (rc < 0) {
                kyb_storage_objects_free(l.v, l.n);
                return rc;
        }
        storage_objects_sort(l.v, l.n);
        *out = l.v;
        *n = l.n;
        return 0;
}

static void file_close(void *impl)
{
        file_storage *fs = impl;

        free(fs->root);
        free(fs);
}

static const storage_backend file_backend = {
    .writer_open = file_writer_open,
    .reader_open = file_reader_open,
    .list = file_list,
    .stat = file_stat,
    .remove = file_remove,
    .close = file_close,
};

int storage_file_open(kyb_storage *s, const kyb_storage_uri *u, const kyb_storage_opts *opts,
                      kyb_error **err)
{
        file_storage *fs = calloc(1, sizeof(*fs));

        if (!fs || !(fs->root = strdup(u->path))) {
                free(fs);
                return kyb_error_set(err, ENOMEM, "file storage");
        }
        fs->progress = opts->progress;
        fs->progress_ctx = opts->progress_ctx;
        fs->progress_every = opts->part_size ? opts->part_size : KYB_STORAGE_DEFAULT_PART;
        s->ops = &file_backend;
        s->impl = fs;
        return 0;
}
