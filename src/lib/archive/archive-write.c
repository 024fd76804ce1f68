/* SPDX-License-Identifier: Apache-2.0 */
/* A checkpoint directory as one tar + zstd stream. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "archive/archive-internal.h"
#include "store/digest.h"
#include "store/fsutil.h"

#define DIR_MODE 0755

typedef struct writer {
        zstd_out z;
        struct archive *a;
        struct archive_entry *entry;
        kyb_error *cb_err; /* what the sink reported, when it stopped libarchive */
        int cb_rc;
        int dirfd;
        time_t mtime; /* every entry carries the checkpoint's creation time */
        char **dirs;  /* directory entries written so far */
        size_t n_dirs;
        char *buf;
        kyb_archive_stats stats;
} writer;

static void writer_clear(writer *w)
{
        if (w->a)
                archive_write_free(w->a);
        archive_entry_free(w->entry);
        zstd_out_clear(&w->z);
        kyb_error_free(w->cb_err);
        for (size_t i = 0; i < w->n_dirs; i++)
                free(w->dirs[i]);
        free(w->dirs);
        free(w->buf);
        kyb_closep(&w->dirfd);
}

/* libarchive's output: blocks of tar, compressed on their way to the sink. */
static la_ssize_t write_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
        writer *w = ctx;
        int rc = zstd_out_write(&w->z, buf, len, false, &w->cb_err);

        if (rc < 0) {
                w->cb_rc = rc;
                archive_set_error(a, -rc, "output failed");
                return -1;
        }
        w->stats.tar_bytes += len;
        return (la_ssize_t)len;
}

/* A libarchive failure: the sink's own error when it caused it. */
static int tar_error(writer *w, const char *what, kyb_error **err)
{
        if (w->cb_rc < 0 && w->cb_err)
                return kyb_error_move(err, &w->cb_err);
        if (w->cb_rc < 0)
                return kyb_error_set(err, -w->cb_rc, "output");
        return kyb_error_setf(err, EIO, "tar: %s: %s", what,
                              archive_error_string(w->a) ? archive_error_string(w->a)
                                                         : "unknown error");
}

static int write_header(writer *w, const char *path, mode_t type, mode_t perm, uint64_t size,
                        kyb_error **err)
{
        archive_entry_clear(w->entry);
        archive_entry_set_pathname(w->entry, path);
        archive_entry_set_filetype(w->entry, type);
        archive_entry_set_perm(w->entry, perm);
        archive_entry_set_size(w->entry, (la_int64_t)size);
        archive_entry_set_mtime(w->entry, w->mtime, 0);
        archive_entry_set_uid(w->entry, 0);
        archive_entry_set_gid(w->entry, 0);
        if (archive_write_header(w->a, w->entry) != ARCHIVE_OK)
                return tar_error(w, path, err);
        return 0;
}

static bool dir_written(const writer *w, const char *dir)
{
        for (size_t i = w->n_dirs; i > 0; i--)
                if (!strcmp(w->dirs[i - 1], dir))
                        return true;
        return false;
}

/* Entries for the parent directories of path not written yet, outermost first. */
static int write_parents(writer *w, const char *path, kyb_error **err)
{
        for (const char *slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
                _cleanup_free_ char *dir = strndup(path, (size_t)(slash - path));
                char **nv;
                int rc;

                if (!dir)
                        return kyb_error_set(err, ENOMEM, "archiving %s", path);
                if (dir_written(w, dir))
                        continue;
                rc = write_header(w, dir, AE_IFDIR, DIR_MODE, 0, err);
                if (rc < 0)
                        return rc;
                nv = reallocarray(w->dirs, w->n_dirs + 1, sizeof(*nv));
                if (!nv)
                        return kyb_error_set(err, ENOMEM, "archiving %s", path);
                w->dirs = nv;
                w->dirs[w->n_dirs++] = TAKE_PTR(dir);
        }
        return 0;
}

