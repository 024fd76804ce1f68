/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Each call owns a private completion queue and at most one batch is in
 * flight at a time, so waiting is simply "next() until our tag comes back".
 */
#include <stdio.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "rpc/client.h"
#include "rpc/codec.h"
#include "rpc/status.h"

struct kyb_rpc_client {
        grpc_channel *channel;
};

struct kyb_rpc_stream {
        grpc_completion_queue *cq;
        grpc_call *call;
        char *method;
        const ProtobufCMessageDescriptor *response_type;
        grpc_metadata_array initial_metadata;
        bool metadata_requested;
        bool finished;
};

int kyb_rpc_client_open(const char *target, kyb_rpc_client **out, kyb_error **err)
{
        _cleanup_free_ char *uri = NULL;
        grpc_channel_credentials *creds;
        kyb_rpc_client *client;

        if (!target || !*target)
                return kyb_error_setf(err, EINVAL, "no rpc target given");
        if (target[0] == '/' ? asprintf(&uri, "unix:%s", target) < 0 : !(uri = strdup(target)))
                return kyb_error_set(err, ENOMEM, "allocating target");
        client = calloc(1, sizeof(*client));
        if (!client)
                return kyb_error_set(err, ENOMEM, "allocating rpc client");
        grpc_init();
        creds = grpc_insecure_credentials_create();
        client->channel = grpc_channel_create(uri, creds, NULL);
        grpc_channel_credentials_release(creds);
        *out = client;
        return 0;
}

void kyb_rpc_client_free(kyb_rpc_client *client)
{
        if (!client)
                return;
        grpc_channel_destroy(client->channel);
        free(client);
        grpc_shutdown_blocking();
}

static gpr_timespec deadline_of(const kyb_rpc_call_options *opts)
{
        if (!opts || opts->timeout_ms <= 0)
                return gpr_inf_future(GPR_CLOCK_REALTIME);
        return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                            gpr_time_from_millis(opts->timeout_ms, GPR_TIMESPAN));
}

static uint32_t metadata_flags(const kyb_rpc_call_options *opts)
{
        if (!opts || !opts->wait_for_ready)
                return 0;
        return GRPC_INITIAL_METADATA_WAIT_FOR_READY |
               GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET;
}

static bool run_batch(grpc_completion_queue *cq, grpc_call *call, const grpc_op *ops, size_t n)
{
        static const int tag_value = 0;
        void *tag = (void *)&tag_value;
        grpc_event ev;

        if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
                return false;
        do
                ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        while (ev.type != GRPC_OP_COMPLETE || ev.tag != tag);
        return ev.success;
}

static void destroy_cq(grpc_completion_queue *cq)
{
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(cq);
}

static int status_error(const char *method, grpc_status_code status, grpc_slice details,
                        kyb_error **err)
{
        _cleanup_free_ char *msg = grpc_slice_to_c_string(details);

        return kyb_error_setf(err, kyb_rpc_errno_from_status(status), "%s: %s: %s", method,
                              kyb_rpc_status_name(status), msg && *msg ? msg : "(no message)");
}

static grpc_call *create_call(kyb_rpc_client *client, grpc_completion_queue *cq, const char *method,
                              const kyb_rpc_call_options *opts)
{
        grpc_slice path = grpc_slice_from_static_string(method);

        return grpc_channel_create_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path,
                                        NULL, deadline_of(opts), NULL);
}

typedef struct unary_state {
        grpc_metadata_array initial, trailing;
        grpc_byte_buffer *response;
        grpc_status_code status;
        grpc_slice details;
} unary_state;

static int unary_exchange(grpc_completion_queue *cq, grpc_call *call, grpc_byte_buffer *req,
                          const kyb_rpc_call_options *opts, unary_state *st)
{
        grpc_op ops[] = {
            {.op = GRPC_OP_SEND_INITIAL_METADATA, .flags = metadata_flags(opts)},
            {.op = GRPC_OP_SEND_MESSAGE, .data.send_message = {req}},
            {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT},
            {.op = GRPC_OP_RECV_INITIAL_METADATA, .data.recv_initial_metadata = {&st->initial}},
            {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message = {&st->response}},
            {.op = GRPC_OP_RECV_STATUS_ON_CLIENT,
             .data.recv_status_on_client = {&st->trailing, &st->status, &st->details, NULL}},
        };

        return run_batch(cq, call, ops, KYB_ARRAY_SIZE(ops)) ? 0 : -EIO;
}

