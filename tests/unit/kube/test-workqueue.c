/* SPDX-License-Identifier: Apache-2.0 */
/* The controller work queue: order, de-duplication, delays, rate limits, shutdown. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kube-test-util.h"
#include "kube/workqueue.h"

/* Takes the next key and checks it is `want`; returns the time it came. */
static uint64_t expect_get(kyb_workqueue *q, const char *want)
{
        char *key = NULL;

        assert_int_equal(kyb_workqueue_get(q, &key), 0);
        assert_non_null(key);
        if (strcmp(key, want))
                fail_msg("got key %s, expected %s", key, want);
        free(key);
        return ku_now_ms();
}

static void expect_get_done(kyb_workqueue *q, const char *want)
{
        expect_get(q, want);
        kyb_workqueue_done(q, want);
}

static void test_fifo_and_len(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);

        assert_non_null(q);
        assert_int_equal(kyb_workqueue_len(q), 0);
        assert_int_equal(kyb_workqueue_add(q, "ns/a"), 0);
        assert_int_equal(kyb_workqueue_add(q, "ns/b"), 0);
        assert_int_equal(kyb_workqueue_add(q, "c"), 0);
        assert_int_equal(kyb_workqueue_len(q), 3);
        expect_get_done(q, "ns/a");
        assert_int_equal(kyb_workqueue_len(q), 2);
        expect_get_done(q, "ns/b");
        expect_get_done(q, "c");
        assert_int_equal(kyb_workqueue_len(q), 0);
        kyb_workqueue_free(q);
}

/* The ring grows while its head is in the middle: order must survive. */
static void test_fifo_across_growth(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);
        char key[32];
        int next = 0;

        for (int i = 0; i < 50; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                assert_int_equal(kyb_workqueue_add(q, key), 0);
        }
        for (; next < 40; next++) {
                snprintf(key, sizeof(key), "k%d", next);
                expect_get_done(q, key);
        }
        for (int i = 50; i < 300; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                assert_int_equal(kyb_workqueue_add(q, key), 0);
        }
        assert_int_equal(kyb_workqueue_len(q), 260);
        for (; next < 300; next++) {
                snprintf(key, sizeof(key), "k%d", next);
                expect_get_done(q, key);
        }
        assert_int_equal(kyb_workqueue_len(q), 0);
        /* Keys still queued are freed with the queue (ASan checks). */
        assert_int_equal(kyb_workqueue_add(q, "left-over"), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "delayed", 60000), 0);
        kyb_workqueue_free(q);
}

static void test_dedup(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);

        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_add(q, "b"), 0);
        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_len(q), 2);
        expect_get_done(q, "a");
        expect_get_done(q, "b");
        assert_int_equal(kyb_workqueue_len(q), 0);

        /* Once handed out, the key may be queued again. */
        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_len(q), 1);
        expect_get_done(q, "a");
        kyb_workqueue_free(q);
}

static void test_added_while_processing(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);

        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        expect_get(q, "a");
        /* A second worker must not get "a" while the first holds it ... */
        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_len(q), 0);
        assert_int_equal(kyb_workqueue_add(q, "b"), 0);
        expect_get_done(q, "b");
        assert_int_equal(kyb_workqueue_len(q), 0);
        /* ... but it comes back, once, when the first is done. */
        kyb_workqueue_done(q, "a");
        assert_int_equal(kyb_workqueue_len(q), 1);
        expect_get_done(q, "a");
        assert_int_equal(kyb_workqueue_len(q), 0);

        /* Done without a re-add does not requeue. */
        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        expect_get_done(q, "a");
        assert_int_equal(kyb_workqueue_len(q), 0);
        kyb_workqueue_free(q);
}

static void test_add_after(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);
        uint64_t t0 = ku_now_ms();

        /* Inserted out of order: the heap hands them out by due time. */
        assert_int_equal(kyb_workqueue_add_after(q, "late", 80), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "early", 30), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "middle", 55), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "now", 0), 0);
        /* Delayed keys are not ready yet. */
        assert_int_equal(kyb_workqueue_len(q), 1);

        expect_get_done(q, "now");
        assert_true(expect_get(q, "early") - t0 >= 30);
        kyb_workqueue_done(q, "early");
        assert_true(expect_get(q, "middle") - t0 >= 55);
        kyb_workqueue_done(q, "middle");
        assert_true(expect_get(q, "late") - t0 >= 80);
        kyb_workqueue_done(q, "late");
        assert_int_equal(kyb_workqueue_len(q), 0);
        kyb_workqueue_free(q);
}

/* A delayed key that is also queued now is handed out once now, and again
 * when its delay is up (a requeue for later is not lost). */
