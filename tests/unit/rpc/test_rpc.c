/* SPDX-License-Identifier: Apache-2.0 */
/* The rpc layer end to end in one process: C client against C server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "echo.pb-c.h"
#include "echo_service.h"
#include "rpc/client.h"
#include "rpc/status.h"

typedef struct fixture {
        char dir[64];
        char sock[128];
        echo_state state;
        kyb_rpc_server *srv;
        kyb_rpc_client *client;
        int refuse_peers;
} fixture;

static int peer_check(void *userdata, const kyb_rpc_peer *peer, kyb_error **err)
{
        fixture *f = (fixture *)((char *)userdata - offsetof(fixture, state));

        if (f->refuse_peers)
                return kyb_error_setf(err, EACCES, "refused uid %u", peer->uid);
        return 0;
}

static int start_server(fixture *f, kyb_error **err)
{
        kyb_rpc_server_options opts = {
            .socket_path = f->sock,
            .methods = echo_methods,
            .n_methods = ECHO_N_METHODS,
            .userdata = &f->state,
            .peer_check = peer_check,
            .max_concurrent_calls = 8,
        };

        return kyb_rpc_server_start(&opts, &f->srv, err);
}

static int setup(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = calloc(1, sizeof(*f));

        strcpy(f->dir, "/tmp/kyb-rpc-test-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->sock, sizeof(f->sock), "%s/test.sock", f->dir);
        assert_int_equal(start_server(f, &err), 0);
        assert_int_equal(kyb_rpc_client_open(f->sock, &f->client, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        char lock[160];

        kyb_rpc_client_free(f->client);
        kyb_rpc_server_free(f->srv);
        snprintf(lock, sizeof(lock), "%s.lock", f->sock);
        unlink(lock);
        rmdir(f->dir);
        free(f);
        return 0;
}

static int call_echo(fixture *f, const char *text, int fail_errno, char **out, kyb_error **err)
{
        Kybernate__Test__V1__EchoRequest req = KYBERNATE__TEST__V1__ECHO_REQUEST__INIT;
        kyb_rpc_call_options opts = {.timeout_ms = 5000};
        ProtobufCMessage *resp = NULL;
        int rc;

        req.text = (char *)text;
        req.fail_errno = fail_errno;
        req.fail_message = "checkpoint pid 42: criu dump: boom";
        rc = kyb_rpc_unary(f->client, "/kybernate.test.v1.Echo/Echo", &req.base,
                           &kybernate__test__v1__echo_reply__descriptor, &opts, &resp, err);
        if (rc < 0)
                return rc;
        if (out)
                *out = strdup(((Kybernate__Test__V1__EchoReply *)resp)->text);
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

static void test_unary_roundtrip(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *text = NULL;

        assert_int_equal(call_echo(*state, "hello", 0, &text, &err), 0);
        assert_string_equal(text, "hello");
}

static void test_error_status_carries_message(void **state)
{
        static const int classes[] = {EINVAL, ENOENT, EEXIST, EBUSY, EACCES, ENOSPC, EBADMSG};

        for (size_t i = 0; i < KYB_ARRAY_SIZE(classes); i++) {
                _cleanup_error_ kyb_error *err = NULL;

                assert_int_equal(call_echo(*state, "", classes[i], NULL, &err), -classes[i]);
                assert_int_equal(kyb_error_errno(err), classes[i]);
                assert_non_null(strstr(kyb_error_message(err), "criu dump: boom"));
                assert_non_null(strstr(kyb_error_message(err),
                                       kyb_rpc_status_name(kyb_rpc_status_from_errno(classes[i]))));
        }
}

static void test_unknown_method_is_unimplemented(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = *state;
        Kybernate__Test__V1__EchoRequest req = KYBERNATE__TEST__V1__ECHO_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;

        assert_int_equal(kyb_rpc_unary(f->client, "/kybernate.test.v1.Echo/Nope", &req.base,
                                       &kybernate__test__v1__echo_reply__descriptor, NULL, &resp,
                                       &err),
                         -ENOSYS);
        assert_non_null(strstr(kyb_error_message(err), "UNIMPLEMENTED"));
        assert_non_null(strstr(kyb_error_message(err), "/kybernate.test.v1.Echo/Nope"));
}

static int read_count(fixture *f, uint32_t n, int fail_errno, uint32_t fail_after, int *seen,
                      kyb_error **err)
{
        _cleanup_(kyb_rpc_stream_freep) kyb_rpc_stream *s = NULL;
        Kybernate__Test__V1__CountRequest req = KYBERNATE__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *msg;
        int rc;

        req.count = n;
        req.fail_errno = fail_errno;
        req.fail_after = fail_after;
        assert_int_equal(kyb_rpc_stream_open(f->client, "/kybernate.test.v1.Echo/Count", &req.base,
                                             &kybernate__test__v1__count_reply__descriptor, NULL,
                                             &s, err),
                         0);
        *seen = 0;
        while ((rc = kyb_rpc_stream_next(s, &msg, err)) > 0) {
                assert_int_equal(((Kybernate__Test__V1__CountReply *)msg)->index, *seen);
                (*seen)++;
                protobuf_c_message_free_unpacked(msg, NULL);
        }
        return rc;
}

static void test_stream_in_order(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        int seen;

        assert_int_equal(read_count(*state, 100, 0, 0, &seen, &err), 0);
        assert_int_equal(seen, 100);
}

static void test_stream_error_after_messages(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        int seen;

        assert_int_equal(read_count(*state, 10, ENOENT, 3, &seen, &err), -ENOENT);
        assert_int_equal(seen, 3);
        assert_non_null(strstr(kyb_error_message(err), "failing at 3"));
}

static void test_deadline_cancels_handler(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = *state;
        Kybernate__Test__V1__WaitRequest req = KYBERNATE__TEST__V1__WAIT_REQUEST__INIT;
        kyb_rpc_call_options opts = {.timeout_ms = 100};
        ProtobufCMessage *resp = NULL;

        req.max_ms = 10000;
        assert_int_equal(kyb_rpc_unary(f->client, "/kybernate.test.v1.Echo/Wait", &req.base,
                                       &kybernate__test__v1__wait_reply__descriptor, &opts, &resp,
                                       &err),
                         -ETIMEDOUT);
        /* The handler notices within its 5 ms poll; allow generous slack. */
        for (int i = 0; i < 400 && atomic_load(&f->state.waits_cancelled) == 0; i++)
                usleep(5000);
        assert_int_equal(atomic_load(&f->state.waits_cancelled), 1);
}

