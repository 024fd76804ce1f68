/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An informer keeps a local cache of one resource in sync with the API
 * server: list, then watch from the list's resourceVersion; when the watch
 * ends it watches again from the last version seen; when that version has
 * expired (410) or the connection failed it lists again (after a backoff)
 * and reports the difference to the cache as adds, updates and deletes, so
 * no change is missed across an API server restart.
 *
 * Handlers run on the informer's thread, one at a time, in event order, and
 * must not block for long (they usually enqueue a key in a work queue). The
 * objects they get are borrowed; json_incref to keep one.
 */
#pragma once

#include "kube/kube.h"

typedef struct kyb_kube_informer kyb_kube_informer;

typedef struct kyb_kube_handlers {
        void (*on_add)(void *ctx, json_t *obj);
        void (*on_update)(void *ctx, json_t *old, json_t *obj);
        void (*on_delete)(void *ctx, json_t *obj);
        void *ctx;
} kyb_kube_handlers;

typedef struct kyb_kube_informer_opts {
        const kyb_kube_resource *resource;
        const char *ns; /* NULL: all namespaces */
        kyb_kube_list_opts list;
        unsigned watch_timeout_s; /* 0: 300 */
        unsigned backoff_max_ms;  /* 0: 5000 */
        /* Keep objects as compact JSON text (about a tenth of the memory of
         * parsed jansson objects) and parse them on each get, list and
         * handler call: for large caches read now and then. */
        bool compact;
        /* Optional: reduces each object before it is cached (drop fields the
         * controller never reads); it must keep metadata name, namespace and
         * resourceVersion. Returns a new reference, or NULL to cache the
         * object as it is minus metadata.managedFields (always dropped). */
        json_t *(*transform)(const json_t *obj);
        kyb_kube_handlers handlers;
        /* Optional: told about each failed list or watch (the informer
         * retries by itself; library code does not log, its owner does). */
        void (*on_error)(void *ctx, const kyb_error *err);
} kyb_kube_informer_opts;

typedef struct kyb_kube_informer_stats {
        unsigned lists;    /* full lists, the first included */
        unsigned watches;  /* watch requests */
        unsigned failures; /* failed lists or watches */
        size_t objects;
} kyb_kube_informer_stats;

int kyb_kube_informer_new(kyb_kube_client *c, const kyb_kube_informer_opts *opts,
                          kyb_kube_informer **out, kyb_error **err);
/* Starts the thread. */
int kyb_kube_informer_start(kyb_kube_informer *inf, kyb_error **err);
/* Waits until the first list is in the cache; false on timeout or stop. */
bool kyb_kube_informer_wait_synced(kyb_kube_informer *inf, unsigned timeout_ms);
/* The cached object with key "ns/name" (new reference) or NULL. */
json_t *kyb_kube_informer_get(kyb_kube_informer *inf, const char *key);
/* All cached objects (a new array). */
json_t *kyb_kube_informer_list(kyb_kube_informer *inf);
void kyb_kube_informer_stats_get(kyb_kube_informer *inf, kyb_kube_informer_stats *out);
/* Stops the thread (within about a second): no handler runs after it
 * returns, and the cache stays readable until kyb_kube_informer_free. Call
 * it for every informer whose handlers read another one before freeing any.
 * Idempotent. */
void kyb_kube_informer_stop(kyb_kube_informer *inf);
/* Stops the thread if still running and frees everything. */
void kyb_kube_informer_free(kyb_kube_informer *inf);
