/* SPDX-License-Identifier: Apache-2.0 */
/* src/lib/nvml against the stand-in libnvidia-ml.so.1: loading, "no
 * driver", devices, compute processes (and the buffer-size retry), errors. */
#include "gpu-test-util.h"
#include "nvml/nvml.h"

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

static kyb_nvml *open_stub(void)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_nvml *n = NULL;

        if (kyb_nvml_open(STUB_NVML, &n, &err) < 0)
                fail_msg("open: %s", kyb_error_message(err));
        return n;
}

static void test_absent_library(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_nvml *n = NULL;

        assert_error(kyb_nvml_open("/nonexistent/libnvidia-ml.so.1", &n, &err), err, ENODEV,
                     "/nonexistent/libnvidia-ml.so.1 not found: no NVIDIA driver");
        if (kyb_nvml_open(NULL, &n, &err) == -ENODEV)
                assert_string_equal(kyb_error_message(err),
                                    "libnvidia-ml.so.1 not found: no NVIDIA driver");
        kyb_nvml_close(n);
        assert_error(kyb_nvml_open(STUB_CUDA, &n, &err), err, ENOTSUP, "lacks nvmlInit_v2");
}

static void test_driver_not_loaded(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_nvml *n = NULL;

        unsetenv("KYB_GPU_STUB_STATE");
        assert_error(kyb_nvml_open(STUB_NVML, &n, &err), err, ENODEV,
                     "nvml init: NVML_ERROR_DRIVER_NOT_LOADED: Driver Not Loaded");
        assert_null(n);
}

static void test_devices(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_nvml *n = open_stub();
        char version[KYB_NVML_VERSION_MAX];
        kyb_nvml_device d;
        unsigned int count = 0;

        tu_add_process(e, 10, 4 * GiB, GPU_B, NULL);
        assert_ok(kyb_nvml_driver_version(n, version, &err), err);
        assert_string_equal(version, "580.65.06");
        assert_ok(kyb_nvml_device_count(n, &count, &err), err);
        assert_int_equal(count, 3);
        assert_ok(kyb_nvml_device_info(n, 1, &d, &err), err);
        assert_int_equal(d.index, 1);
        assert_string_equal(d.uuid, GPU_B);
        assert_string_equal(d.name, H100);
        assert_int_equal(d.memory_total_bytes, 80 * GiB);
        assert_int_equal(d.memory_used_bytes, 5 * GiB); /* 1 GiB others + the process */
        assert_int_equal(d.minor_number, 1);
        assert_string_equal(d.pci_bus_id, "00000000:1B:00.0");
        assert_ok(kyb_nvml_device_info(n, 2, &d, &err), err);
        assert_string_equal(d.name, A100);
        assert_error(kyb_nvml_device_info(n, 3, &d, &err), err, EINVAL,
                     "nvml device 3: NVML_ERROR_INVALID_ARGUMENT");
        kyb_nvml_close(n);
}

static void test_compute_processes(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_nvml *n = open_stub();
        kyb_nvml_process *p = NULL;
        size_t np = 0;

        /* More than the first buffer holds, to go through the retry. */
        for (int pid = 100; pid < 140; pid++)
                tu_add_process(e, pid, (uint64_t)pid * 1024, GPU_A, NULL);
        tu_add_process(e, 200, GiB, GPU_B, NULL);
        assert_ok(kyb_nvml_compute_processes(n, 0, &p, &np, &err), err);
        assert_int_equal(np, 40);
        for (size_t i = 0; i < np; i++) {
                assert_int_equal(p[i].pid, 100 + (int)i);
                assert_true(p[i].used_memory_known);
                assert_int_equal(p[i].used_memory_bytes, (uint64_t)(100 + i) * 1024);
        }
        free(p);
        /* Checkpointed processes hold no GPU resources; hidden ones are
         * those NVML cannot attribute. */
        tu_set(e, 100, "state", json_string("checkpointed"));
        tu_set(e, 101, "nvml_hidden", json_true());
        assert_ok(kyb_nvml_compute_processes(n, 0, &p, &np, &err), err);
        assert_int_equal(np, 38);
        assert_int_equal(p[0].pid, 102);
        free(p);
        assert_ok(kyb_nvml_compute_processes(n, 2, &p, &np, &err), err);
        assert_int_equal(np, 0);
        assert_null(p);
        kyb_nvml_close(n);
}

static void test_memory_not_available(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_nvml *n = open_stub();
        kyb_nvml_process *p = NULL;
        json_t *root;
        size_t np = 0;

        tu_add_process(e, 300, GiB, GPU_C, NULL);
        root = tu_state_read(e);
        json_object_del(
            json_array_get(
                json_object_get(json_array_get(json_object_get(root, "processes"), 0), "gpus"), 0),
            "memory");
        tu_state_write(e, root);
        assert_ok(kyb_nvml_compute_processes(n, 2, &p, &np, &err), err);
        assert_int_equal(np, 1);
        assert_false(p[0].used_memory_known);
        assert_int_equal(p[0].used_memory_bytes, 0);
        free(p);
        kyb_nvml_close(n);
}

static void test_errors(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_nvml *n = open_stub();
        kyb_nvml_process *p = NULL;
        size_t np = 0;

        tu_fail(e, 0, "nvmlDeviceGetComputeRunningProcesses",
                json_string("NVML_ERROR_GPU_IS_LOST"));
        assert_error(kyb_nvml_compute_processes(n, 0, &p, &np, &err), err, ENODEV,
                     "nvml device 0 compute processes: NVML_ERROR_GPU_IS_LOST: GPU is lost");
        tu_fail(e, 0, "nvmlDeviceGetName", json_string("NVML_ERROR_NO_PERMISSION"));
        kyb_nvml_device d;
        assert_error(kyb_nvml_device_info(n, 0, &d, &err), err, EACCES,
                     "nvml device 0 name: NVML_ERROR_NO_PERMISSION: Insufficient Permissions");
        kyb_nvml_close(n);
        tu_fail(e, 0, "nvmlInit", json_string("NVML_ERROR_DRIVER_NOT_LOADED"));
        assert_error(kyb_nvml_open(STUB_NVML, &n, &err), err, ENODEV, "nvml init");
        assert_int_equal(kyb_nvml_result_errno(0), 0);
        assert_int_equal(kyb_nvml_result_errno(4242), EIO);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_absent_library),    T(test_driver_not_loaded),    T(test_devices),
            T(test_compute_processes), T(test_memory_not_available), T(test_errors),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
