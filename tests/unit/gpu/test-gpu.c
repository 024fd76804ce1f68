/* SPDX-License-Identifier: Apache-2.0 */
/* The GPU facade against the stand-in drivers: availability, hibernate and
 * resume, rollback after every injected failure, UUID map validation, VRAM
 * accounting, process discovery, status and manifest facts. */
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu-test-util.h"
#include "gpu/gpu.h"

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

static kyb_gpu *open_gpu_at(const char *proc_root)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_gpu_config cfg = {.cuda_lib = STUB_CUDA, .nvml_lib = STUB_NVML, .proc_root = proc_root};
        kyb_gpu *g = NULL;

        assert_ok(kyb_gpu_open(&cfg, &g, &err), err);
        if (!kyb_gpu_available(g))
                fail_msg("unavailable: %s", kyb_gpu_unavailable_reason(g));
        return g;
}

static kyb_gpu *open_gpu(void)
{
        return open_gpu_at(NULL);
}

static void expect(const tu_env *e, pid_t pid, const char *want)
{
        char s[32];

        assert_string_equal(tu_state_of(e, pid, s), want);
}

/* Used memory of a GPU as the facade reports it. */
static uint64_t vram_used(kyb_gpu *g, const char *uuid)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_gpu_info info;
        uint64_t used = UINT64_MAX;

        assert_ok(kyb_gpu_status(g, 0, &info, &err), err);
        for (size_t i = 0; i < info.n_devices; i++)
                if (!strcmp(info.devices[i].uuid, uuid))
                        used = info.devices[i].memory_used_bytes;
        kyb_gpu_info_clear(&info);
        assert_true(used != UINT64_MAX);
        return used;
}

/* A running child listed as a CUDA process on the given GPUs. */
static pid_t cuda_process(tu_env *e, uint64_t memory, const char *gpu1, const char *gpu2)
{
        pid_t pid = tu_spawn(e);

        tu_add_process(e, pid, memory, gpu1, gpu2, NULL);
        return pid;
}

static void hibernate(kyb_gpu *g, pid_t pid)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda_state s = KYB_CUDA_FAILED;

        assert_ok(kyb_gpu_hibernate(g, pid, 1000, &s, &err), err);
        assert_int_equal(s, KYB_CUDA_CHECKPOINTED);
}

/* --- availability ------------------------------------------------------ */

static void expect_unavailable(const kyb_gpu_config *cfg, int want_errno, const char *reason)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_gpu_process *procs = NULL;
        kyb_gpu_info info;
        kyb_manifest m = {0};
        size_t n = 0;
        kyb_gpu *g = NULL;

        assert_ok(kyb_gpu_open(cfg, &g, &err), err);
        assert_false(kyb_gpu_available(g));
        assert_int_equal(kyb_gpu_unavailable_errno(g), want_errno);
        if (!strstr(kyb_gpu_unavailable_reason(g), reason))
                fail_msg("'%s' lacks '%s'", kyb_gpu_unavailable_reason(g), reason);
        assert_error(kyb_gpu_hibernate(g, getpid(), 100, NULL, &err), err, want_errno, reason);
        assert_error(kyb_gpu_resume(g, getpid(), NULL, &err), err, want_errno, reason);
        assert_error(kyb_gpu_rollback(g, getpid(), &err), err, want_errno, reason);
        assert_error(kyb_gpu_status(g, 0, &info, &err), err, want_errno, reason);
        assert_error(kyb_gpu_find_processes(g, getpid(), &procs, &n, &err), err, want_errno,
                     reason);
        assert_error(kyb_gpu_describe(g, NULL, 0, &m, &err), err, want_errno, reason);
        kyb_gpu_free(g);
}

