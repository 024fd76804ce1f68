/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A gRPC server on a Unix socket, built on the gRPC core C API.
 *
 * The server owns the listening socket itself so that it can check each
 * connecting peer's SO_PEERCRED before gRPC sees the connection, and guards
 * the socket path with a lock file so that a second instance cannot unlink a
 * live socket. Each accepted call runs its handler on a thread of its own:
 * handlers may block (a checkpoint takes seconds) without stalling others.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "base/error.h"

typedef struct kyb_rpc_server kyb_rpc_server;
typedef struct kyb_rpc_call kyb_rpc_call;

typedef struct kyb_rpc_peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
} kyb_rpc_peer;

/* Returns 0 to admit the connection, a negative errno (and err) to refuse it. */
typedef int (*kyb_rpc_peer_check_fn)(void *userdata, const kyb_rpc_peer *peer, kyb_error **err);

/* Unary handler: on success stores a response of the method's response type
 * in *response (freed by the server with protobuf_c_message_free_unpacked
 * semantics via the descriptor, so allocate it with malloc-family calls) and
 * returns 0. On failure returns a negative errno; its class selects the gRPC
 * status and err's message becomes the status message. */
typedef int (*kyb_rpc_unary_fn)(kyb_rpc_call *call, const ProtobufCMessage *request,
                                ProtobufCMessage **response, kyb_error **err);

/* Server-streaming handler: sends any number of messages with
 * kyb_rpc_call_send(), then returns 0 (status OK) or a negative errno. */
typedef int (*kyb_rpc_stream_fn)(kyb_rpc_call *call, const ProtobufCMessage *request,
                                 kyb_error **err);

/* Frees a response returned by a unary handler. NULL: the server uses
 * protobuf_c_message_free_unpacked(), which suits messages built with
 * malloc'd fields throughout. */
typedef void (*kyb_rpc_free_fn)(ProtobufCMessage *response);

typedef struct kyb_rpc_method {
        const char *path; /* "/kybernate.agent.v1.Agent/Health" */
        const ProtobufCMessageDescriptor *request_type;
        kyb_rpc_unary_fn unary;   /* exactly one of unary and stream */
        kyb_rpc_stream_fn stream; /* is set */
        kyb_rpc_free_fn free_response;
} kyb_rpc_method;

typedef struct kyb_rpc_server_options {
        const char *socket_path;
        mode_t socket_mode;    /* 0 means 0600 */
        const char *lock_path; /* NULL means "<socket_path>.lock" */
        const kyb_rpc_method *methods;
        size_t n_methods;
        void *userdata; /* handed to handlers and the peer check */
        kyb_rpc_peer_check_fn peer_check;
        unsigned max_concurrent_calls; /* 0 means 64; excess calls get RESOURCE_EXHAUSTED */
        size_t max_message_bytes;      /* 0 means 4 MiB */
} kyb_rpc_server_options;

int kyb_rpc_server_start(const kyb_rpc_server_options *opts, kyb_rpc_server **out, kyb_error **err);

/*
 * Stops accepting connections and calls, gives in-flight handlers up to
 * grace_ms to finish, then cancels the remaining calls (their handlers see
 * kyb_rpc_call_cancelled() and failing sends) and waits for every handler to
 * return. Idempotent.
 */
void kyb_rpc_server_shutdown(kyb_rpc_server *srv, int64_t grace_ms);

/* Shuts down with no grace if still running, then frees. */
void kyb_rpc_server_free(kyb_rpc_server *srv);

/* Number of handlers running now. */
unsigned kyb_rpc_server_active_calls(kyb_rpc_server *srv);

/* --- for handlers --- */
void *kyb_rpc_call_userdata(const kyb_rpc_call *call);
const char *kyb_rpc_call_method(const kyb_rpc_call *call);
/* True once the client cancelled, the deadline passed or the server is
 * cancelling calls at shutdown; long handlers poll it and roll back. */
bool kyb_rpc_call_cancelled(const kyb_rpc_call *call);
/* 0 while the call is live; else -ETIMEDOUT (deadline passed) or
 * -ECANCELED (client cancelled, server shutting down) with a message, for
 * handlers that stop early and report why. */
int kyb_rpc_call_check(const kyb_rpc_call *call, kyb_error **err);
/* Milliseconds until the client's deadline; INT64_MAX when none. */
int64_t kyb_rpc_call_remaining_ms(const kyb_rpc_call *call);
/* Streams one message to the client; -ECANCELED once the call is gone. */
int kyb_rpc_call_send(kyb_rpc_call *call, const ProtobufCMessage *msg, kyb_error **err);