static int write_data(writer *w, const char *path, const void *data, size_t len, kyb_error **err)
{
        if (len > 0 && archive_write_data(w->a, data, len) != (la_ssize_t)len)
                return tar_error(w, path, err);
        return 0;
}

static int read_chunk(int fd, const char *path, void *buf, size_t len, size_t *got, kyb_error **err)
{
        ssize_t n;

        do
                n = read(fd, buf, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return kyb_error_set(err, errno, "reading %s", path);
        *got = (size_t)n;
        return 0;
}

/* Streams an open file into the archive, hashing what it sends. */
static int copy_file(writer *w, int fd, const kyb_manifest_file *f, kyb_error **err)
{
        _cleanup_sha256_ kyb_sha256 *h = NULL;
        char sha[KYB_SHA256_HEX_LEN + 1];
        uint64_t total = 0;
        size_t got = 0;
        int rc;

        rc = kyb_sha256_new(&h, err);
        if (rc < 0)
                return rc;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (;;) {
                rc = read_chunk(fd, f->path, w->buf, ARCHIVE_CHUNK, &got, err);
                if (rc < 0 || got == 0)
                        break;
                /* The header already promised f->size bytes: growth cannot be archived. */
                if (got > f->size - total)
                        return kyb_error_setf(err, EBADMSG, "%s: larger than the manifest says",
                                              f->path);
                total += got;
                if ((rc = kyb_sha256_update(h, w->buf, got, err)) < 0 ||
                    (rc = write_data(w, f->path, w->buf, got, err)) < 0)
                        return rc;
        }
        if (rc < 0)
                return rc;
        if (total != f->size)
                return kyb_error_setf(err, EBADMSG, "%s: size %llu, manifest says %llu", f->path,
                                      (unsigned long long)total, (unsigned long long)f->size);
        rc = kyb_sha256_final(h, sha, err);
        if (rc < 0)
                return rc;
        if (strcmp(sha, f->sha256))
                return kyb_error_setf(err, EBADMSG,
                                      "%s: SHA-256 mismatch (manifest %.16s..., file %.16s...)",
                                      f->path, f->sha256, sha);
        return 0;
}

static int write_file(writer *w, const kyb_manifest_file *f, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int rc;

        rc = write_parents(w, f->path, err);
        if (rc < 0)
                return rc;
        /* O_NONBLOCK: a FIFO in place of an image must not hang the upload. */
        fd = kyb_fs_open_beneath(w->dirfd, f->path, O_RDONLY | O_NONBLOCK, 0, err);
        if (fd == -ELOOP || fd == -ENOTDIR)
                return kyb_error_setf(err, EBADMSG, "%s: symbolic link not allowed", f->path);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", f->path);
        if (!S_ISREG(st.st_mode))
                return kyb_error_setf(err, EBADMSG, "%s: not a regular file", f->path);
        if ((uint64_t)st.st_size != f->size)
                return kyb_error_setf(err, EBADMSG, "%s: size %llu, manifest says %llu", f->path,
                                      (unsigned long long)st.st_size, (unsigned long long)f->size);
        rc = write_header(w, f->path, AE_IFREG, f->mode & 0777, f->size, err);
        if (rc < 0)
                return rc;
        rc = copy_file(w, fd, f, err);
        if (rc < 0)
                return rc;
        w->stats.files++;
        w->stats.file_bytes += f->size;
        return 0;
}

static int cmp_file_ptr(const void *a, const void *b)
{
        return strcmp((*(const kyb_manifest_file *const *)a)->path,
                      (*(const kyb_manifest_file *const *)b)->path);
}

/* The manifest's files in path order: the archive must not depend on how the list was built. */
static int sorted_files(const kyb_manifest *m, const kyb_manifest_file ***out, kyb_error **err)
{
        const kyb_manifest_file **v = calloc(m->n_files + 1, sizeof(*v));

        if (!v)
                return kyb_error_set(err, ENOMEM, "archiving");
        for (size_t i = 0; i < m->n_files; i++)
                v[i] = &m->files[i];
        qsort(v, m->n_files, sizeof(*v), cmp_file_ptr);
        *out = v;
        return 0;
}

static int open_archive(writer *w, const kyb_archive_write_opts *opts, kyb_archive_sink_fn sink,
                        void *sink_ctx, kyb_error **err)
{
        int rc;

        rc = zstd_out_init(&w->z, opts, sink, sink_ctx, err);
        if (rc < 0)
                return rc;
        w->a = archive_write_new();
        w->entry = archive_entry_new();
        w->buf = malloc(ARCHIVE_CHUNK);
        if (!w->a || !w->entry || !w->buf)
                return kyb_error_set(err, ENOMEM, "archiving");
        /* ustar headers, pax extensions only where ustar cannot say it (long names, > 8 GiB). */
        if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
            archive_write_open2(w->a, w, NULL, write_cb, NULL, NULL) != ARCHIVE_OK)
                return tar_error(w, "opening", err);
        return 0;
}

