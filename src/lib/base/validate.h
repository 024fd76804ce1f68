/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Validation of untrusted names that end up in file system paths or system
 * calls: container/checkpoint IDs from RPC requests, PIDs.
 */
#pragma once

#include <stdint.h>

#include "base/error.h"

#define KYB_ID_MAX_LEN 128

/*
 * Accepts 1..KYB_ID_MAX_LEN characters matching [A-Za-z0-9][A-Za-z0-9._-]*,
 * which makes an ID safe as one path component: no "/", no "." or "..", no
 * hidden files, no control characters. On failure returns -EINVAL with a
 * message naming `what` ("container id") and the reason.
 */
int kyb_validate_id(const char *what, const char *id, kyb_error **err);

/* Validates `id` (as "id") and stores "<dir>/<id>" in *out (caller frees). */
int kyb_path_join_id(const char *dir, const char *id, char **out, kyb_error **err);

/*
 * Accepts 1..4194304 (the kernel's PID_MAX_LIMIT): rejects 0 and negative
 * values, which kill(2) and friends read as process groups or "everyone".
 */
int kyb_validate_pid(const char *what, int64_t pid, kyb_error **err);
