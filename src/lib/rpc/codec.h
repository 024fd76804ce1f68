/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/lib/rpc: protobuf-c messages <-> gRPC byte buffers. */
#pragma once

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include "base/error.h"

/* Returns NULL only on allocation failure. */
grpc_byte_buffer *kyb_rpc_encode(const ProtobufCMessage *msg);

/* Decodes `buf` as `type`; -EINVAL with a message naming the type when the
 * bytes are not a valid encoding. Free the result with
 * protobuf_c_message_free_unpacked(). */
int kyb_rpc_decode(grpc_byte_buffer *buf, const ProtobufCMessageDescriptor *type,
                   ProtobufCMessage **out, kyb_error **err);