static void test_add_after_of_queued_key(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);
        uint64_t t0 = ku_now_ms();

        assert_int_equal(kyb_workqueue_add(q, "a"), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "a", 30), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "marker", 60), 0);
        expect_get_done(q, "a");
        assert_true(expect_get(q, "a") - t0 >= 30);
        kyb_workqueue_done(q, "a");
        expect_get_done(q, "marker");
        kyb_workqueue_free(q);
}

/*
 * Upper bounds are checked by order against a marker key added with a fixed
 * delay just before, never by wall time: the heap hands keys out by due time
 * however slow the machine is.
 */
static void test_rate_limited(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(&(kyb_workqueue_opts){.base_delay_ms = 20});
        uint64_t t0;

        assert_int_equal(kyb_workqueue_failures(q, "k"), 0);
        for (unsigned i = 0; i < 3; i++) {
                t0 = ku_now_ms();
                assert_int_equal(kyb_workqueue_add_rate_limited(q, "k"), 0);
                assert_int_equal(kyb_workqueue_failures(q, "k"), i + 1);
                assert_int_equal(kyb_workqueue_len(q), 0);
                /* base * 2^failures: 20, 40, 80 ms */
                assert_true(expect_get(q, "k") - t0 >= 20u << i);
                kyb_workqueue_done(q, "k");
        }
        /* The 4th failure waits 160 ms: longer than a 100 ms marker. */
        t0 = ku_now_ms();
        assert_int_equal(kyb_workqueue_add_after(q, "marker", 100), 0);
        assert_int_equal(kyb_workqueue_add_rate_limited(q, "k"), 0);
        expect_get_done(q, "marker");
        assert_true(expect_get(q, "k") - t0 >= 160);
        kyb_workqueue_done(q, "k");
        assert_int_equal(kyb_workqueue_failures(q, "k"), 4);
        /* Failures are per key. */
        assert_int_equal(kyb_workqueue_failures(q, "other"), 0);

        /* forget() after a success: back to the base delay, before the marker. */
        kyb_workqueue_forget(q, "k");
        assert_int_equal(kyb_workqueue_failures(q, "k"), 0);
        t0 = ku_now_ms();
        assert_int_equal(kyb_workqueue_add_after(q, "marker", 100), 0);
        assert_int_equal(kyb_workqueue_add_rate_limited(q, "k"), 0);
        assert_true(expect_get(q, "k") - t0 >= 20);
        kyb_workqueue_done(q, "k");
        expect_get_done(q, "marker");
        assert_int_equal(kyb_workqueue_failures(q, "k"), 1);
        kyb_workqueue_forget(q, "never-added"); /* harmless */
        kyb_workqueue_free(q);
}

static void test_rate_limit_cap(void **state)
{
        kyb_workqueue *q =
            kyb_workqueue_new(&(kyb_workqueue_opts){.base_delay_ms = 10, .max_delay_ms = 20});

        /* 70 failures: 10 << 69 would overflow without the cap on the shift
         * (UBSan reports it); the delay is max_delay_ms, well before 200 ms. */
        assert_int_equal(kyb_workqueue_add_after(q, "marker", 200), 0);
        for (unsigned i = 0; i < 70; i++)
                assert_int_equal(kyb_workqueue_add_rate_limited(q, "k"), 0);
        assert_int_equal(kyb_workqueue_failures(q, "k"), 70);
        expect_get_done(q, "k");
        /* Copies of k promoted while it was processed come back (de-duplicated)
         * before the marker; nothing else is in the queue. */
        for (;;) {
                char *key = NULL;

                assert_int_equal(kyb_workqueue_get(q, &key), 0);
                kyb_workqueue_done(q, key);
                if (!strcmp(key, "marker")) {
                        free(key);
                        break;
                }
                assert_string_equal(key, "k");
                free(key);
        }
        assert_int_equal(kyb_workqueue_len(q), 0);
        kyb_workqueue_free(q);
}

/* ---- threads ------------------------------------------------------------------ */

typedef struct getter {
        kyb_workqueue *q;
        pthread_t thread;
        int rc;
        char *key;
} getter;

static void *get_thread(void *arg)
{
        getter *g = arg;

        g->rc = kyb_workqueue_get(g->q, &g->key);
        return NULL;
}

