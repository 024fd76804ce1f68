/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extraction of an untrusted tar + zstd stream. Every entry is checked
 * before anything is created for it; files are created below a directory
 * fd, component by component, never following a link, and hashed as they
 * are written, so the digests compared with the manifest at the end are
 * those of the bytes on disk.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

#include "archive/archive-internal.h"
#include "store/digest.h"
#include "store/fsutil.h"

#define DIR_MODE 0755
/* Extracted files are never group- or world-writable, whatever the archive says. */
#define FILE_PERM_MASK 0755
/* Tar framing per entry (header, pax header, padding) allowed on top of the file bytes. */
#define ENTRY_OVERHEAD ((uint64_t)4096)
#define TAR_TRAILER    ((uint64_t)64 << 10)
#define SHOWN_NAME_MAX 128

typedef struct extractor {
        zstd_in z;
        struct archive *a;
        kyb_error *cb_err; /* what the source or decompressor reported to libarchive */
        int cb_rc;
        int destfd;
        kyb_archive_limits limits;
        uint64_t entries;
        uint64_t total;       /* declared bytes of all files so far */
        uint64_t handed;      /* decompressed bytes handed to libarchive */
        uint64_t nonzero_end; /* offset after the last non-zero byte handed to it */
        extracted files;
        bool seen_manifest;
} extractor;

static void extractor_clear(extractor *x)
{
        if (x->a)
                archive_read_free(x->a);
        zstd_in_clear(&x->z);
        kyb_error_free(x->cb_err);
        extracted_clear(&x->files);
}

/*
 * libarchive reads ahead and stops at the end-of-archive blocks without
 * saying how much of what it read lies beyond them. Knowing where the last
 * non-zero byte was lets the end be checked: after it, only zeros.
 */
static void track_nonzero(extractor *x, const void *data, size_t len)
{
        const unsigned char *p = data;

        for (size_t i = len; i > 0; i--) {
                if (p[i - 1]) {
                        x->nonzero_end = x->handed + i;
                        break;
                }
        }
        x->handed += len;
}

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **buf)
{
        extractor *x = ctx;
        ssize_t n = zstd_in_read(&x->z, buf, &x->cb_err);

        if (n < 0) {
                x->cb_rc = (int)n;
                archive_set_error(a, (int)-n, "input failed");
                return -1;
        }
        track_nonzero(x, *buf, (size_t)n);
        return n;
}

static int tar_error(extractor *x, const char *what, kyb_error **err)
{
        const char *msg = archive_error_string(x->a);

        if (x->cb_rc < 0 && x->cb_err)
                return kyb_error_move(err, &x->cb_err);
        if (x->cb_rc < 0)
                return kyb_error_set(err, -x->cb_rc, "input");
        return kyb_error_setf(err, EBADMSG, "tar: %s: %s", what, msg ? msg : "damaged archive");
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
        return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
        return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static kyb_archive_limits effective_limits(const kyb_archive_limits *l)
{
        kyb_archive_limits out = l ? *l : (kyb_archive_limits){0};

        if (!out.max_file_bytes)
                out.max_file_bytes = KYB_ARCHIVE_DEFAULT_MAX_FILE_BYTES;
        if (!out.max_total_bytes)
                out.max_total_bytes = KYB_ARCHIVE_DEFAULT_MAX_TOTAL_BYTES;
        if (!out.max_entries)
                out.max_entries = KYB_ARCHIVE_DEFAULT_MAX_ENTRIES;
        return out;
}

/* The most decompressed bytes a stream within the limits can need. */
static uint64_t stream_limit(const kyb_archive_limits *l)
{
        uint64_t framing = sat_mul(sat_add(l->max_entries, 1), ENTRY_OVERHEAD);

        return sat_add(sat_add(l->max_total_bytes, framing), TAR_TRAILER);
}

static int check_type(struct archive_entry *e, const char *name, kyb_error **err)
{
        if (archive_entry_hardlink(e))
                return kyb_error_setf(err, EBADMSG, "%s: hard link not allowed", name);
        if (archive_entry_symlink(e))
                return kyb_error_setf(err, EBADMSG, "%s: symbolic link not allowed", name);
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
        case AE_IFDIR:
                break;
        case AE_IFLNK:
                return kyb_error_setf(err, EBADMSG, "%s: symbolic link not allowed", name);
        case AE_IFCHR:
        case AE_IFBLK:
                return kyb_error_setf(err, EBADMSG, "%s: device file not allowed", name);
        case AE_IFIFO:
                return kyb_error_setf(err, EBADMSG, "%s: FIFO not allowed", name);
        default:
                return kyb_error_setf(err, EBADMSG, "%s: unsupported entry type", name);
        }
        if (archive_entry_sparse_count(e) > 0)
                return kyb_error_setf(err, EBADMSG, "%s: sparse file not supported", name);
        return 0;
}

