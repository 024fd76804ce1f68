/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A synchronous gRPC client on the gRPC core C API: unary calls and
 * server-streaming reads with deadlines and wait-for-ready. A non-OK status
 * becomes a kyb_error whose errno is the status's class (see rpc/status.h)
 * and whose message is "<method>: <STATUS>: <server message>".
 * One client may be used from several threads; each call is independent.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "base/error.h"

typedef struct kyb_rpc_client kyb_rpc_client;
typedef struct kyb_rpc_stream kyb_rpc_stream;

typedef struct kyb_rpc_call_options {
        int64_t timeout_ms;  /* 0: no deadline */
        bool wait_for_ready; /* wait for the server instead of failing fast */
} kyb_rpc_call_options;

/* target: "unix:/path" or a plain absolute socket path. */
int kyb_rpc_client_open(const char *target, kyb_rpc_client **out, kyb_error **err);
void kyb_rpc_client_free(kyb_rpc_client *client);

int kyb_rpc_unary(kyb_rpc_client *client, const char *method, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_type, const kyb_rpc_call_options *opts,
                  ProtobufCMessage **response, kyb_error **err);

int kyb_rpc_stream_open(kyb_rpc_client *client, const char *method, const ProtobufCMessage *request,
                        const ProtobufCMessageDescriptor *response_type,
                        const kyb_rpc_call_options *opts, kyb_rpc_stream **out, kyb_error **err);
/* 1: *msg holds the next message; 0: the stream ended with OK; <0: error
 * (including the final non-OK status). */
int kyb_rpc_stream_next(kyb_rpc_stream *stream, ProtobufCMessage **msg, kyb_error **err);
/* Cancels the call; the next read reports CANCELLED. Thread-safe. */
void kyb_rpc_stream_cancel(kyb_rpc_stream *stream);
void kyb_rpc_stream_free(kyb_rpc_stream *stream);

static inline void kyb_rpc_stream_freep(kyb_rpc_stream **s)
{
        if (*s)
                kyb_rpc_stream_free(*s);
}
