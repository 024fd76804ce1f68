/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store/digest.h"
#include "store/fsutil.h"

/* Removal must cope with whatever a crashed CRIU left; our own trees are far shallower. */
#define RM_MAX_DEPTH 256

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

#define _cleanup_dir_ _cleanup_(closedirp)

/* A DIR stream with its own file offset, so dirfd stays usable by the caller. */
static int open_dir_stream(int dirfd, const char *what, DIR **out, kyb_error **err)
{
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return kyb_error_set(err, errno, "opening %s", what);
        *out = fdopendir(fd);
        if (!*out) {
                int e = errno;

                close(fd);
                return kyb_error_set(err, e, "reading %s", what);
        }
        return 0;
}

static bool is_dot(const char *name)
{
        return !strcmp(name, ".") || !strcmp(name, "..");
}

void kyb_fs_tree_clear(kyb_fs_tree *t)
{
        for (size_t i = 0; i < t->n; i++)
                free(t->v[i].path);
        free(t->v);
        *t = (kyb_fs_tree){0};
}

static int tree_push(kyb_fs_tree *t, char *path, const struct stat *st, kyb_error **err)
{
        kyb_fs_entry *nv = reallocarray(t->v, t->n + 1, sizeof(*nv));

        if (!nv) {
                free(path);
                return kyb_error_set(err, ENOMEM, "scanning");
        }
        t->v = nv;
        t->v[t->n++] = (kyb_fs_entry){path, (uint64_t)st->st_size, st->st_mode & 0777};
        return 0;
}

static int scan_dir(int dirfd, const char *prefix, int bad_errno, kyb_fs_tree *t, kyb_error **err);

static int scan_entry(int dirfd, const char *prefix, const char *name, int bad_errno,
                      kyb_fs_tree *t, kyb_error **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_error_ kyb_error *bad = NULL;
        _cleanup_close_ int sub = -1;
        struct stat st;

        if (!prefix && !strcmp(name, KYB_MANIFEST_NAME)) {
                t->has_manifest = true;
                return 0;
        }
        if (asprintf(&path, "%s%s%s", prefix ? prefix : "", prefix ? "/" : "", name) < 0)
                return kyb_error_set(err, ENOMEM, "scanning");
        if (kyb_manifest_check_path(path, &bad) < 0)
                return kyb_error_setf(err, bad_errno, "%s", kyb_error_message(bad));
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return kyb_error_set(err, errno, "stat %s", path);
        if (S_ISREG(st.st_mode))
                return tree_push(t, TAKE_PTR(path), &st, err);
        if (!S_ISDIR(st.st_mode))
                return kyb_error_setf(err, bad_errno, "%s: %s not allowed", path,
                                      S_ISLNK(st.st_mode) ? "symbolic link"
                                                          : "special file (device, FIFO, socket)");
        sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
                return kyb_error_set(err, errno, "opening %s", path);
        return scan_dir(sub, path, bad_errno, t, err);
}

static int scan_dir(int dirfd, const char *prefix, int bad_errno, kyb_fs_tree *t, kyb_error **err)
{
        _cleanup_dir_ DIR *d = NULL;
        struct dirent *de;
        int rc;

        rc = open_dir_stream(dirfd, prefix ? prefix : ".", &d, err);
        if (rc < 0)
                return rc;
        while ((errno = 0, de = readdir(d))) {
                if (is_dot(de->d_name))
                        continue;
                rc = scan_entry(dirfd, prefix, de->d_name, bad_errno, t, err);
                if (rc < 0)
                        return rc;
        }
        if (errno)
                return kyb_error_set(err, errno, "reading %s", prefix ? prefix : ".");
        return 0;
}

static int cmp_entry(const void *a, const void *b)
{
        return strcmp(((const kyb_fs_entry *)a)->path, ((const kyb_fs_entry *)b)->path);
}

int kyb_fs_scan(int dirfd, int bad_errno, kyb_fs_tree *out, kyb_error **err)
{
        int rc;

        *out = (kyb_fs_tree){0};
        rc = scan_dir(dirfd, NULL, bad_errno, out, err);
        if (rc < 0) {
                kyb_fs_tree_clear(out);
                return rc;
        }
        qsort(out->v, out->n, sizeof(*out->v), cmp_entry);
        return 0;
}

const kyb_fs_entry *kyb_fs_tree_find(const kyb_fs_tree *t, const char *path)
{
        kyb_fs_entry key = {.path = (char *)path};

        return t->n ? bsearch(&key, t->v, t->n, sizeof(*t->v), cmp_entry) : NULL;
}

static int rm_at(int dirfd, const char *name, int depth, uint64_t *freed, kyb_error **err);

static int rm_children(int dirfd, const char *name, int depth, uint64_t *freed, kyb_error **err)
{
        _cleanup_close_ int fd =
            openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_dir_ DIR *d = NULL;
        struct dirent *de;
        int rc;

        if (fd < 0)
                return kyb_error_set(err, errno, "opening %s", name);
        if (depth > RM_MAX_DEPTH)
                return kyb_error_setf(err, ELOOP, "removing %s: deeper than %d levels", name,
                                      RM_MAX_DEPTH);
        rc = open_dir_stream(fd, name, &d, err);
        if (rc < 0)
                return rc;
        while ((errno = 0, de = readdir(d))) {
                if (is_dot(de->d_name))
                        continue;
                rc = rm_at(fd, de->d_name, depth + 1, freed, err);
                if (rc < 0 && rc != -ENOENT)
                        return rc;
        }
        if (errno)
                return kyb_error_set(err, errno, "reading %s", name);
        return 0;
}