static bool has_dotdot(const char *p)
{
        for (const char *c = p; c; c = strchr(c, '/')) {
                if (*c == '/')
                        c++;
                if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0'))
                        return true;
        }
        return false;
}

/* The entry's path as it will be created, or an error naming the raw path. */
static int check_path(const char *raw, const char *shown, bool is_dir, char **out, kyb_error **err)
{
        _cleanup_free_ char *p = NULL;
        size_t len;
        int rc;

        if (!raw || !*raw)
                return kyb_error_setf(err, EBADMSG, "entry without a name");
        if (raw[0] == '/')
                return kyb_error_setf(err, EBADMSG, "%s: absolute path not allowed", shown);
        if (has_dotdot(raw))
                return kyb_error_setf(err, EBADMSG, "%s: '..' not allowed", shown);
        p = strdup(raw);
        if (!p)
                return kyb_error_set(err, ENOMEM, "%s", shown);
        len = strlen(p);
        if (is_dir && len > 1 && p[len - 1] == '/')
                p[len - 1] = '\0';
        if (is_dir || strcmp(p, KYB_MANIFEST_NAME)) {
                rc = kyb_manifest_check_path(p, err);
                if (rc < 0)
                        return rc;
        }
        *out = TAKE_PTR(p);
        return 0;
}

/* mkdir -p below dirfd, refusing anything that is not a real directory on the way. */
static int mkdir_beneath(int dirfd, const char *path, kyb_error **err)
{
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int cur = -1;
        char *save = NULL;

        if (!copy)
                return kyb_error_set(err, ENOMEM, "%s", path);
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int at = cur >= 0 ? cur : dirfd;
                int next;

                if (mkdirat(at, c, DIR_MODE) < 0 && errno != EEXIST)
                        return kyb_error_set(err, errno, "creating %s", path);
                next = openat(at, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0 && (errno == ENOTDIR || errno == ELOOP))
                        return kyb_error_setf(err, EBADMSG, "%s: conflicts with a file", path);
                if (next < 0)
                        return kyb_error_set(err, errno, "opening %s", path);
                kyb_closep(&cur);
                cur = next;
        }
        return 0;
}