static void test_no_driver(void **state)
{
        kyb_gpu_config cfg = {.cuda_lib = "/nonexistent/libcuda.so.1", .nvml_lib = STUB_NVML};

        expect_unavailable(&cfg, ENODEV, "/nonexistent/libcuda.so.1 not found: no NVIDIA driver");
        cfg.cuda_lib = STUB_CUDA;
        cfg.nvml_lib = "/nonexistent/libnvidia-ml.so.1";
        expect_unavailable(&cfg, ENODEV,
                           "/nonexistent/libnvidia-ml.so.1 not found: no NVIDIA driver");
}

static void test_no_device(void **state)
{
        kyb_gpu_config cfg = {.cuda_lib = STUB_CUDA, .nvml_lib = STUB_NVML};

        tu_set_root(*state, "gpus", json_array());
        expect_unavailable(&cfg, ENODEV, "CUDA_ERROR_NO_DEVICE");
}

static void test_driver_too_old(void **state)
{
        kyb_gpu_config cfg = {.cuda_lib = STUB_CUDA, .nvml_lib = STUB_NVML};

        tu_set_root(*state, "cuda_version", json_integer(12060));
        expect_unavailable(&cfg, ENOTSUP, "CUDA driver 12.6 (" STUB_CUDA ") is too old");
        tu_set_root(*state, "cuda_version", json_integer(12080));
        cfg.cuda_lib = STUB_CUDA_LEGACY;
        expect_unavailable(&cfg, ENOTSUP, "lacks cuCheckpointProcessLock");
}

/* --- hibernate and resume ---------------------------------------------- */

static void test_round_trip_accounts_vram(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, 10 * GiB, GPU_A, NULL);

        assert_int_equal(vram_used(g, GPU_A), 11 * GiB);
        hibernate(g, pid);
        expect(e, pid, "checkpointed");
        assert_int_equal(vram_used(g, GPU_A), 1 * GiB);
        assert_int_equal(tu_calls(e, pid, "lock"), 1);
        assert_int_equal(tu_calls(e, pid, "checkpoint"), 1);
        /* Twice is fine (seats may ask again); nothing more is done. */
        hibernate(g, pid);
        assert_int_equal(tu_calls(e, pid, "lock"), 1);
        assert_ok(kyb_gpu_resume(g, pid, NULL, &err), err);
        expect(e, pid, "running");
        assert_int_equal(vram_used(g, GPU_A), 11 * GiB);
        /* Resuming a running process is success too. */
        assert_ok(kyb_gpu_resume(g, pid, NULL, &err), err);
        assert_int_equal(tu_calls(e, pid, "restore"), 1);
        kyb_gpu_free(g);
}

static void test_default_lock_timeout(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu_config cfg = {
            .cuda_lib = STUB_CUDA, .nvml_lib = STUB_NVML, .default_lock_timeout_ms = 4321};
        kyb_gpu *g = NULL;
        pid_t pid = cuda_process(e, GiB, GPU_A, NULL);
        json_t *root;

        assert_ok(kyb_gpu_open(&cfg, &g, &err), err);
        assert_ok(kyb_gpu_hibernate(g, pid, 0, NULL, &err), err);
        root = tu_state_read(e);
        assert_int_equal(
            json_integer_value(json_object_get(
                json_array_get(json_object_get(root, "processes"), 0), "last_lock_timeout_ms")),
            4321);
        json_decref(root);
        kyb_gpu_free(g);
}

static void test_unknown_and_non_cuda_pids(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t plain = tu_spawn(e);
        kyb_gpu_info info;

        assert_error(kyb_gpu_hibernate(g, INT32_MAX, 100, NULL, &err), err, ENOENT,
                     "no process 2147483647");
        assert_error(kyb_gpu_hibernate(g, plain, 100, NULL, &err), err, ENOENT,
                     "is not a CUDA process");
        assert_error(kyb_gpu_resume(g, plain, NULL, &err), err, ENOENT, "is not a CUDA process");
        assert_error(kyb_gpu_status(g, plain, &info, &err), err, ENOENT, "is not a CUDA process");
        assert_error(kyb_gpu_status(g, INT32_MAX, &info, &err), err, ENOENT, "no process");
        kyb_gpu_free(g);
}

