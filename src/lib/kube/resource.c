/* SPDX-License-Identifier: Apache-2.0 */
/* Typed CRUD on resources: paths, list paging, updates, patches, deletes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube-internal.h"

const kyb_kube_resource KYB_KUBE_PODS = {"", "v1", "pods", "Pod", true};
const kyb_kube_resource KYB_KUBE_NODES = {"", "v1", "nodes", "Node", false};
const kyb_kube_resource KYB_KUBE_EVENTS = {"", "v1", "events", "Event", true};
const kyb_kube_resource KYB_KUBE_LEASES = {"coordination.k8s.io", "v1", "leases", "Lease", true};
const kyb_kube_resource KYB_KUBE_CHECKPOINT_REQUESTS = {
    "kybernate.io", "v1alpha1", "checkpointrequests", "CheckpointRequest", true};
const kyb_kube_resource KYB_KUBE_RESTORE_REQUESTS = {"kybernate.io", "v1alpha1", "restorerequests",
                                                     "RestoreRequest", true};
const kyb_kube_resource KYB_KUBE_CHECKPOINT_POLICIES = {
    "kybernate.io", "v1alpha1", "checkpointpolicies", "CheckpointPolicy", true};

const char *kyb_kube_meta(const json_t *obj, const char *field)
{
        return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

char *kyb_kube_key(const json_t *obj)
{
        const char *ns = kyb_kube_meta(obj, "namespace"), *name = kyb_kube_meta(obj, "name");
        char *key = NULL;

        if (!name)
                return NULL;
        if (ns && *ns ? asprintf(&key, "%s/%s", ns, name) < 0 : !(key = strdup(name)))
                return NULL;
        return key;
}

int kyb_kube_split_key(const char *key, char **ns, char **name, kyb_error **err)
{
        const char *slash = strchr(key, '/');

        *ns = slash ? strndup(key, (size_t)(slash - key)) : NULL;
        *name = strdup(slash ? slash + 1 : key);
        if (!*name || (slash && !*ns)) {
                free(*ns);
                free(*name);
                return kyb_error_set(err, ENOMEM, "key %s", key);
        }
        return 0;
}

int kyb_kube_get(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns, const char *name,
                 json_t **out, kyb_error **err)
{
        _cleanup_free_ char *path = NULL;
        int rc;

        if ((rc = kube_path(r, ns, name, NULL, &path, err)) < 0)
                return rc;
        return kyb_kube_request(c, "GET", path, NULL, NULL, out, err);
}

static int list_page(kyb_kube_client *c, const char *base, const kyb_kube_list_opts *o,
                     const char *cont, json_t **page, kyb_error **err)
{
        _cleanup_free_ char *path = strdup(base);
        char limit[24];
        int rc;

        snprintf(limit, sizeof(limit), "%u", o && o->page_size ? o->page_size : 500);
        if (!path)
                return kyb_error_set(err, ENOMEM, "list");
        if ((rc = kube_query(&path, "limit", limit, err)) < 0 ||
            (rc = kube_query(&path, "labelSelector", o ? o->label_selector : NULL, err)) < 0 ||
            (rc = kube_query(&path, "fieldSelector", o ? o->field_selector : NULL, err)) < 0 ||
            (rc = kube_query(&path, "continue", cont, err)) < 0)
                return rc;
        return kyb_kube_request(c, "GET", path, NULL, NULL, page, err);
}

static char *meta_dup(const json_t *meta, const char *k)
{
        const char *v = json_string_value(json_object_get(meta, k));

        return v && *v ? strdup(v) : NULL;
}

int kyb_kube_list_each(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                       const kyb_kube_list_opts *opts, kyb_kube_item_fn fn, void *ctx,
                       char **resource_version, kyb_error **err)
{
        _cleanup_free_ char *base = NULL, *cont = NULL, *rv = NULL;
        int rc;

        if ((rc = kube_path(r, ns, NULL, NULL, &base, err)) < 0)
                return rc;
        do {
                _cleanup_json_ json_t *page = NULL;
                json_t *it, *obj;
                size_t i;

                if ((rc = list_page(c, base, opts, cont, &page, err)) < 0)
                        return rc;
                it = json_object_get(page, "items");
                if (it && !json_is_array(it) && !json_is_null(it)) /* empty may say null */
                        return kyb_error_setf(err, EBADMSG, "GET %s: items is not a list", base);
                json_array_foreach(it, i, obj)
                {
                        if ((rc = fn(ctx, obj)) < 0)
                                return kyb_error_set(err, -rc, "GET %s", base);
                }
                free(cont);
                free(rv);
                cont = meta_dup(json_object_get(page, "metadata"), "continue");
                rv = meta_dup(json_object_get(page, "metadata"), "resourceVersion");
        } while (cont);
        if (resource_version)
                *resource_version = TAKE_PTR(rv);
        return 0;
}

