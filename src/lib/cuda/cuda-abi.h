/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few CUDA driver API declarations Kybernate uses, written from NVIDIA's
 * documentation (CUDA 12.8+ driver API, "CUDA Checkpointing") so that nothing
 * needs the CUDA toolkit to build. The layouts are the ABI of libcuda.so.1:
 * the static assertions below pin them, and the test stand-in driver
 * (tests/gpu/stub/libcuda.c) is built against the same declarations.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef int kyb_CUresult; /* enum cudaError_enum: 0 is CUDA_SUCCESS */

enum {
        KYB_CUDA_SUCCESS = 0,
        KYB_CUDA_ERROR_INVALID_VALUE = 1,
        KYB_CUDA_ERROR_OUT_OF_MEMORY = 2,
        KYB_CUDA_ERROR_NOT_INITIALIZED = 3,
        KYB_CUDA_ERROR_DEINITIALIZED = 4,
        KYB_CUDA_ERROR_STUB_LIBRARY = 34,
        KYB_CUDA_ERROR_INSUFFICIENT_DRIVER = 35,
        KYB_CUDA_ERROR_DEVICE_UNAVAILABLE = 46,
        KYB_CUDA_ERROR_NO_DEVICE = 100,
        KYB_CUDA_ERROR_INVALID_DEVICE = 101,
        KYB_CUDA_ERROR_OPERATING_SYSTEM = 304,
        KYB_CUDA_ERROR_INVALID_HANDLE = 400,
        KYB_CUDA_ERROR_ILLEGAL_STATE = 401,
        KYB_CUDA_ERROR_NOT_FOUND = 500,
        KYB_CUDA_ERROR_NOT_READY = 600,
        KYB_CUDA_ERROR_NOT_PERMITTED = 800,
        KYB_CUDA_ERROR_NOT_SUPPORTED = 801,
        KYB_CUDA_ERROR_SYSTEM_NOT_READY = 802,
        KYB_CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803,
        KYB_CUDA_ERROR_TIMEOUT = 909,
        KYB_CUDA_ERROR_UNKNOWN = 999,
};

/* CUprocessState */
enum {
        KYB_CU_PROCESS_STATE_RUNNING = 0,
        KYB_CU_PROCESS_STATE_LOCKED = 1,
        KYB_CU_PROCESS_STATE_CHECKPOINTED = 2,
        KYB_CU_PROCESS_STATE_FAILED = 3,
};

typedef struct kyb_CUuuid {
        unsigned char bytes[16];
} kyb_CUuuid;

typedef struct kyb_CUcheckpointGpuPair {
        kyb_CUuuid oldUuid;
        kyb_CUuuid newUuid;
} kyb_CUcheckpointGpuPair;

/* Every args struct is 64 bytes; reserved fields must be zero. */
typedef struct kyb_CUcheckpointLockArgs {
        unsigned int timeoutMs; /* 0: no timeout, which we never pass */
        unsigned int reserved0;
        uint64_t reserved1[7];
} kyb_CUcheckpointLockArgs;

typedef struct kyb_CUcheckpointCheckpointArgs {
        uint64_t reserved[8];
} kyb_CUcheckpointCheckpointArgs;

typedef struct kyb_CUcheckpointRestoreArgs {
        kyb_CUcheckpointGpuPair *gpuPairs; /* driver >= 580 */
        unsigned int gpuPairsCount;
        unsigned int padding0;
        uint64_t reserved[6];
} kyb_CUcheckpointRestoreArgs;

typedef struct kyb_CUcheckpointUnlockArgs {
        uint64_t reserved[8];
} kyb_CUcheckpointUnlockArgs;

_Static_assert(sizeof(kyb_CUuuid) == 16, "CUuuid is 16 bytes");
_Static_assert(sizeof(kyb_CUcheckpointGpuPair) == 32, "CUcheckpointGpuPair is 32 bytes");
_Static_assert(sizeof(kyb_CUcheckpointLockArgs) == 64, "CUcheckpointLockArgs is 64 bytes");
_Static_assert(offsetof(kyb_CUcheckpointLockArgs, reserved1) == 8, "lock args layout");
_Static_assert(sizeof(kyb_CUcheckpointCheckpointArgs) == 64, "checkpoint args are 64 bytes");
_Static_assert(sizeof(kyb_CUcheckpointRestoreArgs) == 64, "restore args are 64 bytes");
_Static_assert(offsetof(kyb_CUcheckpointRestoreArgs, gpuPairsCount) == 8, "restore args layout");
_Static_assert(sizeof(kyb_CUcheckpointUnlockArgs) == 64, "unlock args are 64 bytes");

/* The entry points, by their exported names in libcuda.so.1. */
typedef kyb_CUresult (*kyb_cuInit_fn)(unsigned int flags);
typedef kyb_CUresult (*kyb_cuDriverGetVersion_fn)(int *version);
typedef kyb_CUresult (*kyb_cuGetErrorName_fn)(kyb_CUresult error, const char **str);
typedef kyb_CUresult (*kyb_cuGetErrorString_fn)(kyb_CUresult error, const char **str);
typedef kyb_CUresult (*kyb_cuCheckpointProcessLock_fn)(int pid, kyb_CUcheckpointLockArgs *args);
typedef kyb_CUresult (*kyb_cuCheckpointProcessCheckpoint_fn)(int pid,
                                                             kyb_CUcheckpointCheckpointArgs *args);
typedef kyb_CUresult (*kyb_cuCheckpointProcessRestore_fn)(int pid,
                                                          kyb_CUcheckpointRestoreArgs *args);
typedef kyb_CUresult (*kyb_cuCheckpointProcessUnlock_fn)(int pid, kyb_CUcheckpointUnlockArgs *args);
typedef kyb_CUresult (*kyb_cuCheckpointProcessGetState_fn)(int pid, int *state);
typedef kyb_CUresult (*kyb_cuCheckpointProcessGetRestoreThreadId_fn)(int pid, int *tid);

/* cuDriverGetVersion() values: 1000 * major + 10 * minor. NVIDIA driver
 * branch 570 is the first to carry the checkpoint API used here (CUDA 12.8);
 * branch 580 (CUDA 13.0) added GPU remapping on restore. */
#define KYB_CUDA_MIN_VERSION   12080
#define KYB_CUDA_REMAP_VERSION 13000
