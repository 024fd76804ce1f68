/* SPDX-License-Identifier: Apache-2.0 */
/* The storage interface: backend dispatch, key checks and the archive pipelines. */
#include <stdlib.h>
#include <string.h>

#include "storage/storage-internal.h"

void kyb_storage_object_clear(kyb_storage_object *o)
{
        free(o->key);
        free(o->etag);
        *o = (kyb_storage_object){0};
}

void kyb_storage_objects_free(kyb_storage_object *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                kyb_storage_object_clear(&v[i]);
        free(v);
}

kyb_storage_object *storage_objects_push(kyb_storage_object **v, size_t *n, size_t *cap,
                                         kyb_error **err)
{
        if (*n == *cap) {
                size_t ncap = *cap ? 2 * *cap : 32;
                kyb_storage_object *nv = reallocarray(*v, ncap, sizeof(*nv));

                if (!nv) {
                        kyb_error_set(err, ENOMEM, "listing");
                        return NULL;
                }
                *v = nv;
                *cap = ncap;
        }
        (*v)[*n] = (kyb_storage_object){0};
        return &(*v)[(*n)++];
}

static int cmp_object(const void *a, const void *b)
{
        return strcmp(((const kyb_storage_object *)a)->key, ((const kyb_storage_object *)b)->key);
}

void storage_objects_sort(kyb_storage_object *v, size_t n)
{
        if (n > 1)
                qsort(v, n, sizeof(*v), cmp_object);
}

int kyb_storage_open(const char *uri, const kyb_storage_opts *opts, kyb_storage **out,
                     kyb_error **err)
{
        _cleanup_(kyb_storage_uri_clear) kyb_storage_uri u = {0};
        static const kyb_storage_opts none = {0};
        kyb_storage *s;
        int rc;

        *out = NULL;
        rc = kyb_storage_uri_parse(uri, &u, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "storage");
        s = calloc(1, sizeof(*s));
        if (!s)
                return kyb_error_set(err, ENOMEM, "storage");
        s->scheme = u.scheme;
        if (u.scheme == KYB_STORAGE_FILE)
                rc = storage_file_open(s, &u, opts ? opts : &none, err);
        else
                rc = storage_s3_open(s, &u, opts ? opts : &none, err);
        if (rc < 0) {
                free(s);
                return kyb_error_wrap(err, rc, "storage");
        }
        *out = s;
        return 0;
}

void kyb_storage_close(kyb_storage *s)
{
        if (!s)
                return;
        s->ops->close(s->impl);
        free(s);
}

kyb_storage_scheme kyb_storage_get_scheme(const kyb_storage *s)
{
        return s->scheme;
}

int kyb_storage_writer_open(kyb_storage *s, const char *key, kyb_storage_writer **out,
                            kyb_error **err)
{
        int rc;

        *out = NULL;
        rc = kyb_storage_check_key(key, err);
        if (rc < 0)
                return rc;
        return s->ops->writer_open(s, key, out, err);
}

int kyb_storage_writer_write(kyb_storage_writer *w, const void *buf, size_t len, kyb_error **err)
{
        return len ? w->ops->write(w, buf, len, err) : 0;
}

int kyb_storage_writer_commit(kyb_storage_writer *w, kyb_storage_object *info, kyb_error **err)
{
        if (info)
                *info = (kyb_storage_object){0};
        return w->ops->commit(w, info, err);
}

void kyb_storage_writer_abort(kyb_storage_writer *w)
{
        if (w)
                w->ops->abort(w, NULL);
}

void kyb_storage_writer_abort_after(kyb_storage_writer *w, kyb_error **err)
{
        if (w)
                w->ops->abort(w, err);
}

int kyb_storage_writer_sink(void *w, const void *buf, size_t len, kyb_error **err)
{
        return kyb_storage_writer_write(w, buf, len, err);
}

int kyb_storage_reader_open(kyb_storage *s, const char *key, kyb_storage_reader **out,
                            kyb_error **err)
{
        int rc;

        *out = NULL;
        rc = kyb_storage_check_key(key, err);
        if (rc < 0)
                return rc;
        return s->ops->reader_open(s, key, out, err);
}

ssize_t kyb_storage_reader_read(kyb_storage_reader *r, void *buf, size_t len, kyb_error **err)
{
        return len ? r->ops->read(r, buf, len, err) : 0;
}

void kyb_storage_reader_close(kyb_storage_reader *r)
{
        if (r)
                r->ops->close(r);
}

ssize_t kyb_storage_reader_source(void *r, void *buf, size_t len, kyb_error **err)
{
        return kyb_storage_reader_read(r, buf, len, err);
}

int kyb_storage_list(kyb_storage *s, const char *prefix, kyb_storage_object **out, size_t *n,
                     kyb_error **err)
{
        *out = NULL;
        *n = 0;
        if (prefix && *prefix && strlen(prefix) > KYB_STORAGE_KEY_MAX)
                return kyb_error_setf(err, EINVAL, "list: prefix too long");
        return s->ops->list(s, prefix && *prefix ? prefix : NULL, out, n, err);
}

int kyb_storage_stat(kyb_storage *s, const char *key, kyb_storage_object *out, kyb_error **err)
{
        int rc;

        *out = (kyb_storage_object){0};
        rc = kyb_storage_check_key(key, err);
        if (rc < 0)
                return rc;
        return s->ops->stat(s, key, out, err);
}

int kyb_storage_delete(kyb_storage *s, const char *key, kyb_error **err)
{
        int rc;

        rc = kyb_storage_check_key(key, err);
        if (rc < 0)
                return rc;
        return s->ops->remove(s, key, err);
}
