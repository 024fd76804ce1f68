/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NVML declarations Kybernate uses, written from NVIDIA's nvml.h
 * documentation so that no toolkit header is needed to build. The layouts
 * are the ABI of libnvidia-ml.so.1; the test stand-in
 * (tests/gpu/stub/libnvidia-ml.c) is built against the same declarations.
 */
#pragma once

#include <stddef.h>

typedef int kyb_nvmlReturn_t;
typedef struct kyb_nvmlDevice_st *kyb_nvmlDevice_t;

enum {
        KYB_NVML_SUCCESS = 0,
        KYB_NVML_ERROR_UNINITIALIZED = 1,
        KYB_NVML_ERROR_INVALID_ARGUMENT = 2,
        KYB_NVML_ERROR_NOT_SUPPORTED = 3,
        KYB_NVML_ERROR_NO_PERMISSION = 4,
        KYB_NVML_ERROR_ALREADY_INITIALIZED = 5,
        KYB_NVML_ERROR_NOT_FOUND = 6,
        KYB_NVML_ERROR_INSUFFICIENT_SIZE = 7,
        KYB_NVML_ERROR_INSUFFICIENT_POWER = 8,
        KYB_NVML_ERROR_DRIVER_NOT_LOADED = 9,
        KYB_NVML_ERROR_TIMEOUT = 10,
        KYB_NVML_ERROR_IRQ_ISSUE = 11,
        KYB_NVML_ERROR_LIBRARY_NOT_FOUND = 12,
        KYB_NVML_ERROR_FUNCTION_NOT_FOUND = 13,
        KYB_NVML_ERROR_CORRUPTED_INFOROM = 14,
        KYB_NVML_ERROR_GPU_IS_LOST = 15,
        KYB_NVML_ERROR_RESET_REQUIRED = 16,
        KYB_NVML_ERROR_OPERATING_SYSTEM = 17,
        KYB_NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
        KYB_NVML_ERROR_IN_USE = 19,
        KYB_NVML_ERROR_MEMORY = 20,
        KYB_NVML_ERROR_NO_DATA = 21,
        KYB_NVML_ERROR_NOT_READY = 27,
        KYB_NVML_ERROR_GPU_NOT_FOUND = 28,
        KYB_NVML_ERROR_INVALID_STATE = 29,
        KYB_NVML_ERROR_UNKNOWN = 999,
};

/* Buffer sizes nvml.h names NVML_*_BUFFER_SIZE (the _V2 ones where both
 * exist). */
#define KYB_NVML_UUID_BUFFER_SIZE           96
#define KYB_NVML_NAME_BUFFER_SIZE           96
#define KYB_NVML_DRIVER_VERSION_BUFFER_SIZE 80
#define KYB_NVML_PCI_BUS_ID_BUFFER_SIZE     32
#define KYB_NVML_PCI_BUS_ID_LEGACY_SIZE     16

/* usedGpuMemory when the driver cannot tell (e.g. without permission). */
#define KYB_NVML_VALUE_NOT_AVAILABLE (~0ULL)

typedef struct kyb_nvmlMemory_t {
        unsigned long long total;
        unsigned long long free;
        unsigned long long used;
} kyb_nvmlMemory_t;

typedef struct kyb_nvmlPciInfo_t {
        char busIdLegacy[KYB_NVML_PCI_BUS_ID_LEGACY_SIZE];
        unsigned int domain;
        unsigned int bus;
        unsigned int device;
        unsigned int pciDeviceId;
        unsigned int pciSubSystemId;
        char busId[KYB_NVML_PCI_BUS_ID_BUFFER_SIZE];
} kyb_nvmlPciInfo_t;

/* nvmlProcessInfo_t of the _v3 call; _v2's nvmlProcessInfo_v2_t is the same. */
typedef struct kyb_nvmlProcessInfo_t {
        unsigned int pid;
        unsigned long long usedGpuMemory;
        unsigned int gpuInstanceId;
        unsigned int computeInstanceId;
} kyb_nvmlProcessInfo_t;

_Static_assert(sizeof(kyb_nvmlMemory_t) == 24, "nvmlMemory_t layout");
_Static_assert(sizeof(kyb_nvmlPciInfo_t) == 68, "nvmlPciInfo_t layout");
_Static_assert(offsetof(kyb_nvmlPciInfo_t, busId) == 36, "nvmlPciInfo_t layout");
_Static_assert(sizeof(kyb_nvmlProcessInfo_t) == 24, "nvmlProcessInfo_t layout");
_Static_assert(offsetof(kyb_nvmlProcessInfo_t, usedGpuMemory) == 8, "nvmlProcessInfo_t layout");

typedef kyb_nvmlReturn_t (*kyb_nvmlInit_v2_fn)(void);
typedef kyb_nvmlReturn_t (*kyb_nvmlShutdown_fn)(void);
typedef const char *(*kyb_nvmlErrorString_fn)(kyb_nvmlReturn_t result);
typedef kyb_nvmlReturn_t (*kyb_nvmlSystemGetDriverVersion_fn)(char *version, unsigned int length);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetCount_v2_fn)(unsigned int *count);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetHandleByIndex_v2_fn)(unsigned int index,
                                                                 kyb_nvmlDevice_t *device);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetString_fn)(kyb_nvmlDevice_t device, char *buf,
                                                       unsigned int length);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetMemoryInfo_fn)(kyb_nvmlDevice_t device,
                                                           kyb_nvmlMemory_t *memory);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetMinorNumber_fn)(kyb_nvmlDevice_t device,
                                                            unsigned int *minor);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetPciInfo_v3_fn)(kyb_nvmlDevice_t device,
                                                           kyb_nvmlPciInfo_t *pci);
typedef kyb_nvmlReturn_t (*kyb_nvmlDeviceGetComputeRunningProcesses_fn)(
    kyb_nvmlDevice_t device, unsigned int *count, kyb_nvmlProcessInfo_t *infos);
