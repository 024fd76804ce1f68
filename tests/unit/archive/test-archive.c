/* SPDX-License-Identifier: Apache-2.0 */
/* kyb_archive_write and round trips through kyb_archive_extract. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "archive-test-util.h"
#include "store/store.h"

#define PAGES_SIZE (3 * 1024 * 1024 + 12345)

typedef struct fixture {
        char *tmp;
        char *ckpt; /* a committed checkpoint directory */
        char *dest; /* where extraction goes; does not exist */
} fixture;

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        fx->ckpt = ut_make_checkpoint(fx->tmp, PAGES_SIZE);
        fx->dest = tu_path(fx->tmp, "out");
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx->ckpt);
        free(fx->dest);
        free(fx);
        return 0;
}

static void write_ok(const char *dir, const kyb_archive_write_opts *o, membuf *out,
                     kyb_archive_stats *st)
{
        _cleanup_error_ kyb_error *err = NULL;

        if (kyb_archive_write(dir, mb_sink, out, o, st, &err) < 0)
                fail_msg("archive: %s", kyb_error_message(err));
}

/* The names of the entries of a tar + zstd stream, in order. */
static size_t entry_names(const membuf *z, char names[][64], size_t max)
{
        membuf tar = {0};
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t n = 0;

        ut_unzstd(z, &tar);
        archive_read_support_format_tar(a);
        assert_int_equal(archive_read_open_memory(a, tar.data, tar.len), ARCHIVE_OK);
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                assert_true(n < max);
                snprintf(names[n++], 64, "%s", archive_entry_pathname(e));
                assert_int_equal(archive_entry_uid(e), 0);
                assert_int_equal(archive_entry_mtime(e), 1714564800);
        }
        archive_read_free(a);
        mb_free(&tar);
        return n;
}

static void test_layout_and_order(void **state)
{
        fixture *fx = *state;
        static const char *const want[] = {"checkpoint/",
                                           "checkpoint/inventory.img",
                                           "checkpoint/pages-1.img",
                                           "config.dump",
                                           "spec.dump",
                                           "manifest.json"};
        char names[16][64];
        membuf z = {0};
        kyb_archive_stats st;
        size_t n;

        write_ok(fx->ckpt, NULL, &z, &st);
        n = entry_names(&z, names, 16);
        assert_int_equal(n, KYB_ARRAY_SIZE(want));
        for (size_t i = 0; i < n; i++)
                assert_string_equal(names[i], want[i]);
        assert_int_equal(st.files, 5);
        assert_int_equal(st.compressed_bytes, z.len);
        assert_true(st.tar_bytes > st.file_bytes);
        assert_true(st.file_bytes > PAGES_SIZE);
        mb_free(&z);
}

static void test_round_trip_byte_identical(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_archive_write_opts o = {.level = 3, .threads = 2};
        membuf z = {0};

        write_ok(fx->ckpt, &o, &z, NULL);
        if (kyb_archive_extract(mb_source, &z, fx->dest, NULL, &err) < 0)
                fail_msg("extract: %s", kyb_error_message(err));
        assert_int_equal(z.pos, z.len);
        ut_assert_same_tree(fx->ckpt, fx->dest);
        mb_free(&z);
}

static void test_round_trip_imports_into_store(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *root = tu_path(fx->tmp, "store2");
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        kyb_store *s = NULL;
        membuf z = {0};

        write_ok(fx->ckpt, &(kyb_archive_write_opts){.level = -5, .threads = 1}, &z, NULL);
        assert_int_equal(kyb_archive_extract(mb_source, &z, fx->dest, NULL, &err), 0);
        assert_int_equal(kyb_store_open(root, &s, NULL), 0);
        if (kyb_store_import(s, fx->dest, NULL, &c, &err) < 0)
                fail_msg("import: %s", kyb_error_message(err));
        assert_string_equal(c.id, "c1");
        assert_int_equal(kyb_store_verify(s, "c1", &err), 0);
        kyb_store_close(s);
        mb_free(&z);
}

static void test_output_is_deterministic(void **state)
{
        fixture *fx = *state;
        kyb_archive_write_opts o = {.level = 1, .threads = 2};
        membuf a = {0}, b = {0}, ta = {0}, tb = {0};

        write_ok(fx->ckpt, &o, &a, NULL);
        write_ok(fx->ckpt, &o, &b, NULL);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        /* Single-threaded zstd frames differently; the tar inside is the same. */
        mb_free(&b);
        write_ok(fx->ckpt, &(kyb_archive_write_opts){.level = 1, .threads = 0}, &b, NULL);
        ut_unzstd(&a, &ta);
        ut_unzstd(&b, &tb);
        assert_int_equal(ta.len, tb.len);
        assert_memory_equal(ta.data, tb.data, ta.len);
        mb_free(&a);
        mb_free(&b);
        mb_free(&ta);
        mb_free(&tb);
}

