/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NVML (libnvidia-ml.so.1), loaded at run time: the node's driver version,
 * its GPUs and the compute processes on each with their device memory.
 *
 * kyb_nvml_open() loads the library and runs nvmlInit_v2; kyb_nvml_close()
 * runs nvmlShutdown (NVML counts them). A missing library or a driver that
 * is not loaded is -ENODEV; a failing call reports
 * "nvml <op>: NVML_ERROR_NAME: <nvmlErrorString>". NVML is thread-safe and
 * a handle is immutable after open, so handles may be shared by threads.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define KYB_NVML_LIB_DEFAULT "libnvidia-ml.so.1"

#define KYB_NVML_UUID_MAX       96 /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define KYB_NVML_NAME_MAX       96 /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
#define KYB_NVML_VERSION_MAX    80 /* NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE */
#define KYB_NVML_PCI_BUS_ID_MAX 32 /* NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE */
#define KYB_NVML_MINOR_UNKNOWN  UINT32_MAX

typedef struct kyb_nvml kyb_nvml;

typedef struct kyb_nvml_device {
        unsigned int index;
        char uuid[KYB_NVML_UUID_MAX]; /* "GPU-..." */
        char name[KYB_NVML_NAME_MAX]; /* "NVIDIA H100 80GB HBM3" */
        uint64_t memory_total_bytes;
        uint64_t memory_used_bytes;
        uint32_t minor_number; /* /dev/nvidia<minor>; KYB_NVML_MINOR_UNKNOWN if not reported */
        char pci_bus_id[KYB_NVML_PCI_BUS_ID_MAX];
} kyb_nvml_device;

typedef struct kyb_nvml_process {
        int32_t pid;                /* as NVML sees it: the host PID namespace */
        uint64_t used_memory_bytes; /* 0 when !used_memory_known */
        bool used_memory_known;
} kyb_nvml_process;

/* lib_path: NULL for "libnvidia-ml.so.1" through the loader's search. */
int kyb_nvml_open(const char *lib_path, kyb_nvml **out, kyb_error **err);
void kyb_nvml_close(kyb_nvml *n);

static inline void kyb_nvml_closep(kyb_nvml **n)
{
        kyb_nvml_close(*n);
        *n = NULL;
}

#define _cleanup_nvml_ _cleanup_(kyb_nvml_closep)

/* The NVIDIA driver version, "580.65.06". */
int kyb_nvml_driver_version(kyb_nvml *n, char out[KYB_NVML_VERSION_MAX], kyb_error **err);
int kyb_nvml_device_count(kyb_nvml *n, unsigned int *count, kyb_error **err);
int kyb_nvml_device_info(kyb_nvml *n, unsigned int index, kyb_nvml_device *out, kyb_error **err);
/* The compute processes on device `index`; *out is malloc'd (NULL when none). */
int kyb_nvml_compute_processes(kyb_nvml *n, unsigned int index, kyb_nvml_process **out,
                               size_t *n_out, kyb_error **err);

/* The errno class of an nvmlReturn_t (0 for NVML_SUCCESS). */
int kyb_nvml_result_errno(int result);
