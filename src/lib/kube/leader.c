/* SPDX-License-Identifier: Apache-2.0 */
/* Lease-based leader election; see leader.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube/kube-internal.h"
#include "kube/leader.h"

struct kyb_kube_leader {
        kyb_kube_client *c;
        kyb_kube_leader_opts o;
        char *ns, *name, *identity;

        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool stop;
        atomic_bool leading;

        /* What we last saw of the lease, and when (monotonic ms). */
        char *observed_holder;
        char *observed_renew;
        uint64_t observed_at;
        uint64_t last_renew; /* our last successful write as leader */
};

static uint64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t real_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *spec_str(const json_t *lease, const char *k)
{
        return json_string_value(json_object_get(json_object_get(lease, "spec"), k));
}

static bool same(const char *a, const char *b)
{
        return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Remembers the record; a change restarts the expiry clock. */
static void observe(kyb_kube_leader *l, const json_t *lease)
{
        const char *holder = spec_str(lease, "holderIdentity");
        const char *renew = spec_str(lease, "renewTime");

        if (same(holder, l->observed_holder) && same(renew, l->observed_renew))
                return;
        free(l->observed_holder);
        free(l->observed_renew);
        l->observed_holder = holder ? strdup(holder) : NULL;
        l->observed_renew = renew ? strdup(renew) : NULL;
        l->observed_at = mono_ms();
}

static json_t *lease_spec(kyb_kube_leader *l, const json_t *old, bool release)
{
        const char *holder = spec_str(old, "holderIdentity");
        const char *acquired = spec_str(old, "acquireTime");
        json_int_t transitions =
            json_integer_value(json_object_get(json_object_get(old, "spec"), "leaseTransitions"));
        char now[40];

        kyb_kube_format_time(real_ns(), true, now);
        if (!same(holder, l->identity)) {
                acquired = now;
                if (old)
                        transitions++;
        }
        return json_pack("{s:s?, s:i, s:s, s:s, s:I}", "holderIdentity",
                         release ? NULL : l->identity, "leaseDurationSeconds",
                         release ? 1 : (int)((l->o.lease_ms + 999) / 1000), "acquireTime", acquired,
                         "renewTime", now, "leaseTransitions", transitions);
}

static int create_lease(kyb_kube_leader *l, kyb_error **err)
{
        _cleanup_json_ json_t *obj =
            json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "coordination.k8s.io/v1",
                      "kind", "Lease", "metadata", "name", l->name, "namespace", l->ns, "spec",
                      lease_spec(l, NULL, false));

        if (!obj)
                return kyb_error_set(err, ENOMEM, "lease");
        return kyb_kube_create(l->c, &KYB_KUBE_LEASES, l->ns, obj, NULL, err);
}

static int write_lease(kyb_kube_leader *l, json_t *lease, bool release, kyb_error **err)
{
        json_object_set_new(lease, "spec", lease_spec(l, lease, release));
        return kyb_kube_update(l->c, &KYB_KUBE_LEASES, lease, NULL, err);
}

/* Bounds the next request by the deadline (monotonic ms): a request that
 * hangs must not keep a leader acting past its renew deadline. */
static bool budget(kyb_kube_leader *l, uint64_t deadline, kyb_error **err)
{
        uint64_t now = mono_ms();

        if (now + 50 >= deadline) {
                kyb_error_setf(err, ETIMEDOUT, "lease %s/%s: out of time before the deadline",
                               l->ns, l->name);
                return false;
        }
        kyb_kube_client_set_timeout(l->c, (unsigned)(deadline - now));
        return true;
}

/* One attempt to acquire or renew, over by deadline; true when we hold the
 * lease now. */
static bool try_acquire(kyb_kube_leader *l, uint64_t deadline)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *lease = NULL;
        const char *holder;
        int rc;

        if (!budget(l, deadline, NULL))
                return false;
        rc = kyb_kube_get(l->c, &KYB_KUBE_LEASES, l->ns, l->name, &lease, &err);
        if (rc == -ENOENT) {
                kyb_error_freep(&err);
                rc = budget(l, deadline, &err) ? create_lease(l, &err) : -ETIMEDOUT;
        } else if (rc >= 0) {
                observe(l, lease);
                holder = spec_str(lease, "holderIdentity");
                if (holder && *holder && !same(holder, l->identity) &&
                    mono_ms() < l->observed_at + l->o.lease_ms)
                        return false; /* someone else holds a live lease */
                rc = budget(l, deadline, &err) ? write_lease(l, lease, false, &err) : -ETIMEDOUT;
        }
        if (rc < 0 && rc != -ESTALE && rc != -EEXIST && l->o.on_error)
                l->o.on_error(l->o.ctx, err);
        return rc >= 0;
}

