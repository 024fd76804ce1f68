/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/macro.h"
#include "rpc/json.h"

static char *camel_case(const char *name)
{
        char *out = malloc(strlen(name) + 1);
        char *o = out;
        bool upper = false;

        if (!out)
                return NULL;
        for (; *name; name++) {
                if (*name == '_') {
                        upper = true;
                        continue;
                }
                *o++ = upper ? (char)toupper((unsigned char)*name) : *name;
                upper = false;
        }
        *o = '\0';
        return out;
}

static json_t *base64(const uint8_t *data, size_t len)
{
        static const char tbl[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        _cleanup_free_ char *out = malloc(4 * ((len + 2) / 3) + 1);
        char *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)data[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)data[i + 1] << 8;
                if (i + 2 < len)
                        v |= data[i + 2];
                *o++ = tbl[(v >> 18) & 63];
                *o++ = tbl[(v >> 12) & 63];
                *o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? tbl[v & 63] : '=';
        }
        *o = '\0';
        return json_string(out);
}

static json_t *enum_value(const ProtobufCEnumDescriptor *d, int v)
{
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);

        return ev ? json_string(ev->name) : json_integer(v);
}

static json_t *int64_string(int64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        return json_string(buf);
}

static json_t *uint64_string(uint64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
        return json_string(buf);
}

/* One value of a field; `p` points at its storage. */
static json_t *scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                return json_integer(*(const int32_t *)p);
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return json_integer(*(const uint32_t *)p);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                return int64_string(*(const int64_t *)p);
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return uint64_string(*(const uint64_t *)p);
        case PROTOBUF_C_TYPE_FLOAT:
                return json_real(*(const float *)p);
        case PROTOBUF_C_TYPE_DOUBLE:
                return json_real(*(const double *)p);
        case PROTOBUF_C_TYPE_BOOL:
                return json_boolean(*(const protobuf_c_boolean *)p);
        case PROTOBUF_C_TYPE_ENUM:
                return enum_value(f->descriptor, *(const int *)p);
        case PROTOBUF_C_TYPE_STRING:
                return json_string(*(char *const *)p ? *(char *const *)p : "");
        case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *b = p;
                return base64(b->data, b->len);
        }
        case PROTOBUF_C_TYPE_MESSAGE:
                return *(ProtobufCMessage *const *)p ? kyb_pb_to_json(*(ProtobufCMessage *const *)p)
                                                     : json_object();
        }
        return json_null();
}

static size_t scalar_size(ProtobufCType type)
{
        switch (type) {
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
                return 8;
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_ENUM:
                return sizeof(int);
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(void *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        default:
                return 4;
        }
}

static bool is_map_entry(const ProtobufCFieldDescriptor *f)
{
        const ProtobufCMessageDescriptor *d = f->descriptor;
        size_t len;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE || d->n_fields != 2)
                return false;
        len = strlen(d->name);
        return len > 5 && !strcmp(d->name + len - 5, "Entry") &&
               !strcmp(d->fields[0].name, "key") && !strcmp(d->fields[1].name, "value");
}

static json_t *map_field(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries,
                         size_t n)
{
        json_t *obj = json_object();

        for (size_t i = 0; obj && i < n; i++) {
                const ProtobufCMessageDescriptor *d = f->descriptor;
                const char *base = (const char *)entries[i];
                json_t *key = scalar(&d->fields[0], base + d->fields[0].offset);
                json_t *val = scalar(&d->fields[1], base + d->fields[1].offset);
                const char *k = json_is_string(key) ? json_string_value(key) : "";

                json_object_set_new(obj, k, val);
                json_decref(key);
        }
        return obj;
}

static json_t *repeated_field(const ProtobufCFieldDescriptor *f, const char *base)
{
        size_t n = *(const size_t *)(base + f->quantifier_offset);
        const char *arr = *(char *const *)(base + f->offset);
        json_t *a;

        if (n == 0)
                return NULL;
        if (is_map_entry(f))
                return map_field(f, (ProtobufCMessage *const *)arr, n);
        a = json_array();
        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, scalar(f, arr + i * scalar_size(f->type)));
        return a;
}

static bool is_default(const ProtobufCFieldDescriptor *f, const char *p)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING:
                return !*(char *const *)p || !**(char *const *)p;
        case PROTOBUF_C_TYPE_MESSAGE:
                return !*(void *const *)p;
        case PROTOBUF_C_TYPE_BYTES:
                return ((const ProtobufCBinaryData *)p)->len == 0;
        default: {
                static const char zero[16];
                return !memcmp(p, zero, scalar_size(f->type));
        }
        }
}

/* NULL: the field is absent (default value, unset oneof member). */
static json_t *field_json(const ProtobufCFieldDescriptor *f, const char *base)
{
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
                return repeated_field(f, base);
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                        return NULL;
                return scalar(f, base + f->offset);
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
            f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING &&
            !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                return NULL;
        if (is_default(f, base + f->offset))
                return NULL;
        return scalar(f, base + f->offset);
}

json_t *kyb_pb_to_json(const ProtobufCMessage *msg)
{
        const ProtobufCMessageDescriptor *d = msg->descriptor;
        json_t *obj = json_object();

        for (unsigned i = 0; obj && i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                json_t *v = field_json(f, (const char *)msg);
                _cleanup_free_ char *name = NULL;

                if (!v)
                        continue;
                name = camel_case(f->name);
                if (!name || json_object_set_new(obj, name, v) < 0) {
                        json_decref(obj);
                        return NULL;
                }
        }
        return obj;
}
