/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to src/lib/ckpt: the GPU side of a checkpoint. Before the CRIU
 * dump every CUDA process of the tree is locked and checkpointed (device
 * memory to host memory, so that CRIU captures it and the process holds no
 * GPU resources); afterwards they are restored and unlocked again when the
 * workload keeps running, or rolled back when the checkpoint failed.
 */
#pragma once

#include "ckpt/request.h"
#include "gpu/gpu.h"

typedef struct device_state {
        int32_t *pids; /* CUDA processes hibernated for this request */
        size_t n;
        bool hibernated; /* their device memory is in host memory right now */
} device_state;

/* gpu_mode off: nothing; auto: the CUDA processes found; required: fails
 * (ENODEV) unless there is at least one. */
int devices_pause(request *r, const kyb_checkpoint_spec *spec, int32_t root_pid, device_state *d,
                  kyb_error **err);

/* Restore + unlock of every paused process (leave-running). */
int devices_resume(request *r, device_state *d, kyb_error **err);

/* Best effort after a failure: every paused process running and unlocked. */
void devices_rollback(request *r, device_state *d);

/* GPU facts of the paused processes into the manifest. */
int devices_describe(request *r, const kyb_checkpoint_spec *spec, device_state *d, kyb_manifest *m,
                     kyb_error **err);

void devices_clear(device_state *d);

/*
 * After a CRIU restore of a checkpoint that holds CUDA state: every process
 * of the restored tree the driver reports CHECKPOINTED is restored (onto
 * the GPUs of the map, or the same ones) and unlocked. Fails when the
 * checkpoint recorded CUDA processes but the tree has none to resume.
 */
int devices_restore(request *r, const kyb_manifest *m, int32_t root_pid,
                    const kyb_gpu_uuid_pair *pairs, size_t n_pairs, kyb_error **err);