static void test_locked_elsewhere(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, GiB, GPU_A, NULL);

        tu_set(e, pid, "state", json_string("locked"));
        assert_error(kyb_gpu_hibernate(g, pid, 100, NULL, &err), err, EBUSY, "already LOCKED");
        /* Nobody's lock is broken by a failed hibernate. */
        expect(e, pid, "locked");
        /* A locked process (restored, unlock pending) is resumed by unlocking. */
        assert_ok(kyb_gpu_resume(g, pid, NULL, &err), err);
        expect(e, pid, "running");
        kyb_gpu_free(g);
}

/* --- every injected failure leaves the process RUNNING and unlocked ------ */

static void expect_rolled_back(tu_env *e, kyb_gpu *g, pid_t pid, int want_errno, const char *msg)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_cuda_state s = KYB_CUDA_FAILED;

        assert_error(kyb_gpu_hibernate(g, pid, 100, &s, &err), err, want_errno, msg);
        expect(e, pid, "running");
        assert_int_equal(vram_used(g, GPU_A), 1 * GiB + GiB);
}

static void test_hibernate_failures_roll_back(void **state)
{
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, GiB, GPU_A, NULL);
        char msg[128];

        /* The lock times out: never locked. */
        tu_set(e, pid, "lock_delay_ms", json_integer(10000));
        snprintf(msg, sizeof(msg), "cuda lock pid %d: timed out after 100 ms", (int)pid);
        expect_rolled_back(e, g, pid, ETIMEDOUT, msg);
        tu_set(e, pid, "lock_delay_ms", json_integer(0));
        assert_int_equal(tu_calls(e, pid, "unlock"), 0);
        /* The lock fails. */
        tu_fail(e, pid, "lock", json_string("CUDA_ERROR_NOT_PERMITTED"));
        expect_rolled_back(e, g, pid, EPERM, "CUDA_ERROR_NOT_PERMITTED");
        tu_fail(e, pid, "lock", NULL);
        /* The checkpoint fails: unlocked again. */
        static const struct {
                const char *error;
                int errnum;
        } ckpt[] = {
            {"CUDA_ERROR_OUT_OF_MEMORY", ENOMEM},
            {"CUDA_ERROR_UNKNOWN", EIO},
            {"CUDA_ERROR_OPERATING_SYSTEM", EIO},
            {"CUDA_ERROR_NOT_SUPPORTED", ENOTSUP},
        };
        for (size_t i = 0; i < KYB_ARRAY_SIZE(ckpt); i++) {
                snprintf(msg, sizeof(msg), "cuda checkpoint pid %d: %s", (int)pid, ckpt[i].error);
                tu_fail(e, pid, "checkpoint", json_string(ckpt[i].error));
                expect_rolled_back(e, g, pid, ckpt[i].errnum, msg);
                assert_int_equal(tu_calls(e, pid, "unlock"), (int64_t)i + 1);
        }
        /* A checkpoint that fails half-way (memory already moved): restored
         * and unlocked. */
        tu_fail(e, pid, "checkpoint",
                json_pack("{s:s, s:s}", "error", "CUDA_ERROR_UNKNOWN", "state", "checkpointed"));
        expect_rolled_back(e, g, pid, EIO, "CUDA_ERROR_UNKNOWN");
        assert_int_equal(tu_calls(e, pid, "restore"), 1);
        tu_fail(e, pid, "checkpoint", NULL);
        /* And after all that, hibernate works. */
        hibernate(g, pid);
        kyb_gpu_free(g);
}

