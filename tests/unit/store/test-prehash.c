/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Following images while they are written (kyb_store_txn_follow_images):
 * the committed manifest must be what a full re-read gives, also when a file
 * grows in bursts, is truncated or is replaced while it is followed; and
 * every committed checkpoint must verify.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store-test-util.h"
#include "store/digest.h"

typedef struct fixture {
        char *root;
        kyb_store *s;
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));

        f->root = tu_mkdtemp();
        assert_int_equal(kyb_store_open(f->root, &f->s, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;

        kyb_store_close(f->s);
        tu_rm_rf(f->root);
        free(f->root);
        free(f);
        return 0;
}

static void sleep_ms(int ms)
{
        usleep((useconds_t)ms * 1000);
}

/* Appends n bytes of a pattern to path, in bursts, as CRIU would. */
static void append_bursts(const char *path, size_t total, size_t burst, unsigned seed)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        uint8_t *buf = malloc(burst);

        assert_true(fd >= 0 && buf);
        for (size_t done = 0; done < total; done += burst) {
                for (size_t i = 0; i < burst; i++)
                        buf[i] = (uint8_t)((done + i) * 31 + seed);
                assert_int_equal(write(fd, buf, burst), (ssize_t)burst);
                sleep_ms(1);
        }
        free(buf);
        close(fd);
}

static const kyb_manifest_file *file_of(const kyb_checkpoint *c, const char *path)
{
        return kyb_manifest_find_file(c->manifest, path);
}

static char *sha_of(const char *dir, const char *rel)
{
        size_t len;
        char *data = tu_read(dir, rel, &len);
        char *hex = calloc(1, KYB_SHA256_HEX_LEN + 1);

        assert_int_equal(kyb_sha256_buf(data, len, hex, NULL), 0);
        free(data);
        return hex;
}

static void test_followed_commit_matches_full_hash(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *txn = NULL;
        kyb_manifest *m = tu_sample_manifest();
        kyb_checkpoint c = {0};
        _cleanup_free_ char *pages = NULL, *small = NULL;

        assert_int_equal(kyb_store_begin(f->s, "follow-1", &txn, &err), 0);
        assert_int_equal(kyb_store_txn_follow_images(txn, &err), 0);
        pages = tu_path(kyb_store_txn_images_dir(txn), "pages-1.img");
        small = tu_path(kyb_store_txn_images_dir(txn), "core-1.img");
        append_bursts(pages, 8 << 20, 256 << 10, 7);
        append_bursts(small, 4096, 4096, 9);
        assert_int_equal(kyb_store_commit(txn, m, &err), 0);
        assert_int_equal(kyb_store_get(f->s, "follow-1", &c, &err), 0);
        _cleanup_free_ char *dir = tu_path(f->root, "follow-1");
        _cleanup_free_ char *want = sha_of(dir, "checkpoint/pages-1.img");
        assert_string_equal(file_of(&c, "checkpoint/pages-1.img")->sha256, want);
        assert_int_equal(file_of(&c, "checkpoint/pages-1.img")->size, 8 << 20);
        assert_int_equal(kyb_store_verify(f->s, "follow-1", &err), 0);
        kyb_checkpoint_clear(&c);
        kyb_manifest_free(m);
}

static void test_truncated_and_replaced_files_rehashed(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *txn = NULL;
        kyb_manifest *m = tu_sample_manifest();
        const char *img;
        _cleanup_free_ char *a = NULL, *b = NULL, *tmp = NULL;

        assert_int_equal(kyb_store_begin(f->s, "follow-2", &txn, &err), 0);
        assert_int_equal(kyb_store_txn_follow_images(txn, &err), 0);
        img = kyb_store_txn_images_dir(txn);
        a = tu_path(img, "a.img");
        b = tu_path(img, "b.img");
        tmp = tu_path(img, "b.tmp");
        append_bursts(a, 1 << 20, 64 << 10, 1);
        append_bursts(b, 1 << 20, 64 << 10, 2);
        sleep_ms(50); /* let the follower hash both */
        /* a: rewritten shorter (truncate + new content); b: replaced by rename */
        assert_int_equal(truncate(a, 0), 0);
        append_bursts(a, 512 << 10, 64 << 10, 3);
        append_bursts(tmp, 1 << 20, 64 << 10, 4);
        assert_int_equal(rename(tmp, b), 0);
        assert_int_equal(kyb_store_commit(txn, m, &err), 0);
        kyb_manifest_free(m);
        /* verify re-reads every file: the manifest must describe the final bytes */
        assert_int_equal(kyb_store_verify(f->s, "follow-2", &err), 0);
}

static void test_abort_while_following(void **state)
{
        fixture *f = *state;
        kyb_store_txn *txn = NULL;
        _cleanup_free_ char *p = NULL;

        assert_int_equal(kyb_store_begin(f->s, "follow-3", &txn, NULL), 0);
        assert_int_equal(kyb_store_txn_follow_images(txn, NULL), 0);
        p = tu_path(kyb_store_txn_images_dir(txn), "pages-1.img");
        append_bursts(p, 1 << 20, 128 << 10, 5);
        kyb_store_abort(txn);
        assert_int_equal(tu_count_prefix(f->root, ".inprogress-"), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_followed_commit_matches_full_hash, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_truncated_and_replaced_files_rehashed, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_abort_while_following, setup, teardown),
        };

        return cmocka_run_group_tests_name("store-prehash", tests, NULL, NULL);
}
