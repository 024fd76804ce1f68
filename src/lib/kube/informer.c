/* SPDX-License-Identifier: Apache-2.0 */
/* List + watch into a local cache; see informer.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "kube/informer.h"
#include "kube/kube-internal.h"

struct kyb_kube_informer {
        kyb_kube_client *c;
        kyb_kube_informer_opts o;
        char *ns;
        char *label_selector, *field_selector;

        pthread_t thread;
        bool started;
        atomic_bool stop;

        /* Guards cache, synced and stats; cv signals synced and stop. */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        json_t *cache; /* key -> object */
        bool synced;
        kyb_kube_informer_stats stats;
        char *rv; /* where the next watch starts; informer thread only */
};

int kyb_kube_informer_new(kyb_kube_client *c, const kyb_kube_informer_opts *opts,
                          kyb_kube_informer **out, kyb_error **err)
{
        kyb_kube_informer *inf = calloc(1, sizeof(*inf));

        if (!inf)
                return kyb_error_set(err, ENOMEM, "informer");
        inf->c = c;
        inf->o = *opts;
        inf->ns = opts->ns ? strdup(opts->ns) : NULL;
        inf->label_selector = opts->list.label_selector ? strdup(opts->list.label_selector) : NULL;
        inf->field_selector = opts->list.field_selector ? strdup(opts->list.field_selector) : NULL;
        inf->o.ns = inf->ns;
        inf->o.list.label_selector = inf->label_selector;
        inf->o.list.field_selector = inf->field_selector;
        if (!inf->o.watch_timeout_s)
                inf->o.watch_timeout_s = 300;
        if (!inf->o.backoff_max_ms)
                inf->o.backoff_max_ms = 5000;
        inf->cache = json_object();
        pthread_mutex_init(&inf->mu, NULL);
        pthread_cond_init(&inf->cv, NULL);
        if (!inf->cache || (opts->ns && !inf->ns)) {
                kyb_kube_informer_free(inf);
                return kyb_error_set(err, ENOMEM, "informer");
        }
        *out = inf;
        return 0;
}

/* ---- cache updates (informer thread) ------------------------------------------ */

/* The object as cached: the caller's transform, and never managedFields
 * (server-side apply bookkeeping no controller here reads, often the
 * largest part of an object). */
static json_t *prepare(kyb_kube_informer *inf, const json_t *obj)
{
        json_t *t = inf->o.transform ? inf->o.transform(obj) : NULL;

        if (t)
                return t;
        if (!json_object_get(json_object_get(obj, "metadata"), "managedFields"))
                return json_incref((json_t *)obj);
        t = json_copy((json_t *)obj); /* shallow: only metadata is replaced */
        if (t) {
                json_t *meta = json_copy(json_object_get(obj, "metadata"));

                json_object_del(meta, "managedFields");
                json_object_set_new(t, "metadata", meta);
        }
        return t;
}

/* ---- the cache: objects, or (compact) their JSON text ---------------------------- */

/* A cache value as the caller sees it: a new reference. */
static json_t *decode(const kyb_kube_informer *inf, json_t *v)
{
        if (!v || !inf->o.compact)
                return json_incref(v);
        return json_loadb(json_string_value(v), json_string_length(v), 0, NULL);
}

/* Under mu: the value to decode once mu is released. */
static json_t *cache_ref(kyb_kube_informer *inf, const char *key)
{
        return json_incref(json_object_get(inf->cache, key));
}

static int cache_put(kyb_kube_informer *inf, const char *key, json_t *obj)
{
        char *text;
        int rc;

        if (!inf->o.compact)
                return json_object_set(inf->cache, key, obj);
        /* ~10x smaller than the parsed object in jansson */
        if (!(text = json_dumps(obj, JSON_COMPACT)))
                return -1;
        rc = json_object_set_new(inf->cache, key, json_string(text));
        free(text);
        return rc;
}

/* Caches an already prepared object and tells the handlers. */
static void store(kyb_kube_informer *inf, json_t *obj)
{
        _cleanup_free_ char *key = kyb_kube_key(obj);
        _cleanup_json_ json_t *ref = NULL, *old = NULL;
        const kyb_kube_handlers *h = &inf->o.handlers;

        if (!key)
                return;
        pthread_mutex_lock(&inf->mu);
        ref = cache_ref(inf, key);
        cache_put(inf, key, obj);
        inf->stats.objects = json_object_size(inf->cache);
        pthread_mutex_unlock(&inf->mu);
        old = ref && h->on_update ? decode(inf, ref) : NULL;
        if (ref && h->on_update && old)
                h->on_update(h->ctx, old, obj);
        else if (!ref && h->on_add)
                h->on_add(h->ctx, obj);
}

static void upsert(kyb_kube_informer *inf, json_t *raw)
{
        _cleanup_json_ json_t *obj = prepare(inf, raw);

        if (obj)
                store(inf, obj);
}

