/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Kubernetes REST client on libcurl + jansson: configuration (kubeconfig
 * or in-cluster), typed CRUD on any resource, watches, and the controller
 * building blocks (informer, work queue, leader election, Events) in
 * kube/informer.h, kube/workqueue.h and kube/leader.h.
 *
 * Objects are jansson values. Functions that return an object hand over a
 * new reference (json_decref it). Errors map the API server's Status to an
 * errno so callers can branch without parsing text (see docs/operator.md):
 *
 *   404 NotFound       ENOENT      409 AlreadyExists  EEXIST
 *   409 Conflict       ESTALE      410 Gone/Expired   ETIME
 *   401 Unauthorized   EPERM       403 Forbidden      EACCES
 *   422 Invalid        EINVAL      400 BadRequest     EINVAL
 *   429 / 5xx          EAGAIN      transport failure  ECONNREFUSED, ETIMEDOUT, EIO
 *
 * The message carries the method, the path and the server's own message:
 * "PUT /apis/kybernate.io/v1alpha1/namespaces/a/checkpointrequests/x:
 * HTTP 409 Conflict: Operation cannot be fulfilled on ...".
 */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

static inline void kyb_json_decrefp(json_t **j)
{
        if (*j)
                json_decref(*j);
}

#define _cleanup_json_ _cleanup_(kyb_json_decrefp)

/* ---- configuration ------------------------------------------------------- */

typedef struct kyb_kube_config kyb_kube_config;

/*
 * Loads a client configuration. path names a kubeconfig; NULL means
 * $KUBECONFIG (its first file when it lists several), then the in-cluster service account (when
 * KUBERNETES_SERVICE_HOST is set), then ~/.kube/config. context NULL means
 * the kubeconfig's current-context. Supported: server, certificate-authority
 * (-data), insecure-skip-tls-verify, token, tokenFile, client-certificate
 * (-data), client-key(-data), the context's namespace. Exec and auth-provider
 * plugins are refused with ENOTSUP.
 */
int kyb_kube_config_load(const char *path, const char *context, kyb_kube_config **out,
                         kyb_error **err);
/* In-cluster configuration from a service-account directory (tests pass
 * their own; NULL means /var/run/secrets/kubernetes.io/serviceaccount). */
int kyb_kube_config_in_cluster(const char *sa_dir, kyb_kube_config **out, kyb_error **err);
void kyb_kube_config_free(kyb_kube_config *cfg);
const char *kyb_kube_config_server(const kyb_kube_config *cfg);
/* The context's namespace, "default" when it names none. */
const char *kyb_kube_config_namespace(const kyb_kube_config *cfg);

/* ---- client -------------------------------------------------------------- */

typedef struct kyb_kube_client kyb_kube_client;

typedef struct kyb_kube_client_opts {
        unsigned timeout_ms;    /* one non-watch request; 0: 30 s */
        const char *user_agent; /* NULL: "kybernate" */
} kyb_kube_client_opts;

int kyb_kube_client_new(const kyb_kube_config *cfg, const kyb_kube_client_opts *opts,
                        kyb_kube_client **out, kyb_error **err);
/* Safe to call from any thread; requests may run concurrently. */
void kyb_kube_client_free(kyb_kube_client *c);
/* A new client with c's configuration and user agent, its own connections
 * and timeout_ms (0: 30 s). */
int kyb_kube_client_clone(const kyb_kube_client *c, unsigned timeout_ms, kyb_kube_client **out,
                          kyb_error **err);
/* The timeout of later requests; only for a client no other thread uses
 * meanwhile (the leader election's own). */
void kyb_kube_client_set_timeout(kyb_kube_client *c, unsigned timeout_ms);

/* A resource kind as the REST API addresses it. */
typedef struct kyb_kube_resource {
        const char *group; /* "" for the core group */
        const char *version;
        const char *plural;
        const char *kind;
        bool namespaced;
} kyb_kube_resource;

extern const kyb_kube_resource KYB_KUBE_PODS;
extern const kyb_kube_resource KYB_KUBE_NODES;
extern const kyb_kube_resource KYB_KUBE_EVENTS;
extern const kyb_kube_resource KYB_KUBE_LEASES;
extern const kyb_kube_resource KYB_KUBE_CHECKPOINT_REQUESTS;
extern const kyb_kube_resource KYB_KUBE_RESTORE_REQUESTS;
extern const kyb_kube_resource KYB_KUBE_CHECKPOINT_POLICIES;

typedef struct kyb_kube_list_opts {
        const char *label_selector; /* NULL: all */
        const char *field_selector; /* NULL: all */
        unsigned page_size;         /* list paging (limit/continue); 0: 500 */
} kyb_kube_list_opts;

/* A raw request: path relative to the server ("/api/v1/pods?limit=1").
 * body may be NULL; *out (optional) receives the decoded response. */
int kyb_kube_request(kyb_kube_client *c, const char *method, const char *path,
                     const char *content_type, const json_t *body, json_t **out, kyb_error **err);