static void test_socket_mode_and_single_instance(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = *state;
        kyb_rpc_server *second = NULL;
        struct stat st;

        assert_int_equal(stat(f->sock, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        kyb_rpc_server_options opts = {
            .socket_path = f->sock, .methods = echo_methods, .n_methods = ECHO_N_METHODS};
        assert_int_equal(kyb_rpc_server_start(&opts, &second, &err), -EADDRINUSE);
        assert_non_null(strstr(kyb_error_message(err), "another instance"));
        /* The live socket of the first instance survived the attempt. */
        assert_int_equal(call_echo(f, "still here", 0, NULL, &err), 0);
}

static void test_refused_peer_gets_no_service(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = *state;
        kyb_rpc_client *fresh = NULL;

        f->refuse_peers = 1;
        assert_int_equal(kyb_rpc_client_open(f->sock, &fresh, &err), 0);
        kyb_rpc_client *saved = f->client;
        f->client = fresh;
        assert_int_equal(call_echo(f, "x", 0, NULL, &err), -ENOTCONN);
        assert_non_null(strstr(kyb_error_message(err), "UNAVAILABLE"));
        f->client = saved;
        kyb_rpc_client_free(fresh);
        f->refuse_peers = 0;
}

static void test_bad_method_table_rejected(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = *state;
        char sock[160];
        kyb_rpc_server *srv = NULL;
        kyb_rpc_method bad = {.path = "/x.Y/Z",
                              .request_type = &kybernate__test__v1__echo_request__descriptor};

        snprintf(sock, sizeof(sock), "%s/other.sock", f->dir);
        kyb_rpc_server_options opts = {.socket_path = sock, .methods = &bad, .n_methods = 1};
        assert_int_equal(kyb_rpc_server_start(&opts, &srv, &err), -EINVAL);
        assert_non_null(strstr(kyb_error_message(err), "exactly one handler"));
        strcat(sock, ".lock");
        unlink(sock);
}

static void test_status_mapping_roundtrip(void **state)
{
        for (int code = GRPC_STATUS_CANCELLED; code <= GRPC_STATUS_UNAUTHENTICATED; code++) {
                int e = kyb_rpc_errno_from_status((grpc_status_code)code);
                assert_int_equal(kyb_rpc_status_from_errno(e), code);
        }
        assert_int_equal(kyb_rpc_status_from_errno(0), GRPC_STATUS_OK);
        assert_int_equal(kyb_rpc_status_from_errno(ESRCH), GRPC_STATUS_NOT_FOUND);
        assert_int_equal(kyb_rpc_status_from_errno(-EPERM), GRPC_STATUS_PERMISSION_DENIED);
        assert_int_equal(kyb_rpc_status_from_errno(EXDEV), GRPC_STATUS_INTERNAL);
}

static void test_graceful_shutdown_waits_for_call(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        fixture *f = *state;
        _cleanup_(kyb_rpc_stream_freep) kyb_rpc_stream *s = NULL;
        Kybernate__Test__V1__CountRequest req = KYBERNATE__TEST__V1__COUNT_REQUEST__INIT;
        ProtobufCMessage *msg;
        int seen = 0, rc;

        req.count = 5;
        req.delay_ms = 40;
        assert_int_equal(kyb_rpc_stream_open(f->client, "/kybernate.test.v1.Echo/Count", &req.base,
                                             &kybernate__test__v1__count_reply__descriptor, NULL,
                                             &s, &err),
                         0);
        assert_int_equal(kyb_rpc_stream_next(s, &msg, &err), 1);
        protobuf_c_message_free_unpacked(msg, NULL);
        seen = 1;
        /* Generous grace: the in-flight stream completes in ~200 ms. */
        kyb_rpc_server_shutdown(f->srv, 5000);
        assert_int_equal(kyb_rpc_server_active_calls(f->srv), 0);
        while ((rc = kyb_rpc_stream_next(s, &msg, &err)) > 0) {
                seen++;
                protobuf_c_message_free_unpacked(msg, NULL);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(seen, 5);
        assert_int_equal(access(f->sock, F_OK), -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_status_mapping_roundtrip),
            cmocka_unit_test_setup_teardown(test_unary_roundtrip, setup, teardown),
            cmocka_unit_test_setup_teardown(test_error_status_carries_message, setup, teardown),
            cmocka_unit_test_setup_teardown(test_unknown_method_is_unimplemented, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stream_in_order, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stream_error_after_messages, setup, teardown),
            cmocka_unit_test_setup_teardown(test_deadline_cancels_handler, setup, teardown),
            cmocka_unit_test_setup_teardown(test_socket_mode_and_single_instance, setup, teardown),
            cmocka_unit_test_setup_teardown(test_refused_peer_gets_no_service, setup, teardown),
            cmocka_unit_test_setup_teardown(test_bad_method_table_rejected, setup, teardown),
            cmocka_unit_test_setup_teardown(test_graceful_shutdown_waits_for_call, setup, teardown),
        };

        return cmocka_run_group_tests_name("rpc", tests, NULL, NULL);
}
