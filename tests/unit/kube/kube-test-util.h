/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the kube unit tests: error assertions, temp dirs, files, clocks. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/error.h"

/* Fails the test unless call returns -errnum and the message contains fragment.
 * The call runs before err is read (argument order is unspecified in C). */
#define assert_error(call, err, errnum, fragment)                                                  \
        do {                                                                                       \
                int _ku_rc = (call);                                                               \
                ku_assert_error(_ku_rc, (err), (errnum), (fragment), __FILE__, __LINE__);          \
        } while (0)

void ku_assert_error(int rc, const kyb_error *err, int errnum, const char *fragment,
                     const char *file, int line);

/* A fresh directory under $TMPDIR (or /tmp); caller frees the string. */
char *ku_mkdtemp(void);
void ku_rm_rf(const char *path);
/* Writes dir/rel (creating parent directories) with the string text. */
void ku_write(const char *dir, const char *rel, const char *text);
/* dir/rel, malloc'd. */
char *ku_path(const char *dir, const char *rel);

/* CLOCK_MONOTONIC in milliseconds, the clock the work queue uses. */
uint64_t ku_now_ms(void);