/* ns is ignored for cluster-scoped resources and NULL for "all namespaces"
 * in list and watch. */
int kyb_kube_get(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns, const char *name,
                 json_t **out, kyb_error **err);
/* Follows continue tokens; *items is a JSON array, *resource_version
 * (optional) the list's resourceVersion, the point to watch from. */
int kyb_kube_list(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                  const kyb_kube_list_opts *opts, json_t **items, char **resource_version,
                  kyb_error **err);
/* The same, one page at a time: fn sees each object (borrowed) while its
 * page is in memory, so a large list never is whole. A negative return
 * stops the list with that errno. */
typedef int (*kyb_kube_item_fn)(void *ctx, json_t *obj);
int kyb_kube_list_each(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                       const kyb_kube_list_opts *opts, kyb_kube_item_fn fn, void *ctx,
                       char **resource_version, kyb_error **err);
int kyb_kube_create(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                    const json_t *obj, json_t **out, kyb_error **err);
/* PUT of the whole object; its metadata.resourceVersion makes it
 * conditional (ESTALE when someone else wrote first). */
int kyb_kube_update(kyb_kube_client *c, const kyb_kube_resource *r, const json_t *obj, json_t **out,
                    kyb_error **err);
int kyb_kube_update_status(kyb_kube_client *c, const kyb_kube_resource *r, const json_t *obj,
                           json_t **out, kyb_error **err);

typedef enum kyb_kube_patch_type {
        KYB_KUBE_PATCH_MERGE, /* RFC 7386, application/merge-patch+json */
        KYB_KUBE_PATCH_JSON,  /* RFC 6902, application/json-patch+json */
} kyb_kube_patch_type;

int kyb_kube_patch(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns, const char *name,
                   kyb_kube_patch_type type, const json_t *patch, bool status, json_t **out,
                   kyb_error **err);

/* Deletes with optional preconditions (uid, resourceVersion may be NULL).
 * Deleting something already gone returns -ENOENT. */
int kyb_kube_delete(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                    const char *name, const char *uid, const char *resource_version,
                    kyb_error **err);

/* ---- watch --------------------------------------------------------------- */

typedef enum kyb_kube_event_type {
        KYB_KUBE_ADDED,
        KYB_KUBE_MODIFIED,
        KYB_KUBE_DELETED,
        KYB_KUBE_BOOKMARK,
} kyb_kube_event_type;

/* Called for each event in order; the object is borrowed. A negative return
 * ends the watch with that value. */
typedef int (*kyb_kube_watch_fn)(void *ctx, kyb_kube_event_type type, json_t *obj);

/*
 * Watches from resource_version (bookmarks requested) until the server ends
 * the stream (returns 0: watch again from the last version seen), *stop
 * becomes true (returns -ECANCELED), the version is too old (-ETIME: list
 * again) or an error. *last_version (optional, malloc'd) receives the
 * resourceVersion of the last event, so a caller can resume from it.
 */
int kyb_kube_watch(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                   const kyb_kube_list_opts *opts, const char *resource_version, unsigned timeout_s,
                   const atomic_bool *stop, kyb_kube_watch_fn fn, void *ctx, char **last_version,
                   kyb_error **err);

/* ---- object helpers -------------------------------------------------------- */

/* metadata.<field> as a string, or NULL. */
const char *kyb_kube_meta(const json_t *obj, const char *field);
/* "ns/name" (or "name" for cluster-scoped objects), malloc'd. */
char *kyb_kube_key(const json_t *obj);
/* Splits "ns/name"; both results malloc'd (ns NULL without a slash). */
int kyb_kube_split_key(const char *key, char **ns, char **name, kyb_error **err);

/* RFC 3339 in UTC ("2026-11-25T20:00:00Z"; micro adds ".000000" digits). */
void kyb_kube_format_time(int64_t unix_ns, bool micro, char buf[40]);
/* Parses RFC 3339 with optional fraction and a Z or ±hh:mm offset. */
int kyb_kube_parse_time(const char *s, int64_t *unix_ns);

/*
 * Sets the condition of type `type` in obj's status.conditions (creating
 * the list), keeping lastTransitionTime when the status did not change.
 * Returns true when anything changed.
 */
bool kyb_kube_set_condition(json_t *status, const char *type, const char *cond_status,
                            const char *reason, const char *message, int64_t generation,
                            int64_t now_ns);

/* Does a metav1.LabelSelector (matchLabels + matchExpressions) match these
 * labels? An invalid selector matches nothing and sets err. */
int kyb_kube_selector_matches(const json_t *selector, const json_t *labels, bool *match,
                              kyb_error **err);

/* Records a core/v1 Event about obj ("Normal" or "Warning"). */
int kyb_kube_event(kyb_kube_client *c, const json_t *obj, const char *type, const char *reason,
                   const char *component, const char *message, kyb_error **err);
