/* SPDX-License-Identifier: Apache-2.0 */
/* The file:// backend: atomic publication, reading, listing, the archive pipeline. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "archive-test-util.h"
#include "base/fs.h"
#include "storage/storage.h"

typedef struct fixture {
        char *tmp;
        char *root; /* the location's directory */
        char *uri;
        kyb_storage *s;
} fixture;

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        fx->root = tu_path(fx->tmp, "shared");
        assert_true(asprintf(&fx->uri, "file://%s", fx->root) > 0);
        assert_int_equal(
            kyb_storage_open(fx->uri, &(kyb_storage_opts){.part_size = 8 << 20}, &fx->s, NULL), 0);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        kyb_storage_close(fx->s);
        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx->root);
        free(fx->uri);
        free(fx);
        return 0;
}

static void put(kyb_storage *s, const char *key, const void *data, size_t len)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage_writer *w = NULL;
        kyb_storage_object o = {0};

        assert_int_equal(kyb_storage_writer_open(s, key, &w, &err), 0);
        for (size_t off = 0; off < len; off += 1000)
                assert_int_equal(kyb_storage_writer_write(w, (const char *)data + off,
                                                          KYB_MIN(1000, len - off), &err),
                                 0);
        if (kyb_storage_writer_commit(w, &o, &err) < 0)
                fail_msg("commit %s: %s", key, kyb_error_message(err));
        assert_string_equal(o.key, key);
        assert_int_equal(o.size, len);
        kyb_storage_object_clear(&o);
}

static char *get(kyb_storage *s, const char *key, size_t *len)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage_reader *r = NULL;
        membuf b = {0};
        char buf[777];
        ssize_t n;

        if (kyb_storage_reader_open(s, key, &r, &err) < 0)
                fail_msg("open %s: %s", key, kyb_error_message(err));
        while ((n = kyb_storage_reader_read(r, buf, sizeof(buf), &err)) > 0)
                mb_append(&b, buf, (size_t)n);
        assert_int_equal(n, 0);
        kyb_storage_reader_close(r);
        mb_append(&b, "", 1);
        *len = b.len - 1;
        return (char *)b.data;
}

/* Entries in dir, hidden ones included. */
static int entries(const char *dir)
{
        return tu_count_prefix(dir, "") - 2;
}

static void test_round_trip(void **state)
{
        fixture *fx = *state;
        static const char text[] = "0123456789abcdefghij";
        _cleanup_free_ char *back = NULL;
        _cleanup_free_ char *sub = NULL;
        kyb_storage_object o = {0};
        size_t len = 0;

        put(fx->s, "team/a/ckpt-1.tar.zst", text, sizeof(text));
        back = get(fx->s, "team/a/ckpt-1.tar.zst", &len);
        assert_int_equal(len, sizeof(text));
        assert_memory_equal(back, text, len);
        assert_int_equal(kyb_storage_stat(fx->s, "team/a/ckpt-1.tar.zst", &o, NULL), 0);
        assert_int_equal(o.size, sizeof(text));
        assert_true(o.mtime_ns > 0);
        kyb_storage_object_clear(&o);
        sub = tu_path(fx->root, "team/a");
        assert_int_equal(entries(sub), 1); /* no temporary file left */
}

static void test_abort_leaves_nothing(void **state)
{
        fixture *fx = *state;
        kyb_storage_writer *w = NULL;
        _cleanup_error_ kyb_error *err = NULL;

        put(fx->s, "keep", "old", 3);
        assert_int_equal(kyb_storage_writer_open(fx->s, "keep", &w, &err), 0);
        assert_int_equal(kyb_storage_writer_write(w, "new content", 11, &err), 0);
        assert_int_equal(entries(fx->root), 2); /* the object and the writer's temporary file */
        kyb_storage_writer_abort(w);
        assert_int_equal(entries(fx->root), 1);
        assert_int_equal(kyb_storage_writer_open(fx->s, "fresh", &w, &err), 0);
        assert_int_equal(kyb_storage_writer_write(w, "x", 1, &err), 0);
        kyb_storage_writer_abort(w);
        assert_false(tu_exists(fx->root, "fresh"));
        assert_int_equal(entries(fx->root), 1);
        {
                size_t len = 0;
                _cleanup_free_ char *back = get(fx->s, "keep", &len);

                assert_int_equal(len, 3);
                assert_memory_equal(back, "old", 3); /* the old object is untouched */
        }
}