static void test_failed_rollback_is_reported(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, GiB, GPU_A, NULL);

        tu_fail(e, pid, "checkpoint", json_string("CUDA_ERROR_UNKNOWN"));
        tu_fail(e, pid, "unlock",
                json_pack("{s:s, s:i}", "error", "CUDA_ERROR_UNKNOWN", "times", 1));
        /* The original error first, then what the rollback left. */
        assert_error(kyb_gpu_hibernate(g, pid, 100, NULL, &err), err, EIO,
                     "CUDA_ERROR_UNKNOWN: unknown error (rollback failed, process left LOCKED: "
                     "cuda unlock pid");
        expect(e, pid, "locked");
        /* The engine's rollback finishes the job. */
        assert_ok(kyb_gpu_rollback(g, pid, &err), err);
        expect(e, pid, "running");
        kyb_gpu_free(g);
}

static void test_resume_failures(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, 2 * GiB, GPU_A, NULL);

        hibernate(g, pid);
        /* A failed restore keeps the process hibernated: nothing is lost. */
        tu_fail(e, pid, "restore", json_string("CUDA_ERROR_OPERATING_SYSTEM"));
        assert_error(kyb_gpu_resume(g, pid, NULL, &err), err, EIO, "CUDA_ERROR_OPERATING_SYSTEM");
        expect(e, pid, "checkpointed");
        tu_fail(e, pid, "restore", NULL);
        /* Not enough free memory on the GPU. */
        tu_add_process(e, 1, 78 * GiB, GPU_A, NULL);
        assert_error(kyb_gpu_resume(g, pid, NULL, &err), err, ENOMEM, "CUDA_ERROR_OUT_OF_MEMORY");
        expect(e, pid, "checkpointed");
        tu_set(e, 1, "gpus", json_array());
        /* A failed unlock leaves it restored and locked; resume finishes. */
        tu_fail(e, pid, "unlock",
                json_pack("{s:s, s:i}", "error", "CUDA_ERROR_UNKNOWN", "times", 1));
        assert_error(kyb_gpu_resume(g, pid, NULL, &err), err, EIO, "cuda unlock pid");
        expect(e, pid, "locked");
        assert_ok(kyb_gpu_resume(g, pid, NULL, &err), err);
        expect(e, pid, "running");
        assert_int_equal(vram_used(g, GPU_A), 3 * GiB);
        kyb_gpu_free(g);
}

static void test_transient_restore_failure_then_rollback(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, GiB, GPU_A, NULL);

        hibernate(g, pid);
        tu_fail(e, pid, "restore",
                json_pack("{s:s, s:i}", "error", "CUDA_ERROR_UNKNOWN", "times", 1));
        assert_error(kyb_gpu_resume(g, pid, NULL, &err), err, EIO, "cuda restore pid");
        assert_ok(kyb_gpu_rollback(g, pid, &err), err);
        expect(e, pid, "running");
        assert_int_equal(vram_used(g, GPU_A), 2 * GiB);
        /* Rolling back a running process changes nothing. */
        assert_ok(kyb_gpu_rollback(g, pid, &err), err);
        kyb_gpu_free(g);
}

/* --- UUID maps ---------------------------------------------------------- */

static void test_remap_moves_vram(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, 5 * GiB, GPU_A, NULL);
        kyb_gpu_uuid_pair pairs[] = {{GPU_A, GPU_B}};
        kyb_gpu_uuid_map map = {.pairs = pairs, .n_pairs = 1};
        char uuid[64];

        hibernate(g, pid);
        assert_ok(kyb_gpu_resume(g, pid, &map, &err), err);
        expect(e, pid, "running");
        tu_proc_gpu(e, pid, 0, uuid);
        assert_string_equal(uuid, GPU_B);
        assert_int_equal(vram_used(g, GPU_A), 1 * GiB);
        assert_int_equal(vram_used(g, GPU_B), 6 * GiB);
        kyb_gpu_free(g);
}

static void expect_map_refused(tu_env *e, kyb_gpu *g, pid_t pid, const kyb_gpu_uuid_map *map,
                               const char *msg)
{
        _cleanup_error_ kyb_error *err = NULL;
        int64_t restores = tu_calls(e, pid, "restore");

        assert_error(kyb_gpu_resume(g, pid, map, &err), err, EINVAL, msg);
        /* Refused before the driver was asked: still hibernated, same GPUs. */
        expect(e, pid, "checkpointed");
        assert_int_equal(tu_calls(e, pid, "restore"), restores);
}

