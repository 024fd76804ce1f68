/* SPDX-License-Identifier: Apache-2.0 */
/* Hibernate (lock + checkpoint), resume (restore + unlock) and rollback. */
#include <stdio.h>
#include <string.h>

#include "gpu/gpu-internal.h"

static const char *state_name(kyb_cuda_state s)
{
        static const char *const names[] = {"RUNNING", "LOCKED", "CHECKPOINTED", "FAILED"};

        return (unsigned)s < KYB_ARRAY_SIZE(names) ? names[s] : "UNKNOWN";
}

/* Brings pid back to RUNNING on its own GPUs, from whatever state the
 * driver left it in. */
static int to_running(kyb_gpu *g, int32_t pid, kyb_error **err)
{
        kyb_cuda_state state;
        int rc = gpu_state(g, pid, &state, err);

        if (rc >= 0 && state == KYB_CUDA_CHECKPOINTED)
                rc = kyb_cuda_restore(g->cuda, pid, NULL, 0, err);
        if (rc >= 0 && state != KYB_CUDA_RUNNING && state != KYB_CUDA_FAILED)
                rc = kyb_cuda_unlock(g->cuda, pid, err);
        if (rc >= 0 && state == KYB_CUDA_FAILED)
                rc = kyb_error_setf(err, EIO, "pid %d is in CUDA state FAILED", pid);
        return rc;
}

/* After a failure with the lock held: undo, and keep the original error as
 * the one reported; a failed undo is added to it, with the state it left. */
static int rollback_after(kyb_gpu *g, int32_t pid, int rc, kyb_error **err)
{
        _cleanup_error_ kyb_error *rb = NULL;
        kyb_cuda_state state;

        if (to_running(g, pid, &rb) >= 0 || !err || !*err)
                return rc;
        if (gpu_state(g, pid, &state, NULL) < 0)
                state = KYB_CUDA_FAILED;
        return kyb_error_setf(err, -rc, "%s (rollback failed, process left %s: %s)",
                              kyb_error_message(*err), state_name(state), kyb_error_message(rb));
}

/* The GPUs pid uses now, before the checkpoint hides them from NVML. */
static int capture(kyb_gpu *g, int32_t pid, gpu_record *rec, kyb_error **err)
{
        gpu_snapshot s;
        int rc = gpu_snapshot_take(g, &s, err);

        if (rc < 0)
                return kyb_error_wrap(err, rc, "gpu hibernate pid %d", pid);
        rc = gpu_snapshot_record(&s, pid, rec, err);
        gpu_snapshot_clear(&s);
        if (rc < 0)
                return rc;
        rec->pid = pid;
        rec->start_time = gpu_proc_start_time(g, pid);
        return 0;
}

static int check_hibernatable(kyb_gpu *g, int32_t pid, kyb_cuda_state *state, kyb_error **err)
{
        int rc = gpu_require(g, err);

        if (rc >= 0)
                rc = gpu_require_process(g, pid, err);
        if (rc >= 0)
                rc = gpu_state(g, pid, state, err);
        if (rc < 0)
                return rc;
        if (*state == KYB_CUDA_LOCKED)
                return kyb_error_setf(err, EBUSY,
                                      "gpu hibernate pid %d: already LOCKED (another checkpoint "
                                      "in progress?)",
                                      pid);
        if (*state == KYB_CUDA_FAILED)
                return kyb_error_setf(err, EIO, "gpu hibernate pid %d: CUDA state is FAILED", pid);
        return 0;
}

int kyb_gpu_hibernate(kyb_gpu *g, int32_t pid, uint32_t lock_timeout_ms, kyb_cuda_state *out_state,
                      kyb_error **err)
{
        gpu_record rec = {0};
        kyb_cuda_state state;
        int rc = check_hibernatable(g, pid, &state, err);

        if (rc < 0)
                return rc;
        if (state == KYB_CUDA_CHECKPOINTED)
                goto done; /* already hibernated: seats may ask twice */
        rc = capture(g, pid, &rec, err);
        if (rc < 0)
                return rc;
        rc = kyb_cuda_lock(g->cuda, pid,
                           lock_timeout_ms ? lock_timeout_ms : g->default_lock_timeout_ms, err);
        /* A timed-out lock leaves the process RUNNING by contract; checking
         * costs one query and covers drivers that disagree. */
        if (rc >= 0)
                rc = kyb_cuda_checkpoint(g->cuda, pid, err);
        if (rc < 0) {
                gpu_record_clear(&rec);
                return rollback_after(g, pid, rc, err);
        }
        rc = gpu_records_put(g, &rec, err);
        if (rc < 0)
                return rollback_after(g, pid, rc, err);
        state = KYB_CUDA_CHECKPOINTED;
done:
        if (out_state)
                *out_state = state;
        return 0;
}

int kyb_gpu_rollback(kyb_gpu *g, int32_t pid, kyb_error **err)
{
        int rc = gpu_require(g, err);

        if (rc >= 0)
                rc = gpu_require_process(g, pid, err);
        if (rc >= 0)
                rc = to_running(g, pid, err);
        if (rc >= 0)
                gpu_records_drop(g, pid);
        return rc;
}
