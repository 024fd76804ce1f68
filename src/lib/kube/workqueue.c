/* SPDX-License-Identifier: Apache-2.0 */
/* The controller work queue; see workqueue.h. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/macro.h"
#include "kube/workqueue.h"

typedef struct delayed {
        uint64_t due_ms;
        char *key;
} delayed;

struct kyb_workqueue {
        kyb_workqueue_opts o;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool shutdown;

        char **ring; /* ready keys, FIFO */
        size_t head, len, cap;
        json_t *dirty;      /* keys queued or to be requeued: set */
        json_t *processing; /* keys a worker holds: set */
        json_t *failures;   /* key -> count */

        delayed *heap; /* min-heap on due_ms */
        size_t n_heap, cap_heap;
};

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

kyb_workqueue *kyb_workqueue_new(const kyb_workqueue_opts *opts)
{
        kyb_workqueue *q = calloc(1, sizeof(*q));
        pthread_condattr_t attr;

        if (!q)
                return NULL;
        q->o.base_delay_ms = opts && opts->base_delay_ms ? opts->base_delay_ms : 5;
        q->o.max_delay_ms = opts && opts->max_delay_ms ? opts->max_delay_ms : 60000;
        q->dirty = json_object();
        q->processing = json_object();
        q->failures = json_object();
        pthread_mutex_init(&q->mu, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cv, &attr);
        pthread_condattr_destroy(&attr);
        if (!q->dirty || !q->processing || !q->failures) {
                kyb_workqueue_free(q);
                return NULL;
        }
        return q;
}

void kyb_workqueue_free(kyb_workqueue *q)
{
        if (!q)
                return;
        for (size_t i = 0; i < q->len; i++)
                free(q->ring[(q->head + i) % q->cap]);
        for (size_t i = 0; i < q->n_heap; i++)
                free(q->heap[i].key);
        free(q->ring);
        free(q->heap);
        json_decref(q->dirty);
        json_decref(q->processing);
        json_decref(q->failures);
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        free(q);
}

/* ---- the ready ring (under mu) ------------------------------------------------ */

static int ring_push(kyb_workqueue *q, const char *key)
{
        char *k = strdup(key);

        if (!k)
                return -ENOMEM;
        if (q->len == q->cap) {
                size_t cap = q->cap ? q->cap * 2 : 64;
                char **n = malloc(cap * sizeof(*n));

                if (!n) {
                        free(k);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < q->len; i++)
                        n[i] = q->ring[(q->head + i) % q->cap];
                free(q->ring);
                q->ring = n;
                q->head = 0;
                q->cap = cap;
        }
        q->ring[(q->head + q->len++) % q->cap] = k;
        return 0;
}

static char *ring_pop(kyb_workqueue *q)
{
        char *k = q->ring[q->head];

        q->head = (q->head + 1) % q->cap;
        q->len--;
        return k;
}

/* Marks key dirty and queues it unless it is queued or being processed. */
static int enqueue(kyb_workqueue *q, const char *key)
{
        int rc = 0;

        if (q->shutdown || json_object_get(q->dirty, key))
                return 0;
        if (json_object_set(q->dirty, key, json_true()) < 0)
                return -ENOMEM;
        if (!json_object_get(q->processing, key))
                rc = ring_push(q, key);
        if (rc < 0)
                json_object_del(q->dirty, key);
        else
                pthread_cond_signal(&q->cv);
        return rc;
}

int kyb_workqueue_add(kyb_workqueue *q, const char *key)
{
        int rc;

        pthread_mutex_lock(&q->mu);
        rc = enqueue(q, key);
        pthread_mutex_unlock(&q->mu);
        return rc;
}

/* ---- delayed keys (min-heap, under mu) --------------------------------------------- */

static void heap_swap(kyb_workqueue *q, size_t a, size_t b)
{
        delayed t = q->heap[a];

        q->heap[a] = q->heap[b];
        q->heap[b] = t;
}

