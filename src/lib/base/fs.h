/* SPDX-License-Identifier: Apache-2.0 */
/* Small file-system helpers shared by modules. */
#pragma once

#include <sys/types.h>

#include "base/error.h"

/* mkdir -p: creates missing parents with `mode` too; existing ones are kept. */
int kyb_mkdir_p(const char *path, mode_t mode, kyb_error **err);
