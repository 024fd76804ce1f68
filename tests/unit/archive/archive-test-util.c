/* SPDX-License-Identifier: Apache-2.0 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <zstd.h>

#include "archive-test-util.h"
#include "store/store.h"

void mb_free(membuf *b)
{
        free(b->data);
        *b = (membuf){0};
}

void mb_append(membuf *b, const void *data, size_t len)
{
        if (b->len + len > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;

                while (cap < b->len + len)
                        cap *= 2;
                b->data = realloc(b->data, cap);
                assert_non_null(b->data);
                b->cap = cap;
        }
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
}

int mb_sink(void *ctx, const void *buf, size_t len, kyb_error **err)
{
        membuf *b = ctx;

        if (b->fail_after && b->len + len > b->fail_after)
                return kyb_error_setf(err, -b->fail_rc, "test sink is full");
        mb_append(b, buf, len);
        return 0;
}

ssize_t mb_source(void *ctx, void *buf, size_t len, kyb_error **err)
{
        membuf *b = ctx;
        size_t n = KYB_MIN(len, b->len - b->pos);

        /* Odd-sized pieces: boundaries must not matter to the reader. */
        n = KYB_MIN(n, b->chunk ? b->chunk : 7919);
        memcpy(buf, b->data + b->pos, n);
        b->pos += n;
        return (ssize_t)n;
}

/* Compresses everything libarchive writes, streaming, so huge zero paddings stay cheap. */
typedef struct zsink {
        ZSTD_CCtx *cctx;
        membuf *out;
        unsigned char buf[1 << 16];
} zsink;

static void zs_push(zsink *z, const void *data, size_t len, ZSTD_EndDirective mode)
{
        ZSTD_inBuffer ib = {data, len, 0};

        for (;;) {
                ZSTD_outBuffer ob = {z->buf, sizeof(z->buf), 0};
                size_t r = ZSTD_compressStream2(z->cctx, &ob, &ib, mode);

                assert_false(ZSTD_isError(r));
                mb_append(z->out, z->buf, ob.pos);
                if (mode == ZSTD_e_end ? r == 0 : ib.pos == ib.size)
                        return;
        }
}

static la_ssize_t zs_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
        zs_push(ctx, buf, len, ZSTD_e_continue);
        return (la_ssize_t)len;
}

static void add_entry(struct archive *a, const tentry *t)
{
        struct archive_entry *e = archive_entry_new();
        uint64_t size = t->declared > t->len ? t->declared : t->len;
        mode_t type = t->type ? t->type : AE_IFREG;

        archive_entry_set_pathname(e, t->path);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_mtime(e, 1714564800, 0);
        if (type == AE_IFLNK)
                archive_entry_set_symlink(e, t->link);
        if (t->hardlink)
                archive_entry_set_hardlink(e, t->link);
        if (type == AE_IFCHR)
                archive_entry_set_rdev(e, makedev(1, 3));
        archive_entry_set_size(e, type == AE_IFREG && !t->hardlink ? (la_int64_t)size : 0);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (t->len)
                assert_int_equal(archive_write_data(a, t->data, t->len), (la_ssize_t)t->len);
        archive_entry_free(e);
}

static void build(const tentry *v, size_t n, uint64_t zero_tail, const void *trail,
                  size_t trail_len, membuf *out)
{
        static const unsigned char zeros[1 << 16];
        zsink *z = calloc(1, sizeof(*z));
        struct archive *a = archive_write_new();

        assert_non_null(z);
        z->cctx = ZSTD_createCCtx();
        z->out = out;
        ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, 1);
        ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open2(a, z, NULL, zs_write, NULL, NULL), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++)
                add_entry(a, &v[i]);
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        for (uint64_t left = zero_tail; left > 0;) {
                size_t k = (size_t)KYB_MIN(left, (uint64_t)sizeof(zeros));

                zs_push(z, zeros, k, ZSTD_e_continue);
                left -= k;
        }
        if (trail_len)
                zs_push(z, trail, trail_len, ZSTD_e_continue);
        zs_push(z, NULL, 0, ZSTD_e_end);
        ZSTD_freeCCtx(z->cctx);
        free(z);
}

void tb_build(const tentry *v, size_t n, uint64_t zero_tail, membuf *out)
{
        build(v, n, zero_tail, NULL, 0, out);
}

void tb_build_trailing(const tentry *v, size_t n, uint64_t zero_tail, const void *trail,
                       size_t trail_len, membuf *out)
{
        build(v, n, zero_tail, trail, trail_len, out);
}

