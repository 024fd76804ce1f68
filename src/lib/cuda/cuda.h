/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA driver's checkpoint API, loaded at run time.
 *
 * libcuda.so.1 is opened with dlopen into a table of the few entry points
 * used (cuda-abi.h); nothing links against CUDA, so a node without an NVIDIA
 * driver runs everything else and gets "no NVIDIA driver" (-ENODEV) here.
 * A driver older than branch 570, or one lacking a checkpoint entry point,
 * is -ENOTSUP naming its version.
 *
 * Every operation acts on another process by PID, in the driver's state
 * machine RUNNING -> LOCKED -> CHECKPOINTED -> LOCKED -> RUNNING (lock,
 * checkpoint, restore, unlock). A failing call reports
 * "cuda <op> pid <pid>: <CUDA_ERROR_NAME>: <description>" with an errno
 * class derived from the CUresult (kyb_cuda_result_errno()).
 *
 * A handle is immutable after kyb_cuda_open() except for the one-time
 * cuInit(0), which is guarded inside it: handles are safe to share between
 * threads.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "store/manifest.h" /* kyb_cuda_state */

#define KYB_CUDA_LIB_DEFAULT "libcuda.so.1"
/* "GPU-" + 8-4-4-4-12 hex digits + NUL */
#define KYB_CUDA_UUID_STRLEN 41

typedef struct kyb_cuda kyb_cuda;

typedef struct kyb_cuda_uuid {
        unsigned char bytes[16];
} kyb_cuda_uuid;

/* Restore remapping: the GPU a process was checkpointed on -> the GPU to
 * restore it onto. */
typedef struct kyb_cuda_gpu_pair {
        kyb_cuda_uuid old_uuid;
        kyb_cuda_uuid new_uuid;
} kyb_cuda_gpu_pair;

/* lib_path: NULL for "libcuda.so.1" through the dynamic loader's search. */
int kyb_cuda_open(const char *lib_path, kyb_cuda **out, kyb_error **err);
void kyb_cuda_close(kyb_cuda *c);

static inline void kyb_cuda_closep(kyb_cuda **c)
{
        kyb_cuda_close(*c);
        *c = NULL;
}

#define _cleanup_cuda_ _cleanup_(kyb_cuda_closep)

/* cuDriverGetVersion(): 12080 for CUDA 12.8. */
int kyb_cuda_version(const kyb_cuda *c);
/* Whether restore accepts GPU UUID pairs (driver >= 580). */
bool kyb_cuda_can_remap(const kyb_cuda *c);
/* Whether cuCheckpointProcessGetRestoreThreadId exists. */
bool kyb_cuda_has_restore_thread_id(const kyb_cuda *c);

/* cuInit(0), once per handle; later calls return the first result. The
 * operations below call it themselves (restore requires it). */
int kyb_cuda_init(kyb_cuda *c, kyb_error **err);

int kyb_cuda_get_state(kyb_cuda *c, int pid, kyb_cuda_state *out, kyb_error **err);
/* timeout_ms must be > 0: an unbounded lock could hang the caller forever
 * behind a stuck CUDA call. On -ETIMEDOUT the process is still RUNNING. */
int kyb_cuda_lock(kyb_cuda *c, int pid, uint32_t timeout_ms, kyb_error **err);
int kyb_cuda_checkpoint(kyb_cuda *c, int pid, kyb_error **err);
/* pairs may be NULL with n == 0 (restore onto the same GPUs). Pairs must not
 * repeat an old or a new UUID; they need kyb_cuda_can_remap(). */
int kyb_cuda_restore(kyb_cuda *c, int pid, const kyb_cuda_gpu_pair *pairs, size_t n,
                     kyb_error **err);
int kyb_cuda_unlock(kyb_cuda *c, int pid, kyb_error **err);
int kyb_cuda_restore_thread_id(kyb_cuda *c, int pid, int *tid, kyb_error **err);

/* The errno class of a CUresult (0 for CUDA_SUCCESS). */
int kyb_cuda_result_errno(int result);

/* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex in either case) <-> bytes. */
int kyb_cuda_uuid_parse(const char *s, kyb_cuda_uuid *out, kyb_error **err);
void kyb_cuda_uuid_format(const kyb_cuda_uuid *u, char out[KYB_CUDA_UUID_STRLEN]);