static void removed_key(kyb_kube_informer *inf, const char *key)
{
        _cleanup_json_ json_t *ref = NULL, *old = NULL;
        const kyb_kube_handlers *h = &inf->o.handlers;

        pthread_mutex_lock(&inf->mu);
        ref = cache_ref(inf, key);
        json_object_del(inf->cache, key);
        inf->stats.objects = json_object_size(inf->cache);
        pthread_mutex_unlock(&inf->mu);
        if (ref && h->on_delete && (old = decode(inf, ref)))
                h->on_delete(h->ctx, old);
}

static void removed(kyb_kube_informer *inf, const json_t *raw)
{
        _cleanup_free_ char *key = kyb_kube_key(raw);

        if (key)
                removed_key(inf, key);
}

static int on_event(void *ctx, kyb_kube_event_type type, json_t *obj)
{
        kyb_kube_informer *inf = ctx;

        if (type == KYB_KUBE_ADDED || type == KYB_KUBE_MODIFIED)
                upsert(inf, obj);
        else if (type == KYB_KUBE_DELETED)
                removed(inf, obj);
        return 0;
}

/* Whatever the cache holds that the fresh list lacks was deleted meanwhile. */
static void drop_missing(kyb_kube_informer *inf, const json_t *fresh)
{
        _cleanup_json_ json_t *gone = json_array();
        const char *key;
        json_t *v;
        size_t i;

        pthread_mutex_lock(&inf->mu);
        json_object_foreach(inf->cache, key, v)
        {
                if (!json_object_get(fresh, key))
                        json_array_append_new(gone, json_string(key));
        }
        pthread_mutex_unlock(&inf->mu);
        json_array_foreach(gone, i, v) removed_key(inf, json_string_value(v));
}

static bool unchanged(kyb_kube_informer *inf, const char *key, const json_t *obj)
{
        const char *rv = kyb_kube_meta(obj, "resourceVersion");
        _cleanup_json_ json_t *ref = NULL, *old = NULL;

        pthread_mutex_lock(&inf->mu);
        ref = cache_ref(inf, key);
        pthread_mutex_unlock(&inf->mu);
        old = decode(inf, ref);
        return rv && kyb_kube_meta(old, "resourceVersion") &&
               !strcmp(rv, kyb_kube_meta(old, "resourceVersion"));
}

static void report(kyb_kube_informer *inf, const kyb_error *err, int rc)
{
        if (inf->o.on_error && rc != -ECANCELED && err)
                inf->o.on_error(inf->o.handlers.ctx, err);
}

typedef struct listing {
        kyb_kube_informer *inf;
        json_t *fresh; /* key -> prepared object */
} listing;

/* Each listed object is slimmed while its page is in memory: a list of
 * 10,000 pods is never held whole. */
static int collect(void *ctx, json_t *raw)
{
        listing *l = ctx;
        _cleanup_free_ char *key = kyb_kube_key(raw);
        json_t *obj;

        if (!key)
                return 0;
        if (!(obj = prepare(l->inf, raw)))
                return -ENOMEM;
        if (l->inf->o.compact) { /* the whole list is held until the diff */
                char *text = json_dumps(obj, JSON_COMPACT);

                json_decref(obj);
                obj = text ? json_string(text) : NULL;
                free(text);
                if (!obj)
                        return -ENOMEM;
        }
        return json_object_set_new(l->fresh, key, obj) < 0 ? -ENOMEM : 0;
}

static int relist(kyb_kube_informer *inf, kyb_error **err)
{
        _cleanup_json_ json_t *fresh = json_object();
        listing l = {inf, fresh};
        char *rv = NULL;
        const char *key;
        json_t *obj;
        int rc;

        if (!fresh)
                return kyb_error_set(err, ENOMEM, "informer");
        rc = kyb_kube_list_each(inf->c, inf->o.resource, inf->ns, &inf->o.list, collect, &l, &rv,
                                err);
        pthread_mutex_lock(&inf->mu);
        inf->stats.lists++;
        inf->stats.failures += rc < 0;
        pthread_mutex_unlock(&inf->mu);
        if (rc < 0)
                return rc;
        drop_missing(inf, fresh);
        json_object_foreach(fresh, key, obj)
        {
                _cleanup_json_ json_t *o = decode(inf, obj);

                if (o && !unchanged(inf, key, o))
                        store(inf, o);
        }
        free(inf->rv);
        inf->rv = rv;
        pthread_mutex_lock(&inf->mu);
        inf->synced = true;
        pthread_cond_broadcast(&inf->cv);
        pthread_mutex_unlock(&inf->mu);
        return 0;
}

/* ---- the loop -------------------------------------------------------------------- */

/* Sleeps up to ms, waking early on stop; false when stopping. */
static bool pause_ms(kyb_kube_informer *inf, unsigned ms)
{
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&inf->mu);
        while (!atomic_load(&inf->stop) &&
               pthread_cond_timedwait(&inf->cv, &inf->mu, &until) != ETIMEDOUT)
                ;
        pthread_mutex_unlock(&inf->mu);
        return !atomic_load(&inf->stop);
}

