/* SPDX-License-Identifier: Apache-2.0 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "rpc/codec.h"

grpc_byte_buffer *kyb_rpc_encode(const ProtobufCMessage *msg)
{
        size_t len = protobuf_c_message_get_packed_size(msg);
        grpc_slice slice = grpc_slice_malloc(len);
        grpc_byte_buffer *buf;

        protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
        buf = grpc_raw_byte_buffer_create(&slice, 1);
        grpc_slice_unref(slice);
        return buf;
}

int kyb_rpc_decode(grpc_byte_buffer *buf, const ProtobufCMessageDescriptor *type,
                   ProtobufCMessage **out, kyb_error **err)
{
        grpc_byte_buffer_reader reader;
        grpc_slice slice;
        size_t len;

        if (!buf)
                return kyb_error_setf(err, EINVAL, "missing %s message", type->name);
        if (!grpc_byte_buffer_reader_init(&reader, buf))
                return kyb_error_setf(err, EINVAL, "cannot read %s payload", type->name);
        slice = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        len = GRPC_SLICE_LENGTH(slice);
        *out = protobuf_c_message_unpack(type, NULL, len, GRPC_SLICE_START_PTR(slice));
        grpc_slice_unref(slice);
        if (!*out)
                return kyb_error_setf(err, EINVAL, "malformed %s message (%zu bytes)", type->name,
                                      len);
        return 0;
}
