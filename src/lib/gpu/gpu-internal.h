/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the files of src/lib/gpu. */
#pragma once

#include <pthread.h>

#include "cuda/cuda.h"
#include "gpu/gpu.h"
#include "nvml/nvml.h"

/* One GPU a process uses. */
typedef struct gpu_ref {
        char uuid[KYB_GPU_UUID_MAX];
        char model[KYB_GPU_NAME_MAX];
        uint64_t memory_bytes;
} gpu_ref;

/* The GPUs of one process, as NVML showed them before hibernate. */
typedef struct gpu_record {
        int32_t pid;
        uint64_t start_time; /* tells a reused PID apart; 0: unknown */
        gpu_ref *gpus;
        size_t n_gpus;
        uint64_t memory_bytes;
} gpu_record;

struct kyb_gpu {
        kyb_cuda *cuda; /* both NULL when unavailable */
        kyb_nvml *nvml;
        int unavailable_errno;
        char *unavailable_reason;
        char *proc_root;
        uint32_t default_lock_timeout_ms;
        char driver_version[KYB_GPU_VERSION_MAX];

        pthread_mutex_t lock; /* guards records */
        gpu_record *records;  /* processes hibernated through this handle */
        size_t n_records;
};

/* NVML's view at one moment: devices and each device's compute processes. */
typedef struct gpu_snapshot {
        kyb_nvml_device *devices;
        size_t n_devices;
        kyb_nvml_process **procs; /* per device */
        size_t *n_procs;
} gpu_snapshot;

int gpu_require(const kyb_gpu *g, kyb_error **err);
/* -ENOENT "no process <pid>" when it does not exist. */
int gpu_require_process(const kyb_gpu *g, int32_t pid, kyb_error **err);
/* The driver's state of pid; a PID the driver does not know is -ENOENT
 * "pid N is not a CUDA process". */
int gpu_state(kyb_gpu *g, int32_t pid, kyb_cuda_state *out, kyb_error **err);

void gpu_record_clear(gpu_record *r);
int gpu_record_copy(gpu_record *dst, const gpu_record *src);
/* Takes ownership of *r (cleared afterwards); replaces an older entry. */
int gpu_records_put(kyb_gpu *g, gpu_record *r, kyb_error **err);
/* A copy of pid's record when there is one for this very process; *out is
 * zeroed otherwise. */
bool gpu_records_get(kyb_gpu *g, int32_t pid, gpu_record *out);
void gpu_records_drop(kyb_gpu *g, int32_t pid);
/* PIDs of live recorded processes (dead ones are dropped). */
int gpu_records_pids(kyb_gpu *g, int32_t **out, size_t *n_out, kyb_error **err);

int gpu_snapshot_take(kyb_gpu *g, gpu_snapshot *s, kyb_error **err);
void gpu_snapshot_clear(gpu_snapshot *s);
const kyb_nvml_device *gpu_snapshot_device(const gpu_snapshot *s, const char *uuid);
/* pid's GPUs as NVML lists them: 1, or 0 when NVML does not list pid. */
int gpu_snapshot_record(const gpu_snapshot *s, int32_t pid, gpu_record *out, kyb_error **err);

/* /proc (or cfg.proc_root) */
bool gpu_proc_exists(const kyb_gpu *g, int32_t pid);
uint64_t gpu_proc_start_time(const kyb_gpu *g, int32_t pid);
bool gpu_proc_has_nvidia_fd(const kyb_gpu *g, int32_t pid);
int gpu_proc_tree(const kyb_gpu *g, int32_t root, int32_t **out, size_t *n_out, kyb_error **err);

/* kyb_gpu_process from a record (uuids and memory) */
int gpu_process_from_record(kyb_gpu_process *p, const gpu_record *r, kyb_error **err);