int kyb_rpc_unary(kyb_rpc_client *client, const char *method, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_type, const kyb_rpc_call_options *opts,
                  ProtobufCMessage **response, kyb_error **err)
{
        grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
        grpc_call *call = create_call(client, cq, method, opts);
        grpc_byte_buffer *req = kyb_rpc_encode(request);
        unary_state st = {.details = grpc_empty_slice()};
        int rc;

        grpc_metadata_array_init(&st.initial);
        grpc_metadata_array_init(&st.trailing);
        rc = unary_exchange(cq, call, req, opts, &st);
        if (rc < 0)
                rc = kyb_error_setf(err, EIO, "%s: call failed to start", method);
        else if (st.status != GRPC_STATUS_OK)
                rc = status_error(method, st.status, st.details, err);
        else if ((rc = kyb_rpc_decode(st.response, response_type, response, err)) < 0)
                kyb_error_wrap(err, rc, "%s: response", method);
        if (st.response)
                grpc_byte_buffer_destroy(st.response);
        grpc_byte_buffer_destroy(req);
        grpc_slice_unref(st.details);
        grpc_metadata_array_destroy(&st.initial);
        grpc_metadata_array_destroy(&st.trailing);
        grpc_call_unref(call);
        destroy_cq(cq);
        return rc;
}

/* ------------------------------------------------------------------------ */
/* server streaming */

/* A failed start needs no handling here: the call has then already ended and
 * the first read reports its status. */
static void stream_start(kyb_rpc_stream *s, const ProtobufCMessage *request,
                         const kyb_rpc_call_options *opts)
{
        grpc_byte_buffer *req = kyb_rpc_encode(request);
        grpc_op ops[] = {
            {.op = GRPC_OP_SEND_INITIAL_METADATA, .flags = metadata_flags(opts)},
            {.op = GRPC_OP_SEND_MESSAGE, .data.send_message = {req}},
            {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT},
        };

        run_batch(s->cq, s->call, ops, KYB_ARRAY_SIZE(ops));
        grpc_byte_buffer_destroy(req);
}

int kyb_rpc_stream_open(kyb_rpc_client *client, const char *method, const ProtobufCMessage *request,
                        const ProtobufCMessageDescriptor *response_type,
                        const kyb_rpc_call_options *opts, kyb_rpc_stream **out, kyb_error **err)
{
        kyb_rpc_stream *s = calloc(1, sizeof(*s));

        if (!s)
                return kyb_error_set(err, ENOMEM, "allocating stream");
        s->method = strdup(method);
        if (!s->method) {
                free(s);
                return kyb_error_set(err, ENOMEM, "allocating stream");
        }
        s->cq = grpc_completion_queue_create_for_next(NULL);
        s->call = create_call(client, s->cq, method, opts);
        s->response_type = response_type;
        grpc_metadata_array_init(&s->initial_metadata);
        stream_start(s, request, opts);
        *out = s;
        return 0;
}

static int stream_status(kyb_rpc_stream *s, kyb_error **err)
{
        grpc_metadata_array trailing;
        grpc_status_code status = GRPC_STATUS_UNKNOWN;
        grpc_slice details = grpc_empty_slice();
        grpc_op op = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT,
                      .data.recv_status_on_client = {&trailing, &status, &details, NULL}};
        int rc = 0;

        grpc_metadata_array_init(&trailing);
        s->finished = true;
        if (!run_batch(s->cq, s->call, &op, 1))
                rc = kyb_error_setf(err, EIO, "%s: reading status failed", s->method);
        else if (status != GRPC_STATUS_OK)
                rc = status_error(s->method, status, details, err);
        grpc_slice_unref(details);
        grpc_metadata_array_destroy(&trailing);
        return rc;
}

int kyb_rpc_stream_next(kyb_rpc_stream *s, ProtobufCMessage **msg, kyb_error **err)
{
        grpc_byte_buffer *buf = NULL;
        grpc_op ops[2];
        size_t n = 0;
        int rc;

        if (s->finished)
                return kyb_error_setf(err, EPIPE, "%s: stream already finished", s->method);
        if (!s->metadata_requested) {
                /* First read: collect the server's initial metadata with it. */
                ops[n++] = (grpc_op){.op = GRPC_OP_RECV_INITIAL_METADATA,
                                     .data.recv_initial_metadata = {&s->initial_metadata}};
                s->metadata_requested = true;
        }
        ops[n++] = (grpc_op){.op = GRPC_OP_RECV_MESSAGE, .data.recv_message = {&buf}};
        if (!run_batch(s->cq, s->call, ops, n) || !buf)
                return stream_status(s, err);
        rc = kyb_rpc_decode(buf, s->response_type, msg, err);
        grpc_byte_buffer_destroy(buf);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "%s: stream message", s->method);
        return 1;
}

void kyb_rpc_stream_cancel(kyb_rpc_stream *s)
{
        grpc_call_cancel(s->call, NULL);
}

void kyb_rpc_stream_free(kyb_rpc_stream *s)
{
        if (!s)
                return;
        if (!s->finished) {
                grpc_call_cancel(s->call, NULL);
                stream_status(s, NULL);
        }
        grpc_metadata_array_destroy(&s->initial_metadata);
        grpc_call_unref(s->call);
        destroy_cq(s->cq);
        free(s->method);
        free(s);
}
