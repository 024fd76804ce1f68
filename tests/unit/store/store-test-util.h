/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the store tests: temp dirs, files, sample manifests. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/manifest.h"
#include "store/store.h"

/* Fails the test unless call returns -errnum and the message contains fragment.
 * The call runs before err is read (argument order is unspecified in C). */
#define assert_error(call, err, errnum, fragment)                                                  \
        do {                                                                                       \
                int _tu_rc = (call);                                                               \
                tu_assert_error(_tu_rc, (err), (errnum), (fragment), __FILE__, __LINE__);          \
        } while (0)

void tu_assert_error(int rc, const kyb_error *err, int errnum, const char *fragment,
                     const char *file, int line);

/* A fresh directory under $TMPDIR (or /tmp); caller frees the string. */
char *tu_mkdtemp(void);
void tu_rm_rf(const char *path);

/* Writes dir/rel (creating parents) with len bytes of data. */
void tu_write(const char *dir, const char *rel, const void *data, size_t len);
void tu_write_pattern(const char *dir, const char *rel, size_t len, unsigned seed);
char *tu_read(const char *dir, const char *rel, size_t *len);
bool tu_exists(const char *dir, const char *rel);
/* Names in dir starting with prefix. */
int tu_count_prefix(const char *dir, const char *prefix);
char *tu_path(const char *dir, const char *rel);

/* A manifest with every field set to a distinctive value. */
kyb_manifest *tu_sample_manifest(void);

/*
 * Commits a checkpoint with checkpoint/inventory.img, checkpoint/pages-1.img
 * (pages_size bytes), config.dump and spec.dump, created at created_ns,
 * labelled app=<label> when label is set.
 */
void tu_make_checkpoint(kyb_store *s, const char *id, int64_t created_ns, size_t pages_size,
                        const char *label);
