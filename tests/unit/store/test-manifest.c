/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.json: round trip, strict reading, path rules, RFC 3339 times. */
#include <jansson.h>
#include <stdio.h>

#include "store-test-util.h"

#define SHA_A "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_B "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static kyb_manifest *sample_with_files(void)
{
        kyb_manifest *m = tu_sample_manifest();

        assert_int_equal(kyb_manifest_add_file(m, "checkpoint/pages-1.img", 3, SHA_A, 0600, NULL),
                         0);
        assert_int_equal(kyb_manifest_add_file(m, "config.dump", 0, SHA_B, 0100644, NULL), 0);
        return m;
}

static char *to_json(const kyb_manifest *m)
{
        _cleanup_error_ kyb_error *err = NULL;
        char *out = NULL;
        size_t len = 0;

        if (kyb_manifest_to_json(m, &out, &len, &err) < 0)
                fail_msg("to_json: %s", kyb_error_message(err));
        assert_int_equal(strlen(out), len);
        assert_int_equal(out[len - 1], '\n');
        return out;
}

static kyb_manifest *from_json(const char *text)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_manifest *m = NULL;

        if (kyb_manifest_from_json(text, strlen(text), &m, &err) < 0)
                fail_msg("from_json: %s\n%s", kyb_error_message(err), text);
        return m;
}

static void test_round_trip(void **state)
{
        _cleanup_manifest_ kyb_manifest *m = sample_with_files();
        _cleanup_manifest_ kyb_manifest *back = NULL;
        _cleanup_free_ char *text = to_json(m);
        _cleanup_free_ char *again = NULL;

        assert_non_null(strstr(text, "\"createdAt\": \"2024-05-01T12:00:00.123456789Z\""));
        assert_non_null(strstr(text, "\"mode\": \"0644\""));
        back = from_json(text);
        assert_int_equal(back->format_version, KYB_MANIFEST_FORMAT_VERSION);
        assert_string_equal(back->checkpoint_id, "ckpt-1");
        assert_int_equal(back->created_at_ns, 1714564800123456789LL);
        assert_string_equal(back->node, "node-a");
        assert_string_equal(back->workload.pod_namespace, "ml");
        assert_string_equal(back->workload.pod_name, "llm-0");
        assert_string_equal(back->workload.pod_uid, "0b6f5a5e-1d2c-4f5e-9a7b-1c2d3e4f5a6b");
        assert_string_equal(back->workload.container_name, "server");
        assert_string_equal(back->workload.image, "registry.example/llm:1.2");
        assert_int_equal(back->target.kind, KYB_TARGET_CONTAINER);
        assert_string_equal(back->target.container_namespace, "k8s.io");
        assert_string_equal(back->target.container_id, "abcdef0123");
        assert_int_equal(back->gpu.mode, KYB_GPU_MODE_REQUIRED);
        assert_true(back->gpu.captured);
        assert_int_equal(back->gpu.lock_timeout_ms, 5000);
        assert_string_equal(back->gpu.driver_version, "570.86.15");
        assert_int_equal(back->gpu.cuda_driver_version, 12080);
        assert_int_equal(back->gpu.n_devices, 1);
        assert_string_equal(back->gpu.devices[0].uuid, "GPU-11111111-2222-3333-4444-555555555555");
        assert_string_equal(back->gpu.devices[0].model, "NVIDIA H100 80GB HBM3");
        assert_int_equal(back->gpu.devices[0].memory_total_bytes, 85899345920ULL);
        assert_int_equal(back->gpu.devices[0].memory_used_bytes, 1234567890ULL);
        assert_string_equal(back->gpu.devices[0].pci_bus_id, "00000000:1B:00.0");
        assert_int_equal(back->gpu.n_processes, 1);
        assert_int_equal(back->gpu.processes[0].pid, 4242);
        assert_int_equal(back->gpu.processes[0].state, KYB_CUDA_CHECKPOINTED);
        assert_int_equal(back->gpu.processes[0].n_gpu_uuids, 1);
        assert_string_equal(back->gpu.processes[0].gpu_uuids[0],
                            "GPU-11111111-2222-3333-4444-555555555555");
        assert_int_equal(back->gpu.processes[0].device_memory_bytes, 987654321ULL);
        assert_string_equal(back->criu.version, "4.1.1");
        assert_true(back->criu.leave_running && back->criu.tcp_established &&
                    back->criu.file_locks && back->criu.lazy_pages);
        assert_false(back->criu.shell_job || back->criu.external_unix_sockets ||
                     back->criu.pre_dump);
        assert_string_equal(back->criu.parent_id, "ckpt-0");
        assert_int_equal(back->n_steps, 2);
        assert_string_equal(back->steps[1].name, "criu_dump");
        assert_int_equal(back->steps[1].duration_ms, 3400);
        assert_int_equal(back->steps[1].bytes, 123456789);
        assert_int_equal(back->n_labels, 2);
        assert_string_equal(kyb_manifest_label(back, "kybernate.io/policy"), "nightly");
        assert_int_equal(back->n_files, 2);
        assert_string_equal(back->files[0].path, "checkpoint/pages-1.img");
        assert_int_equal(back->files[0].size, 3);
        assert_string_equal(back->files[0].sha256, SHA_A);
        assert_int_equal(back->files[0].mode, 0600);
        assert_int_equal(back->files[1].mode, 0644);
        assert_int_equal(back->total_bytes, 3);
        /* Serialising what was read gives the same bytes. */
        again = to_json(back);
        assert_string_equal(again, text);
}

