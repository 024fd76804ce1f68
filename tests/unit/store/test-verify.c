/* SPDX-License-Identifier: Apache-2.0 */
/* Verification of stored checkpoints and import of artifacts. */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

#include "store-test-util.h"

#define PAGES      "checkpoint/pages-1.img"
#define PAGES_SIZE 300000

typedef struct fixture {
        char *tmp;
        char *root;     /* store under test */
        char *src_root; /* a second store that produces artifacts */
        kyb_store *s;
        kyb_store *src;
} fixture;

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        fx->root = tu_path(fx->tmp, "store");
        fx->src_root = tu_path(fx->tmp, "src-store");
        assert_int_equal(kyb_store_open(fx->root, &fx->s, NULL), 0);
        assert_int_equal(kyb_store_open(fx->src_root, &fx->src, NULL), 0);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        kyb_store_close(fx->s);
        kyb_store_close(fx->src);
        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx->root);
        free(fx->src_root);
        free(fx);
        return 0;
}

static void expect_verify_fails(fixture *fx, const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_error(kyb_store_verify(fx->s, "c1", &err), err, EBADMSG, fragment);
        assert_non_null(strstr(kyb_error_message(err), "verify c1: "));
}

static void flip_byte(const char *dir, const char *rel, off_t off)
{
        _cleanup_free_ char *p = tu_path(dir, rel);
        _cleanup_close_ int fd = open(p, O_RDWR | O_CLOEXEC);
        unsigned char b;

        assert_true(fd >= 0);
        assert_int_equal(pread(fd, &b, 1, off), 1);
        b ^= 0x01;
        assert_int_equal(pwrite(fd, &b, 1, off), 1);
}

static char *ckdir(fixture *fx)
{
        tu_make_checkpoint(fx->s, "c1", 1, PAGES_SIZE, NULL);
        return tu_path(fx->root, "c1");
}

static void test_verify_accepts_intact(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;

        free(ckdir(fx));
        if (kyb_store_verify(fx->s, "c1", &err) < 0)
                fail_msg("%s", kyb_error_message(err));
        assert_error(kyb_store_verify(fx->s, "nope", &err), err, ENOENT, "not found");
}

static void test_verify_changed_byte(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *dir = ckdir(fx);

        flip_byte(dir, PAGES, PAGES_SIZE - 1);
        expect_verify_fails(fx, PAGES ": SHA-256 mismatch");
}

static void test_verify_truncated(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *dir = ckdir(fx);
        _cleanup_free_ char *p = tu_path(dir, PAGES);

        assert_int_equal(truncate(p, PAGES_SIZE - 4096), 0);
        expect_verify_fails(fx, PAGES ": size 295904, manifest says 300000");
}

static void test_verify_extra_file(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *dir = ckdir(fx);

        tu_write(dir, "checkpoint/zz-extra.img", "x", 1);
        expect_verify_fails(fx, "checkpoint/zz-extra.img: not listed in the manifest");
}

static void test_verify_missing_file(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *dir = ckdir(fx);
        _cleanup_free_ char *p = tu_path(dir, "config.dump");

        assert_int_equal(unlink(p), 0);
        expect_verify_fails(fx, "config.dump: missing");
}

static void test_verify_symlink_and_manifest(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *dir = ckdir(fx);
        _cleanup_free_ char *spec = tu_path(dir, "spec.dump");
        _cleanup_free_ char *copy = tu_path(fx->tmp, "spec-copy");

        /* Same bytes behind a link: the link itself is refused. */
        tu_write(fx->tmp, "spec-copy", "{}", 2);
        assert_int_equal(unlink(spec), 0);
        assert_int_equal(symlink(copy, spec), 0);
        expect_verify_fails(fx, "spec.dump: symbolic link not allowed");
        assert_int_equal(unlink(spec), 0);
        tu_write(dir, "spec.dump", "{}", 2);
        assert_int_equal(kyb_store_verify(fx->s, "c1", NULL), 0);

        tu_write(dir, "manifest.json", "{\"formatVersion\": 1", 19);
        expect_verify_fails(fx, "invalid JSON");
}

