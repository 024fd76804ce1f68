/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The GPU facade: what the checkpoint engine and the agent use of the GPU,
 * so that neither calls CUDA or NVML directly.
 *
 * kyb_gpu_open() always gives a handle. On a node without an NVIDIA driver
 * or GPU, or with a driver too old for the checkpoint API, the handle
 * reports kyb_gpu_available() == false with the reason, and every GPU
 * operation fails with that reason (-ENODEV: no GPU, -ENOTSUP: driver too
 * old) so the engine can proceed without GPU state where that is allowed.
 *
 * Hibernating a CUDA process (lock + checkpoint) moves its device memory to
 * host memory and frees its GPU; resuming (restore + unlock) brings it back,
 * optionally onto other GPUs of the same model. Rollback: whatever fails
 * after hibernate took the lock leaves the process RUNNING and unlocked. A
 * failed resume leaves the process hibernated (CHECKPOINTED: nothing lost),
 * so it can be retried, or given up with kyb_gpu_rollback().
 *
 * The handle remembers which GPUs (UUID, model, device memory) each process
 * it hibernated was using, because NVML no longer lists a hibernated
 * process: that is what resume validates a UUID map against, what status
 * reports for hibernated processes and what describe writes to a manifest.
 *
 * All functions are thread-safe; operations on the same PID must not run
 * concurrently (the engine locks its targets).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "store/manifest.h"

#define KYB_GPU_UUID_MAX                96 /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define KYB_GPU_NAME_MAX                96
#define KYB_GPU_VERSION_MAX             80
#define KYB_GPU_PCI_BUS_ID_MAX          32
#define KYB_GPU_MINOR_UNKNOWN           UINT32_MAX
#define KYB_GPU_DEFAULT_LOCK_TIMEOUT_MS 10000

typedef struct kyb_gpu kyb_gpu;

typedef struct kyb_gpu_config {
        const char *cuda_lib;  /* NULL: "libcuda.so.1" */
        const char *nvml_lib;  /* NULL: "libnvidia-ml.so.1" */
        const char *proc_root; /* NULL: "/proc" (tests use a fake tree) */
        /* For calls that pass 0; 0 here: KYB_GPU_DEFAULT_LOCK_TIMEOUT_MS. */
        uint32_t default_lock_timeout_ms;
} kyb_gpu_config;

/* cfg may be NULL (all defaults). Fails only for lack of memory. */
int kyb_gpu_open(const kyb_gpu_config *cfg, kyb_gpu **out, kyb_error **err);
void kyb_gpu_free(kyb_gpu *g);

static inline void kyb_gpu_freep(kyb_gpu **g)
{
        kyb_gpu_free(*g);
        *g = NULL;
}

#define _cleanup_gpu_ _cleanup_(kyb_gpu_freep)

bool kyb_gpu_available(const kyb_gpu *g);
/* Why the GPU is unavailable ("libcuda.so.1 not found: no NVIDIA driver")
 * and its errno class; NULL and 0 when available. */
const char *kyb_gpu_unavailable_reason(const kyb_gpu *g);
int kyb_gpu_unavailable_errno(const kyb_gpu *g);

typedef struct kyb_gpu_device {
        unsigned int index;
        char uuid[KYB_GPU_UUID_MAX];
        char name[KYB_GPU_NAME_MAX]; /* the model */
        uint64_t memory_total_bytes;
        uint64_t memory_used_bytes;
        char pci_bus_id[KYB_GPU_PCI_BUS_ID_MAX];
        uint32_t minor_number; /* KYB_GPU_MINOR_UNKNOWN when not reported */
} kyb_gpu_device;

typedef struct kyb_gpu_process {
        int32_t pid; /* host PID namespace */
        kyb_cuda_state state;
        bool state_known; /* the driver answered for this PID */
        /* NVML lists it; false for one found only by its /dev/nvidia*
         * descriptors or as hibernated by this handle. */
        bool nvml_listed;
        char **gpu_uuids;
        size_t n_gpu_uuids;
        /* on the GPUs, or held in host memory while hibernated */
        uint64_t device_memory_bytes;
} kyb_gpu_process;