static int heap_push(kyb_workqueue *q, uint64_t due, const char *key)
{
        size_t i;

        if (q->n_heap == q->cap_heap) {
                size_t cap = q->cap_heap ? q->cap_heap * 2 : 16;
                delayed *n = realloc(q->heap, cap * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                q->heap = n;
                q->cap_heap = cap;
        }
        if (!(q->heap[q->n_heap].key = strdup(key)))
                return -ENOMEM;
        q->heap[q->n_heap].due_ms = due;
        for (i = q->n_heap++; i && q->heap[(i - 1) / 2].due_ms > q->heap[i].due_ms; i = (i - 1) / 2)
                heap_swap(q, i, (i - 1) / 2);
        return 0;
}

static void heap_pop(kyb_workqueue *q)
{
        size_t i = 0;

        free(q->heap[0].key);
        q->heap[0] = q->heap[--q->n_heap];
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;

                if (l < q->n_heap && q->heap[l].due_ms < q->heap[m].due_ms)
                        m = l;
                if (r < q->n_heap && q->heap[r].due_ms < q->heap[m].due_ms)
                        m = r;
                if (m == i)
                        return;
                heap_swap(q, i, m);
                i = m;
        }
}

static void promote_due(kyb_workqueue *q, uint64_t now)
{
        while (q->n_heap && q->heap[0].due_ms <= now) {
                enqueue(q, q->heap[0].key);
                heap_pop(q);
        }
}

int kyb_workqueue_add_after(kyb_workqueue *q, const char *key, uint64_t delay_ms)
{
        int rc;

        if (!delay_ms)
                return kyb_workqueue_add(q, key);
        pthread_mutex_lock(&q->mu);
        rc = q->shutdown ? 0 : heap_push(q, now_ms() + delay_ms, key);
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
        return rc;
}

int kyb_workqueue_add_rate_limited(kyb_workqueue *q, const char *key)
{
        uint64_t delay;
        json_int_t n;

        pthread_mutex_lock(&q->mu);
        n = json_integer_value(json_object_get(q->failures, key));
        json_object_set_new(q->failures, key, json_integer(n + 1));
        pthread_mutex_unlock(&q->mu);
        delay = (uint64_t)q->o.base_delay_ms << KYB_MIN(n, 30);
        return kyb_workqueue_add_after(q, key, KYB_MIN(delay, q->o.max_delay_ms));
}

void kyb_workqueue_forget(kyb_workqueue *q, const char *key)
{
        pthread_mutex_lock(&q->mu);
        json_object_del(q->failures, key);
        pthread_mutex_unlock(&q->mu);
}

unsigned kyb_workqueue_failures(kyb_workqueue *q, const char *key)
{
        unsigned n;

        pthread_mutex_lock(&q->mu);
        n = (unsigned)json_integer_value(json_object_get(q->failures, key));
        pthread_mutex_unlock(&q->mu);
        return n;
}

/* ---- workers ------------------------------------------------------------------------ */

static void wait_for_work(kyb_workqueue *q)
{
        struct timespec until;
        uint64_t due;

        if (!q->n_heap) {
                pthread_cond_wait(&q->cv, &q->mu);
                return;
        }
        due = q->heap[0].due_ms;
        until.tv_sec = (time_t)(due / 1000);
        until.tv_nsec = (long)(due % 1000) * 1000000;
        pthread_cond_timedwait(&q->cv, &q->mu, &until);
}

int kyb_workqueue_get(kyb_workqueue *q, char **key)
{
        char *k;

        pthread_mutex_lock(&q->mu);
        for (;;) {
                if (q->shutdown) {
                        pthread_mutex_unlock(&q->mu);
                        return -ESHUTDOWN;
                }
                promote_due(q, now_ms());
                if (q->len)
                        break;
                wait_for_work(q);
        }
        k = ring_pop(q);
        json_object_set(q->processing, k, json_true());
        json_object_del(q->dirty, k);
        pthread_mutex_unlock(&q->mu);
        *key = k;
        return 0;
}

void kyb_workqueue_done(kyb_workqueue *q, const char *key)
{
        pthread_mutex_lock(&q->mu);
        json_object_del(q->processing, key);
        /* Added while it was processed: its turn now. */
        if (json_object_get(q->dirty, key) && !q->shutdown && ring_push(q, key) == 0)
                pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
}

void kyb_workqueue_shutdown(kyb_workqueue *q)
{
        pthread_mutex_lock(&q->mu);
        q->shutdown = true;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
}

size_t kyb_workqueue_len(kyb_workqueue *q)
{
        size_t n;

        pthread_mutex_lock(&q->mu);
        n = q->len;
        pthread_mutex_unlock(&q->mu);
        return n;
}