static int write_all_entries(writer *w, const kyb_manifest *m, const char *raw, size_t raw_len,
                             kyb_error **err)
{
        _cleanup_free_ const kyb_manifest_file **files = NULL;
        int rc;

        rc = sorted_files(m, &files, err);
        if (rc < 0)
                return rc;
        for (size_t i = 0; i < m->n_files; i++) {
                rc = write_file(w, files[i], err);
                if (rc < 0)
                        return rc;
        }
        /* Last: a reader that sees the manifest has seen everything it lists. */
        if ((rc = write_header(w, KYB_MANIFEST_NAME, AE_IFREG, 0644, raw_len, err)) < 0 ||
            (rc = write_data(w, KYB_MANIFEST_NAME, raw, raw_len, err)) < 0)
                return rc;
        w->stats.files++;
        w->stats.file_bytes += raw_len;
        if (archive_write_close(w->a) != ARCHIVE_OK)
                return tar_error(w, "closing", err);
        return zstd_out_write(&w->z, NULL, 0, true, err);
}

static int write_archive(const char *dir, kyb_archive_sink_fn sink, void *sink_ctx,
                         const kyb_archive_write_opts *opts, kyb_archive_stats *stats,
                         kyb_error **err)
{
        _cleanup_(writer_clear) writer w = {.dirfd = -1};
        _cleanup_manifest_ kyb_manifest *m = NULL;
        _cleanup_free_ char *raw = NULL;
        size_t raw_len = 0;
        int rc;

        w.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w.dirfd < 0)
                return kyb_error_set(err, errno, "opening %s", dir);
        rc = kyb_manifest_read_at(w.dirfd, KYB_MANIFEST_NAME, &m, NULL, &raw, &raw_len, err);
        if (rc < 0)
                return rc;
        w.mtime = (time_t)(m->created_at_ns / 1000000000);
        rc = open_archive(&w, opts, sink, sink_ctx, err);
        if (rc < 0)
                return rc;
        rc = write_all_entries(&w, m, raw, raw_len, err);
        if (rc < 0)
                return rc;
        w.stats.compressed_bytes = w.z.out_bytes;
        if (stats)
                *stats = w.stats;
        return 0;
}

int kyb_archive_write(const char *checkpoint_dir, kyb_archive_sink_fn sink, void *sink_ctx,
                      const kyb_archive_write_opts *opts, kyb_archive_stats *stats, kyb_error **err)
{
        int rc;

        if (stats)
                *stats = (kyb_archive_stats){0};
        if (!checkpoint_dir || !*checkpoint_dir || !sink)
                return kyb_error_setf(err, EINVAL, "archive: no checkpoint directory or sink");
        rc = write_archive(checkpoint_dir, sink, sink_ctx, opts, stats, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "archive %s", checkpoint_dir);
        return 0;
}