static unsigned jittered(unsigned ms)
{
        unsigned r = 0;

        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
                r = (unsigned)time(NULL);
        return ms / 2 + r % (ms / 2 + 1);
}

/* Watches until the stream fails; returns <0 to make the caller relist. */
static int watch_loop(kyb_kube_informer *inf)
{
        for (;;) {
                _cleanup_error_ kyb_error *err = NULL;
                char *last = NULL;
                int rc;

                pthread_mutex_lock(&inf->mu);
                inf->stats.watches++;
                pthread_mutex_unlock(&inf->mu);
                rc = kyb_kube_watch(inf->c, inf->o.resource, inf->ns, &inf->o.list, inf->rv,
                                    inf->o.watch_timeout_s, &inf->stop, on_event, inf, &last, &err);
                if (last) {
                        free(inf->rv);
                        inf->rv = last;
                }
                if (rc < 0) {
                        pthread_mutex_lock(&inf->mu);
                        inf->stats.failures += rc != -ECANCELED;
                        pthread_mutex_unlock(&inf->mu);
                        /* an expired version is routine: relist, no alarm */
                        if (rc != -ETIME)
                                report(inf, err, rc);
                        return rc;
                }
        }
}

static void *informer_thread(void *arg)
{
        kyb_kube_informer *inf = arg;
        unsigned backoff = 100;

        while (!atomic_load(&inf->stop)) {
                _cleanup_error_ kyb_error *err = NULL;

                int rc = relist(inf, &err);

                if (rc < 0) {
                        report(inf, err, rc);
                        if (!pause_ms(inf, jittered(backoff)))
                                break;
                        backoff = KYB_MIN(backoff * 2, inf->o.backoff_max_ms);
                        continue;
                }
                backoff = 100;
                /* Expired (410): relist at once; anything else after a pause. */
                if (watch_loop(inf) != -ETIME && !pause_ms(inf, jittered(backoff)))
                        break;
        }
        return NULL;
}

int kyb_kube_informer_start(kyb_kube_informer *inf, kyb_error **err)
{
        int e = pthread_create(&inf->thread, NULL, informer_thread, inf);

        if (e)
                return kyb_error_set(err, e, "informer %s", inf->o.resource->plural);
        inf->started = true;
        return 0;
}

bool kyb_kube_informer_wait_synced(kyb_kube_informer *inf, unsigned timeout_ms)
{
        struct timespec until;
        bool ok;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&inf->mu);
        while (!inf->synced && !atomic_load(&inf->stop) &&
               pthread_cond_timedwait(&inf->cv, &inf->mu, &until) != ETIMEDOUT)
                ;
        ok = inf->synced;
        pthread_mutex_unlock(&inf->mu);
        return ok;
}

json_t *kyb_kube_informer_get(kyb_kube_informer *inf, const char *key)
{
        json_t *obj;

        pthread_mutex_lock(&inf->mu);
        obj = cache_ref(inf, key);
        pthread_mutex_unlock(&inf->mu);
        if (inf->o.compact) {
                json_t *v = decode(inf, obj);

                json_decref(obj);
                obj = v;
        }
        return obj;
}

json_t *kyb_kube_informer_list(kyb_kube_informer *inf)
{
        json_t *all = json_array(), *obj;
        const char *key;

        pthread_mutex_lock(&inf->mu);
        json_object_foreach(inf->cache, key, obj) json_array_append(all, obj);
        pthread_mutex_unlock(&inf->mu);
        if (inf->o.compact) { /* decoded outside the lock */
                size_t i;

                json_array_foreach(all, i, obj) json_array_set_new(all, i, decode(inf, obj));
        }
        return all;
}

void kyb_kube_informer_stats_get(kyb_kube_informer *inf, kyb_kube_informer_stats *out)
{
        pthread_mutex_lock(&inf->mu);
        *out = inf->stats;
        pthread_mutex_unlock(&inf->mu);
}

void kyb_kube_informer_stop(kyb_kube_informer *inf)
{
        if (!inf)
                return;
        pthread_mutex_lock(&inf->mu);
        atomic_store(&inf->stop, true);
        pthread_cond_broadcast(&inf->cv);
        pthread_mutex_unlock(&inf->mu);
        if (inf->started)
                pthread_join(inf->thread, NULL);
        inf->started = false;
}

void kyb_kube_informer_free(kyb_kube_informer *inf)
{
        if (!inf)
                return;
        kyb_kube_informer_stop(inf);
        json_decref(inf->cache);
        free(inf->rv);
        free(inf->ns);
        free(inf->label_selector);
        free(inf->field_selector);
        pthread_cond_destroy(&inf->cv);
        pthread_mutex_destroy(&inf->mu);
        free(inf);
}