static int append_item(void *ctx, json_t *obj)
{
        return json_array_append(ctx, obj) < 0 ? -ENOMEM : 0;
}

int kyb_kube_list(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                  const kyb_kube_list_opts *opts, json_t **items, char **resource_version,
                  kyb_error **err)
{
        _cleanup_json_ json_t *all = json_array();
        int rc;

        if (!all)
                return kyb_error_set(err, ENOMEM, "list");
        rc = kyb_kube_list_each(c, r, ns, opts, append_item, all, resource_version, err);
        if (rc < 0)
                return rc;
        *items = TAKE_PTR(all);
        return 0;
}

int kyb_kube_create(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                    const json_t *obj, json_t **out, kyb_error **err)
{
        _cleanup_free_ char *path = NULL;
        int rc;

        if ((rc = kube_path(r, ns, NULL, NULL, &path, err)) < 0)
                return rc;
        return kyb_kube_request(c, "POST", path, NULL, obj, out, err);
}

static int put(kyb_kube_client *c, const kyb_kube_resource *r, const json_t *obj, const char *sub,
               json_t **out, kyb_error **err)
{
        const char *name = kyb_kube_meta(obj, "name");
        _cleanup_free_ char *path = NULL;
        int rc;

        if (!name)
                return kyb_error_setf(err, EINVAL, "update %s: object has no name", r->plural);
        if ((rc = kube_path(r, kyb_kube_meta(obj, "namespace"), name, sub, &path, err)) < 0)
                return rc;
        return kyb_kube_request(c, "PUT", path, NULL, obj, out, err);
}

int kyb_kube_update(kyb_kube_client *c, const kyb_kube_resource *r, const json_t *obj, json_t **out,
                    kyb_error **err)
{
        return put(c, r, obj, NULL, out, err);
}

int kyb_kube_update_status(kyb_kube_client *c, const kyb_kube_resource *r, const json_t *obj,
                           json_t **out, kyb_error **err)
{
        return put(c, r, obj, "status", out, err);
}

int kyb_kube_patch(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns, const char *name,
                   kyb_kube_patch_type type, const json_t *patch, bool status, json_t **out,
                   kyb_error **err)
{
        _cleanup_free_ char *path = NULL;
        int rc;

        if ((rc = kube_path(r, ns, name, status ? "status" : NULL, &path, err)) < 0)
                return rc;
        return kyb_kube_request(c, "PATCH", path,
                                type == KYB_KUBE_PATCH_JSON ? "application/json-patch+json"
                                                            : "application/merge-patch+json",
                                patch, out, err);
}

int kyb_kube_delete(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                    const char *name, const char *uid, const char *resource_version,
                    kyb_error **err)
{
        _cleanup_json_ json_t *opts =
            json_pack("{s:s, s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1",
                      "propagationPolicy", "Background");
        _cleanup_json_ json_t *pre = json_object();
        _cleanup_free_ char *path = NULL;
        int rc;

        if (!opts || !pre)
                return kyb_error_set(err, ENOMEM, "delete");
        if (uid)
                json_object_set_new(pre, "uid", json_string(uid));
        if (resource_version)
                json_object_set_new(pre, "resourceVersion", json_string(resource_version));
        if (json_object_size(pre))
                json_object_set(opts, "preconditions", pre);
        if ((rc = kube_path(r, ns, name, NULL, &path, err)) < 0)
                return rc;
        return kyb_kube_request(c, "DELETE", path, NULL, opts, NULL, err);
}