static void test_shutdown_wakes_getters(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);
        getter g[3] = {{.q = q}, {.q = q}, {.q = q}};
        char *key = NULL;

        /* One getter waits on an empty queue, the others with a delayed key
         * pending (a timed wait): shutdown must end both kinds of wait. */
        assert_int_equal(pthread_create(&g[0].thread, NULL, get_thread, &g[0]), 0);
        assert_int_equal(kyb_workqueue_add_after(q, "far", 60000), 0);
        for (int i = 1; i < 3; i++)
                assert_int_equal(pthread_create(&g[i].thread, NULL, get_thread, &g[i]), 0);
        /* Give them time to block; the test holds even if they have not yet. */
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000}, NULL);
        kyb_workqueue_shutdown(q);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(pthread_join(g[i].thread, NULL), 0);
                assert_int_equal(g[i].rc, -ESHUTDOWN);
                assert_null(g[i].key);
        }
        /* After shutdown, adds are ignored and get() does not block. */
        assert_int_equal(kyb_workqueue_add(q, "late"), 0);
        assert_int_equal(kyb_workqueue_get(q, &key), -ESHUTDOWN);
        assert_null(key);
        kyb_workqueue_free(q);
}

static void test_get_blocks_until_add(void **state)
{
        kyb_workqueue *q = kyb_workqueue_new(NULL);
        getter g = {.q = q};

        assert_int_equal(pthread_create(&g.thread, NULL, get_thread, &g), 0);
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000}, NULL);
        assert_int_equal(kyb_workqueue_add(q, "wake"), 0);
        assert_int_equal(pthread_join(g.thread, NULL), 0);
        assert_int_equal(g.rc, 0);
        assert_string_equal(g.key, "wake");
        kyb_workqueue_done(q, g.key);
        free(g.key);
        kyb_workqueue_free(q);
}

/*
 * Several workers and a producer that re-adds keys while they are processed:
 * no key is ever held by two workers at once, and every key is processed
 * after its last add (no lost requeue).
 */
#define N_KEYS    8
#define N_WORKERS 4
#define N_ROUNDS  300

typedef struct stress {
        kyb_workqueue *q;
        atomic_int busy[N_KEYS];
        atomic_int version[N_KEYS]; /* bumped before each add */
        atomic_int seen[N_KEYS];    /* version a worker saw when it took the key */
        atomic_int overlaps;
} stress;

static void *worker(void *arg)
{
        stress *s = arg;
        char *key;

        while (kyb_workqueue_get(s->q, &key) == 0) {
                int i = atoi(key + 1);

                if (atomic_fetch_add(&s->busy[i], 1) != 0)
                        atomic_fetch_add(&s->overlaps, 1);
                atomic_store(&s->seen[i], atomic_load(&s->version[i]));
                /* Hold the key long enough for the producer to re-add it. */
                nanosleep(&(struct timespec){.tv_nsec = 50 * 1000}, NULL);
                atomic_fetch_sub(&s->busy[i], 1);
                kyb_workqueue_done(s->q, key);
                free(key);
        }
        return NULL;
}

static void test_workers_never_share_a_key(void **state)
{
        stress s = {.q = kyb_workqueue_new(NULL)};
        pthread_t t[N_WORKERS];
        char key[16];
        bool settled = false;

        for (int i = 0; i < N_WORKERS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, worker, &s), 0);
        for (int r = 0; r < N_ROUNDS; r++) {
                for (int i = 0; i < N_KEYS; i++) {
                        snprintf(key, sizeof(key), "k%d", i);
                        atomic_fetch_add(&s.version[i], 1);
                        assert_int_equal(kyb_workqueue_add(s.q, key), 0);
                }
                if (r % 50 == 0)
                        sched_yield();
        }
        /* Wait (up to 10 s, normally a few ms) for every last add to be seen. */
        for (int tries = 0; tries < 10000 && !settled; tries++) {
                settled = true;
                for (int i = 0; i < N_KEYS; i++)
                        settled &= atomic_load(&s.seen[i]) == N_ROUNDS;
                if (!settled)
                        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
        kyb_workqueue_shutdown(s.q);
        for (int i = 0; i < N_WORKERS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(atomic_load(&s.overlaps), 0);
        for (int i = 0; i < N_KEYS; i++)
                assert_int_equal(atomic_load(&s.seen[i]), N_ROUNDS);
        kyb_workqueue_free(s.q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fifo_and_len),
            cmocka_unit_test(test_fifo_across_growth),
            cmocka_unit_test(test_dedup),
            cmocka_unit_test(test_added_while_processing),
            cmocka_unit_test(test_add_after),
            cmocka_unit_test(test_add_after_of_queued_key),
            cmocka_unit_test(test_rate_limited),
            cmocka_unit_test(test_rate_limit_cap),
            cmocka_unit_test(test_shutdown_wakes_getters),
            cmocka_unit_test(test_get_blocks_until_add),
            cmocka_unit_test(test_workers_never_share_a_key),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
