/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load generator for bench/rpc.py: N unary Echo calls or one Count stream of
 * N messages through the C client against any Echo server.
 * Usage: rpc_bench TARGET unary|stream N
 * Prints {"ops": N, "seconds": S} on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "echo.pb-c.h"
#include "rpc/client.h"

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int unary_calls(kyb_rpc_client *c, long n, kyb_error **err)
{
        Kybernate__Test__V1__EchoRequest req = KYBERNATE__TEST__V1__ECHO_REQUEST__INIT;

        req.text = "bench";
        for (long i = 0; i < n; i++) {
                ProtobufCMessage *resp = NULL;
                int rc =
                    kyb_rpc_unary(c, "/kybernate.test.v1.Echo/Echo", &req.base,
                                  &kybernate__test__v1__echo_reply__descriptor, NULL, &resp, err);
                if (rc < 0)
                        return rc;
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return 0;
}

static int stream_messages(kyb_rpc_client *c, long n, kyb_error **err)
{
        _cleanup_(kyb_rpc_stream_freep) kyb_rpc_stream *s = NULL;
        Kybernate__Test__V1__CountRequest req = KYBERNATE__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *msg;
        long seen = 0;
        int rc;

        req.count = (uint32_t)n;
        rc = kyb_rpc_stream_open(c, "/kybernate.test.v1.Echo/Count", &req.base,
                                 &kybernate__test__v1__count_reply__descriptor, NULL, &s, err);
        if (rc < 0)
                return rc;
        while ((rc = kyb_rpc_stream_next(s, &msg, err)) > 0) {
                seen++;
                protobuf_c_message_free_unpacked(msg, NULL);
        }
        if (rc == 0 && seen != n)
                return kyb_error_setf(err, EPROTO, "stream ended after %ld of %ld", seen, n);
        return rc;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_rpc_client *c = NULL;
        double start;
        long n;
        int rc;

        if (argc != 4 || (strcmp(argv[2], "unary") && strcmp(argv[2], "stream"))) {
                fprintf(stderr, "usage: %s TARGET unary|stream N\n", argv[0]);
                return 2;
        }
        n = strtol(argv[3], NULL, 10);
        if (kyb_rpc_client_open(argv[1], &c, &err) < 0) {
                fprintf(stderr, "rpc_bench: %s\n", kyb_error_message(err));
                return 1;
        }
        start = now_s();
        rc = !strcmp(argv[2], "unary") ? unary_calls(c, n, &err) : stream_messages(c, n, &err);
        if (rc == 0)
                printf("{\"ops\": %ld, \"seconds\": %.6f}\n", n, now_s() - start);
        else
                fprintf(stderr, "rpc_bench: %s\n", kyb_error_message(err));
        kyb_rpc_client_free(c);
        return rc == 0 ? 0 : 1;
}
