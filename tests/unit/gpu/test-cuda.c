/* SPDX-License-Identifier: Apache-2.0 */
/* src/lib/cuda against the stand-in libcuda.so.1: loading, version and
 * symbol probing, cuInit once, every state transition, wrong transitions,
 * errors as kyb_error, UUIDs and GPU pairs. */
#include <pthread.h>

#include "cuda/cuda.h"
#include "gpu-test-util.h"

static int setup(void **state)
{
        tu_env *e = calloc(1, sizeof(*e));

        tu_env_setup(e);
        *state = e;
        return 0;
}

static int teardown(void **state)
{
        tu_env_teardown(*state);
        free(*state);
        return 0;
}

static kyb_cuda *open_stub(void)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda *c = NULL;

        if (kyb_cuda_open(STUB_CUDA, &c, &err) < 0)
                fail_msg("open: %s", kyb_error_message(err));
        return c;
}

static void expect_state(kyb_cuda *c, int pid, kyb_cuda_state want)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda_state s = KYB_CUDA_FAILED;

        assert_ok(kyb_cuda_get_state(c, pid, &s, &err), err);
        assert_int_equal(s, want);
}

static void test_absent_library_is_no_gpu(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda *c = NULL;

        assert_error(kyb_cuda_open("/nonexistent/libcuda.so.1", &c, &err), err, ENODEV,
                     "/nonexistent/libcuda.so.1 not found: no NVIDIA driver");
        assert_null(c);
        /* The default name through the loader: only meaningful on a host
         * without an NVIDIA driver, like the CI hosts. */
        if (kyb_cuda_open(NULL, &c, &err) == -ENODEV)
                assert_string_equal(kyb_error_message(err),
                                    "libcuda.so.1 not found: no NVIDIA driver");
        kyb_cuda_close(c);
}

static void test_not_a_driver(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda *c = NULL;

        /* A loadable library without cuInit. */
        assert_error(kyb_cuda_open(STUB_NVML, &c, &err), err, ENOTSUP, "lacks cuInit");
}

static void test_driver_too_old(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = NULL;

        tu_set_root(e, "cuda_version", json_integer(12040));
        assert_error(kyb_cuda_open(STUB_CUDA, &c, &err), err, ENOTSUP,
                     "CUDA driver 12.4 (" STUB_CUDA ") is too old: checkpointing needs NVIDIA "
                     "driver >= 570 (CUDA 12.8)");
        /* New enough by its version, but without the checkpoint API. */
        tu_set_root(e, "cuda_version", json_integer(12080));
        assert_error(kyb_cuda_open(STUB_CUDA_LEGACY, &c, &err), err, ENOTSUP,
                     "CUDA driver 12.8 (" STUB_CUDA_LEGACY ") lacks cuCheckpointProcessLock");
}

static void test_version_and_remap(void **state)
{
        tu_env *e = *state;
        kyb_cuda *c;

        tu_set_root(e, "cuda_version", json_integer(12080));
        c = open_stub();
        assert_int_equal(kyb_cuda_version(c), 12080);
        assert_false(kyb_cuda_can_remap(c));
        assert_true(kyb_cuda_has_restore_thread_id(c));
        kyb_cuda_close(c);
        tu_set_root(e, "cuda_version", json_integer(13000));
        c = open_stub();
        assert_true(kyb_cuda_can_remap(c));
        kyb_cuda_close(c);
}

static void *init_thread(void *c)
{
        return (void *)(intptr_t)kyb_cuda_init(c, NULL);
}

static void test_init_once_per_handle(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();
        pthread_t t[8];
        void *rc;

        for (size_t i = 0; i < KYB_ARRAY_SIZE(t); i++)
                assert_int_equal(pthread_create(&t[i], NULL, init_thread, c), 0);
        for (size_t i = 0; i < KYB_ARRAY_SIZE(t); i++) {
                assert_int_equal(pthread_join(t[i], &rc), 0);
                assert_int_equal((intptr_t)rc, 0);
        }
        assert_ok(kyb_cuda_init(c, &err), err);
        assert_int_equal(tu_calls(e, 0, "cuInit"), 1);
        kyb_cuda_close(c);
}

