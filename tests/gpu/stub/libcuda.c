/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stand-in libcuda.so.1 for tests (never installed): the driver's checkpoint
 * state machine per PID, driven by the JSON state file of stub-state.h.
 *
 *   RUNNING --lock--> LOCKED --checkpoint--> CHECKPOINTED
 *   CHECKPOINTED --restore--> LOCKED --unlock--> RUNNING
 *
 * A call in the wrong state is CUDA_ERROR_ILLEGAL_STATE, a PID the file does
 * not list CUDA_ERROR_INVALID_VALUE (what real drivers answer for a process
 * without CUDA state), non-zero reserved argument fields
 * CUDA_ERROR_INVALID_VALUE. Restore with GPU pairs checks what the real
 * driver checks: every checkpointed GPU listed, the target exists, same
 * model, enough free memory. Built with -DKYB_STUB_NO_CHECKPOINT it lacks
 * the checkpoint entry points, like a driver older than 570.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cuda/cuda-abi.h"
#include "stub-state.h"

static const struct {
        int code;
        const char *name;
        const char *text;
} errors[] = {
    {KYB_CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {KYB_CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {KYB_CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {KYB_CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {KYB_CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {KYB_CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {KYB_CUDA_ERROR_OPERATING_SYSTEM, "CUDA_ERROR_OPERATING_SYSTEM",
     "OS call failed or operation not supported on this OS"},
    {KYB_CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {KYB_CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {KYB_CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {KYB_CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {KYB_CUDA_ERROR_TIMEOUT, "CUDA_ERROR_TIMEOUT", "the wait operation has timed out"},
    {KYB_CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

/* The exports, checked against the function-pointer types the library
 * loads them as. */
#define EXPORT_OF(name, type)                                                                      \
        STUB_EXPORT __typeof__(*(type)0) name;                                                     \
        _Static_assert(__builtin_types_compatible_p(__typeof__(&name), type), #name)

EXPORT_OF(cuGetErrorName, kyb_cuGetErrorName_fn);
EXPORT_OF(cuGetErrorString, kyb_cuGetErrorString_fn);
EXPORT_OF(cuDriverGetVersion, kyb_cuDriverGetVersion_fn);
EXPORT_OF(cuInit, kyb_cuInit_fn);
#ifndef KYB_STUB_NO_CHECKPOINT
EXPORT_OF(cuCheckpointProcessGetState, kyb_cuCheckpointProcessGetState_fn);
EXPORT_OF(cuCheckpointProcessLock, kyb_cuCheckpointProcessLock_fn);
EXPORT_OF(cuCheckpointProcessCheckpoint, kyb_cuCheckpointProcessCheckpoint_fn);
EXPORT_OF(cuCheckpointProcessRestore, kyb_cuCheckpointProcessRestore_fn);
EXPORT_OF(cuCheckpointProcessUnlock, kyb_cuCheckpointProcessUnlock_fn);
EXPORT_OF(cuCheckpointProcessGetRestoreThreadId, kyb_cuCheckpointProcessGetRestoreThreadId_fn);
#endif

#define UUID_STRLEN 41 /* "GPU-" + 36 + NUL */

/* The driver's per-process "cuInit ran" flag. */
static atomic_int initialized;

static int lookup_error(const char *name)
{
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
                if (!strcmp(errors[i].name, name))
                        return errors[i].code;
        return KYB_CUDA_ERROR_UNKNOWN;
}

STUB_EXPORT kyb_CUresult cuGetErrorName(kyb_CUresult e, const char **s)
{
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
                if (errors[i].code == e) {
                        *s = errors[i].name;
                        return KYB_CUDA_SUCCESS;
                }
        *s = NULL;
        return KYB_CUDA_ERROR_INVALID_VALUE;
}

STUB_EXPORT kyb_CUresult cuGetErrorString(kyb_CUresult e, const char **s)
{
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
                if (errors[i].code == e) {
                        *s = errors[i].text;
                        return KYB_CUDA_SUCCESS;
                }
        *s = NULL;
        return KYB_CUDA_ERROR_INVALID_VALUE;
}

STUB_EXPORT kyb_CUresult cuDriverGetVersion(int *version)
{
        stub_tx tx;

        if (!version)
                return KYB_CUDA_ERROR_INVALID_VALUE;
        *version = STUB_DEFAULT_CUDA;
        if (stub_begin(&tx) == 0) {
                *version = (int)stub_int(tx.root, "cuda_version", STUB_DEFAULT_CUDA);
                stub_end(&tx);
        }
        return KYB_CUDA_SUCCESS;
}

STUB_EXPORT kyb_CUresult cuInit(unsigned int flags)
{
        json_t *gpus;
        stub_tx tx;
        int r, ignored;

        if (flags != 0)
                return KYB_CUDA_ERROR_INVALID_VALUE;
        r = stub_begin(&tx);
        if (r < 0)
                return r == -1 ? KYB_CUDA_ERROR_NO_DEVICE : KYB_CUDA_ERROR_UNKNOWN;
        stub_count_call(&tx, tx.root, "cuInit");
        r = stub_fail(&tx, tx.root, "cuInit", lookup_error, &ignored);
        gpus = stub_gpus(&tx);
        if (r == 0 && (!gpus || json_array_size(gpus) == 0))
                r = KYB_CUDA_ERROR_NO_DEVICE;
        if (r == 0)
                atomic_store(&initialized, 1);
        stub_end(&tx);
        return r;
}

#ifndef KYB_STUB_NO_CHECKPOINT

static bool zero(const void *p, size_t n)
{
        const unsigned char *b = p;

        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

/* Common prologue: the file, the process, the injected failure. */
static int begin_op(stub_tx *tx, int pid, const char *op, json_t **proc, int *fail_state)
{
        int r;

        if (!atomic_load(&initialized))
                return KYB_CUDA_ERROR_NOT_INITIALIZED;
        r = stub_begin(tx);
        if (r < 0)
                return r == -1 ? KYB_CUDA_ERROR_NO_DEVICE : KYB_CUDA_ERROR_UNKNOWN;
        *proc = stub_process(tx, pid);
        if (!*proc) {
                stub_end(tx);
                return KYB_CUDA_ERROR_INVALID_VALUE;
        }
        stub_count_call(tx, *proc, op);
        r = stub_fail(tx, *proc, op, lookup_error, fail_state);
        if (r != 0) {
                if (*fail_state >= 0)
                        stub_set_proc_state(tx, *proc, *fail_state);
                stub_end(tx);
        }
        return r;
}

/* One state transition: from -> to, or ILLEGAL_STATE. */
static int transition(int pid, const char *op, int from, int to)
{
        json_t *proc;
        stub_tx tx;
        int fs, r = begin_op(&tx, pid, op, &proc, &fs);

        if (r != 0)
                return r;
        if (stub_proc_state(proc) != from)
                r = KYB_CUDA_ERROR_ILLEGAL_STATE;
        else
                stub_set_proc_state(&tx, proc, to);
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_CUresult cuCheckpointProcessGetState(int pid, int *state)
{
        json_t *proc;
        stub_tx tx;
        int fs, r;

        if (!state)
                return KYB_CUDA_ERROR_INVALID_VALUE;
        r = begin_op(&tx, pid, "get_state", &proc, &fs);
        if (r != 0)
                return r;
        *state = stub_proc_state(proc);
        stub_end(&tx);
        return KYB_CUDA_SUCCESS;
}

static void sleep_ms(int64_t ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) < 0)
                ;
}

/* "lock_delay_ms": how long the process's CUDA calls keep the lock from
 * being taken. Read first and slept outside the file lock. */
static int64_t lock_delay(int pid)
{
        stub_tx tx;
        int64_t d = 0;

        if (stub_begin(&tx) == 0) {
                d = stub_int(stub_process(&tx, pid), "lock_delay_ms", 0);
                stub_end(&tx);
        }
        return d;
}

STUB_EXPORT kyb_CUresult cuCheckpointProcessLock(int pid, kyb_CUcheckpointLockArgs *args)
{
        unsigned int timeout = args ? args->timeoutMs : 0;
        int64_t delay;
        json_t *proc;
        stub_tx tx;
        int fs, r;

        if (args && (args->reserved0 || !zero(args->reserved1, sizeof(args->reserved1))))
                return KYB_CUDA_ERROR_INVALID_VALUE;
        delay = lock_delay(pid);
        if (delay > 0 && timeout > 0 && delay > timeout) {
                sleep_ms(timeout);
                return KYB_CUDA_ERROR_TIMEOUT; /* still RUNNING, as documented */
        }
        sleep_ms(delay);
        r = begin_op(&tx, pid, "lock", &proc, &fs);
        if (r != 0)
                return r;
        stub_set_int(&tx, proc, "last_lock_timeout_ms", timeout);
        if (stub_proc_state(proc) != KYB_CU_PROCESS_STATE_RUNNING)
                r = KYB_CUDA_ERROR_ILLEGAL_STATE;
        else
                stub_set_proc_state(&tx, proc, KYB_CU_PROCESS_STATE_LOCKED);
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_CUresult cuCheckpointProcessCheckpoint(int pid,
                                                       kyb_CUcheckpointCheckpointArgs *args)
{
        if (args && !zero(args, sizeof(*args)))
                return KYB_CUDA_ERROR_INVALID_VALUE;
        return transition(pid, "checkpoint", KYB_CU_PROCESS_STATE_LOCKED,
                          KYB_CU_PROCESS_STATE_CHECKPOINTED);
}

STUB_EXPORT kyb_CUresult cuCheckpointProcessUnlock(int pid, kyb_CUcheckpointUnlockArgs *args)
{
        if (args && !zero(args, sizeof(*args)))
                return KYB_CUDA_ERROR_INVALID_VALUE;
        return transition(pid, "unlock", KYB_CU_PROCESS_STATE_LOCKED, KYB_CU_PROCESS_STATE_RUNNING);
}

static void uuid_str(const kyb_CUuuid *u, char out[UUID_STRLEN])
{
        const unsigned char *b = u->bytes;

        snprintf(out, UUID_STRLEN,
                 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                 b[14], b[15]);
}

static const kyb_CUcheckpointGpuPair *pair_for(const kyb_CUcheckpointRestoreArgs *a,
                                               const char *old_uuid)
{
        char s[UUID_STRLEN];

        for (unsigned int i = 0; i < a->gpuPairsCount; i++) {
                uuid_str(&a->gpuPairs[i].oldUuid, s);
                if (!strcasecmp(s, old_uuid))
                        return &a->gpuPairs[i];
        }
        return NULL;
}

/* The driver's rules for remapping, then the new UUIDs written in. */
static int remap(stub_tx *tx, json_t *proc, const kyb_CUcheckpointRestoreArgs *a)
{
        json_t *gpus = json_object_get(proc, "gpus"), *pg;
        char target[UUID_STRLEN];
        size_t i;

        if (a->gpuPairsCount == 0)
                return 0;
        if (stub_int(tx->root, "cuda_version", STUB_DEFAULT_CUDA) < KYB_CUDA_REMAP_VERSION)
                return KYB_CUDA_ERROR_NOT_SUPPORTED;
        if (a->gpuPairsCount != json_array_size(gpus))
                return KYB_CUDA_ERROR_INVALID_VALUE; /* extra or missing pairs */
        json_array_foreach(gpus, i, pg)
        {
                const kyb_CUcheckpointGpuPair *p = pair_for(a, stub_str(pg, "uuid", ""));
                json_t *from = stub_gpu_by_uuid(tx, stub_str(pg, "uuid", ""));
                json_t *to;

                if (!p)
                        return KYB_CUDA_ERROR_INVALID_VALUE;
                uuid_str(&p->newUuid, target);
                to = stub_gpu_by_uuid(tx, target);
                if (!to)
                        return KYB_CUDA_ERROR_INVALID_DEVICE;
                if (from && strcmp(stub_str(from, "name", ""), stub_str(to, "name", "")))
                        return KYB_CUDA_ERROR_INVALID_VALUE;
        }
        json_array_foreach(gpus, i, pg)
        {
                uuid_str(&pair_for(a, stub_str(pg, "uuid", ""))->newUuid, target);
                json_object_set_new(pg, "uuid", json_string(target));
        }
        tx->dirty = true;
        return 0;
}

/* The memory must fit next to what the GPUs hold now. */
static int check_memory(stub_tx *tx, json_t *proc)
{
        json_t *pg;
        size_t i;

        json_array_foreach(json_object_get(proc, "gpus"), i, pg)
        {
                const char *uuid = stub_str(pg, "uuid", "");
                json_t *gpu = stub_gpu_by_uuid(tx, uuid);
                uint64_t total = gpu ? (uint64_t)stub_int(gpu, "memory_total", 0) : 0;

                if (stub_gpu_used(tx, uuid) + (uint64_t)stub_int(pg, "memory", 0) > total)
                        return KYB_CUDA_ERROR_OUT_OF_MEMORY;
        }
        return 0;
}

STUB_EXPORT kyb_CUresult cuCheckpointProcessRestore(int pid, kyb_CUcheckpointRestoreArgs *args)
{
        kyb_CUcheckpointRestoreArgs none = {0};
        json_t *proc, *saved;
        stub_tx tx;
        int fs, r;

        if (!args)
                args = &none;
        if (args->padding0 || !zero(args->reserved, sizeof(args->reserved)) ||
            (args->gpuPairsCount && !args->gpuPairs))
                return KYB_CUDA_ERROR_INVALID_VALUE;
        r = begin_op(&tx, pid, "restore", &proc, &fs);
        if (r != 0)
                return r;
        if (stub_proc_state(proc) != KYB_CU_PROCESS_STATE_CHECKPOINTED) {
                stub_end(&tx);
                return KYB_CUDA_ERROR_ILLEGAL_STATE;
        }
        /* All or nothing: undo the remap if the memory does not fit. */
        saved = json_deep_copy(json_object_get(proc, "gpus"));
        r = remap(&tx, proc, args);
        if (r == 0)
                r = check_memory(&tx, proc);
        if (r == 0)
                stub_set_proc_state(&tx, proc, KYB_CU_PROCESS_STATE_LOCKED);
        else if (saved)
                json_object_set(proc, "gpus", saved);
        json_decref(saved);
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_CUresult cuCheckpointProcessGetRestoreThreadId(int pid, int *tid)
{
        json_t *proc;
        stub_tx tx;
        int fs, r;

        if (!tid)
                return KYB_CUDA_ERROR_INVALID_VALUE;
        r = begin_op(&tx, pid, "restore_tid", &proc, &fs);
        if (r != 0)
                return r;
        *tid = (int)stub_int(proc, "restore_tid", pid);
        stub_end(&tx);
        return KYB_CUDA_SUCCESS;
}

#endif /* KYB_STUB_NO_CHECKPOINT */
