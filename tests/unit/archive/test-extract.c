/* SPDX-License-Identifier: Apache-2.0 */
/* kyb_archive_extract against hostile and damaged archives, made here with libarchive. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <sys/stat.h>

#include "archive-test-util.h"

#define PAGES_SIZE 200000

typedef struct fixture {
        char *tmp;
        char *dest;    /* does not exist before a test */
        char *outside; /* a directory next to dest that nothing may touch */
        ckpt_files ck; /* a real checkpoint's files, manifest.json last */
} fixture;

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));
        _cleanup_free_ char *ckpt = NULL;

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        ckpt = ut_make_checkpoint(fx->tmp, PAGES_SIZE);
        ut_load_checkpoint(ckpt, &fx->ck);
        fx->dest = tu_path(fx->tmp, "out");
        fx->outside = tu_path(fx->tmp, "outside");
        assert_int_equal(mkdir(fx->outside, 0755), 0);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        ut_free_checkpoint(&fx->ck);
        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx->dest);
        free(fx->outside);
        free(fx);
        return 0;
}

/* Extraction fails with errnum and fragment, and leaves nothing behind. */
static void expect_refused(fixture *fx, membuf *z, const kyb_archive_limits *limits, int errnum,
                           const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;
        struct stat st;

        assert_error(kyb_archive_extract(mb_source, z, fx->dest, limits, &err), err, errnum,
                     fragment);
        assert_non_null(strstr(kyb_error_message(err), "extract to "));
        assert_int_equal(lstat(fx->dest, &st), -1);
        assert_int_equal(tu_count_prefix(fx->outside, ""), 2); /* "." and ".." */
        mb_free(z);
}

static void expect_extracted(fixture *fx, membuf *z)
{
        _cleanup_error_ kyb_error *err = NULL;

        if (kyb_archive_extract(mb_source, z, fx->dest, NULL, &err) < 0)
                fail_msg("extract: %s", kyb_error_message(err));
        mb_free(z);
}

/* The checkpoint's entries with `extra` inserted before manifest.json. */
static void build_with(fixture *fx, const tentry *extra, size_t n_extra, membuf *z)
{
        tentry v[32];
        size_t n = 0;

        for (size_t i = 0; i + 1 < fx->ck.n; i++)
                v[n++] = fx->ck.v[i];
        for (size_t i = 0; i < n_extra; i++)
                v[n++] = extra[i];
        v[n++] = fx->ck.v[fx->ck.n - 1];
        tb_build(v, n, 0, z);
}

static void test_plain_archive_extracts(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, NULL, 0, &z);
        expect_extracted(fx, &z);
        assert_true(tu_exists(fx->dest, "checkpoint/pages-1.img"));
}

static void test_manifest_need_not_be_last(void **state)
{
        fixture *fx = *state;
        tentry v[8];
        membuf z = {0};

        v[0] = fx->ck.v[fx->ck.n - 1];
        for (size_t i = 0; i + 1 < fx->ck.n; i++)
                v[i + 1] = fx->ck.v[i];
        tb_build(v, fx->ck.n, 0, &z);
        expect_extracted(fx, &z);
}

static void test_rejects_dotdot(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, &(tentry){.path = "../outside/evil", .data = "x", .len = 1}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "../outside/evil: '..' not allowed");
        build_with(fx, &(tentry){.path = "checkpoint/../../outside/evil", .data = "x", .len = 1}, 1,
                   &z);
        expect_refused(fx, &z, NULL, EBADMSG, "'..' not allowed");
}

static void test_rejects_absolute_path(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *abs = tu_path(fx->outside, "evil");
        membuf z = {0};

        build_with(fx, &(tentry){.path = abs, .data = "x", .len = 1}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "absolute path not allowed");
}

static void test_rejects_symlink_escape(void **state)
{
        fixture *fx = *state;
        const tentry evil[] = {
            {.path = "checkpoint/escape", .type = AE_IFLNK, .link = fx->outside},
            {.path = "checkpoint/escape/pwned", .data = "x", .len = 1},
        };
        membuf z = {0};

        build_with(fx, evil, 2, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "checkpoint/escape: symbolic link not allowed");
}

static void test_rejects_hardlink(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, &(tentry){.path = "checkpoint/hl", .link = "/etc/passwd", .hardlink = true},
                   1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "checkpoint/hl: hard link not allowed");
        build_with(fx, &(tentry){.path = "checkpoint/hl", .link = "config.dump", .hardlink = true},
                   1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "hard link not allowed");
}

static void test_rejects_devices_and_fifos(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, &(tentry){.path = "checkpoint/null", .type = AE_IFCHR}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "checkpoint/null: device file not allowed");
        build_with(fx, &(tentry){.path = "checkpoint/fifo", .type = AE_IFIFO}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "checkpoint/fifo: FIFO not allowed");
}

static void test_rejects_hidden_and_control_names(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, &(tentry){.path = "checkpoint/.hidden", .data = "x", .len = 1}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "is not allowed");
        build_with(fx, &(tentry){.path = "checkpoint/a\033[2Jb", .data = "x", .len = 1}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "is not allowed");
}