static void test_init_without_device(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();

        tu_set_root(e, "gpus", json_array());
        assert_error(kyb_cuda_init(c, &err), err, ENODEV,
                     "cuda init: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected");
        /* The first result stays the handle's answer. */
        assert_error(kyb_cuda_lock(c, 1, 100, &err), err, ENODEV, "CUDA_ERROR_NO_DEVICE");
        kyb_cuda_close(c);
}

static void test_state_machine(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();
        char s[32];
        int pid = 4242, tid = 0;

        tu_add_process(e, pid, GiB, GPU_A, NULL);
        expect_state(c, pid, KYB_CUDA_RUNNING);
        assert_ok(kyb_cuda_lock(c, pid, 1234, &err), err);
        expect_state(c, pid, KYB_CUDA_LOCKED);
        assert_ok(kyb_cuda_checkpoint(c, pid, &err), err);
        expect_state(c, pid, KYB_CUDA_CHECKPOINTED);
        assert_string_equal(tu_state_of(e, pid, s), "checkpointed");
        assert_ok(kyb_cuda_restore(c, pid, NULL, 0, &err), err);
        expect_state(c, pid, KYB_CUDA_LOCKED);
        assert_ok(kyb_cuda_unlock(c, pid, &err), err);
        expect_state(c, pid, KYB_CUDA_RUNNING);
        assert_string_equal(tu_state_of(e, pid, s), "running");
        assert_ok(kyb_cuda_restore_thread_id(c, pid, &tid, &err), err);
        assert_int_equal(tid, pid);
        kyb_cuda_close(c);
}

static void test_lock_passes_timeout(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();
        json_t *root;

        tu_add_process(e, 77, GiB, GPU_A, NULL);
        assert_ok(kyb_cuda_lock(c, 77, 1234, &err), err);
        root = tu_state_read(e);
        assert_int_equal(
            json_integer_value(json_object_get(
                json_array_get(json_object_get(root, "processes"), 0), "last_lock_timeout_ms")),
            1234);
        json_decref(root);
        /* No unbounded locks. */
        assert_error(kyb_cuda_lock(c, 77, 0, &err), err, EINVAL, "a lock timeout is required");
        kyb_cuda_close(c);
}

static void test_wrong_transitions(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();
        int pid = 555;

        tu_add_process(e, pid, GiB, GPU_A, NULL);
        /* RUNNING */
        assert_error(kyb_cuda_checkpoint(c, pid, &err), err, EBUSY,
                     "cuda checkpoint pid 555: CUDA_ERROR_ILLEGAL_STATE: the operation cannot "
                     "be performed in the present state");
        assert_error(kyb_cuda_restore(c, pid, NULL, 0, &err), err, EBUSY,
                     "cuda restore pid 555: CUDA_ERROR_ILLEGAL_STATE");
        assert_error(kyb_cuda_unlock(c, pid, &err), err, EBUSY,
                     "cuda unlock pid 555: CUDA_ERROR_ILLEGAL_STATE");
        expect_state(c, pid, KYB_CUDA_RUNNING);
        /* LOCKED */
        assert_ok(kyb_cuda_lock(c, pid, 100, &err), err);
        assert_error(kyb_cuda_lock(c, pid, 100, &err), err, EBUSY, "cuda lock pid 555");
        assert_error(kyb_cuda_restore(c, pid, NULL, 0, &err), err, EBUSY, "cuda restore");
        expect_state(c, pid, KYB_CUDA_LOCKED);
        /* CHECKPOINTED */
        assert_ok(kyb_cuda_checkpoint(c, pid, &err), err);
        assert_error(kyb_cuda_lock(c, pid, 100, &err), err, EBUSY, "cuda lock");
        assert_error(kyb_cuda_checkpoint(c, pid, &err), err, EBUSY, "cuda checkpoint");
        assert_error(kyb_cuda_unlock(c, pid, &err), err, EBUSY, "cuda unlock");
        expect_state(c, pid, KYB_CUDA_CHECKPOINTED);
        kyb_cuda_close(c);
}