char *ut_make_checkpoint(const char *tmp, size_t pages_size)
{
        _cleanup_free_ char *root = tu_path(tmp, "store");
        kyb_store *s = NULL;

        assert_int_equal(kyb_store_open(root, &s, NULL), 0);
        tu_make_checkpoint(s, "c1", 1714564800123456789LL, pages_size, NULL);
        kyb_store_close(s);
        return tu_path(root, "c1");
}

static void load_one(const char *dir, const char *rel, ckpt_files *f)
{
        size_t len = 0;
        char *data = tu_read(dir, rel, &len);

        assert_true(f->n < KYB_ARRAY_SIZE(f->v));
        f->paths[f->n] = strdup(rel);
        f->data[f->n] = data;
        f->v[f->n] = (tentry){.path = f->paths[f->n], .data = data, .len = len};
        f->n++;
}

void ut_load_checkpoint(const char *dir, ckpt_files *out)
{
        static const char *const files[] = {"checkpoint/inventory.img", "checkpoint/pages-1.img",
                                            "config.dump", "spec.dump", "manifest.json"};

        *out = (ckpt_files){0};
        for (size_t i = 0; i < KYB_ARRAY_SIZE(files); i++)
                load_one(dir, files[i], out);
}

void ut_free_checkpoint(ckpt_files *f)
{
        for (size_t i = 0; i < f->n; i++) {
                free(f->paths[i]);
                free(f->data[i]);
        }
        *f = (ckpt_files){0};
}

size_t ut_find(const ckpt_files *f, const char *path)
{
        for (size_t i = 0; i < f->n; i++)
                if (!strcmp(f->paths[i], path))
                        return i;
        fail_msg("%s not in the checkpoint", path);
        return 0;
}

void ut_unzstd(const membuf *in, membuf *out)
{
        ZSTD_DCtx *d = ZSTD_createDCtx();
        ZSTD_inBuffer ib = {in->data, in->len, 0};
        unsigned char buf[1 << 16];

        while (ib.pos < ib.size) {
                ZSTD_outBuffer ob = {buf, sizeof(buf), 0};
                size_t r = ZSTD_decompressStream(d, &ob, &ib);

                assert_false(ZSTD_isError(r));
                mb_append(out, buf, ob.pos);
        }
        for (;;) {
                ZSTD_outBuffer ob = {buf, sizeof(buf), 0};
                ZSTD_inBuffer none = {NULL, 0, 0};

                assert_false(ZSTD_isError(ZSTD_decompressStream(d, &ob, &none)));
                if (!ob.pos)
                        break;
                mb_append(out, buf, ob.pos);
        }
        ZSTD_freeDCtx(d);
}

static void collect(const char *root, const char *rel, char ***v, size_t *n)
{
        _cleanup_free_ char *dir = *rel ? tu_path(root, rel) : strdup(root);
        DIR *d = opendir(dir);
        struct dirent *de;

        assert_non_null(d);
        while ((de = readdir(d))) {
                _cleanup_free_ char *p = NULL;
                _cleanup_free_ char *full = NULL;
                struct stat st;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                assert_true(asprintf(&p, "%s%s%s", rel, *rel ? "/" : "", de->d_name) > 0);
                full = tu_path(root, p);
                assert_int_equal(lstat(full, &st), 0);
                if (S_ISDIR(st.st_mode)) {
                        collect(root, p, v, n);
                        continue;
                }
                assert_true(S_ISREG(st.st_mode));
                *v = realloc(*v, (*n + 1) * sizeof(**v));
                (*v)[(*n)++] = TAKE_PTR(p);
        }
        closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

void ut_assert_same_tree(const char *a, const char *b)
{
        char **va = NULL, **vb = NULL;
        size_t na = 0, nb = 0;

        collect(a, "", &va, &na);
        collect(b, "", &vb, &nb);
        assert_int_equal(na, nb);
        qsort(va, na, sizeof(*va), cmp_str);
        qsort(vb, nb, sizeof(*vb), cmp_str);
        for (size_t i = 0; i < na; i++) {
                size_t la = 0, lb = 0;
                char *da, *db;

                assert_string_equal(va[i], vb[i]);
                da = tu_read(a, va[i], &la);
                db = tu_read(b, vb[i], &lb);
                assert_int_equal(la, lb);
                assert_memory_equal(da, db, la);
                free(da);
                free(db);
                free(va[i]);
                free(vb[i]);
        }
        free(va);
        free(vb);
}
