/* SPDX-License-Identifier: Apache-2.0 */
/* The backend interface behind kyb_storage; shared by the storage sources only. */
#pragma once

#include "storage/storage.h"

typedef struct storage_backend {
        int (*writer_open)(kyb_storage *s, const char *key, kyb_storage_writer **out,
                           kyb_error **err);
        int (*reader_open)(kyb_storage *s, const char *key, kyb_storage_reader **out,
                           kyb_error **err);
        int (*list)(kyb_storage *s, const char *prefix, kyb_storage_object **out, size_t *n,
                    kyb_error **err);
        int (*stat)(kyb_storage *s, const char *key, kyb_storage_object *out, kyb_error **err);
        int (*remove)(kyb_storage *s, const char *key, kyb_error **err);
        void (*close)(void *impl);
} storage_backend;

struct kyb_storage {
        const storage_backend *ops;
        kyb_storage_scheme scheme;
        void *impl; /* the backend's state */
};

typedef struct writer_ops {
        int (*write)(kyb_storage_writer *w, const void *buf, size_t len, kyb_error **err);
        int (*commit)(kyb_storage_writer *w, kyb_storage_object *info, kyb_error **err);
        void (*abort)(kyb_storage_writer *w, kyb_error **err); /* err: annotate, may be NULL */
} writer_ops;

/* First member of every backend's writer. */
struct kyb_storage_writer {
        const writer_ops *ops;
};

typedef struct reader_ops {
        ssize_t (*read)(kyb_storage_reader *r, void *buf, size_t len, kyb_error **err);
        void (*close)(kyb_storage_reader *r);
} reader_ops;

/* First member of every backend's reader. */
struct kyb_storage_reader {
        const reader_ops *ops;
};

/* Backends: fill s->ops and s->impl from the parsed URI. */
int storage_file_open(kyb_storage *s, const kyb_storage_uri *u, const kyb_storage_opts *opts,
                      kyb_error **err);
int storage_s3_open(kyb_storage *s, const kyb_storage_uri *u, const kyb_storage_opts *opts,
                    kyb_error **err);

/* Grows a list of objects by one zeroed entry; returns it or NULL (ENOMEM set). */
kyb_storage_object *storage_objects_push(kyb_storage_object **v, size_t *n, size_t *cap,
                                         kyb_error **err);
void storage_objects_sort(kyb_storage_object *v, size_t n);