/* Produces an artifact directory outside any store, as the sidecar's fetch would. */
static char *make_artifact(fixture *fx, const char *name)
{
        _cleanup_free_ char *from = tu_path(fx->src_root, name);
        char *to = tu_path(fx->tmp, name);

        tu_make_checkpoint(fx->src, name, 42, PAGES_SIZE, "imported");
        assert_int_equal(rename(from, to), 0);
        return to;
}

static void expect_import_refused(fixture *fx, const char *artifact, int errnum,
                                  const char *fragment)
{
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_checkpoint *v = NULL;
        size_t n = 0;

        assert_error(kyb_store_import(fx->s, artifact, NULL, &c, &err), err, errnum, fragment);
        assert_null(c.manifest);
        assert_int_equal(tu_count_prefix(fx->root, ".inprogress-"), 0);
        assert_int_equal(kyb_store_list(fx->s, NULL, 0, &v, &n, NULL), 0);
        assert_int_equal(n, 0);
        kyb_checkpoints_free(v, n);
}

static void test_import_round_trip(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *art = make_artifact(fx, "a1");
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint renamed = {0};
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *src_manifest = tu_read(art, "manifest.json", NULL);
        _cleanup_free_ char *dst_manifest = NULL;
        _cleanup_free_ char *dst = tu_path(fx->root, "a1");
        size_t n_src = 0, n_dst = 0;
        _cleanup_free_ char *src_pages = tu_read(art, PAGES, &n_src);
        _cleanup_free_ char *dst_pages = NULL;
        struct stat st;

        if (kyb_store_import(fx->s, art, NULL, &c, &err) < 0)
                fail_msg("%s", kyb_error_message(err));
        assert_string_equal(c.id, "a1");
        assert_string_equal(c.path, dst);
        assert_string_equal(kyb_manifest_label(c.manifest, "app"), "imported");
        dst_manifest = tu_read(dst, "manifest.json", NULL);
        assert_string_equal(dst_manifest, src_manifest); /* byte for byte */
        dst_pages = tu_read(dst, PAGES, &n_dst);
        assert_int_equal(n_dst, n_src);
        assert_memory_equal(dst_pages, src_pages, n_src);
        _cleanup_free_ char *dst_pages_path = tu_path(dst, PAGES);
        assert_int_equal(stat(dst_pages_path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(kyb_store_verify(fx->s, "a1", &err), 0);
        assert_true(tu_exists(art, PAGES)); /* the source stays */

        assert_error(kyb_store_import(fx->s, art, NULL, NULL, &err), err, EEXIST,
                     "a1 already exists");
        assert_int_equal(kyb_store_import(fx->s, art, "a1-copy", &renamed, &err), 0);
        assert_string_equal(renamed.id, "a1-copy");
        assert_string_equal(renamed.manifest->checkpoint_id, "a1");
        assert_string_equal(renamed.manifest_sha256, c.manifest_sha256);
        assert_error(kyb_store_import(fx->s, art, "a/b", NULL, &err), err, EINVAL, "'/'");
        assert_error(kyb_store_import(fx->s, "/nonexistent/artifact", NULL, NULL, &err), err,
                     ENOENT, "import /nonexistent/artifact");
}

/* Rewrites the artifact's manifest: files[0].path = path. */
static void set_first_path(const char *art, const char *path)
{
        _cleanup_free_ char *p = tu_path(art, "manifest.json");
        json_t *root = json_load_file(p, 0, NULL);

        assert_non_null(root);
        json_object_set_new(json_array_get(json_object_get(root, "files"), 0), "path",
                            json_string(path));
        assert_int_equal(json_dump_file(root, p, 0), 0);
        json_decref(root);
}

static void test_import_refuses_escaping_paths(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *art = make_artifact(fx, "a1");

        tu_write(fx->tmp, "x", "outside", 7);
        set_first_path(art, "../x");
        expect_import_refused(fx, art, EBADMSG, "file path '../x' is not allowed");
        set_first_path(art, "/etc/hostname");
        expect_import_refused(fx, art, EBADMSG, "'/etc/hostname' is not allowed");
        set_first_path(art, "checkpoint/../../x");
        expect_import_refused(fx, art, EBADMSG, "is not allowed");
}

static void test_import_refuses_symlinks(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *art = make_artifact(fx, "a1");
        _cleanup_free_ char *pages = tu_path(art, PAGES);
        _cleanup_free_ char *real = tu_path(fx->tmp, "real-pages.img");
        _cleanup_free_ char *imgdir = tu_path(art, "checkpoint");
        _cleanup_free_ char *elsewhere = tu_path(fx->tmp, "elsewhere");

        /* A link to identical bytes: size and hash would match if it were followed. */
        assert_int_equal(rename(pages, real), 0);
        assert_int_equal(symlink(real, pages), 0);
        expect_import_refused(fx, art, EBADMSG, PAGES ": symbolic link not allowed");
        assert_int_equal(unlink(pages), 0);
        assert_int_equal(rename(real, pages), 0);

        assert_int_equal(rename(imgdir, elsewhere), 0);
        assert_int_equal(symlink(elsewhere, imgdir), 0);
        expect_import_refused(fx, art, EBADMSG, "checkpoint: symbolic link not allowed");
        assert_int_equal(unlink(imgdir), 0);
        assert_int_equal(rename(elsewhere, imgdir), 0);

        assert_int_equal(kyb_store_import(fx->s, art, NULL, NULL, NULL), 0);
}

static void test_import_refuses_tampered(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *art = make_artifact(fx, "a1");
        _cleanup_free_ char *extra = tu_path(art, "checkpoint/extra.img");
        _cleanup_free_ char *fifo = tu_path(art, "checkpoint/fifo.img");
        _cleanup_free_ char *cfg = tu_path(art, "config.dump");
        _cleanup_free_ char *manifest = tu_path(art, "manifest.json");
        _cleanup_free_ char *moved = tu_path(fx->tmp, "manifest.json");

        flip_byte(art, PAGES, 12345);
        expect_import_refused(fx, art, EBADMSG, PAGES ": SHA-256 mismatch");
        flip_byte(art, PAGES, 12345);

        tu_write(art, "checkpoint/extra.img", "x", 1);
        expect_import_refused(fx, art, EBADMSG, "checkpoint/extra.img: not listed");
        assert_int_equal(unlink(extra), 0);

        assert_int_equal(mkfifo(fifo, 0600), 0);
        expect_import_refused(fx, art, EBADMSG, "checkpoint/fifo.img: special file");
        assert_int_equal(unlink(fifo), 0);

        assert_int_equal(rename(cfg, moved), 0);
        expect_import_refused(fx, art, EBADMSG, "config.dump: missing");
        assert_int_equal(rename(moved, cfg), 0);

        assert_int_equal(rename(manifest, moved), 0);
        expect_import_refused(fx, art, EBADMSG, "manifest.json is missing");
        assert_int_equal(symlink(moved, manifest), 0);
        expect_import_refused(fx, art, EBADMSG, "manifest.json is a symbolic link");
        assert_int_equal(unlink(manifest), 0);
        assert_int_equal(rename(moved, manifest), 0);

        assert_int_equal(kyb_store_import(fx->s, art, NULL, NULL, NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_verify_accepts_intact, setup, teardown),
            cmocka_unit_test_setup_teardown(test_verify_changed_byte, setup, teardown),
            cmocka_unit_test_setup_teardown(test_verify_truncated, setup, teardown),
            cmocka_unit_test_setup_teardown(test_verify_extra_file, setup, teardown),
            cmocka_unit_test_setup_teardown(test_verify_missing_file, setup, teardown),
            cmocka_unit_test_setup_teardown(test_verify_symlink_and_manifest, setup, teardown),
            cmocka_unit_test_setup_teardown(test_import_round_trip, setup, teardown),
            cmocka_unit_test_setup_teardown(test_import_refuses_escaping_paths, setup, teardown),
            cmocka_unit_test_setup_teardown(test_import_refuses_symlinks, setup, teardown),
            cmocka_unit_test_setup_teardown(test_import_refuses_tampered, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