static void test_map_validation(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t pid = cuda_process(e, GiB, GPU_A, GPU_B);
        const char *unknown = "GPU-dddddddd-0000-4000-8000-000000000004";
        kyb_gpu_uuid_pair pairs[2];
        kyb_gpu_uuid_map map = {.pairs = pairs};

        hibernate(g, pid);
        /* Missing GPU: GPU_B is not listed. */
        pairs[0] = (kyb_gpu_uuid_pair){GPU_A, GPU_B};
        map.n_pairs = 1;
        expect_map_refused(e, g, pid, &map,
                           "lacks " GPU_B ", which the process was checkpointed on");
        /* Unknown UUID on this node. */
        pairs[0] = (kyb_gpu_uuid_pair){GPU_A, unknown};
        pairs[1] = (kyb_gpu_uuid_pair){GPU_B, GPU_A};
        map.n_pairs = 2;
        expect_map_refused(e, g, pid, &map, "is not a GPU of this node");
        /* Different model. */
        pairs[0] = (kyb_gpu_uuid_pair){GPU_A, GPU_C};
        expect_map_refused(e, g, pid, &map,
                           "cannot restore from " GPU_A " (" H100 ") onto " GPU_C " (" A100
                           "): different models");
        /* A source it was not checkpointed on. */
        pairs[0] = (kyb_gpu_uuid_pair){GPU_C, GPU_C};
        expect_map_refused(e, g, pid, &map, GPU_C " is not a GPU the process was checkpointed on");
        /* Not a UUID. */
        pairs[0] = (kyb_gpu_uuid_pair){"GPU-0", GPU_B};
        expect_map_refused(e, g, pid, &map, "'GPU-0' is not a GPU UUID");
        pairs[0] = (kyb_gpu_uuid_pair){GPU_A, NULL};
        expect_map_refused(e, g, pid, &map, "'(null)' is not a GPU UUID");
        /* Swapping both GPUs is fine. */
        pairs[0] = (kyb_gpu_uuid_pair){GPU_A, GPU_B};
        assert_ok(kyb_gpu_resume(g, pid, &map, &err), err);
        expect(e, pid, "running");
        kyb_gpu_free(g);
}

static void test_map_with_manifest_sources(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_manifest_ kyb_manifest *m = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        kyb_gpu *other = open_gpu(); /* another agent: no record of the hibernate */
        pid_t pid = cuda_process(e, GiB, GPU_A, NULL);
        kyb_gpu_uuid_pair pairs[] = {{GPU_A, GPU_C}};
        kyb_gpu_uuid_map map = {.pairs = pairs, .n_pairs = 1};
        kyb_gpu_source *src = NULL;
        int32_t pids[] = {pid};

        hibernate(g, pid);
        assert_ok(kyb_manifest_new(&m, &err), err);
        assert_ok(kyb_gpu_describe(g, pids, 1, m, &err), err);
        assert_ok(kyb_gpu_sources_from_manifest(&m->gpu, pid, &src, &map.n_sources, &err), err);
        map.sources = src;
        assert_int_equal(map.n_sources, 1);
        assert_string_equal(src[0].uuid, GPU_A);
        assert_string_equal(src[0].model, H100);
        expect_map_refused(e, other, pid, &map, "different models");
        /* Without sources the other handle still knows the model of a GPU
         * of this node... */
        map.sources = NULL;
        map.n_sources = 0;
        expect_map_refused(e, other, pid, &map, "different models");
        /* ...but not which GPUs the process used; the driver does. */
        pairs[0] = (kyb_gpu_uuid_pair){GPU_B, GPU_A};
        assert_error(kyb_gpu_resume(other, pid, &map, &err), err, EINVAL, "cuda restore pid");
        expect(e, pid, "checkpointed");
        pairs[0].old_uuid = GPU_A;
        pairs[0].new_uuid = GPU_B;
        map.sources = src;
        map.n_sources = 1;
        assert_ok(kyb_gpu_resume(other, pid, &map, &err), err);
        expect(e, pid, "running");
        assert_error(kyb_gpu_sources_from_manifest(&m->gpu, 1, &src, &map.n_sources, &err), err,
                     ENOENT, "manifest has no GPU process 1");
        free((void *)map.sources);
        kyb_gpu_free(other);
        kyb_gpu_free(g);
}

