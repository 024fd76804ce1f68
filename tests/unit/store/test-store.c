/* SPDX-License-Identifier: Apache-2.0 */
/* The store: open, transactions, crash leftovers, IDs, list, delete, leases, gc, ENOSPC. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "store-test-util.h"
#include "base/validate.h"
#include "store/digest.h"

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

typedef struct fixture {
        char *tmp;
        char *root;
        char *mnt; /* a tmpfs mounted by the test, unmounted by teardown */
        kyb_store *s;
} fixture;

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));
        _cleanup_error_ kyb_error *err = NULL;

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        fx->root = tu_path(fx->tmp, "store");
        if (kyb_store_open(fx->root, &fx->s, &err) < 0)
                fail_msg("open: %s", kyb_error_message(err));
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        kyb_store_close(fx->s);
        if (fx->mnt)
                umount2(fx->mnt, MNT_DETACH);
        free(fx->mnt);
        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx->root);
        free(fx);
        return 0;
}

static size_t list_count(kyb_store *s)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_checkpoint *v = NULL;
        size_t n = 0;

        if (kyb_store_list(s, NULL, 0, &v, &n, &err) < 0)
                fail_msg("list: %s", kyb_error_message(err));
        kyb_checkpoints_free(v, n);
        return n;
}

static void test_open_creates_private_root(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *nested = tu_path(fx->tmp, "a/b/store");
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store *s = NULL, *again = NULL;
        struct stat st;

        assert_int_equal(kyb_store_open(nested, &s, &err), 0);
        assert_int_equal(stat(nested, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_string_equal(kyb_store_root(s), nested);
        /* One owner at a time: its crash cleanup would eat another's transactions. */
        assert_error(kyb_store_open(nested, &again, &err), err, EBUSY, "already open");
        assert_null(again);
        kyb_store_close(s);
        assert_int_equal(chmod(nested, 0755), 0);
        assert_int_equal(kyb_store_open(nested, &s, &err), 0);
        assert_int_equal(stat(nested, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        kyb_store_close(s);
        assert_error(kyb_store_open("", &s, &err), err, EINVAL, "empty");
}

static void write_sample_files(kyb_store_txn *txn)
{
        tu_write(kyb_store_txn_images_dir(txn), "inventory.img", "abc", 3);
        tu_write_pattern(kyb_store_txn_images_dir(txn), "pages-1.img", 100000, 1);
        tu_write(kyb_store_txn_dir(txn), "config.dump", "{}", 2);
}

static void test_commit_publishes_atomically(void **state)
{
        fixture *fx = *state;
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_manifest_ kyb_manifest *ondisk = NULL;
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *raw = NULL;
        _cleanup_free_ char *ckdir = tu_path(fx->root, "c1");
        char sha[KYB_SHA256_HEX_LEN + 1];
        kyb_store_txn *txn = NULL;
        size_t rawlen = 0;

        assert_int_equal(kyb_store_begin(fx->s, "c1", &txn, &err), 0);
        assert_string_equal(kyb_store_txn_id(txn), "c1");
        assert_non_null(strstr(kyb_store_txn_images_dir(txn), "/.inprogress-c1/checkpoint"));
        write_sample_files(txn);
        /* Filled but not committed: invisible. */
        assert_int_equal(list_count(fx->s), 0);
        assert_error(kyb_store_get(fx->s, "c1", &c, &err), err, ENOENT, "c1 not found");
        assert_false(tu_exists(fx->root, "c1"));

        m->created_at_ns = 0;
        assert_int_equal(kyb_store_commit(txn, m, &err), 0);
        assert_string_equal(m->checkpoint_id, "c1");
        assert_true(m->created_at_ns > 0);
        assert_int_equal(m->n_files, 3);
        assert_string_equal(m->files[0].path, "checkpoint/inventory.img");
        assert_string_equal(m->files[0].sha256, SHA_ABC);
        assert_int_equal(m->files[0].mode, 0644);
        assert_string_equal(m->files[1].path, "checkpoint/pages-1.img");
        assert_int_equal(m->files[1].size, 100000);
        assert_string_equal(m->files[2].path, "config.dump");
        assert_int_equal(m->total_bytes, 100005);
        assert_int_equal(tu_count_prefix(fx->root, ".inprogress-"), 0);

        assert_int_equal(list_count(fx->s), 1);
        assert_int_equal(kyb_store_get(fx->s, "c1", &c, &err), 0);
        assert_string_equal(c.id, "c1");
        assert_string_equal(c.path, ckdir);
        assert_int_equal(c.manifest->n_files, 3);
        assert_null(kyb_manifest_find_file(c.manifest, "manifest.json"));
        raw = tu_read(ckdir, "manifest.json", &rawlen);
        assert_int_equal(c.size_bytes, 100005 + rawlen);
        assert_int_equal(kyb_sha256_buf(raw, rawlen, sha, NULL), 0);
        assert_string_equal(c.manifest_sha256, sha);
        assert_int_equal(kyb_manifest_from_json(raw, rawlen, &ondisk, &err), 0);
        assert_string_equal(ondisk->workload.pod_name, "llm-0");
        assert_int_equal(ondisk->created_at_ns, m->created_at_ns);
        assert_false(tu_exists(ckdir, ".manifest.json.tmp"));
        assert_int_equal(kyb_store_verify(fx->s, "c1", &err), 0);
}

/* A writer that dies between begin and commit, as a crashed agent would. */
static void crash_in_child(const char *root)
{
        pid_t pid = fork();
        int status = 0;

        assert_true(pid >= 0);
        if (pid == 0) {
                /* No cmocka in the child: report through the exit status only. */
                kyb_store *s = NULL;
                kyb_store_txn *txn = NULL;
                char *p = NULL;
                int fd;

                if (kyb_store_open(root, &s, NULL) < 0 ||
                    kyb_store_begin(s, "crashed", &txn, NULL) < 0 ||
                    asprintf(&p, "%s/pages-1.img", kyb_store_txn_images_dir(txn)) < 0)
                        _exit(2);
                fd = open(p, O_WRONLY | O_CREAT, 0600);
                if (fd < 0 || write(fd, "partial", 7) != 7)
                        _exit(3);
                _exit(0); /* no commit, no abort, no close */
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_crash_leftovers_removed_at_open(void **state)
{
        fixture *fx = *state;
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *txn = NULL;

        tu_make_checkpoint(fx->s, "kept", 1, 10, NULL);
        kyb_store_close(fx->s);
        fx->s = NULL;
        crash_in_child(fx->root);
        tu_write(fx->root, ".inprogress-crashed/checkpoint/pages-1.img", "half", 4);
        tu_write(fx->root, ".deleting-old.3/checkpoint/pages-1.img", "gone", 4);
        assert_true(tu_exists(fx->root, ".inprogress-crashed"));

        assert_int_equal(kyb_store_open(fx->root, &fx->s, &err), 0);
        assert_false(tu_exists(fx->root, ".inprogress-crashed"));
        assert_false(tu_exists(fx->root, ".deleting-old.3"));
        assert_int_equal(list_count(fx->s), 1);
        assert_error(kyb_store_get(fx->s, "crashed", &c, &err), err, ENOENT, "not found");
        /* The ID is free again. */
        assert_int_equal(kyb_store_begin(fx->s, "crashed", &txn, &err), 0);
        kyb_store_abort(txn);
}

static void test_invalid_ids_rejected(void **state)
{
        fixture *fx = *state;
        char longid[KYB_ID_MAX_LEN + 2];
        const char *bad[] = {"",    ".",    "..", "a/b", "../x", "/etc", ".inprogress-x",
                             "a b", longid, NULL};

        memset(longid, 'a', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        for (size_t i = 0; i < KYB_ARRAY_SIZE(bad); i++) {
                _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
                _cleanup_error_ kyb_error *err = NULL;
                kyb_store_txn *txn = NULL;
                uint64_t freed = 1;

                assert_error(kyb_store_begin(fx->s, bad[i], &txn, &err), err, EINVAL,
                             "checkpoint id");
                assert_null(txn);
                assert_error(kyb_store_get(fx->s, bad[i], &c, &err), err, EINVAL, "invalid");
                assert_error(kyb_store_delete(fx->s, bad[i], &freed, &err), err, EINVAL, "invalid");
                assert_int_equal(freed, 0);
                assert_error(kyb_store_verify(fx->s, bad[i], &err), err, EINVAL, "invalid");
                assert_error(kyb_store_acquire(fx->s, bad[i], &err), err, EINVAL, "invalid");
        }
        /* Nothing was created: only the lock file is there, nothing outside the root either. */
        assert_int_equal(tu_count_prefix(fx->root, ""), 3); /* ".", "..", ".lock" */
        assert_false(tu_exists(fx->tmp, "x"));
        assert_false(tu_exists(fx->tmp, "b"));
}

static void test_begin_existing(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *a = NULL, *b = NULL;

        tu_make_checkpoint(fx->s, "c1", 1, 10, NULL);
        assert_error(kyb_store_begin(fx->s, "c1", &a, &err), err, EEXIST, "c1 already exists");
        assert_null(a);
        assert_int_equal(kyb_store_begin(fx->s, "c2", &a, &err), 0);
        assert_error(kyb_store_begin(fx->s, "c2", &b, &err), err, EEXIST, "already being written");
        assert_null(b);
        /* The loser must not have removed the winner's directory. */
        assert_true(tu_exists(fx->root, ".inprogress-c2/checkpoint"));
        kyb_store_abort(a);
        kyb_store_abort(NULL);
        assert_false(tu_exists(fx->root, ".inprogress-c2"));
        assert_int_equal(kyb_store_begin(fx->s, "c2", &b, &err), 0);
        kyb_store_abort(b);
}

typedef struct racer {
        kyb_store *s;
        const char *id;
        pthread_barrier_t *barrier;
        kyb_store_txn *txn;
        int rc;
} racer;

static void *race_begin(void *arg)
{
        racer *r = arg;

        pthread_barrier_wait(r->barrier);
        r->rc = kyb_store_begin(r->s, r->id, &r->txn, NULL);
        return NULL;
}

static void test_concurrent_begin_one_wins(void **state)
{
        fixture *fx = *state;

        for (int iter = 0; iter < 100; iter++) {
                pthread_barrier_t barrier;
                pthread_t t[2];
                racer r[2];
                char id[32];
                int winners = 0;

                snprintf(id, sizeof(id), "race-%d", iter);
                pthread_barrier_init(&barrier, NULL, 2);
                for (int i = 0; i < 2; i++) {
                        r[i] = (racer){fx->s, id, &barrier, NULL, 1};
                        assert_int_equal(pthread_create(&t[i], NULL, race_begin, &r[i]), 0);
                }
                for (int i = 0; i < 2; i++)
                        pthread_join(t[i], NULL);
                pthread_barrier_destroy(&barrier);
                for (int i = 0; i < 2; i++) {
                        if (r[i].rc == 0) {
                                winners++;
                                kyb_store_abort(r[i].txn);
                        } else {
                                assert_int_equal(r[i].rc, -EEXIST);
                                assert_null(r[i].txn);
                        }
                }
                assert_int_equal(winners, 1);
        }
        assert_int_equal(tu_count_prefix(fx->root, ".inprogress-"), 0);
}

typedef struct worker {
        kyb_store *s;
        int index;
        int failures;
        int successes;
        char first_error[256];
} worker;

/* One life cycle, no cmocka (not thread-safe): returns < 0 and fills w on failure. */
static int cycle(worker *w, const char *id)
{
        _cleanup_manifest_ kyb_manifest *m = NULL;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *p = NULL;
        _cleanup_close_ int fd = -1;
        kyb_store_txn *txn = NULL;
        kyb_checkpoint *v = NULL;
        size_t n = 0;
        int rc;

        if ((rc = kyb_manifest_new(&m, &err)) < 0 ||
            (rc = kyb_store_begin(w->s, id, &txn, &err)) < 0)
                goto out;
        if (asprintf(&p, "%s/pages-1.img", kyb_store_txn_images_dir(txn)) < 0)
                p = NULL;
        fd = p ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
        if (fd < 0 || write(fd, id, strlen(id)) != (ssize_t)strlen(id)) {
                kyb_store_abort(txn);
                rc = kyb_error_set(&err, EIO, "writing %s", id);
                goto out;
        }
        if ((rc = kyb_store_commit(txn, m, &err)) < 0 ||
            (rc = kyb_store_acquire(w->s, id, &err)) < 0)
                goto out;
        rc = kyb_store_list(w->s, NULL, 0, &v, &n, &err);
        kyb_checkpoints_free(v, n);
        if (rc >= 0)
                rc = kyb_store_verify(w->s, id, &err);
        kyb_store_release(w->s, id);
        if (rc >= 0)
                rc = kyb_store_delete(w->s, id, NULL, &err);
out:
        if (rc >= 0)
                w->successes++;
        if (rc < 0 && w->failures++ == 0)
                snprintf(w->first_error, sizeof(w->first_error), "%s", kyb_error_message(err));
        return rc;
}

static void *work(void *arg)
{
        worker *w = arg;

        for (int i = 0; i < 25; i++) {
                char id[32];

                snprintf(id, sizeof(id), "w%d-%d", w->index, i);
                (void)cycle(w, id);
                /* gc meanwhile must only ever skip or delete whole checkpoints. */
                if (w->index == 0)
                        (void)kyb_store_gc(w->s, 0, NULL, NULL);
        }
        return NULL;
}

static void test_concurrent_operations(void **state)
{
        fixture *fx = *state;
        pthread_t t[4];
        worker w[4];

        for (int i = 0; i < 4; i++) {
                w[i] = (worker){.s = fx->s, .index = i};
                assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < 4; i++) {
                /* gc may delete a checkpoint before it is acquired: only that is excused. */
                if (w[i].failures && !strstr(w[i].first_error, "not found"))
                        fail_msg("worker %d: %d failures, first: %s", i, w[i].failures,
                                 w[i].first_error);
                assert_true(w[i].successes >= 10);
        }
        assert_int_equal(tu_count_prefix(fx->root, ".inprogress-"), 0);
        assert_int_equal(tu_count_prefix(fx->root, ".deleting-"), 0);
}

static void test_delete_respects_leases(void **state)
{
        fixture *fx = *state;
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_error_ kyb_error *err = NULL;
        uint64_t freed = 0, size;

        tu_make_checkpoint(fx->s, "c1", 1, 1000, NULL);
        assert_int_equal(kyb_store_get(fx->s, "c1", &c, &err), 0);
        size = c.size_bytes;
        assert_int_equal(kyb_store_acquire(fx->s, "c1", &err), 0);
        assert_int_equal(kyb_store_acquire(fx->s, "c1", &err), 0);
        assert_error(kyb_store_delete(fx->s, "c1", &freed, &err), err, EBUSY,
                     "c1 is in use (2 restores)");
        kyb_store_release(fx->s, "c1");
        assert_error(kyb_store_delete(fx->s, "c1", &freed, &err), err, EBUSY, "in use");
        kyb_store_release(fx->s, "c1");
        assert_true(tu_exists(fx->root, "c1/manifest.json"));
        assert_int_equal(kyb_store_delete(fx->s, "c1", &freed, &err), 0);
        assert_int_equal(freed, size);
        assert_false(tu_exists(fx->root, "c1"));
        assert_int_equal(tu_count_prefix(fx->root, ".deleting-"), 0);
        assert_error(kyb_store_delete(fx->s, "c1", &freed, &err), err, ENOENT, "not found");
        assert_error(kyb_store_acquire(fx->s, "c1", &err), err, ENOENT, "not found");
        kyb_store_release(fx->s, "c1"); /* not held: no effect */
        kyb_store_release(fx->s, "never");
}

static void test_delete_removes_companion_files(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;

        tu_make_checkpoint(fx->s, "c1", 1, 100, NULL);
        tu_make_checkpoint(fx->s, "c1.pod", 2, 100, NULL);
        tu_write(fx->root, "c1" KYB_STORE_POD_SPEC_SUFFIX, "{}", 2);
        tu_write(fx->root, "c1" KYB_STORE_UPLOAD_RESULT_SUFFIX, "{}", 2);
        tu_write(fx->root, "c1.pod" KYB_STORE_POD_SPEC_SUFFIX, "{}", 2);
        tu_write(fx->root, "c1.other", "x", 1);
        assert_int_equal(kyb_store_delete(fx->s, "c1", NULL, &err), 0);
        assert_false(tu_exists(fx->root, "c1" KYB_STORE_POD_SPEC_SUFFIX));
        assert_false(tu_exists(fx->root, "c1" KYB_STORE_UPLOAD_RESULT_SUFFIX));
        /* another checkpoint whose ID extends this one keeps everything */
        assert_true(tu_exists(fx->root, "c1.pod/manifest.json"));
        assert_true(tu_exists(fx->root, "c1.pod" KYB_STORE_POD_SPEC_SUFFIX));
        assert_true(tu_exists(fx->root, "c1.other"));
        /* ... and its own companion goes with it */
        assert_int_equal(kyb_store_delete(fx->s, "c1.pod", NULL, &err), 0);
        assert_false(tu_exists(fx->root, "c1.pod" KYB_STORE_POD_SPEC_SUFFIX));
}

static void test_list_sorted_and_filtered(void **state)
{
        fixture *fx = *state;
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *target = tu_path(fx->root, "c-old");
        _cleanup_free_ char *link = tu_path(fx->root, "link");
        kyb_label sel_a[] = {{(char *)"app", (char *)"a"}};
        kyb_label sel_two[] = {{(char *)"app", (char *)"a"},
                               {(char *)"kybernate.io/policy", (char *)"nightly"}};
        kyb_label sel_none[] = {{(char *)"app", (char *)"zzz"}};
        kyb_label sel_nokey[] = {{(char *)"nokey", (char *)""}};
        kyb_checkpoint *v = NULL;
        size_t n = 0;

        tu_make_checkpoint(fx->s, "c-new", 3000, 10, "a");
        tu_make_checkpoint(fx->s, "c-old", 1000, 10, "a");
        tu_make_checkpoint(fx->s, "c-mid", 2000, 10, "b");
        /* Not checkpoints: no manifest, a symlink, a name that is no ID. */
        tu_write(fx->root, "junk/checkpoint/x.img", "x", 1);
        assert_int_equal(symlink(target, link), 0);
        tu_write(fx->root, "lost+found/x", "x", 1);

        assert_int_equal(kyb_store_list(fx->s, NULL, 0, &v, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_string_equal(v[0].id, "c-old");
        assert_string_equal(v[1].id, "c-mid");
        assert_string_equal(v[2].id, "c-new");
        assert_int_equal(v[0].manifest->created_at_ns, 1000);
        kyb_checkpoints_free(v, n);

        assert_int_equal(kyb_store_list(fx->s, sel_a, 1, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].id, "c-old");
        assert_string_equal(v[1].id, "c-new");
        kyb_checkpoints_free(v, n);
        assert_int_equal(kyb_store_list(fx->s, sel_two, 2, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        kyb_checkpoints_free(v, n);
        assert_int_equal(kyb_store_list(fx->s, sel_none, 1, &v, &n, &err), 0);
        assert_int_equal(n, 0);
        kyb_checkpoints_free(v, n);
        assert_int_equal(kyb_store_list(fx->s, sel_nokey, 1, &v, &n, &err), 0);
        assert_int_equal(n, 0);
        kyb_checkpoints_free(v, n);

        assert_error(kyb_store_get(fx->s, "junk", &c, &err), err, EBADMSG,
                     "manifest.json is missing");
        assert_error(kyb_store_get(fx->s, "link", &c, &err), err, ENOENT, "not found");
}

static void test_gc_oldest_first_spares_acquired(void **state)
{
        fixture *fx = *state;
        _cleanup_(kyb_checkpoint_clear) kyb_checkpoint c = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_checkpoint *v = NULL;
        uint64_t freed = 0, size;
        size_t n = 0;

        assert_int_equal(kyb_store_gc(fx->s, 0, &freed, &err), 0);
        tu_make_checkpoint(fx->s, "g3", 3, 1000, NULL);
        tu_make_checkpoint(fx->s, "g1", 1, 1000, NULL);
        tu_make_checkpoint(fx->s, "g4", 4, 1000, NULL);
        tu_make_checkpoint(fx->s, "g2", 2, 1000, NULL);
        assert_int_equal(kyb_store_get(fx->s, "g1", &c, &err), 0);
        size = c.size_bytes;
        assert_int_equal(kyb_store_gc(fx->s, 4 * size, &freed, &err), 0);
        assert_int_equal(freed, 0);

        assert_int_equal(kyb_store_acquire(fx->s, "g1", &err), 0);
        assert_int_equal(kyb_store_gc(fx->s, 2 * size, &freed, &err), 2);
        assert_int_equal(freed, 2 * size);
        assert_int_equal(kyb_store_list(fx->s, NULL, 0, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].id, "g1");
        assert_string_equal(v[1].id, "g4");
        kyb_checkpoints_free(v, n);

        assert_int_equal(kyb_store_gc(fx->s, 0, &freed, &err), 1);
        assert_int_equal(list_count(fx->s), 1);
        assert_true(tu_exists(fx->root, "g1"));
        kyb_store_release(fx->s, "g1");
        assert_int_equal(kyb_store_gc(fx->s, 0, NULL, &err), 1);
        assert_int_equal(list_count(fx->s), 0);
}

static void test_abort_removes_everything(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *txn = NULL;

        assert_int_equal(kyb_store_begin(fx->s, "c1", &txn, &err), 0);
        write_sample_files(txn);
        tu_write(kyb_store_txn_images_dir(txn), "deep/er/file.img", "x", 1);
        kyb_store_abort(txn);
        assert_int_equal(tu_count_prefix(fx->root, ".inprogress-"), 0);
        assert_int_equal(list_count(fx->s), 0);
}

static void expect_commit_refused(fixture *fx, void (*fill)(kyb_store_txn *), const char *what)
{
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *txn = NULL;

        assert_int_equal(kyb_store_begin(fx->s, "bad", &txn, &err), 0);
        write_sample_files(txn);
        fill(txn);
        assert_error(kyb_store_commit(txn, m, &err), err, EINVAL, what);
        assert_non_null(strstr(kyb_error_message(err), "commit bad"));
        assert_int_equal(tu_count_prefix(fx->root, ".inprogress-"), 0);
        assert_false(tu_exists(fx->root, "bad"));
}

static void add_symlink(kyb_store_txn *txn)
{
        _cleanup_free_ char *p = tu_path(kyb_store_txn_images_dir(txn), "link.img");

        assert_int_equal(symlink("/etc/passwd", p), 0);
}

static void add_fifo(kyb_store_txn *txn)
{
        _cleanup_free_ char *p = tu_path(kyb_store_txn_images_dir(txn), "fifo.img");

        assert_int_equal(mkfifo(p, 0600), 0);
}

static void add_manifest(kyb_store_txn *txn)
{
        tu_write(kyb_store_txn_dir(txn), "manifest.json", "{}", 2);
}

static void add_hidden(kyb_store_txn *txn)
{
        tu_write(kyb_store_txn_images_dir(txn), ".hidden", "x", 1);
}

static void test_commit_refuses_odd_content(void **state)
{
        fixture *fx = *state;

        expect_commit_refused(fx, add_symlink, "checkpoint/link.img: symbolic link not allowed");
        expect_commit_refused(fx, add_fifo, "checkpoint/fifo.img: special file");
        expect_commit_refused(fx, add_manifest, "written by the store");
        expect_commit_refused(fx, add_hidden, "checkpoint/.hidden");
}

/* Mounts a 1 MiB tmpfs under tmp; NULL (and a message) when that is not possible here. */
static char *mount_tiny_tmpfs(const char *tmp)
{
        char *mnt = tu_path(tmp, "tiny");

        assert_int_equal(mkdir(mnt, 0700), 0);
        if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700") < 0) {
                print_message("skipping: cannot mount a tmpfs (%s); ENOSPC paths not tested\n",
                              kyb_strerror(errno));
                free(mnt);
                return NULL;
        }
        return mnt;
}

/* Fills the file system of dir until a write fails with ENOSPC. */
static void fill_up(const char *dir, const char *rel)
{
        _cleanup_free_ char *p = tu_path(dir, rel);
        _cleanup_free_ char *chunk = calloc(1, 65536);
        FILE *f = fopen(p, "wb");

        assert_non_null(f);
        assert_non_null(chunk);
        setvbuf(f, NULL, _IONBF, 0);
        while (fwrite(chunk, 1, 65536, f) == 65536)
                ;
        assert_int_equal(errno, ENOSPC);
        fclose(f);
}

static void enospc_commit(const char *root)
{
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_store_ kyb_store *s = NULL;
        kyb_store_txn *txn = NULL;
        struct statvfs vfs;

        assert_int_equal(kyb_store_open(root, &s, &err), 0);
        assert_int_equal(kyb_store_begin(s, "full", &txn, &err), 0);
        fill_up(kyb_store_txn_images_dir(txn), "pages-1.img");
        assert_error(kyb_store_commit(txn, m, &err), err, ENOSPC, "No space left on device");
        assert_non_null(strstr(kyb_error_message(err), "commit full"));
        assert_int_equal(tu_count_prefix(root, ".inprogress-"), 0);
        assert_int_equal(tu_count_prefix(root, "full"), 0);
        assert_int_equal(list_count(s), 0);
        /* The space is back. */
        assert_int_equal(statvfs(root, &vfs), 0);
        assert_true((uint64_t)vfs.f_bavail * vfs.f_frsize > 900 * 1024);
}

static void enospc_import(const char *tmp, const char *root)
{
        _cleanup_free_ char *src_root = tu_path(tmp, "src-store");
        _cleanup_free_ char *artifact = tu_path(src_root, "big");
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_store_ kyb_store *src = NULL;
        _cleanup_store_ kyb_store *s = NULL;

        assert_int_equal(kyb_store_open(src_root, &src, &err), 0);
        tu_make_checkpoint(src, "big", 1, 2 * 1024 * 1024, NULL);
        assert_int_equal(kyb_store_open(root, &s, &err), 0);
        assert_error(kyb_store_import(s, artifact, NULL, NULL, &err), err, ENOSPC,
                     "checkpoint/pages-1.img");
        assert_int_equal(tu_count_prefix(root, ".inprogress-"), 0);
        assert_int_equal(tu_count_prefix(root, "big"), 0);
        assert_int_equal(list_count(s), 0);
}

static void test_enospc_leaves_nothing(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *root = NULL;

        fx->mnt = mount_tiny_tmpfs(fx->tmp);
        if (!fx->mnt)
                skip();
        root = tu_path(fx->mnt, "store");
        enospc_commit(root);
        enospc_import(fx->tmp, root);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_open_creates_private_root, setup, teardown),
            cmocka_unit_test_setup_teardown(test_commit_publishes_atomically, setup, teardown),
            cmocka_unit_test_setup_teardown(test_crash_leftovers_removed_at_open, setup, teardown),
            cmocka_unit_test_setup_teardown(test_invalid_ids_rejected, setup, teardown),
            cmocka_unit_test_setup_teardown(test_begin_existing, setup, teardown),
            cmocka_unit_test_setup_teardown(test_concurrent_begin_one_wins, setup, teardown),
            cmocka_unit_test_setup_teardown(test_concurrent_operations, setup, teardown),
            cmocka_unit_test_setup_teardown(test_delete_respects_leases, setup, teardown),
            cmocka_unit_test_setup_teardown(test_delete_removes_companion_files, setup, teardown),
            cmocka_unit_test_setup_teardown(test_list_sorted_and_filtered, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gc_oldest_first_spares_acquired, setup, teardown),
            cmocka_unit_test_setup_teardown(test_abort_removes_everything, setup, teardown),
            cmocka_unit_test_setup_teardown(test_commit_refuses_odd_content, setup, teardown),
            cmocka_unit_test_setup_teardown(test_enospc_leaves_nothing, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