static void test_process_target_round_trip(void **state)
{
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_manifest_ kyb_manifest *back = NULL;
        _cleanup_free_ char *text = NULL;

        m->target.kind = KYB_TARGET_PROCESS;
        m->target.pid = 77;
        m->created_at_ns = 0;
        text = to_json(m);
        assert_non_null(strstr(text, "\"createdAt\": \"1970-01-01T00:00:00Z\""));
        back = from_json(text);
        assert_int_equal(back->target.kind, KYB_TARGET_PROCESS);
        assert_int_equal(back->target.pid, 77);
        assert_int_equal(back->n_files, 0);
}

/* Parses sample JSON, lets mutate() change it, and expects a failure. */
static void expect_rejected(void (*mutate)(json_t *root), int errnum, const char *fragment)
{
        _cleanup_manifest_ kyb_manifest *m = sample_with_files();
        _cleanup_manifest_ kyb_manifest *out = (kyb_manifest *)0x1;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *text = to_json(m);
        _cleanup_free_ char *bad = NULL;
        json_t *root = json_loads(text, 0, NULL);
        int rc;

        assert_non_null(root);
        mutate(root);
        bad = json_dumps(root, JSON_ENCODE_ANY);
        json_decref(root);
        rc = kyb_manifest_from_json(bad, strlen(bad), &out, &err);
        if (rc == 0)
                fail_msg("accepted: %s", bad);
        assert_null(out);
        assert_error(rc, err, errnum, fragment);
}

static json_t *files0(json_t *root)
{
        return json_array_get(json_object_get(root, "files"), 0);
}

#define MUTATION(name, body)                                                                       \
        static void name(json_t *root)                                                             \
        {                                                                                          \
                body;                                                                              \
        }

MUTATION(del_version, json_object_del(root, "formatVersion"))
MUTATION(version_2, json_object_set_new(root, "formatVersion", json_integer(2)))
MUTATION(version_0, json_object_set_new(root, "formatVersion", json_integer(0)))
MUTATION(version_str, json_object_set_new(root, "formatVersion", json_string("1")))
MUTATION(del_id, json_object_del(root, "checkpointId"))
MUTATION(bad_id, json_object_set_new(root, "checkpointId", json_string("../etc")))
MUTATION(bad_time, json_object_set_new(root, "createdAt", json_string("2024-02-30T00:00:00Z")))
MUTATION(local_time,
         json_object_set_new(root, "createdAt", json_string("2024-05-01T12:00:00+02:00")))
MUTATION(del_node, json_object_del(root, "node"))
MUTATION(node_num, json_object_set_new(root, "node", json_integer(3)))
MUTATION(del_workload_image, json_object_del(json_object_get(root, "workload"), "image"))
MUTATION(workload_array, json_object_set_new(root, "workload", json_array()))
MUTATION(target_both, json_object_set_new(json_object_get(root, "target"), "process",
                                          json_pack("{s:i}", "pid", 1)))
MUTATION(target_none, json_object_set_new(root, "target", json_object()))
MUTATION(pid_zero, json_object_set_new(root, "target", json_pack("{s:{s:i}}", "process", "pid", 0)))
MUTATION(gpu_captured_str,
         json_object_set_new(json_object_get(root, "gpu"), "captured", json_string("true")))