/* --- discovery, status, manifest ---------------------------------------- */

static bool has_pid(const kyb_gpu_process *p, size_t n, pid_t pid, const kyb_gpu_process **out)
{
        for (size_t i = 0; i < n; i++)
                if (p[i].pid == pid) {
                        if (out)
                                *out = &p[i];
                        return true;
                }
        return false;
}

static void test_find_processes_in_tree(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        kyb_gpu_process *procs = NULL;
        const kyb_gpu_process *p = NULL;
        pid_t grandchild, root = tu_spawn_tree(e, &grandchild);
        pid_t outsider = cuda_process(e, GiB, GPU_A, NULL);
        size_t n = 0;

        tu_add_process(e, grandchild, 3 * GiB, GPU_B, NULL);
        assert_ok(kyb_gpu_find_processes(g, root, &procs, &n, &err), err);
        assert_int_equal(n, 1);
        assert_true(has_pid(procs, n, grandchild, &p));
        assert_false(has_pid(procs, n, outsider, NULL));
        assert_true(p->nvml_listed);
        assert_true(p->state_known);
        assert_int_equal(p->state, KYB_CUDA_RUNNING);
        assert_int_equal(p->n_gpu_uuids, 1);
        assert_string_equal(p->gpu_uuids[0], GPU_B);
        assert_int_equal(p->device_memory_bytes, 3 * GiB);
        kyb_gpu_processes_free(procs, n);
        /* Hibernated, NVML no longer lists it; the handle still knows it. */
        hibernate(g, grandchild);
        assert_ok(kyb_gpu_find_processes(g, root, &procs, &n, &err), err);
        assert_int_equal(n, 1);
        assert_false(procs[0].nvml_listed);
        assert_int_equal(procs[0].state, KYB_CUDA_CHECKPOINTED);
        assert_int_equal(procs[0].device_memory_bytes, 3 * GiB);
        assert_string_equal(procs[0].gpu_uuids[0], GPU_B);
        kyb_gpu_processes_free(procs, n);
        assert_error(kyb_gpu_find_processes(g, INT32_MAX, &procs, &n, &err), err, ENOENT,
                     "no process");
        kyb_gpu_free(g);
}

/* root + "/" + the formatted rest; fails the test on truncation. */
static void fake_path(char out[PATH_MAX], const char *root, const char *fmt, ...) _printf_(3, 4);

