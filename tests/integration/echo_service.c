/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "echo.pb-c.h"
#include "echo_service.h"

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
}

static int echo_stats(echo_state *st, Kybernate__Test__V1__EchoReply *reply)
{
        if (asprintf(&reply->text, "calls=%u waits_active=%u waits_cancelled=%u",
                     atomic_load(&st->calls), atomic_load(&st->waits_active),
                     atomic_load(&st->waits_cancelled)) < 0)
                return -ENOMEM;
        return 0;
}

static int echo(kyb_rpc_call *call, const ProtobufCMessage *request, ProtobufCMessage **response,
                kyb_error **err)
{
        const Kybernate__Test__V1__EchoRequest *req = (const void *)request;
        echo_state *st = kyb_rpc_call_userdata(call);
        Kybernate__Test__V1__EchoReply *reply;

        atomic_fetch_add(&st->calls, 1);
        if (req->fail_errno)
                return kyb_error_setf(err, req->fail_errno, "%s", req->fail_message);
        reply = malloc(sizeof(*reply));
        if (!reply)
                return kyb_error_set(err, ENOMEM, "echo");
        kybernate__test__v1__echo_reply__init(reply);
        if (!strcmp(req->text, "__stats__") ? echo_stats(st, reply) < 0
                                            : !(reply->text = strdup(req->text))) {
                free(reply);
                return kyb_error_set(err, ENOMEM, "echo");
        }
        if (req->blob.len) {
                reply->blob.data = malloc(req->blob.len);
                if (reply->blob.data) {
                        memcpy(reply->blob.data, req->blob.data, req->blob.len);
                        reply->blob.len = req->blob.len;
                }
        }
        *response = &reply->base;
        return 0;
}

static int count(kyb_rpc_call *call, const ProtobufCMessage *request, kyb_error **err)
{
        const Kybernate__Test__V1__CountRequest *req = (const void *)request;
        echo_state *st = kyb_rpc_call_userdata(call);

        atomic_fetch_add(&st->calls, 1);
        for (uint32_t i = 0; i < req->count; i++) {
                Kybernate__Test__V1__CountReply reply = KYBERNATE__TEST__V1__COUNT_REPLY__INIT;
                int rc;

                if (req->fail_errno && i == req->fail_after)
                        return kyb_error_setf(err, req->fail_errno, "count: failing at %u", i);
                reply.index = i;
                rc = kyb_rpc_call_send(call, &reply.base, err);
                if (rc < 0)
                        return rc;
                if (req->delay_ms)
                        sleep_ms(req->delay_ms);
        }
        return 0;
}

static int wait_call(kyb_rpc_call *call, const ProtobufCMessage *request,
                     ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Test__V1__WaitRequest *req = (const void *)request;
        echo_state *st = kyb_rpc_call_userdata(call);
        Kybernate__Test__V1__WaitReply *reply;
        bool cancelled = false;

        atomic_fetch_add(&st->calls, 1);
        atomic_fetch_add(&st->waits_active, 1);
        for (uint32_t waited = 0; waited < req->max_ms && !cancelled; waited += 5) {
                sleep_ms(5);
                cancelled = kyb_rpc_call_cancelled(call);
        }
        atomic_fetch_sub(&st->waits_active, 1);
        if (cancelled) {
                atomic_fetch_add(&st->waits_cancelled, 1);
                return kyb_rpc_call_check(call, err);
        }
        reply = malloc(sizeof(*reply));
        if (!reply)
                return kyb_error_set(err, ENOMEM, "wait");
        kybernate__test__v1__wait_reply__init(reply);
        *response = &reply->base;
        return 0;
}

const kyb_rpc_method echo_methods[ECHO_N_METHODS] = {
    {.path = "/kybernate.test.v1.Echo/Echo",
     .request_type = &kybernate__test__v1__echo_request__descriptor,
     .unary = echo},
    {.path = "/kybernate.test.v1.Echo/Count",
     .request_type = &kybernate__test__v1__count_request__descriptor,
     .stream = count},
    {.path = "/kybernate.test.v1.Echo/Wait",
     .request_type = &kybernate__test__v1__wait_request__descriptor,
     .unary = wait_call},
};