static int rm_at(int dirfd, const char *name, int depth, uint64_t *freed, kyb_error **err)
{
        struct stat st;
        int rc;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return kyb_error_set(err, errno, "stat %s", name);
        if (S_ISDIR(st.st_mode)) {
                rc = rm_children(dirfd, name, depth, freed, err);
                if (rc < 0)
                        return rc;
        }
        if (unlinkat(dirfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
                return kyb_error_set(err, errno, "removing %s", name);
        if (freed && S_ISREG(st.st_mode))
                *freed += (uint64_t)st.st_size;
        return 0;
}

int kyb_fs_rm_rf_at(int dirfd, const char *name, uint64_t *freed, kyb_error **err)
{
        return rm_at(dirfd, name, 0, freed, err);
}

/* d_type is DT_UNKNOWN on some file systems: ask stat then. */
static bool entry_is_dir(int dirfd, const struct dirent *de)
{
        struct stat st;

        if (de->d_type != DT_UNKNOWN)
                return de->d_type == DT_DIR;
        return fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int kyb_fs_fsync_dirs(int dirfd, kyb_error **err)
{
        _cleanup_dir_ DIR *d = NULL;
        struct dirent *de;
        int rc;

        rc = open_dir_stream(dirfd, "directory", &d, err);
        if (rc < 0)
                return rc;
        while ((errno = 0, de = readdir(d))) {
                _cleanup_close_ int sub = -1;

                if (is_dot(de->d_name) || !entry_is_dir(dirfd, de))
                        continue;
                sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        return kyb_error_set(err, errno, "opening %s", de->d_name);
                rc = kyb_fs_fsync_dirs(sub, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "%s", de->d_name);
        }
        if (errno)
                return kyb_error_set(err, errno, "reading directory");
        if (fsync(dirfd) < 0)
                return kyb_error_set(err, errno, "fsync directory");
        return 0;
}

/* Opens (creating if asked) the directory `name` below dirfd without following links. */
static int open_subdir(int dirfd, const char *name, bool create, kyb_error **err)
{
        int fd;

        if (create && mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
                return kyb_error_set(err, errno, "creating directory %s", name);
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return kyb_error_set(err, errno, "opening directory %s", name);
        return fd;
}

int kyb_fs_open_beneath(int dirfd, const char *path, int flags, mode_t mode, kyb_error **err)
{
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int cur = -1;
        char *comp, *slash;
        int fd;

        if (!copy)
                return kyb_error_set(err, ENOMEM, "opening %s", path);
        for (comp = copy; (slash = strchr(comp, '/')); comp = slash + 1) {
                int next;

                *slash = '\0';
                next = open_subdir(cur >= 0 ? cur : dirfd, comp, flags & O_CREAT, err);
                if (next < 0)
                        return kyb_error_wrap(err, next, "%s", path);
                kyb_closep(&cur);
                cur = next;
        }
        if (flags & O_CREAT)
                flags |= O_EXCL;
        fd = openat(cur >= 0 ? cur : dirfd, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return kyb_error_set(err, errno, "opening %s", path);
        /* The umask must not weaken or alter the recorded mode. */
        if ((flags & O_CREAT) && fchmod(fd, mode) < 0) {
                int e = errno;

                close(fd);
                return kyb_error_set(err, e, "chmod %s", path);
        }
        return fd;
}

static int write_all(int fd, const char *name, const void *data, size_t len, kyb_error **err)
{
        const char *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "writing %s", name);
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int read_some(int fd, const char *name, void *buf, size_t len, size_t *got, kyb_error **err)
{
        for (;;) {
                ssize_t n = read(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "reading %s", name);
                *got = (size_t)n;
                return 0;
        }
}

int kyb_fs_hash_copy(int in_fd, int out_fd, const char *name, uint64_t max, uint64_t *size,
                     char sha256[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        _cleanup_sha256_ kyb_sha256 *h = NULL;
        _cleanup_free_ char *buf = malloc(KYB_FS_CHUNK);
        uint64_t total = 0;
        size_t got = 0;
        int rc;

        if (!buf)
                return kyb_error_set(err, ENOMEM, "hashing %s", name);
        rc = kyb_sha256_new(&h, err);
        if (rc < 0)
                return rc;
        (void)posix_fadvise(in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (;;) {
                rc = read_some(in_fd, name, buf, KYB_FS_CHUNK, &got, err);
                if (rc < 0 || got == 0)
                        break;
                total += got;
                if (total > max)
                        return kyb_error_setf(err, EBADMSG, "%s: larger than %llu bytes", name,
                                              (unsigned long long)max);
                if ((rc = kyb_sha256_update(h, buf, got, err)) < 0 ||
                    (out_fd >= 0 && (rc = write_all(out_fd, name, buf, got, err)) < 0))
                        break;
        }
        if (rc < 0)
                return rc;
        *size = total;
        return kyb_sha256_final(h, sha256, err);
}

int kyb_fs_write_at(int dirfd, const char *tmp, const char *name, const void *data, size_t len,
                    mode_t mode, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        int rc;

        (void)unlinkat(dirfd, tmp, 0);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return kyb_error_set(err, errno, "creating %s", tmp);
        rc = write_all(fd, name, data, len, err);
        if (rc >= 0 && fchmod(fd, mode) < 0)
                rc = kyb_error_set(err, errno, "chmod %s", name);
        /* Data first, then the name: after a crash, name is old or complete, never partial. */
        if (rc >= 0 && fsync(fd) < 0)
                rc = kyb_error_set(err, errno, "fsync %s", name);
        if (rc >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                rc = kyb_error_set(err, errno, "renaming %s to %s", tmp, name);
        if (rc < 0)
                (void)unlinkat(dirfd, tmp, 0);
        return rc;
}