static int write_all(int fd, const char *path, const void *data, size_t len, kyb_error **err)
{
        const char *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "writing %s", path);
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* The entry's data into fd, hashed on the way; exactly `size` bytes, no holes. */
static int copy_data(extractor *x, int fd, const char *path, uint64_t size,
                     char sha[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        _cleanup_sha256_ kyb_sha256 *h = NULL;
        uint64_t written = 0;
        const void *buf;
        size_t n;
        la_int64_t off;
        int r, rc;

        rc = kyb_sha256_new(&h, err);
        if (rc < 0)
                return rc;
        while ((r = archive_read_data_block(x->a, &buf, &n, &off)) == ARCHIVE_OK) {
                if (off < 0 || (uint64_t)off != written || n > size - written)
                        return kyb_error_setf(err, EBADMSG, "%s: data outside the entry", path);
                written += n;
                if ((rc = kyb_sha256_update(h, buf, n, err)) < 0 ||
                    (rc = write_all(fd, path, buf, n, err)) < 0)
                        return rc;
        }
        if (r != ARCHIVE_EOF)
                return tar_error(x, path, err);
        if (written != size)
                return kyb_error_setf(err, EBADMSG, "%s: %llu of %llu bytes", path,
                                      (unsigned long long)written, (unsigned long long)size);
        return kyb_sha256_final(h, sha, err);
}

static int check_size(extractor *x, struct archive_entry *e, const char *path, uint64_t *size,
                      kyb_error **err)
{
        la_int64_t s = archive_entry_size(e);

        if (!archive_entry_size_is_set(e) || s < 0)
                return kyb_error_setf(err, EBADMSG, "%s: no size", path);
        *size = (uint64_t)s;
        if (*size > x->limits.max_file_bytes)
                return kyb_error_setf(err, EFBIG, "%s: %llu bytes, more than the limit of %llu",
                                      path, (unsigned long long)*size,
                                      (unsigned long long)x->limits.max_file_bytes);
        if (!strcmp(path, KYB_MANIFEST_NAME) && *size > KYB_MANIFEST_MAX_BYTES)
                return kyb_error_setf(err, EBADMSG, "%s: larger than %d bytes", path,
                                      KYB_MANIFEST_MAX_BYTES);
        x->total = sat_add(x->total, *size);
        if (x->total > x->limits.max_total_bytes)
                return kyb_error_setf(err, EFBIG, "%s: files exceed the limit of %llu bytes", path,
                                      (unsigned long long)x->limits.max_total_bytes);
        return 0;
}

static int extract_file(extractor *x, struct archive_entry *e, const char *path, kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        char sha[KYB_SHA256_HEX_LEN + 1];
        uint64_t size = 0;
        int rc;

        rc = check_size(x, e, path, &size, err);
        if (rc < 0)
                return rc;
        fd = kyb_fs_open_beneath(x->destfd, path, O_WRONLY | O_CREAT,
                                 archive_entry_perm(e) & FILE_PERM_MASK, err);
        if (fd == -EEXIST)
                return kyb_error_setf(err, EBADMSG, "%s: duplicate entry", path);
        if (fd == -ENOTDIR || fd == -ELOOP)
                return kyb_error_setf(err, EBADMSG, "%s: conflicts with another entry", path);
        if (fd < 0)
                return fd;
        rc = copy_data(x, fd, path, size, sha, err);
        if (rc < 0)
                return rc;
        if (!strcmp(path, KYB_MANIFEST_NAME)) {
                x->seen_manifest = true;
                return 0;
        }
        return extracted_add(&x->files, path, size, sha, err);
}

/* Names from the archive go into messages: no control characters, bounded length. */
static const char *shown_name(const char *raw, char buf[SHOWN_NAME_MAX])
{
        size_t i = 0;

        if (!raw)
                return "(unnamed)";
        for (; raw[i] && i < SHOWN_NAME_MAX - 1; i++)
                buf[i] = raw[i] > 0x20 && raw[i] < 0x7f ? raw[i] : '?';
        buf[i] = '\0';
        return buf;
}

static int extract_entry(extractor *x, struct archive_entry *e, kyb_error **err)
{
        const char *raw = archive_entry_pathname(e);
        _cleanup_free_ char *path = NULL;
        char buf[SHOWN_NAME_MAX];
        const char *shown = shown_name(raw, buf);
        bool is_dir;
        int rc;

        if (++x->entries > x->limits.max_entries)
                return kyb_error_setf(err, EFBIG, "more than %llu entries",
                                      (unsigned long long)x->limits.max_entries);
        rc = check_type(e, shown, err);
        if (rc < 0)
                return rc;
        is_dir = archive_entry_filetype(e) == AE_IFDIR;
        rc = check_path(raw, shown, is_dir, &path, err);
        if (rc < 0)
                return rc;
        if (is_dir)
                return mkdir_beneath(x->destfd, path, err);
        return extract_file(x, e, path, err);
}

static bool all_zero(const void *data, size_t len)
{
        const unsigned char *p = data;

        for (size_t i = 0; i < len; i++)
                if (p[i])
                        return false;
        return true;
}

/* After the tar end: only zero padding may follow, and the zstd frame must end cleanly. */
static int drain(extractor *x, kyb_error **err)
{
        /* At the end, the header position is where the end-of-archive blocks begin. */
        la_int64_t end = archive_read_header_position(x->a);

        if (end < 0 || x->nonzero_end > (uint64_t)end)
                return kyb_error_setf(err, EBADMSG, "data after the end of the archive");
        for (;;) {
                const void *data = NULL;
                ssize_t n = zstd_in_read(&x->z, &data, err);

                if (n <= 0)
                        return (int)n;
                if (!all_zero(data, (size_t)n))
                        return kyb_error_setf(err, EBADMSG, "data after the end of the archive");
        }
}

static int open_reader(extractor *x, kyb_archive_source_fn source, void *ctx, kyb_error **err)
{
        int rc;

        rc = zstd_in_init(&x->z, source, ctx, stream_limit(&x->limits), err);
        if (rc < 0)
                return rc;
        x->a = archive_read_new();
        if (!x->a)
                return kyb_error_set(err, ENOMEM, "tar");
        /* tar only, no filters: the compression is ours, bounded by the limits above. */
        if (archive_read_support_format_tar(x->a) != ARCHIVE_OK ||
            archive_read_open(x->a, x, NULL, read_cb, NULL) != ARCHIVE_OK)
                return tar_error(x, "opening", err);
        return 0;
}

static int extract_all(extractor *x, kyb_error **err)
{
        struct archive_entry *e;
        int r, rc;

        /* libarchive's warnings (odd headers, charset trouble) are failures here. */
        while ((r = archive_read_next_header(x->a, &e)) == ARCHIVE_OK) {
                rc = extract_entry(x, e, err);
                if (rc < 0)
                        return rc;
        }
        if (r != ARCHIVE_EOF)
                return tar_error(x, "reading", err);
        rc = drain(x, err);
        if (rc < 0)
                return rc;
        if (!x->seen_manifest)
                return kyb_error_setf(err, EBADMSG, "%s is missing", KYB_MANIFEST_NAME);
        return archive_verify_extracted(x->destfd, &x->files, err);
}

static int extract(kyb_archive_source_fn source, void *ctx, int destfd,
                   const kyb_archive_limits *limits, kyb_error **err)
{
        _cleanup_(extractor_clear) extractor x = {.destfd = destfd};
        int rc;

        x.limits = effective_limits(limits);
        rc = open_reader(&x, source, ctx, err);
        if (rc < 0)
                return rc;
        return extract_all(&x, err);
}

/* Splits dest into an open parent directory and the name to create in it. */
static int open_parent(const char *dest, int *parentfd, char **name, kyb_error **err)
{
        _cleanup_free_ char *d = strdup(dest);
        _cleanup_free_ char *b = strdup(dest);
        const char *base;

        if (!d || !b)
                return kyb_error_set(err, ENOMEM, "%s", dest);
        base = basename(b);
        if (!strcmp(base, "/") || !strcmp(base, ".") || !strcmp(base, ".."))
                return kyb_error_setf(err, EINVAL, "%s: not a directory name to create", dest);
        *parentfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (*parentfd < 0)
                return kyb_error_set(err, errno, "opening the parent of %s", dest);
        *name = strdup(base);
        if (!*name)
                return kyb_error_set(err, ENOMEM, "%s", dest);
        return 0;
}

static int extract_into(kyb_archive_source_fn source, void *ctx, const char *dest,
                        const kyb_archive_limits *limits, kyb_error **err)
{
        _cleanup_close_ int parentfd = -1;
        _cleanup_close_ int destfd = -1;
        _cleanup_free_ char *name = NULL;
        int rc;

        rc = open_parent(dest, &parentfd, &name, err);
        if (rc < 0)
                return rc;
        if (mkdirat(parentfd, name, DIR_MODE) < 0)
                return kyb_error_set(err, errno, "creating %s", dest);
        destfd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (destfd < 0)
                rc = kyb_error_set(err, errno, "opening %s", dest);
        else
                rc = extract(source, ctx, destfd, limits, err);
        if (rc < 0)
                (void)kyb_fs_rm_rf_at(parentfd, name, NULL, NULL);
        return rc;
}

int kyb_archive_extract(kyb_archive_source_fn source, void *source_ctx, const char *dest_dir,
                        const kyb_archive_limits *limits, kyb_error **err)
{
        int rc;

        if (!source || !dest_dir || !*dest_dir)
                return kyb_error_setf(err, EINVAL, "extract: no source or destination");
        rc = extract_into(source, source_ctx, dest_dir, limits, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "extract to %s", dest_dir);
        return 0;
}
