/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between cuda.c (loading, errors) and cuda-ops.c (operations). */
#pragma once

#include <pthread.h>

#include "cuda/cuda-abi.h"
#include "cuda/cuda.h"

typedef struct kyb_cuda_fns {
        kyb_cuInit_fn cuInit;
        kyb_cuDriverGetVersion_fn cuDriverGetVersion;
        kyb_cuGetErrorName_fn cuGetErrorName;     /* optional */
        kyb_cuGetErrorString_fn cuGetErrorString; /* optional */
        kyb_cuCheckpointProcessLock_fn cuCheckpointProcessLock;
        kyb_cuCheckpointProcessCheckpoint_fn cuCheckpointProcessCheckpoint;
        kyb_cuCheckpointProcessRestore_fn cuCheckpointProcessRestore;
        kyb_cuCheckpointProcessUnlock_fn cuCheckpointProcessUnlock;
        kyb_cuCheckpointProcessGetState_fn cuCheckpointProcessGetState;
        kyb_cuCheckpointProcessGetRestoreThreadId_fn
            cuCheckpointProcessGetRestoreThreadId; /* optional */
} kyb_cuda_fns;

struct kyb_cuda {
        void *dl;
        char *lib_name; /* as the caller named it, for messages */
        int version;    /* cuDriverGetVersion() */
        kyb_cuda_fns fn;

        /* cuInit(0) once: the first caller runs it under the lock, everyone
         * after reads the stored result. */
        pthread_mutex_t init_lock;
        bool init_done;
        int init_result;
};

/* Records a failed CUresult: "cuda <op> pid <pid>: NAME: description"
 * (without " pid <pid>" when pid is 0). Returns the negative errno. */
int kyb_cuda_fail(const kyb_cuda *c, int result, const char *op, int pid, kyb_error **err);
