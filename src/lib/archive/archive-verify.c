/* SPDX-License-Identifier: Apache-2.0 */
/* The extracted files against the extracted manifest.json. */
#include <stdlib.h>
#include <string.h>

#include "archive/archive-internal.h"

int extracted_add(extracted *x, const char *path, uint64_t size,
                  const char sha256[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        extracted_file *f;

        if (x->n == x->cap) {
                size_t cap = x->cap ? 2 * x->cap : 64;
                extracted_file *nv = reallocarray(x->v, cap, sizeof(*nv));

                if (!nv)
                        return kyb_error_set(err, ENOMEM, "%s", path);
                x->v = nv;
                x->cap = cap;
        }
        f = &x->v[x->n];
        *f = (extracted_file){.path = strdup(path), .size = size};
        if (!f->path)
                return kyb_error_set(err, ENOMEM, "%s", path);
        memcpy(f->sha256, sha256, sizeof(f->sha256));
        x->n++;
        return 0;
}

void extracted_clear(extracted *x)
{
        for (size_t i = 0; i < x->n; i++)
                free(x->v[i].path);
        free(x->v);
        *x = (extracted){0};
}

static int cmp_extracted(const void *a, const void *b)
{
        return strcmp(((const extracted_file *)a)->path, ((const extracted_file *)b)->path);
}

static int cmp_file_ptr(const void *a, const void *b)
{
        return strcmp((*(const kyb_manifest_file *const *)a)->path,
                      (*(const kyb_manifest_file *const *)b)->path);
}

static int check_one(const kyb_manifest_file *f, const extracted_file *e, kyb_error **err)
{
        if (e->size != f->size)
                return kyb_error_setf(err, EBADMSG, "%s: size %llu, manifest says %llu", f->path,
                                      (unsigned long long)e->size, (unsigned long long)f->size);
        if (strcmp(e->sha256, f->sha256))
                return kyb_error_setf(err, EBADMSG,
                                      "%s: SHA-256 mismatch (manifest %.16s..., file %.16s...)",
                                      f->path, f->sha256, e->sha256);
        return 0;
}

/* A merge of the two sorted lists: the first difference in path order fails. */
static int compare(const kyb_manifest_file **files, size_t n_files, const extracted *x,
                   kyb_error **err)
{
        size_t i = 0, j = 0;
        int rc;

        while (i < n_files || j < x->n) {
                int c = i == n_files ? 1 : j == x->n ? -1 : strcmp(files[i]->path, x->v[j].path);

                if (c < 0)
                        return kyb_error_setf(err, EBADMSG, "%s: missing from the archive",
                                              files[i]->path);
                if (c > 0)
                        return kyb_error_setf(err, EBADMSG, "%s: not listed in the manifest",
                                              x->v[j].path);
                rc = check_one(files[i], &x->v[j], err);
                if (rc < 0)
                        return rc;
                i++;
                j++;
        }
        return 0;
}

int archive_verify_extracted(int dirfd, extracted *x, kyb_error **err)
{
        _cleanup_manifest_ kyb_manifest *m = NULL;
        _cleanup_free_ const kyb_manifest_file **files = NULL;
        int rc;

        rc = kyb_manifest_read_at(dirfd, KYB_MANIFEST_NAME, &m, NULL, NULL, NULL, err);
        if (rc == -ENOENT)
                return kyb_error_setf(err, EBADMSG, "%s is missing", KYB_MANIFEST_NAME);
        if (rc < 0)
                return rc;
        files = calloc(m->n_files + 1, sizeof(*files));
        if (!files)
                return kyb_error_set(err, ENOMEM, "verifying");
        for (size_t i = 0; i < m->n_files; i++)
                files[i] = &m->files[i];
        qsort(files, m->n_files, sizeof(*files), cmp_file_ptr);
        qsort(x->v, x->n, sizeof(*x->v), cmp_extracted);
        return compare(files, m->n_files, x, err);
}