MUTATION(gpu_mode_bad, json_object_set_new(json_object_get(root, "gpu"), "mode", json_string("x")))
MUTATION(
    gpu_uuid_num,
    json_object_set_new(json_array_get(json_object_get(json_object_get(root, "gpu"), "devices"), 0),
                        "uuid", json_integer(1)))
MUTATION(gpu_state_bad,
         json_object_set_new(
             json_array_get(json_object_get(json_object_get(root, "gpu"), "processes"), 0), "state",
             json_string("frozen")))
MUTATION(criu_opt_missing,
         json_object_del(json_object_get(json_object_get(root, "criu"), "options"), "fileLocks"))
MUTATION(criu_parent_bad,
         json_object_set_new(json_object_get(json_object_get(root, "criu"), "options"), "parentId",
                             json_string("a/b")))
MUTATION(step_negative, json_object_set_new(json_array_get(json_object_get(root, "steps"), 0),
                                            "durationMs", json_integer(-1)))
MUTATION(label_num, json_object_set_new(json_object_get(root, "labels"), "app", json_integer(1)))
MUTATION(del_files, json_object_del(root, "files"))
MUTATION(files_object, json_object_set_new(root, "files", json_object()))
MUTATION(file_size_str, json_object_set_new(files0(root), "size", json_string("3")))
MUTATION(file_size_real, json_object_set_new(files0(root), "size", json_real(3.0)))
MUTATION(file_sha_upper,
         json_object_set_new(
             files0(root), "sha256",
             json_string("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD")))
MUTATION(file_sha_short, json_object_set_new(files0(root), "sha256", json_string("ba78")))
MUTATION(file_mode_bad, json_object_set_new(files0(root), "mode", json_string("4755")))
MUTATION(file_mode_num, json_object_set_new(files0(root), "mode", json_integer(420)))
MUTATION(file_dotdot, json_object_set_new(files0(root), "path", json_string("../x")))
MUTATION(file_abs, json_object_set_new(files0(root), "path", json_string("/etc/passwd")))
MUTATION(file_inner_dotdot,
         json_object_set_new(files0(root), "path", json_string("checkpoint/../../x")))
MUTATION(file_manifest, json_object_set_new(files0(root), "path", json_string("manifest.json")))
MUTATION(file_dup, json_object_set_new(json_array_get(json_object_get(root, "files"), 1), "path",
                                       json_string("checkpoint/pages-1.img")))
MUTATION(totals_wrong,
         json_object_set_new(json_object_get(root, "totals"), "bytes", json_integer(4)))
MUTATION(del_totals, json_object_del(root, "totals"))

static void test_rejects_wrong_version(void **state)
{
        expect_rejected(del_version, EBADMSG, "formatVersion: missing");
        expect_rejected(version_2, ENOTSUP, "formatVersion 2 is not supported");
        expect_rejected(version_0, EBADMSG, "formatVersion: 0 is out of range");
        expect_rejected(version_str, EBADMSG, "formatVersion: expected an integer");
}

static void test_rejects_missing_fields(void **state)
{
        expect_rejected(del_id, EBADMSG, "checkpointId: missing");
        expect_rejected(del_node, EBADMSG, "node: missing");
        expect_rejected(del_workload_image, EBADMSG, "workload.image: missing");
        expect_rejected(criu_opt_missing, EBADMSG, "criu.options.fileLocks: missing");
        expect_rejected(del_files, EBADMSG, "files: missing");
        expect_rejected(del_totals, EBADMSG, "totals: missing");
        expect_rejected(target_none, EBADMSG, "exactly one of container, process");
}

static void test_rejects_wrong_types(void **state)
{
        expect_rejected(node_num, EBADMSG, "node: expected a string");
        expect_rejected(workload_array, EBADMSG, "workload: expected an object");
        expect_rejected(gpu_captured_str, EBADMSG, "gpu.captured: expected a boolean");
        expect_rejected(gpu_uuid_num, EBADMSG, "gpu.devices[0].uuid: expected a string");
        expect_rejected(label_num, EBADMSG, "labels");
        expect_rejected(files_object, EBADMSG, "files: expected an array");
        expect_rejected(file_size_str, EBADMSG, "files[0].size: expected an integer");
        expect_rejected(file_size_real, EBADMSG, "files[0].size: expected an integer");
        expect_rejected(file_mode_num, EBADMSG, "files[0].mode: expected a string");
}

