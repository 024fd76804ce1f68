/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/lib/ckpt: per-request bookkeeping shared by both flows. */
#pragma once

#include <pthread.h>
#include <time.h>

#include "ckpt/engine.h"
#include "container/container.h"
#include "criu/criu.h"

typedef struct target_lock {
        struct target_lock *next;
        char *key;
        char *holder;
} target_lock;

struct kyb_engine {
        kyb_engine_config cfg; /* strings owned */
        kyb_store *store;
        kyb_criu *criu;
        kyb_runc *runc;
        struct kyb_gpu *gpu; /* always set; reports "unavailable" without a GPU */
        pthread_mutex_t lock;
        target_lock *locks;
};

typedef struct request {
        kyb_engine *e;
        const kyb_request_hooks *hooks;
        kyb_step step; /* running step, 0 before the first */
        struct timespec step_start;
        kyb_step_time times[KYB_MAX_STEPS];
        size_t n_times;
        int64_t deadline_ms; /* CLOCK_MONOTONIC ms; 0: none */
} request;

void request_init(request *r, kyb_engine *e, const kyb_request_hooks *hooks, int64_t timeout_ms);
/* Ends the running step (recording its duration) and reports the next. */
void request_step(request *r, kyb_step step, const char *message);
void request_progress(request *r, const char *message, uint64_t done, uint64_t total);
/* Ends the running step without starting another. */
void request_finish(request *r);
/* -ECANCELED / -ETIMEDOUT once the caller gave up or the deadline passed. */
int request_check(request *r, kyb_error **err);
/* Milliseconds left before the deadline; <= 0 means none is set. */
int64_t request_remaining_ms(const request *r);

/* Per-target mutual exclusion: -EBUSY naming the current holder. */
int engine_lock_target(kyb_engine *e, const char *key, const char *holder, kyb_error **err);
void engine_unlock_target(kyb_engine *e, const char *key);