static void fake_path(char out[PATH_MAX], const char *root, const char *fmt, ...)
{
        char rel[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(rel, sizeof(rel), fmt, ap);
        va_end(ap);
        assert_true(n > 0 && (size_t)n < sizeof(rel));
        n = snprintf(out, PATH_MAX, "%s/%s", root, rel);
        assert_true(n > 0 && n < PATH_MAX);
}

/* A fake /proc: 100 -> 101, 102; 101 holds /dev/nvidia0 but NVML does not
 * list it; 102 holds an ordinary file. */
static void fake_proc(const char *root)
{
        char p[4][PATH_MAX];
        FILE *f;

        for (int pid = 100; pid <= 102; pid++) {
                fake_path(p[0], root, "%d", pid);
                fake_path(p[1], root, "%d/task", pid);
                fake_path(p[2], root, "%d/task/%d", pid, pid);
                fake_path(p[3], root, "%d/fd", pid);
                for (size_t i = 0; i < 4; i++)
                        assert_int_equal(mkdir(p[i], 0755), 0);
        }
        fake_path(p[0], root, "100/task/100/children");
        f = fopen(p[0], "w");
        assert_non_null(f);
        fputs("101 102 ", f);
        fclose(f);
        fake_path(p[0], root, "101/fd/3");
        assert_int_equal(symlink("/dev/nvidia0", p[0]), 0);
        fake_path(p[0], root, "102/fd/3");
        assert_int_equal(symlink("/var/log/x", p[0]), 0);
}

static void test_nvidia_fds_count(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        char root[PATH_MAX], cmd[PATH_MAX + 16];
        kyb_gpu_process *procs = NULL;
        size_t n = 0;
        kyb_gpu *g;

        snprintf(root, sizeof(root), "%s/proc", e->dir);
        assert_int_equal(mkdir(root, 0755), 0);
        fake_proc(root);
        g = open_gpu_at(root);
        assert_ok(kyb_gpu_find_processes(g, 100, &procs, &n, &err), err);
        assert_int_equal(n, 1);
        assert_int_equal(procs[0].pid, 101);
        assert_false(procs[0].nvml_listed);
        assert_false(procs[0].state_known); /* the driver does not know it either */
        kyb_gpu_processes_free(procs, n);
        /* Hidden from NVML but known to the driver: found, with its state. */
        tu_add_process(e, 101, GiB, GPU_A, NULL);
        tu_set(e, 101, "nvml_hidden", json_true());
        assert_ok(kyb_gpu_find_processes(g, 100, &procs, &n, &err), err);
        assert_int_equal(n, 1);
        assert_true(procs[0].state_known);
        assert_int_equal(procs[0].state, KYB_CUDA_RUNNING);
        kyb_gpu_processes_free(procs, n);
        kyb_gpu_free(g);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
        assert_int_equal(system(cmd), 0);
}

static void test_status(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t a = cuda_process(e, 2 * GiB, GPU_A, GPU_B);
        pid_t b = cuda_process(e, 4 * GiB, GPU_C, NULL);
        const kyb_gpu_process *p = NULL;
        kyb_gpu_info info;

        hibernate(g, b);
        assert_ok(kyb_gpu_status(g, 0, &info, &err), err);
        assert_string_equal(info.driver_version, "580.65.06");
        assert_int_equal(info.cuda_driver_version, 13000);
        assert_int_equal(info.n_devices, 3);
        assert_string_equal(info.devices[2].uuid, GPU_C);
        assert_string_equal(info.devices[2].name, A100);
        assert_int_equal(info.devices[2].memory_total_bytes, 80 * GiB);
        assert_int_equal(info.devices[2].memory_used_bytes, 1 * GiB);
        assert_int_equal(info.devices[1].minor_number, 1);
        assert_string_equal(info.devices[1].pci_bus_id, "00000000:1B:00.0");
        assert_int_equal(info.n_processes, 2);
        assert_true(has_pid(info.processes, info.n_processes, a, &p));
        assert_int_equal(p->n_gpu_uuids, 2); /* one entry, both GPUs */
        assert_int_equal(p->device_memory_bytes, 4 * GiB);
        assert_int_equal(p->state, KYB_CUDA_RUNNING);
        assert_true(has_pid(info.processes, info.n_processes, b, &p));
        assert_int_equal(p->state, KYB_CUDA_CHECKPOINTED);
        assert_int_equal(p->device_memory_bytes, 4 * GiB); /* held in host memory */
        kyb_gpu_info_clear(&info);
        assert_ok(kyb_gpu_status(g, b, &info, &err), err);
        assert_int_equal(info.n_processes, 1);
        assert_int_equal(info.processes[0].pid, b);
        assert_string_equal(info.processes[0].gpu_uuids[0], GPU_C);
        kyb_gpu_info_clear(&info);
        kyb_gpu_free(g);
}

static void test_describe(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_manifest_ kyb_manifest *m = NULL;
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        pid_t a = cuda_process(e, 3 * GiB, GPU_B, NULL);
        pid_t b = cuda_process(e, 5 * GiB, GPU_A, GPU_B);
        int32_t pids[] = {a, b};

        hibernate(g, a);
        hibernate(g, b);
        assert_ok(kyb_manifest_new(&m, &err), err);
        m->gpu.driver_version = strdup("");
        assert_ok(kyb_gpu_describe(g, pids, 2, m, &err), err);
        assert_string_equal(m->gpu.driver_version, "580.65.06");
        assert_int_equal(m->gpu.cuda_driver_version, 13000);
        assert_int_equal(m->gpu.n_devices, 3);
        assert_string_equal(m->gpu.devices[0].uuid, GPU_A);
        assert_string_equal(m->gpu.devices[0].model, H100);
        assert_int_equal(m->gpu.devices[0].memory_used_bytes, 1 * GiB); /* all hibernated */
        assert_string_equal(m->gpu.devices[0].pci_bus_id, "00000000:1A:00.0");
        assert_int_equal(m->gpu.n_processes, 2);
        assert_int_equal(m->gpu.processes[0].pid, a);
        assert_int_equal(m->gpu.processes[0].state, KYB_CUDA_CHECKPOINTED);
        assert_int_equal(m->gpu.processes[0].device_memory_bytes, 3 * GiB);
        assert_int_equal(m->gpu.processes[1].n_gpu_uuids, 2);
        assert_string_equal(m->gpu.processes[1].gpu_uuids[0], GPU_A);
        assert_string_equal(m->gpu.processes[1].gpu_uuids[1], GPU_B);
        assert_int_equal(m->gpu.processes[1].device_memory_bytes, 10 * GiB);
        kyb_gpu_free(g);
}

/* --- threads ------------------------------------------------------------ */

typedef struct cycle_arg {
        kyb_gpu *g;
        pid_t pid;
        int rc;
} cycle_arg;

static void *cycle(void *p)
{
        cycle_arg *a = p;

        for (int i = 0; i < 5 && a->rc >= 0; i++) {
                a->rc = kyb_gpu_hibernate(a->g, a->pid, 1000, NULL, NULL);
                if (a->rc >= 0)
                        a->rc = kyb_gpu_resume(a->g, a->pid, NULL, NULL);
        }
        return NULL;
}

static void test_threads(void **state)
{
        tu_env *e = *state;
        kyb_gpu *g = open_gpu();
        cycle_arg args[4];
        pthread_t t[4];

        /* Fork first: a child forked while another thread is inside a
         * stand-in call would inherit its flock on the state file. */
        for (size_t i = 0; i < 4; i++)
                args[i] = (cycle_arg){g, cuda_process(e, GiB, i % 2 ? GPU_A : GPU_B, NULL), 0};
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, cycle, &args[i]), 0);
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        for (size_t i = 0; i < 4; i++) {
                assert_int_equal(args[i].rc, 0);
                expect(e, args[i].pid, "running");
                assert_int_equal(tu_calls(e, args[i].pid, "checkpoint"), 5);
        }
        kyb_gpu_free(g);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_no_driver),
            T(test_no_device),
            T(test_driver_too_old),
            T(test_round_trip_accounts_vram),
            T(test_default_lock_timeout),
            T(test_unknown_and_non_cuda_pids),
            T(test_locked_elsewhere),
            T(test_hibernate_failures_roll_back),
            T(test_failed_rollback_is_reported),
            T(test_resume_failures),
            T(test_transient_restore_failure_then_rollback),
            T(test_remap_moves_vram),
            T(test_map_validation),
            T(test_map_with_manifest_sources),
            T(test_find_processes_in_tree),
            T(test_nvidia_fds_count),
            T(test_status),
            T(test_describe),
            T(test_threads),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
