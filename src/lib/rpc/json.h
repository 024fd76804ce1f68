/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protobuf-c message -> JSON by reflection over the message descriptors,
 * following the proto3 JSON mapping: lowerCamelCase names, fields at their
 * default value omitted, enums by name, 64-bit integers as strings, bytes
 * as base64, map fields as objects. Used for `--json` output and logs.
 */
#pragma once

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* Returns a new reference, or NULL on allocation failure. */
json_t *kyb_pb_to_json(const ProtobufCMessage *msg);
