/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between nvml.c (loading, errors) and nvml-device.c (queries). */
#pragma once

#include "nvml/nvml-abi.h"
#include "nvml/nvml.h"

typedef struct kyb_nvml_fns {
        kyb_nvmlInit_v2_fn init;
        kyb_nvmlShutdown_fn shutdown;
        kyb_nvmlErrorString_fn error_string; /* optional */
        kyb_nvmlSystemGetDriverVersion_fn driver_version;
        kyb_nvmlDeviceGetCount_v2_fn device_count;
        kyb_nvmlDeviceGetHandleByIndex_v2_fn device_by_index;
        kyb_nvmlDeviceGetString_fn device_uuid;
        kyb_nvmlDeviceGetString_fn device_name;
        kyb_nvmlDeviceGetMemoryInfo_fn device_memory;
        kyb_nvmlDeviceGetMinorNumber_fn device_minor;                 /* optional */
        kyb_nvmlDeviceGetPciInfo_v3_fn device_pci;                    /* optional */
        kyb_nvmlDeviceGetComputeRunningProcesses_fn compute_procs;    /* _v3, else _v2 */
        kyb_nvmlDeviceGetComputeRunningProcesses_fn compute_procs_v2; /* fallback */
} kyb_nvml_fns;

struct kyb_nvml {
        void *dl;
        bool initialized; /* nvmlInit_v2 succeeded: owe an nvmlShutdown */
        kyb_nvml_fns fn;
};

/* "nvml <op>: NVML_ERROR_NAME: text"; returns the negative errno. */
int kyb_nvml_fail(const kyb_nvml *n, int result, const char *op, kyb_error **err);
