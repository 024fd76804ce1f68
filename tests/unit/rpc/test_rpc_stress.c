/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 10,000 unary calls plus streams from several threads, then a clean
 * shutdown. Run in the ASan/LSan build (make test), where any leaked call,
 * buffer or slice fails the test at exit; `make valgrind` runs it under
 * valgrind in the plain build.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "echo.pb-c.h"
#include "echo_service.h"
#include "rpc/client.h"

#define THREADS          4
#define CALLS_PER_THREAD 2500
#define STREAMS          50

typedef struct worker_arg {
        kyb_rpc_client *client;
        int index;
        int failures;
} worker_arg;

static int one_call(kyb_rpc_client *c, int i)
{
        _cleanup_error_ kyb_error *err = NULL;
        Kybernate__Test__V1__EchoRequest req = KYBERNATE__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        char text[32];
        int ok;

        snprintf(text, sizeof(text), "call-%d", i);
        req.text = text;
        /* Every 100th call fails on purpose: error paths must not leak either. */
        req.fail_errno = i % 100 == 0 ? ENOENT : 0;
        req.fail_message = "nope";
        if (kyb_rpc_unary(c, "/kybernate.test.v1.Echo/Echo", &req.base,
                          &kybernate__test__v1__echo_reply__descriptor, NULL, &resp, &err) < 0)
                return i % 100 == 0 && kyb_error_errno(err) == ENOENT ? 0 : -1;
        ok = !strcmp(((Kybernate__Test__V1__EchoReply *)resp)->text, text);
        protobuf_c_message_free_unpacked(resp, NULL);
        return ok ? 0 : -1;
}

static void *unary_worker(void *p)
{
        worker_arg *a = p;

        for (int i = 0; i < CALLS_PER_THREAD; i++)
                if (one_call(a->client, a->index * CALLS_PER_THREAD + i) < 0)
                        a->failures++;
        return NULL;
}

static int one_stream(kyb_rpc_client *c, bool cancel_early)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_(kyb_rpc_stream_freep) kyb_rpc_stream *s = NULL;
        Kybernate__Test__V1__CountRequest req = KYBERNATE__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *msg;
        int n = 0, rc;

        req.count = 20;
        if (kyb_rpc_stream_open(c, "/kybernate.test.v1.Echo/Count", &req.base,
                                &kybernate__test__v1__count_reply__descriptor, NULL, &s, &err) < 0)
                return -1;
        while ((rc = kyb_rpc_stream_next(s, &msg, &err)) > 0) {
                protobuf_c_message_free_unpacked(msg, NULL);
                if (++n == 3 && cancel_early)
                        return 0; /* freeing an unfinished stream cancels it */
        }
        return rc == 0 && n == 20 ? 0 : -1;
}

static void test_stress(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        char dir[] = "/tmp/kyb-rpc-stress-XXXXXX", sock[64], lock[80];
        echo_state st = {0};
        kyb_rpc_server *srv = NULL;
        kyb_rpc_client *client = NULL;
        pthread_t threads[THREADS];
        worker_arg args[THREADS];
        int failures = 0;

        assert_non_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/s.sock", dir);
        kyb_rpc_server_options opts = {.socket_path = sock,
                                       .methods = echo_methods,
                                       .n_methods = ECHO_N_METHODS,
                                       .userdata = &st};
        assert_int_equal(kyb_rpc_server_start(&opts, &srv, &err), 0);
        assert_int_equal(kyb_rpc_client_open(sock, &client, &err), 0);
        for (int i = 0; i < THREADS; i++) {
                args[i] = (worker_arg){.client = client, .index = i};
                assert_int_equal(pthread_create(&threads[i], NULL, unary_worker, &args[i]), 0);
        }
        for (int i = 0; i < STREAMS; i++)
                failures += one_stream(client, i % 2) < 0;
        for (int i = 0; i < THREADS; i++) {
                pthread_join(threads[i], NULL);
                failures += args[i].failures;
        }
        assert_int_equal(failures, 0);
        assert_true(atomic_load(&st.calls) >= THREADS * CALLS_PER_THREAD);
        kyb_rpc_client_free(client);
        kyb_rpc_server_free(srv);
        snprintf(lock, sizeof(lock), "%s.lock", sock);
        unlink(lock);
        rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_stress)};

        return cmocka_run_group_tests_name("rpc-stress", tests, NULL, NULL);
}