/* Smaller jobs than the stream (3 MiB) frame differently; the tar inside is the same. */
static void test_job_size(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        membuf a = {0}, b = {0}, ta = {0}, tb = {0}, z = {0};

        write_ok(fx->ckpt,
                 &(kyb_archive_write_opts){.level = 1, .threads = 2, .job_size = 512 << 10}, &a,
                 NULL);
        write_ok(fx->ckpt, &(kyb_archive_write_opts){.level = 1, .threads = 2, .job_size = 8 << 20},
                 &b, NULL);
        assert_false(a.len == b.len && !memcmp(a.data, b.data, a.len));
        ut_unzstd(&a, &ta);
        ut_unzstd(&b, &tb);
        assert_int_equal(ta.len, tb.len);
        assert_memory_equal(ta.data, tb.data, ta.len);
        assert_error(
            kyb_archive_write(fx->ckpt, mb_sink, &z,
                              &(kyb_archive_write_opts){.threads = 2, .job_size = (size_t)4 << 30},
                              NULL, &err),
            err, EINVAL, "job size");
        mb_free(&a);
        mb_free(&b);
        mb_free(&ta);
        mb_free(&tb);
        mb_free(&z);
}

static void test_level_is_checked(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        membuf z = {0};

        assert_error(kyb_archive_write(fx->ckpt, mb_sink, &z,
                                       &(kyb_archive_write_opts){.level = 99}, NULL, &err),
                     err, EINVAL, "level 99");
        mb_free(&z);
}

static void flip(const char *dir, const char *rel, off_t off)
{
        _cleanup_free_ char *p = tu_path(dir, rel);
        int fd = open(p, O_RDWR | O_CLOEXEC);
        unsigned char b;

        assert_true(fd >= 0);
        assert_int_equal(pread(fd, &b, 1, off), 1);
        b ^= 0x40;
        assert_int_equal(pwrite(fd, &b, 1, off), 1);
        close(fd);
}

static void test_write_refuses_changed_file(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        membuf z = {0};

        flip(fx->ckpt, "checkpoint/pages-1.img", 4096);
        assert_error(kyb_archive_write(fx->ckpt, mb_sink, &z, NULL, NULL, &err), err, EBADMSG,
                     "checkpoint/pages-1.img: SHA-256 mismatch");
        mb_free(&z);
}

static void test_write_refuses_resized_file(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        membuf z = {0};

        tu_write(fx->ckpt, "spec.dump", "{}   ", 5);
        assert_error(kyb_archive_write(fx->ckpt, mb_sink, &z, NULL, NULL, &err), err, EBADMSG,
                     "spec.dump: size 5, manifest says 2");
        mb_free(&z);
}

static void test_write_refuses_symlink(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *p = tu_path(fx->ckpt, "config.dump");
        membuf z = {0};

        assert_int_equal(unlink(p), 0);
        assert_int_equal(symlink("/etc/hostname", p), 0);
        assert_error(kyb_archive_write(fx->ckpt, mb_sink, &z, NULL, NULL, &err), err, EBADMSG,
                     "config.dump: symbolic link not allowed");
        mb_free(&z);
}

static void test_write_needs_manifest(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *p = tu_path(fx->ckpt, "manifest.json");
        membuf z = {0};

        assert_int_equal(unlink(p), 0);
        assert_error(kyb_archive_write(fx->ckpt, mb_sink, &z, NULL, NULL, &err), err, ENOENT,
                     "manifest.json");
        assert_int_equal(z.len, 0);
        mb_free(&z);
}

static void test_write_passes_sink_errors(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        membuf z = {.fail_after = 2000, .fail_rc = -ENOSPC};

        assert_error(kyb_archive_write(fx->ckpt, mb_sink, &z, &(kyb_archive_write_opts){.level = 1},
                                       NULL, &err),
                     err, ENOSPC, "test sink is full");
        assert_non_null(strstr(kyb_error_message(err), "archive "));
        mb_free(&z);
}

static void test_extract_refuses_existing_dest(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        membuf z = {0};

        write_ok(fx->ckpt, NULL, &z, NULL);
        assert_int_equal(mkdir(fx->dest, 0755), 0);
        tu_write(fx->dest, "keep", "x", 1);
        assert_error(kyb_archive_extract(mb_source, &z, fx->dest, NULL, &err), err, EEXIST,
                     "creating");
        assert_true(tu_exists(fx->dest, "keep")); /* someone else's directory is left alone */
        mb_free(&z);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_layout_and_order, setup, teardown),
            cmocka_unit_test_setup_teardown(test_round_trip_byte_identical, setup, teardown),
            cmocka_unit_test_setup_teardown(test_round_trip_imports_into_store, setup, teardown),
            cmocka_unit_test_setup_teardown(test_output_is_deterministic, setup, teardown),
            cmocka_unit_test_setup_teardown(test_job_size, setup, teardown),
            cmocka_unit_test_setup_teardown(test_level_is_checked, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_refuses_changed_file, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_refuses_resized_file, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_refuses_symlink, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_needs_manifest, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_passes_sink_errors, setup, teardown),
            cmocka_unit_test_setup_teardown(test_extract_refuses_existing_dest, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