static void test_rejects_declared_size_bomb(void **state)
{
        fixture *fx = *state;
        const kyb_archive_limits limits = {.max_file_bytes = 64 << 20};
        membuf z = {0};

        /* 256 MiB of zeros compress to a few KiB; the header alone must stop it. */
        build_with(fx, &(tentry){.path = "checkpoint/bomb.img", .declared = 256 << 20}, 1, &z);
        assert_true(z.len < (1 << 20));
        expect_refused(fx, &z, &limits, EFBIG,
                       "checkpoint/bomb.img: 268435456 bytes, more than the limit of 67108864");
}

static void test_rejects_zstd_bomb(void **state)
{
        fixture *fx = *state;
        const kyb_archive_limits limits = {.max_total_bytes = 4 << 20, .max_entries = 16};
        membuf z = {0};

        /* A valid archive, then 512 MiB of zeros in the same frame: stopped while inflating. */
        tb_build(fx->ck.v, fx->ck.n, (uint64_t)512 << 20, &z);
        assert_true(z.len < (1 << 20));
        expect_refused(fx, &z, &limits, EFBIG, "decompressed stream exceeds the limit");
}

static void test_rejects_total_and_entry_limits(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, NULL, 0, &z);
        expect_refused(fx, &z, &(kyb_archive_limits){.max_total_bytes = 100000}, EFBIG,
                       "files exceed the limit of 100000 bytes");
        build_with(fx, NULL, 0, &z);
        expect_refused(fx, &z, &(kyb_archive_limits){.max_entries = 3}, EFBIG,
                       "more than 3 entries");
}

static void test_rejects_truncated(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, NULL, 0, &z);
        z.len /= 2;
        expect_refused(fx, &z, NULL, EBADMSG, NULL);
        build_with(fx, NULL, 0, &z);
        z.len -= 3; /* only the frame's checksum is cut */
        expect_refused(fx, &z, NULL, EBADMSG, "truncated");
        build_with(fx, NULL, 0, &z);
        z.len = 0;
        expect_refused(fx, &z, NULL, EBADMSG, "truncated");
}

static void test_rejects_corrupted(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, NULL, 0, &z);
        z.data[z.len / 2] ^= 0x55;
        expect_refused(fx, &z, NULL, EBADMSG, NULL);
        build_with(fx, NULL, 0, &z);
        z.data[z.len - 2] ^= 0x01; /* the checksum */
        expect_refused(fx, &z, NULL, EBADMSG, "zstd");
}

static void test_rejects_tampered_file(void **state)
{
        fixture *fx = *state;
        size_t i = ut_find(&fx->ck, "checkpoint/pages-1.img");
        membuf z = {0};

        fx->ck.data[i][1000] ^= 0x01; /* same size, other bytes */
        build_with(fx, NULL, 0, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "checkpoint/pages-1.img: SHA-256 mismatch");
}

static void test_rejects_missing_and_extra_files(void **state)
{
        fixture *fx = *state;
        tentry v[8];
        size_t n = 0;
        membuf z = {0};

        for (size_t i = 0; i < fx->ck.n; i++)
                if (strcmp(fx->ck.paths[i], "config.dump"))
                        v[n++] = fx->ck.v[i];
        tb_build(v, n, 0, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "config.dump: missing from the archive");
        build_with(fx, &(tentry){.path = "checkpoint/zz-extra.img", .data = "x", .len = 1}, 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "checkpoint/zz-extra.img: not listed");
        tb_build(fx->ck.v, fx->ck.n - 1, 0, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "manifest.json is missing");
}

static void test_rejects_duplicate_entry(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        build_with(fx, &fx->ck.v[ut_find(&fx->ck, "spec.dump")], 1, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "spec.dump: duplicate entry");
}

static void test_rejects_trailing_data(void **state)
{
        fixture *fx = *state;
        membuf z = {0};

        /* Right after the end blocks, inside what libarchive reads ahead... */
        tb_build_trailing(fx->ck.v, fx->ck.n, 0, "garbage", 7, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "data after the end of the archive");
        /* ... and far beyond it, where only the drain sees it. */
        tb_build_trailing(fx->ck.v, fx->ck.n, 3 << 20, "garbage", 7, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "data after the end of the archive");
}

static void test_rejects_bad_manifest(void **state)
{
        fixture *fx = *state;
        size_t i = ut_find(&fx->ck, "manifest.json");
        membuf z = {0};

        fx->ck.v[i].data = "{\"formatVersion\": 1}";
        fx->ck.v[i].len = strlen(fx->ck.v[i].data);
        build_with(fx, NULL, 0, &z);
        expect_refused(fx, &z, NULL, EBADMSG, "manifest");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_plain_archive_extracts),
            T(test_manifest_need_not_be_last),
            T(test_rejects_dotdot),
            T(test_rejects_absolute_path),
            T(test_rejects_symlink_escape),
            T(test_rejects_hardlink),
            T(test_rejects_devices_and_fifos),
            T(test_rejects_hidden_and_control_names),
            T(test_rejects_declared_size_bomb),
            T(test_rejects_zstd_bomb),
            T(test_rejects_total_and_entry_limits),
            T(test_rejects_truncated),
            T(test_rejects_corrupted),
            T(test_rejects_tampered_file),
            T(test_rejects_missing_and_extra_files),
            T(test_rejects_duplicate_entry),
            T(test_rejects_trailing_data),
            T(test_rejects_bad_manifest),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
