/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "ckpt/request.h"

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void request_init(request *r, kyb_engine *e, const kyb_request_hooks *hooks, int64_t timeout_ms)
{
        static const kyb_request_hooks none = {0};

        *r = (request){.e = e, .hooks = hooks ? hooks : &none};
        if (timeout_ms <= 0)
                timeout_ms = e->cfg.default_timeout_ms;
        if (timeout_ms > 0)
                r->deadline_ms = now_ms() + timeout_ms;
}

static void record_step(request *r)
{
        struct timespec now;

        if (!r->step || r->n_times == KYB_MAX_STEPS)
                return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        r->times[r->n_times++] = (kyb_step_time){
            .step = r->step,
            .duration_ns = (now.tv_sec - r->step_start.tv_sec) * 1000000000LL +
                           (now.tv_nsec - r->step_start.tv_nsec),
        };
}

void request_step(request *r, kyb_step step, const char *message)
{
        record_step(r);
        r->step = step;
        clock_gettime(CLOCK_MONOTONIC, &r->step_start);
        request_progress(r, message, 0, 0);
}

void request_progress(request *r, const char *message, uint64_t done, uint64_t total)
{
        kyb_progress p = {
            .step = r->step, .message = message, .bytes_done = done, .bytes_total = total};

        if (r->hooks->progress)
                r->hooks->progress(r->hooks->ctx, &p);
}

void request_finish(request *r)
{
        record_step(r);
        r->step = 0;
}

int64_t request_remaining_ms(const request *r)
{
        int64_t left;

        if (!r->deadline_ms)
                return 0;
        left = r->deadline_ms - now_ms();
        return left > 0 ? left : 1;
}

int request_check(request *r, kyb_error **err)
{
        if (r->hooks->cancelled && r->hooks->cancelled(r->hooks->ctx))
                return kyb_error_setf(err, ECANCELED, "cancelled during %s",
                                      kyb_step_name(r->step));
        if (r->deadline_ms && now_ms() >= r->deadline_ms)
                return kyb_error_setf(err, ETIMEDOUT, "deadline exceeded during %s",
                                      kyb_step_name(r->step));
        return 0;
}

int engine_lock_target(kyb_engine *e, const char *key, const char *holder, kyb_error **err)
{
        target_lock *l;
        int rc = 0;

        pthread_mutex_lock(&e->lock);
        for (l = e->locks; l; l = l->next)
                if (!strcmp(l->key, key))
                        break;
        if (l) {
                rc = kyb_error_setf(err, EBUSY, "%s is busy with %s", key, l->holder);
        } else if (!(l = calloc(1, sizeof(*l))) || !(l->key = strdup(key)) ||
                   !(l->holder = strdup(holder))) {
                if (l)
                        free(l->key);
                free(l);
                rc = kyb_error_set(err, ENOMEM, "locking %s", key);
        } else {
                l->next = e->locks;
                e->locks = l;
        }
        pthread_mutex_unlock(&e->lock);
        return rc;
}

void engine_unlock_target(kyb_engine *e, const char *key)
{
        pthread_mutex_lock(&e->lock);
        for (target_lock **p = &e->locks; *p; p = &(*p)->next) {
                if (strcmp((*p)->key, key))
                        continue;
                target_lock *l = *p;
                *p = l->next;
                free(l->key);
                free(l->holder);
                free(l);
                break;
        }
        pthread_mutex_unlock(&e->lock);
}
