/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the kube unit tests, on top of the store tests' (assert_error,
 * temp dirs, paths): files with parent directories, the queue's clock. */
#pragma once

#include "../store/store-test-util.h"

#define ku_mkdtemp tu_mkdtemp
#define ku_rm_rf   tu_rm_rf
#define ku_path    tu_path

/* Writes dir/rel (creating parent directories) with the string text. */
void ku_write(const char *dir, const char *rel, const char *text);

/* CLOCK_MONOTONIC in milliseconds, the clock the work queue uses. */
uint64_t ku_now_ms(void);
