/* SPDX-License-Identifier: Apache-2.0 */
/* The test Echo service (tests/proto/echo.proto) on the rpc layer. */
#pragma once

#include <stdatomic.h>

#include "rpc/server.h"

typedef struct echo_state {
        atomic_uint waits_cancelled; /* Wait handlers that saw cancellation */
        atomic_uint calls;           /* handlers entered */
        atomic_uint waits_active;    /* Wait handlers running now */
} echo_state;

#define ECHO_N_METHODS 3
extern const kyb_rpc_method echo_methods[ECHO_N_METHODS];