typedef struct kyb_gpu_info {
        char driver_version[KYB_GPU_VERSION_MAX]; /* "580.65.06" */
        int32_t cuda_driver_version;              /* 13000 */
        kyb_gpu_device *devices;
        size_t n_devices;
        kyb_gpu_process *processes;
        size_t n_processes;
} kyb_gpu_info;

void kyb_gpu_info_clear(kyb_gpu_info *info);
void kyb_gpu_processes_free(kyb_gpu_process *procs, size_t n);

/*
 * The CUDA processes of the tree rooted at root_pid (root included): those
 * NVML lists, those holding /dev/nvidia* descriptors, and those this handle
 * hibernated. -ENOENT when root_pid does not exist. *out is NULL when none.
 */
int kyb_gpu_find_processes(kyb_gpu *g, int32_t root_pid, kyb_gpu_process **out, size_t *n_out,
                           kyb_error **err);

/*
 * Lock (at most lock_timeout_ms; 0: the configured default) and checkpoint
 * pid: its device memory moves to host memory. An already hibernated
 * process is success. On failure the process is RUNNING and unlocked again
 * (a failed rollback is named in the message). *out_state (may be NULL)
 * receives the state reached.
 */
int kyb_gpu_hibernate(kyb_gpu *g, int32_t pid, uint32_t lock_timeout_ms, kyb_cuda_state *out_state,
                      kyb_error **err);

typedef struct kyb_gpu_uuid_pair {
        const char *old_uuid; /* the GPU the process was checkpointed on */
        const char *new_uuid; /* a GPU of this node, of the same model */
} kyb_gpu_uuid_pair;

/* A GPU a process was checkpointed on. */
typedef struct kyb_gpu_source {
        const char *uuid;
        const char *model;
} kyb_gpu_source;

typedef struct kyb_gpu_uuid_map {
        const kyb_gpu_uuid_pair *pairs;
        size_t n_pairs;
        /* The GPUs the process was checkpointed on when this handle did not
         * hibernate it (a restore from an artifact: see
         * kyb_gpu_sources_from_manifest()); n_sources 0: those recorded at
         * hibernate. */
        const kyb_gpu_source *sources;
        size_t n_sources;
} kyb_gpu_uuid_map;

/*
 * Restore and unlock pid. map NULL or without pairs: onto the same GPUs.
 * With pairs, every GPU the process was checkpointed on must be listed,
 * each onto an existing GPU of this node of the same model (-EINVAL naming
 * the pair otherwise, before anything is touched). A running process is
 * success; a locked one is unlocked. On a failed restore the process stays
 * hibernated.
 */
int kyb_gpu_resume(kyb_gpu *g, int32_t pid, const kyb_gpu_uuid_map *map, kyb_error **err);

/* Back to RUNNING from whatever state, onto the same GPUs: the engine's
 * rollback after a failed CRIU step. */
int kyb_gpu_rollback(kyb_gpu *g, int32_t pid, kyb_error **err);

/* Driver, devices and either pid (non-zero) or every CUDA process this
 * handle can see: those NVML lists and those it hibernated. */
int kyb_gpu_status(kyb_gpu *g, int32_t pid, kyb_gpu_info *out, kyb_error **err);

/*
 * Fills m->gpu with the node's facts: driver_version (replaced),
 * cuda_driver_version, every device, and one process entry per pid (state,
 * GPUs, device memory; hibernated ones as recorded at hibernate). Leaves
 * mode, captured and lock_timeout_ms to the caller. Devices and processes
 * are appended: call it once per manifest.
 */
int kyb_gpu_describe(kyb_gpu *g, const int32_t *pids, size_t n_pids, kyb_manifest *m,
                     kyb_error **err);

/* The sources of map for process pid of a manifest (its gpu_uuids with the
 * devices' models). *out points into mg and must be freed, not its strings. */
int kyb_gpu_sources_from_manifest(const kyb_manifest_gpu *mg, int32_t pid, kyb_gpu_source **out,
                                  size_t *n_out, kyb_error **err);
