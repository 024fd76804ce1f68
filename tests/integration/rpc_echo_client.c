/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives any Echo server (ours or python3-grpcio's) through the C client and
 * prints one JSON object per reply or error, for the interop tests.
 * Usage: rpc_echo_client TARGET echo TEXT
 *        rpc_echo_client TARGET fail ERRNO MESSAGE
 *        rpc_echo_client TARGET count N [DELAY_MS] [CANCEL_AFTER]
 *        rpc_echo_client TARGET wait MAX_MS TIMEOUT_MS
 *        rpc_echo_client TARGET unknown
 * Exit status: 0 OK, 1 rpc error (printed), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "echo.pb-c.h"
#include "rpc/client.h"
#include "rpc/status.h"

static void print_json(json_t *obj)
{
        char *s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);

        puts(s);
        free(s);
        json_decref(obj);
}

static int report_error(kyb_error *err)
{
        int e = kyb_error_errno(err);

        print_json(json_pack("{s:s, s:i, s:s}", "error", kyb_error_message(err), "errno", e,
                             "status", kyb_rpc_status_name(kyb_rpc_status_from_errno(e))));
        return 1;
}

static int do_echo(kyb_rpc_client *c, const char *text, int fail_errno, const char *msg)
{
        _cleanup_error_ kyb_error *err = NULL;
        Kybernate__Test__V1__EchoRequest req = KYBERNATE__TEST__V1__ECHO_REQUEST__INIT;
        kyb_rpc_call_options opts = {.timeout_ms = 10000};
        ProtobufCMessage *resp = NULL;

        req.text = (char *)text;
        req.fail_errno = fail_errno;
        req.fail_message = (char *)msg;
        if (kyb_rpc_unary(c, "/kybernate.test.v1.Echo/Echo", &req.base,
                          &kybernate__test__v1__echo_reply__descriptor, &opts, &resp, &err) < 0)
                return report_error(err);
        print_json(json_pack("{s:s}", "text", ((Kybernate__Test__V1__EchoReply *)resp)->text));
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

static int do_count(kyb_rpc_client *c, unsigned n, unsigned delay, int cancel_after)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_(kyb_rpc_stream_freep) kyb_rpc_stream *s = NULL;
        Kybernate__Test__V1__CountRequest req = KYBERNATE__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *msg;
        int rc, seen = 0;

        req.count = n;
        req.delay_ms = delay;
        if (kyb_rpc_stream_open(c, "/kybernate.test.v1.Echo/Count", &req.base,
                                &kybernate__test__v1__count_reply__descriptor, NULL, &s, &err) < 0)
                return report_error(err);
        while ((rc = kyb_rpc_stream_next(s, &msg, &err)) > 0) {
                print_json(
                    json_pack("{s:i}", "index", ((Kybernate__Test__V1__CountReply *)msg)->index));
                protobuf_c_message_free_unpacked(msg, NULL);
                if (++seen == cancel_after)
                        kyb_rpc_stream_cancel(s);
        }
        if (rc < 0)
                return report_error(err);
        print_json(json_pack("{s:b}", "done", 1));
        return 0;
}

static int do_wait(kyb_rpc_client *c, unsigned max_ms, int timeout_ms)
{
        _cleanup_error_ kyb_error *err = NULL;
        Kybernate__Test__V1__WaitRequest req = KYBERNATE__TEST__V1__WAIT_REQUEST__INIT;
        kyb_rpc_call_options opts = {.timeout_ms = timeout_ms};
        ProtobufCMessage *resp = NULL;

        req.max_ms = max_ms;
        if (kyb_rpc_unary(c, "/kybernate.test.v1.Echo/Wait", &req.base,
                          &kybernate__test__v1__wait_reply__descriptor, &opts, &resp, &err) < 0)
                return report_error(err);
        print_json(json_pack("{s:b}", "done", 1));
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

static int do_unknown(kyb_rpc_client *c)
{
        _cleanup_error_ kyb_error *err = NULL;
        Kybernate__Test__V1__EchoRequest req = KYBERNATE__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;

        if (kyb_rpc_unary(c, "/kybernate.test.v1.Echo/NoSuchMethod", &req.base,
                          &kybernate__test__v1__echo_reply__descriptor, NULL, &resp, &err) < 0)
                return report_error(err);
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

static int dispatch(kyb_rpc_client *c, int argc, char **argv)
{
        const char *cmd = argv[2];

        if (!strcmp(cmd, "echo") && argc == 4)
                return do_echo(c, argv[3], 0, "");
        if (!strcmp(cmd, "fail") && argc == 5)
                return do_echo(c, "", atoi(argv[3]), argv[4]);
        if (!strcmp(cmd, "count") && argc >= 4)
                return do_count(c, (unsigned)atoi(argv[3]), argc > 4 ? (unsigned)atoi(argv[4]) : 0,
                                argc > 5 ? atoi(argv[5]) : -1);
        if (!strcmp(cmd, "wait") && argc == 5)
                return do_wait(c, (unsigned)atoi(argv[3]), atoi(argv[4]));
        if (!strcmp(cmd, "unknown"))
                return do_unknown(c);
        fprintf(stderr, "rpc_echo_client: bad command\n");
        return 2;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_rpc_client *c = NULL;
        int rc;

        if (argc < 3) {
                fprintf(stderr, "usage: %s TARGET echo|fail|count|wait|unknown ...\n", argv[0]);
                return 2;
        }
        if (kyb_rpc_client_open(argv[1], &c, &err) < 0)
                return report_error(err);
        rc = dispatch(c, argc, argv);
        kyb_rpc_client_free(c);
        return rc;
}