/* In a child: the file size limit makes a write fail half-way, as a full disk would. */
static void child_write_past_limit(const char *uri)
{
        struct rlimit rl = {64 << 10, 64 << 10};
        kyb_storage *s = NULL;
        kyb_storage_writer *w = NULL;
        kyb_error *err = NULL;
        static char buf[1 << 20];
        int rc;

        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0 || kyb_storage_open(uri, NULL, &s, NULL) < 0 ||
            kyb_storage_writer_open(s, "big.tar.zst", &w, NULL) < 0)
                _exit(10);
        rc = kyb_storage_writer_write(w, buf, sizeof(buf), &err);
        if (rc != -EFBIG || !strstr(kyb_error_message(err), "writing big.tar.zst"))
                _exit(11);
        kyb_storage_writer_abort(w);
        kyb_error_free(err);
        kyb_storage_close(s);
        _exit(0);
}

static void test_failure_mid_write_leaves_no_file(void **state)
{
        fixture *fx = *state;
        int status = 0;
        pid_t pid;

        assert_int_equal(mkdir(fx->root, 0755), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                child_write_past_limit(fx->uri);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(entries(fx->root), 0);
}

static void test_commit_failure_leaves_no_file(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *dir = tu_path(fx->root, "taken");
        kyb_storage_writer *w = NULL;

        assert_int_equal(kyb_mkdir_p(dir, 0755, NULL), 0);
        tu_write(dir, "inside", "x", 1); /* a non-empty directory: rename cannot replace it */
        assert_int_equal(kyb_storage_writer_open(fx->s, "taken", &w, &err), 0);
        assert_int_equal(kyb_storage_writer_write(w, "data", 4, &err), 0);
        assert_true(kyb_storage_writer_commit(w, NULL, &err) < 0);
        assert_non_null(strstr(kyb_error_message(err), "renaming to taken"));
        assert_int_equal(entries(fx->root), 1);
        assert_true(tu_exists(dir, "inside"));
}

static void test_missing_objects(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage_reader *r = NULL;
        kyb_storage_writer *w = NULL;
        kyb_storage_object o = {0};

        assert_error(kyb_storage_reader_open(fx->s, "nope", &r, &err), err, ENOENT, NULL);
        put(fx->s, "d/x", "1", 1);
        assert_error(kyb_storage_stat(fx->s, "d", &o, &err), err, ENOENT, "not a regular file");
        assert_error(kyb_storage_delete(fx->s, "d/y", &err), err, ENOENT, NULL);
        assert_int_equal(kyb_storage_delete(fx->s, "d/x", &err), 0);
        assert_error(kyb_storage_stat(fx->s, "d/x", &o, &err), err, ENOENT, NULL);
        assert_error(kyb_storage_writer_open(fx->s, "../escape", &w, &err), err, EINVAL, "key");
}

static void test_symlinks_are_not_followed(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *link = tu_path(fx->root, "linked");
        _cleanup_free_ char *target = tu_path(fx->tmp, "elsewhere");
        kyb_storage_writer *w = NULL;
        kyb_storage_reader *r = NULL;

        put(fx->s, "x", "1", 1);
        assert_int_equal(mkdir(target, 0755), 0);
        tu_write(target, "secret", "s", 1);
        assert_int_equal(symlink(target, link), 0);
        assert_true(kyb_storage_writer_open(fx->s, "linked/new", &w, &err) < 0);
        assert_true(kyb_storage_reader_open(fx->s, "linked/secret", &r, &err) < 0);
        assert_false(tu_exists(target, "new"));
}

static void test_list(void **state)
{
        fixture *fx = *state;
        kyb_storage_object *v = NULL;
        kyb_storage_writer *w = NULL;
        size_t n = 0;

        put(fx->s, "b/2", "22", 2);
        put(fx->s, "a", "1", 1);
        put(fx->s, "b/1", "333", 3);
        assert_int_equal(kyb_storage_writer_open(fx->s, "b/pending", &w, NULL), 0);
        assert_int_equal(kyb_storage_list(fx->s, NULL, &v, &n, NULL), 0);
        assert_int_equal(n, 3); /* the pending writer's temporary file is not listed */
        assert_string_equal(v[0].key, "a");
        assert_string_equal(v[1].key, "b/1");
        assert_int_equal(v[1].size, 3);
        assert_string_equal(v[2].key, "b/2");
        kyb_storage_objects_free(v, n);
        assert_int_equal(kyb_storage_list(fx->s, "b/", &v, &n, NULL), 0);
        assert_int_equal(n, 2);
        kyb_storage_objects_free(v, n);
        kyb_storage_writer_abort(w);
}

static void test_list_of_missing_location_is_empty(void **state)
{
        fixture *fx = *state;
        kyb_storage_object *v = NULL;
        size_t n = 1;

        assert_int_equal(kyb_storage_list(fx->s, NULL, &v, &n, NULL), 0);
        assert_int_equal(n, 0);
        free(v);
}

static void test_checkpoint_pipeline(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *ckpt = ut_make_checkpoint(fx->tmp, 5 << 20);
        _cleanup_free_ char *dest = tu_path(fx->tmp, "restored");
        kyb_archive_stats st = {0};
        kyb_storage_object o = {0};

        if (kyb_storage_upload_checkpoint(fx->s, "c1.tar.zst", ckpt,
                                          &(kyb_archive_write_opts){.level = 1}, &st, &o, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        assert_int_equal(o.size, st.compressed_bytes);
        kyb_storage_object_clear(&o);
        if (kyb_storage_download_checkpoint(fx->s, "c1.tar.zst", dest, NULL, &err) < 0)
                fail_msg("download: %s", kyb_error_message(err));
        ut_assert_same_tree(ckpt, dest);
}

static void test_failed_upload_leaves_nothing(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *ckpt = ut_make_checkpoint(fx->tmp, 5 << 20);
        _cleanup_free_ char *p = tu_path(ckpt, "spec.dump");

        put(fx->s, "c1.tar.zst", "previous", 8);
        tu_write(ckpt, "spec.dump", "{]", 2); /* same size, other bytes */
        assert_error(
            kyb_storage_upload_checkpoint(fx->s, "c1.tar.zst", ckpt, NULL, NULL, NULL, &err), err,
            EBADMSG, "spec.dump: SHA-256 mismatch");
        assert_non_null(strstr(kyb_error_message(err), "upload c1.tar.zst: "));
        assert_int_equal(entries(fx->root), 1);
        {
                size_t len = 0;
                _cleanup_free_ char *back = get(fx->s, "c1.tar.zst", &len);

                assert_int_equal(len, 8);
        }
}

static void test_corrupted_download_refused(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *ckpt = ut_make_checkpoint(fx->tmp, 1 << 20);
        _cleanup_free_ char *dest = tu_path(fx->tmp, "restored");
        _cleanup_free_ char *obj = tu_path(fx->root, "c1.tar.zst");
        int fd;
        unsigned char b;
        struct stat st;

        assert_int_equal(
            kyb_storage_upload_checkpoint(fx->s, "c1.tar.zst", ckpt, NULL, NULL, NULL, &err), 0);
        fd = open(obj, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(pread(fd, &b, 1, st.st_size / 2), 1);
        b ^= 0x10;
        assert_int_equal(pwrite(fd, &b, 1, st.st_size / 2), 1);
        close(fd);
        assert_error(kyb_storage_download_checkpoint(fx->s, "c1.tar.zst", dest, NULL, &err), err,
                     EBADMSG, "download c1.tar.zst: extract to ");
        assert_false(tu_exists(fx->tmp, "restored"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_round_trip),
            T(test_abort_leaves_nothing),
            T(test_failure_mid_write_leaves_no_file),
            T(test_commit_failure_leaves_no_file),
            T(test_missing_objects),
            T(test_symlinks_are_not_followed),
            T(test_list),
            T(test_list_of_missing_location_is_empty),
            T(test_checkpoint_pipeline),
            T(test_failed_upload_leaves_nothing),
            T(test_corrupted_download_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