static void test_rejects_bad_values(void **state)
{
        expect_rejected(bad_id, EBADMSG, "checkpointId");
        expect_rejected(bad_time, EBADMSG, "createdAt");
        expect_rejected(local_time, EBADMSG, "createdAt");
        expect_rejected(target_both, EBADMSG, "exactly one");
        expect_rejected(pid_zero, EBADMSG, "target.process.pid: 0 is out of range");
        expect_rejected(gpu_mode_bad, EBADMSG, "gpu.mode: unknown value 'x'");
        expect_rejected(gpu_state_bad, EBADMSG, "gpu.processes[0].state: unknown value");
        expect_rejected(criu_parent_bad, EBADMSG, "parentId");
        expect_rejected(step_negative, EBADMSG, "steps[0].durationMs: -1 is out of range");
        expect_rejected(file_sha_upper, EBADMSG, "files[0].sha256");
        expect_rejected(file_sha_short, EBADMSG, "files[0].sha256");
        expect_rejected(file_mode_bad, EBADMSG, "files[0].mode");
        expect_rejected(file_dup, EBADMSG, "checkpoint/pages-1.img listed twice");
        expect_rejected(totals_wrong, EBADMSG, "totals");
}

static void test_rejects_escaping_paths(void **state)
{
        expect_rejected(file_dotdot, EBADMSG, "'../x' is not allowed");
        expect_rejected(file_abs, EBADMSG, "'/etc/passwd' is not allowed");
        expect_rejected(file_inner_dotdot, EBADMSG, "is not allowed");
        expect_rejected(file_manifest, EBADMSG, "reserved");
}

static void test_rejects_malformed_json(void **state)
{
        _cleanup_manifest_ kyb_manifest *m = sample_with_files();
        _cleanup_free_ char *text = to_json(m);
        static const char *const bad[] = {
            "",
            "{",
            "[]",
            "null",
            "42",
            "{\"formatVersion\": 1,}",
            "{\"a\":1} trailing",
            "{\"formatVersion\": 1, \"formatVersion\": 1}",
        };

        for (size_t i = 0; i < KYB_ARRAY_SIZE(bad); i++) {
                _cleanup_manifest_ kyb_manifest *out = NULL;
                _cleanup_error_ kyb_error *err = NULL;

                assert_error(kyb_manifest_from_json(bad[i], strlen(bad[i]), &out, &err), err,
                             EBADMSG, "manifest");
        }
        /* Every proper prefix of a valid manifest is refused: partial writes never parse. */
        for (size_t len = 0; len + 1 < strlen(text); len += 7) {
                _cleanup_manifest_ kyb_manifest *out = NULL;
                _cleanup_error_ kyb_error *err = NULL;

                assert_error(kyb_manifest_from_json(text, len, &out, &err), err, EBADMSG,
                             "invalid JSON");
        }
}

static void add_unknown(json_t *root)
{
        json_object_set_new(root, "futureField", json_pack("{s:[i]}", "x", 1));
        json_object_set_new(json_object_get(root, "gpu"), "futureGpuField", json_true());
}

static void test_tolerates_unknown_fields(void **state)
{
        _cleanup_manifest_ kyb_manifest *m = sample_with_files();
        _cleanup_manifest_ kyb_manifest *back = NULL;
        _cleanup_free_ char *text = to_json(m);
        _cleanup_free_ char *ext = NULL;
        json_t *root = json_loads(text, 0, NULL);

        assert_non_null(root);
        add_unknown(root);
        ext = json_dumps(root, 0);
        json_decref(root);
        back = from_json(ext);
        assert_string_equal(back->checkpoint_id, "ckpt-1");
        assert_int_equal(back->n_files, 2);
}