static void release(kyb_kube_leader *l)
{
        _cleanup_json_ json_t *lease = NULL;

        kyb_kube_client_set_timeout(l->c, l->o.renew_deadline_ms);
        if (kyb_kube_get(l->c, &KYB_KUBE_LEASES, l->ns, l->name, &lease, NULL) == 0 &&
            same(spec_str(lease, "holderIdentity"), l->identity))
                write_lease(l, lease, true, NULL);
}

/* Waits ms or until stopped; false when stopping. */
static bool wait_ms(kyb_kube_leader *l, unsigned ms)
{
        uint64_t until = mono_ms() + ms;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000),
                              .tv_nsec = (long)(until % 1000) * 1000000};
        bool go;

        pthread_mutex_lock(&l->mu);
        while (!l->stop && pthread_cond_timedwait(&l->cv, &l->mu, &ts) != ETIMEDOUT)
                ;
        go = !l->stop;
        pthread_mutex_unlock(&l->mu);
        return go;
}

static void step(kyb_kube_leader *l)
{
        uint64_t start = mono_ms();
        bool leading = atomic_load(&l->leading);
        /* A leader's attempts end by its renew deadline, so it steps down
         * before any other candidate can see the lease expire. */
        bool held = try_acquire(l, (leading ? l->last_renew : start) + l->o.renew_deadline_ms);

        if (held) /* when the attempt began: the lease was written after */
                l->last_renew = start;
        if (held && !leading) {
                atomic_store(&l->leading, true);
                if (l->o.on_started)
                        l->o.on_started(l->o.ctx);
        } else if (!held && leading && mono_ms() >= l->last_renew + l->o.renew_deadline_ms) {
                atomic_store(&l->leading, false);
                if (l->o.on_stopped)
                        l->o.on_stopped(l->o.ctx);
        }
}

static void *election_thread(void *arg)
{
        kyb_kube_leader *l = arg;

        do
                step(l);
        while (wait_ms(l, l->o.retry_ms));
        if (atomic_load(&l->leading)) {
                release(l);
                atomic_store(&l->leading, false);
                if (l->o.on_stopped)
                        l->o.on_stopped(l->o.ctx);
        }
        return NULL;
}

int kyb_kube_leader_start(kyb_kube_client *c, const kyb_kube_leader_opts *opts,
                          kyb_kube_leader **out, kyb_error **err)
{
        kyb_kube_leader *l = calloc(1, sizeof(*l));
        pthread_condattr_t attr;
        int e;

        if (!l)
                return kyb_error_set(err, ENOMEM, "leader election");
        l->o = *opts;
        l->o.lease_ms = opts->lease_ms ? opts->lease_ms : 15000;
        l->o.renew_deadline_ms = opts->renew_deadline_ms ? opts->renew_deadline_ms : 10000;
        l->o.retry_ms = opts->retry_ms ? opts->retry_ms : 2000;
        if (l->o.renew_deadline_ms >= l->o.lease_ms || l->o.retry_ms >= l->o.renew_deadline_ms) {
                kyb_error_setf(err, EINVAL,
                               "leader election: needs retry (%u ms) < renew deadline (%u ms) < "
                               "lease duration (%u ms)",
                               l->o.retry_ms, l->o.renew_deadline_ms, l->o.lease_ms);
                free(l);
                return -EINVAL;
        }
        /* Its own connections and timeouts: the lease is never queued behind
         * the controllers' requests. */
        if ((e = kyb_kube_client_clone(c, l->o.renew_deadline_ms, &l->c, err)) < 0) {
                free(l);
                return e;
        }
        l->ns = strdup(opts->ns);
        l->name = strdup(opts->name);
        l->identity = strdup(opts->identity);
        pthread_mutex_init(&l->mu, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cv, &attr);
        pthread_condattr_destroy(&attr);
        if (!l->ns || !l->name || !l->identity) {
                l->stop = true; /* no thread to join */
                kyb_kube_leader_free(l);
                return kyb_error_set(err, ENOMEM, "leader election");
        }
        if ((e = pthread_create(&l->thread, NULL, election_thread, l))) {
                l->stop = true; /* nothing to join */
                kyb_kube_leader_free(l);
                return kyb_error_set(err, e, "leader election thread");
        }
        *out = l;
        return 0;
}

bool kyb_kube_leader_is_leader(kyb_kube_leader *l)
{
        return atomic_load(&l->leading);
}

void kyb_kube_leader_free(kyb_kube_leader *l)
{
        bool join;

        if (!l)
                return;
        pthread_mutex_lock(&l->mu);
        join = !l->stop;
        l->stop = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        if (join)
                pthread_join(l->thread, NULL);
        kyb_kube_client_free(l->c);
        free(l->observed_holder);
        free(l->observed_renew);
        free(l->ns);
        free(l->name);
        free(l->identity);
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
}