static void test_unknown_pid(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda *c = open_stub();
        kyb_cuda_state s;

        assert_error(kyb_cuda_get_state(c, 999999, &s, &err), err, EINVAL,
                     "cuda get state pid 999999: CUDA_ERROR_INVALID_VALUE: invalid argument");
        assert_error(kyb_cuda_lock(c, -1, 100, &err), err, EINVAL, "invalid pid -1");
        kyb_cuda_close(c);
}

static void test_lock_timeout(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();

        tu_add_process(e, 88, GiB, GPU_A, NULL);
        tu_set(e, 88, "lock_delay_ms", json_integer(5000));
        assert_error(kyb_cuda_lock(c, 88, 50, &err), err, ETIMEDOUT,
                     "cuda lock pid 88: timed out after 50 ms");
        expect_state(c, 88, KYB_CUDA_RUNNING);
        /* A delay within the timeout only slows the lock down. */
        tu_set(e, 88, "lock_delay_ms", json_integer(20));
        assert_ok(kyb_cuda_lock(c, 88, 1000, &err), err);
        expect_state(c, 88, KYB_CUDA_LOCKED);
        kyb_cuda_close(c);
}

static void test_error_translation(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();

        tu_add_process(e, 66, GiB, GPU_A, NULL);
        tu_fail(e, 66, "lock", json_string("CUDA_ERROR_NOT_PERMITTED"));
        assert_error(kyb_cuda_lock(c, 66, 100, &err), err, EPERM,
                     "cuda lock pid 66: CUDA_ERROR_NOT_PERMITTED: operation not permitted");
        tu_fail(e, 66, "lock", json_string("CUDA_ERROR_TIMEOUT"));
        assert_error(kyb_cuda_lock(c, 66, 100, &err), err, ETIMEDOUT, "timed out after 100 ms");
        tu_fail(e, 66, "lock", json_integer(12345)); /* a code nobody knows */
        assert_error(kyb_cuda_lock(c, 66, 100, &err), err, EIO,
                     "cuda lock pid 66: CUDA error 12345: unknown error");
        tu_fail(e, 66, "lock", NULL);
        assert_ok(kyb_cuda_lock(c, 66, 100, &err), err);
        tu_fail(e, 66, "checkpoint", json_string("CUDA_ERROR_OUT_OF_MEMORY"));
        assert_error(kyb_cuda_checkpoint(c, 66, &err), err, ENOMEM,
                     "cuda checkpoint pid 66: CUDA_ERROR_OUT_OF_MEMORY: out of memory");
        assert_int_equal(kyb_cuda_result_errno(0), 0);
        assert_int_equal(kyb_cuda_result_errno(909), ETIMEDOUT);
        assert_int_equal(kyb_cuda_result_errno(100), ENODEV);
        kyb_cuda_close(c);
}

static void test_uuid(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        char s[KYB_CUDA_UUID_STRLEN];
        kyb_cuda_uuid u;

        assert_ok(kyb_cuda_uuid_parse("GPU-AAAAAAAA-0000-4000-8000-000000000001", &u, &err), err);
        assert_int_equal(u.bytes[0], 0xaa);
        assert_int_equal(u.bytes[15], 0x01);
        kyb_cuda_uuid_format(&u, s);
        assert_string_equal(s, GPU_A);
        static const char *const bad[] = {
            "",
            "GPU-",
            "aaaaaaaa-0000-4000-8000-000000000001",
            "GPU-aaaaaaaa00000-4000-8000-000000000001",
            "GPU-aaaaaaaa-0000-4000-8000-00000000000g",
            "GPU-aaaaaaaa-0000-4000-8000-0000000000011",
            "MIG-aaaaaaaa-0000-4000-8000-000000000001",
        };
        for (size_t i = 0; i < KYB_ARRAY_SIZE(bad); i++)
                assert_error(kyb_cuda_uuid_parse(bad[i], &u, &err), err, EINVAL,
                             "is not a GPU UUID");
}

