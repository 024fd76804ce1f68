/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mapping between the errno classes carried by kyb_error and gRPC status
 * codes (table in docs/errors.md). Handlers fail with an errno; the wire
 * carries the status code and the kyb_error message; clients get the errno
 * of the status back.
 */
#pragma once

#include <grpc/status.h>

grpc_status_code kyb_rpc_status_from_errno(int errnum);
int kyb_rpc_errno_from_status(grpc_status_code status);
/* "NOT_FOUND", "INVALID_ARGUMENT", ...; "UNKNOWN" for out-of-range codes. */
const char *kyb_rpc_status_name(grpc_status_code status);
