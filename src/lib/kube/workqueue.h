/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A controller work queue of string keys ("ns/name"), with the guarantees
 * level-triggered controllers rely on:
 *  - a key is queued at most once however often it is added (de-duplication);
 *  - a key is handed to at most one worker at a time: added while being
 *    processed, it is queued again when that worker calls done();
 *  - add_rate_limited() delays a key by base * 2^failures (capped) until
 *    forget() resets its failures; add_after() delays by a fixed time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kyb_workqueue kyb_workqueue;

typedef struct kyb_workqueue_opts {
        unsigned base_delay_ms; /* 0: 5 ms */
        unsigned max_delay_ms;  /* 0: 60 s */
} kyb_workqueue_opts;

kyb_workqueue *kyb_workqueue_new(const kyb_workqueue_opts *opts);
void kyb_workqueue_free(kyb_workqueue *q);

int kyb_workqueue_add(kyb_workqueue *q, const char *key);
int kyb_workqueue_add_after(kyb_workqueue *q, const char *key, uint64_t delay_ms);
int kyb_workqueue_add_rate_limited(kyb_workqueue *q, const char *key);
void kyb_workqueue_forget(kyb_workqueue *q, const char *key);
unsigned kyb_workqueue_failures(kyb_workqueue *q, const char *key);

/* Blocks until a key is ready (*key: malloc'd) or the queue shuts down
 * (-ESHUTDOWN). The worker must call done() with the key afterwards. */
int kyb_workqueue_get(kyb_workqueue *q, char **key);
void kyb_workqueue_done(kyb_workqueue *q, const char *key);

/* Wakes every get() with -ESHUTDOWN; queued keys are dropped. */
void kyb_workqueue_shutdown(kyb_workqueue *q);
/* Keys ready now (not the delayed ones). */
size_t kyb_workqueue_len(kyb_workqueue *q);