static void checkpointed(tu_env *e, kyb_cuda *c, int pid)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_ok(kyb_cuda_lock(c, pid, 100, &err), err);
        assert_ok(kyb_cuda_checkpoint(c, pid, &err), err);
}

static kyb_cuda_gpu_pair pair(const char *from, const char *to)
{
        kyb_cuda_gpu_pair p;

        assert_int_equal(kyb_cuda_uuid_parse(from, &p.old_uuid, NULL), 0);
        assert_int_equal(kyb_cuda_uuid_parse(to, &p.new_uuid, NULL), 0);
        return p;
}

static void test_restore_pairs(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c = open_stub();
        kyb_cuda_gpu_pair p[2];
        char uuid[64];

        tu_add_process(e, 31, GiB, GPU_A, NULL);
        checkpointed(e, c, 31);
        p[0] = pair(GPU_A, GPU_B);
        p[1] = pair(GPU_A, GPU_C);
        assert_error(kyb_cuda_restore(c, 31, p, 2, &err), err, EINVAL,
                     "GPU map lists " GPU_A " twice as source");
        p[1] = pair(GPU_C, GPU_B);
        assert_error(kyb_cuda_restore(c, 31, p, 2, &err), err, EINVAL,
                     "GPU map lists " GPU_B " twice as target");
        /* The driver's own checks: an unknown target, another model. */
        p[0] = pair(GPU_A, "GPU-dddddddd-0000-4000-8000-000000000004");
        assert_error(kyb_cuda_restore(c, 31, p, 1, &err), err, ENODEV,
                     "cuda restore pid 31: CUDA_ERROR_INVALID_DEVICE");
        p[0] = pair(GPU_A, GPU_C);
        assert_error(kyb_cuda_restore(c, 31, p, 1, &err), err, EINVAL,
                     "cuda restore pid 31: CUDA_ERROR_INVALID_VALUE");
        expect_state(c, 31, KYB_CUDA_CHECKPOINTED);
        p[0] = pair(GPU_A, GPU_B);
        assert_ok(kyb_cuda_restore(c, 31, p, 1, &err), err);
        tu_proc_gpu(e, 31, 0, uuid);
        assert_string_equal(uuid, GPU_B);
        kyb_cuda_close(c);
}

static void test_restore_pairs_need_580(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_cuda *c;
        kyb_cuda_gpu_pair p = pair(GPU_A, GPU_B);

        tu_set_root(e, "cuda_version", json_integer(12080));
        c = open_stub();
        tu_add_process(e, 32, GiB, GPU_A, NULL);
        checkpointed(e, c, 32);
        assert_error(kyb_cuda_restore(c, 32, &p, 1, &err), err, ENOTSUP,
                     "CUDA driver 12.8 cannot remap GPUs (needs NVIDIA driver >= 580)");
        kyb_cuda_close(c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_absent_library_is_no_gpu),
            T(test_not_a_driver),
            T(test_driver_too_old),
            T(test_version_and_remap),
            T(test_init_once_per_handle),
            T(test_init_without_device),
            T(test_state_machine),
            T(test_lock_passes_timeout),
            T(test_wrong_transitions),
            T(test_unknown_pid),
            T(test_lock_timeout),
            T(test_error_translation),
            T(test_uuid),
            T(test_restore_pairs),
            T(test_restore_pairs_need_580),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