static void test_check_path(void **state)
{
        static const char *const good[] = {
            "checkpoint/pages-1.img",
            "config.dump",
            "rootfs-diff.tar",
            "a/b/c/d",
            "io.kubernetes.cri-o.LogPath",
            "checkpoint/x+y@z:1=2,3",
        };
        static const char *const bad[] = {
            "",     "/abs", "../x",    "a/../b",      "a/./b",
            "a//b", "a/",   ".hidden", "a/.hidden",   "manifest.json",
            "a b",  "a\\b", "a\nb",    "caf\xc3\xa9", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q",
        };
        char longp[KYB_MANIFEST_PATH_MAX + 2];

        for (size_t i = 0; i < KYB_ARRAY_SIZE(good); i++) {
                if (kyb_manifest_check_path(good[i], NULL) < 0)
                        fail_msg("refused '%s'", good[i]);
        }
        for (size_t i = 0; i < KYB_ARRAY_SIZE(bad); i++) {
                _cleanup_error_ kyb_error *err = NULL;

                if (kyb_manifest_check_path(bad[i], &err) != -EBADMSG)
                        fail_msg("accepted '%s'", bad[i]);
                assert_null(strchr(kyb_error_message(err), '\n'));
        }
        memset(longp, 'a', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = '\0';
        assert_int_equal(kyb_manifest_check_path(longp, NULL), -EBADMSG);
        assert_int_equal(kyb_manifest_check_path("manifest.json/x", NULL), 0);
}

static void test_time(void **state)
{
        static const struct {
                const char *text;
                int64_t ns;
        } ok[] = {
            {"1970-01-01T00:00:00Z", 0},
            {"2024-05-01T12:00:00.5Z", 1714564800500000000LL},
            {"2024-02-29T23:59:59.000000001Z", 1709251199000000001LL},
        };
        static const char *const bad[] = {
            "2024-05-01T12:00:00",
            "2024-05-01 12:00:00Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00.1234567891Z",
            "2024-05-01T12:00:00+00:00",
            "1969-12-31T23:59:59Z",
            "2262-04-12T00:00:00Z", /* past int64 nanoseconds (found by fuzz_manifest) */
            "4048-05-01T12:00:00.5Z",
            "2024-05-01T12:00:00Zjunk",
            "",
        };
        char buf[KYB_TIME_RFC3339_MAX];

        for (size_t i = 0; i < KYB_ARRAY_SIZE(ok); i++) {
                int64_t ns = -1;

                assert_int_equal(kyb_time_parse_rfc3339(ok[i].text, &ns, NULL), 0);
                assert_int_equal(ns, ok[i].ns);
                assert_int_equal(kyb_time_format_rfc3339(ns, buf, NULL), 0);
                assert_string_equal(buf, ok[i].text);
        }
        assert_int_equal(kyb_time_format_rfc3339(1714564800500000000LL, buf, NULL), 0);
        assert_string_equal(buf, "2024-05-01T12:00:00.5Z");
        for (size_t i = 0; i < KYB_ARRAY_SIZE(bad); i++) {
                int64_t ns;

                if (kyb_time_parse_rfc3339(bad[i], &ns, NULL) != -EINVAL)
                        fail_msg("accepted '%s'", bad[i]);
        }
        assert_int_equal(kyb_time_format_rfc3339(-1, buf, NULL), -EINVAL);
}

static void test_builders(void **state)
{
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_manifest_set_label(m, "app", "other", NULL), 0);
        assert_int_equal(m->n_labels, 2);
        assert_string_equal(kyb_manifest_label(m, "app"), "other");
        assert_null(kyb_manifest_label(m, "missing"));
        assert_error(kyb_manifest_set_label(m, "", "x", &err), err, EINVAL, "label");
        assert_error(kyb_manifest_add_file(m, "../x", 1, SHA_A, 0644, &err), err, EBADMSG,
                     "not allowed");
        assert_error(kyb_manifest_add_file(m, "x", 1, "abc", 0644, &err), err, EINVAL, "sha256");
        assert_int_equal(kyb_manifest_add_file(m, "x", 5, SHA_A, 0644, NULL), 0);
        assert_int_equal(kyb_manifest_add_file(m, "y", 6, SHA_B, 0644, NULL), 0);
        assert_int_equal(m->total_bytes, 11);
        assert_non_null(kyb_manifest_find_file(m, "y"));
        assert_null(kyb_manifest_find_file(m, "z"));
        kyb_manifest_clear_files(m);
        assert_int_equal(m->n_files, 0);
        assert_int_equal(m->total_bytes, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_process_target_round_trip),
            cmocka_unit_test(test_rejects_wrong_version),
            cmocka_unit_test(test_rejects_missing_fields),
            cmocka_unit_test(test_rejects_wrong_types),
            cmocka_unit_test(test_rejects_bad_values),
            cmocka_unit_test(test_rejects_escaping_paths),
            cmocka_unit_test(test_rejects_malformed_json),
            cmocka_unit_test(test_tolerates_unknown_fields),
            cmocka_unit_test(test_check_path),
            cmocka_unit_test(test_time),
            cmocka_unit_test(test_builders),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
