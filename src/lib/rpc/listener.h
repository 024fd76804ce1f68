/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to src/lib/rpc: the server's Unix listening socket, its
 * single-instance lock file, and an accept thread that checks peer
 * credentials before handing each connection to gRPC.
 */
#pragma once

#include "rpc/server.h"

typedef struct kyb_rpc_listener kyb_rpc_listener;

/* Receives ownership of an admitted connection. */
typedef void (*kyb_rpc_accept_fn)(void *ctx, int fd);

int kyb_rpc_listener_open(const char *socket_path, mode_t mode, const char *lock_path,
                          kyb_rpc_listener **out, kyb_error **err);
int kyb_rpc_listener_start(kyb_rpc_listener *l, kyb_rpc_peer_check_fn check, void *check_ctx,
                           kyb_rpc_accept_fn on_accept, void *accept_ctx, kyb_error **err);
/* Joins the accept thread, closes and unlinks the socket. Idempotent. */
void kyb_rpc_listener_stop(kyb_rpc_listener *l);
/* Stops if needed and releases the lock. */
void kyb_rpc_listener_free(kyb_rpc_listener *l);
