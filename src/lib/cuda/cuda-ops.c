/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint operations on a PID. Each one makes sure cuInit ran in this
 * process first: the driver requires it before a restore, and running it
 * before every operation gives one place where "no device" is reported. */
#include <limits.h>
#include <string.h>

#include "cuda/cuda-internal.h"

static int check_pid(int pid, const char *op, kyb_error **err)
{
        if (pid <= 0)
                return kyb_error_setf(err, EINVAL, "cuda %s: invalid pid %d", op, pid);
        return 0;
}

static int prepare(kyb_cuda *c, int pid, const char *op, kyb_error **err)
{
        int rc = check_pid(pid, op, err);

        return rc < 0 ? rc : kyb_cuda_init(c, err);
}

int kyb_cuda_get_state(kyb_cuda *c, int pid, kyb_cuda_state *out, kyb_error **err)
{
        int state = -1;
        int rc = prepare(c, pid, "get state", err);
        int r;

        if (rc < 0)
                return rc;
        r = c->fn.cuCheckpointProcessGetState(pid, &state);
        if (r != KYB_CUDA_SUCCESS)
                return kyb_cuda_fail(c, r, "get state", pid, err);
        if (state < KYB_CU_PROCESS_STATE_RUNNING || state > KYB_CU_PROCESS_STATE_FAILED)
                return kyb_error_setf(err, EPROTO, "cuda get state pid %d: unknown state %d", pid,
                                      state);
        *out = (kyb_cuda_state)state;
        return 0;
}

int kyb_cuda_lock(kyb_cuda *c, int pid, uint32_t timeout_ms, kyb_error **err)
{
        kyb_CUcheckpointLockArgs args;
        int rc, r;

        if (timeout_ms == 0)
                return kyb_error_setf(err, EINVAL, "cuda lock pid %d: a lock timeout is required",
                                      pid);
        rc = prepare(c, pid, "lock", err);
        if (rc < 0)
                return rc;
        memset(&args, 0, sizeof(args));
        args.timeoutMs = timeout_ms;
        r = c->fn.cuCheckpointProcessLock(pid, &args);
        if (r == KYB_CUDA_ERROR_TIMEOUT)
                return kyb_error_setf(err, ETIMEDOUT, "cuda lock pid %d: timed out after %u ms",
                                      pid, timeout_ms);
        return r == KYB_CUDA_SUCCESS ? 0 : kyb_cuda_fail(c, r, "lock", pid, err);
}

int kyb_cuda_checkpoint(kyb_cuda *c, int pid, kyb_error **err)
{
        kyb_CUcheckpointCheckpointArgs args;
        int rc = prepare(c, pid, "checkpoint", err);
        int r;

        if (rc < 0)
                return rc;
        memset(&args, 0, sizeof(args));
        r = c->fn.cuCheckpointProcessCheckpoint(pid, &args);
        return r == KYB_CUDA_SUCCESS ? 0 : kyb_cuda_fail(c, r, "checkpoint", pid, err);
}

/* The driver would answer a malformed list with a bare INVALID_VALUE; saying
 * which UUID is wrong is worth the check. */
static int check_pairs(const kyb_cuda *c, int pid, const kyb_cuda_gpu_pair *pairs, size_t n,
                       kyb_error **err)
{
        char a[KYB_CUDA_UUID_STRLEN];

        if (n == 0)
                return 0;
        if (!kyb_cuda_can_remap(c))
                return kyb_error_setf(err, ENOTSUP,
                                      "cuda restore pid %d: CUDA driver %d.%d cannot remap GPUs "
                                      "(needs NVIDIA driver >= 580)",
                                      pid, c->version / 1000, c->version % 1000 / 10);
        if (!pairs || n > UINT_MAX)
                return kyb_error_setf(err, EINVAL, "cuda restore pid %d: bad GPU pair list", pid);
        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < i; j++) {
                        bool same_old =
                            !memcmp(&pairs[i].old_uuid, &pairs[j].old_uuid, sizeof(kyb_cuda_uuid));
                        bool same_new =
                            !memcmp(&pairs[i].new_uuid, &pairs[j].new_uuid, sizeof(kyb_cuda_uuid));

                        if (!same_old && !same_new)
                                continue;
                        kyb_cuda_uuid_format(same_old ? &pairs[i].old_uuid : &pairs[i].new_uuid, a);
                        return kyb_error_setf(err, EINVAL,
                                              "cuda restore pid %d: GPU map lists %s twice as %s",
                                              pid, a, same_old ? "source" : "target");
                }
        }
        return 0;
}

int kyb_cuda_restore(kyb_cuda *c, int pid, const kyb_cuda_gpu_pair *pairs, size_t n,
                     kyb_error **err)
{
        _cleanup_free_ kyb_CUcheckpointGpuPair *cu = NULL;
        kyb_CUcheckpointRestoreArgs args;
        int rc = prepare(c, pid, "restore", err);
        int r;

        if (rc < 0)
                return rc;
        rc = check_pairs(c, pid, pairs, n, err);
        if (rc < 0)
                return rc;
        memset(&args, 0, sizeof(args));
        if (n > 0) {
                cu = calloc(n, sizeof(*cu));
                if (!cu)
                        return kyb_error_set(err, ENOMEM, "cuda restore pid %d", pid);
                for (size_t i = 0; i < n; i++) {
                        memcpy(cu[i].oldUuid.bytes, pairs[i].old_uuid.bytes, 16);
                        memcpy(cu[i].newUuid.bytes, pairs[i].new_uuid.bytes, 16);
                }
                args.gpuPairs = cu;
                args.gpuPairsCount = (unsigned int)n;
        }
        r = c->fn.cuCheckpointProcessRestore(pid, &args);
        return r == KYB_CUDA_SUCCESS ? 0 : kyb_cuda_fail(c, r, "restore", pid, err);
}

int kyb_cuda_unlock(kyb_cuda *c, int pid, kyb_error **err)
{
        kyb_CUcheckpointUnlockArgs args;
        int rc = prepare(c, pid, "unlock", err);
        int r;

        if (rc < 0)
                return rc;
        memset(&args, 0, sizeof(args));
        r = c->fn.cuCheckpointProcessUnlock(pid, &args);
        return r == KYB_CUDA_SUCCESS ? 0 : kyb_cuda_fail(c, r, "unlock", pid, err);
}

int kyb_cuda_restore_thread_id(kyb_cuda *c, int pid, int *tid, kyb_error **err)
{
        int rc = prepare(c, pid, "restore thread id", err);
        int r;

        if (rc < 0)
                return rc;
        if (!c->fn.cuCheckpointProcessGetRestoreThreadId)
                return kyb_error_setf(err, ENOTSUP,
                                      "cuda restore thread id pid %d: the driver lacks "
                                      "cuCheckpointProcessGetRestoreThreadId",
                                      pid);
        r = c->fn.cuCheckpointProcessGetRestoreThreadId(pid, tid);
        return r == KYB_CUDA_SUCCESS ? 0 : kyb_cuda_fail(c, r, "restore thread id", pid, err);
}
