/* SPDX-License-Identifier: Apache-2.0 */
/* Loading libnvidia-ml.so.1, nvmlInit/Shutdown, nvmlReturn_t -> kyb_error.
 * Device queries are in nvml-device.c. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "nvml/nvml-internal.h"

typedef struct nvml_sym {
        const char *name;
        size_t offset; /* in kyb_nvml_fns */
        bool required;
} nvml_sym;

#define SYM(field, sym, req)                                                                       \
        {                                                                                          \
                sym, offsetof(kyb_nvml_fns, field), req                                            \
        }

static const nvml_sym nvml_syms[] = {
    SYM(init, "nvmlInit_v2", true),
    SYM(shutdown, "nvmlShutdown", true),
    SYM(error_string, "nvmlErrorString", false),
    SYM(driver_version, "nvmlSystemGetDriverVersion", true),
    SYM(device_count, "nvmlDeviceGetCount_v2", true),
    SYM(device_by_index, "nvmlDeviceGetHandleByIndex_v2", true),
    SYM(device_uuid, "nvmlDeviceGetUUID", true),
    SYM(device_name, "nvmlDeviceGetName", true),
    SYM(device_memory, "nvmlDeviceGetMemoryInfo", true),
    SYM(device_minor, "nvmlDeviceGetMinorNumber", false),
    SYM(device_pci, "nvmlDeviceGetPciInfo_v3", false),
    /* _v3 since driver 510; _v2 before. The struct is the same. */
    SYM(compute_procs, "nvmlDeviceGetComputeRunningProcesses_v3", false),
    SYM(compute_procs_v2, "nvmlDeviceGetComputeRunningProcesses_v2", false),
};

static const struct {
        int result;
        int errnum;
        const char *name;
} nvml_errors[] = {
    {KYB_NVML_ERROR_UNINITIALIZED, EIO, "NVML_ERROR_UNINITIALIZED"},
    {KYB_NVML_ERROR_INVALID_ARGUMENT, EINVAL, "NVML_ERROR_INVALID_ARGUMENT"},
    {KYB_NVML_ERROR_NOT_SUPPORTED, ENOTSUP, "NVML_ERROR_NOT_SUPPORTED"},
    {KYB_NVML_ERROR_NO_PERMISSION, EACCES, "NVML_ERROR_NO_PERMISSION"},
    {KYB_NVML_ERROR_ALREADY_INITIALIZED, EALREADY, "NVML_ERROR_ALREADY_INITIALIZED"},
    {KYB_NVML_ERROR_NOT_FOUND, ENOENT, "NVML_ERROR_NOT_FOUND"},
    {KYB_NVML_ERROR_INSUFFICIENT_SIZE, EOVERFLOW, "NVML_ERROR_INSUFFICIENT_SIZE"},
    {KYB_NVML_ERROR_INSUFFICIENT_POWER, EIO, "NVML_ERROR_INSUFFICIENT_POWER"},
    {KYB_NVML_ERROR_DRIVER_NOT_LOADED, ENODEV, "NVML_ERROR_DRIVER_NOT_LOADED"},
    {KYB_NVML_ERROR_TIMEOUT, ETIMEDOUT, "NVML_ERROR_TIMEOUT"},
    {KYB_NVML_ERROR_IRQ_ISSUE, EIO, "NVML_ERROR_IRQ_ISSUE"},
    {KYB_NVML_ERROR_LIBRARY_NOT_FOUND, ENODEV, "NVML_ERROR_LIBRARY_NOT_FOUND"},
    {KYB_NVML_ERROR_FUNCTION_NOT_FOUND, ENOTSUP, "NVML_ERROR_FUNCTION_NOT_FOUND"},
    {KYB_NVML_ERROR_CORRUPTED_INFOROM, EIO, "NVML_ERROR_CORRUPTED_INFOROM"},
    {KYB_NVML_ERROR_GPU_IS_LOST, ENODEV, "NVML_ERROR_GPU_IS_LOST"},
    {KYB_NVML_ERROR_RESET_REQUIRED, EBUSY, "NVML_ERROR_RESET_REQUIRED"},
    {KYB_NVML_ERROR_OPERATING_SYSTEM, EIO, "NVML_ERROR_OPERATING_SYSTEM"},
    {KYB_NVML_ERROR_LIB_RM_VERSION_MISMATCH, ENOTSUP, "NVML_ERROR_LIB_RM_VERSION_MISMATCH"},
    {KYB_NVML_ERROR_IN_USE, EBUSY, "NVML_ERROR_IN_USE"},
    {KYB_NVML_ERROR_MEMORY, ENOMEM, "NVML_ERROR_MEMORY"},
    {KYB_NVML_ERROR_NO_DATA, ENOENT, "NVML_ERROR_NO_DATA"},
    {KYB_NVML_ERROR_NOT_READY, EBUSY, "NVML_ERROR_NOT_READY"},
    {KYB_NVML_ERROR_GPU_NOT_FOUND, ENODEV, "NVML_ERROR_GPU_NOT_FOUND"},
    {KYB_NVML_ERROR_INVALID_STATE, EBUSY, "NVML_ERROR_INVALID_STATE"},
    {KYB_NVML_ERROR_UNKNOWN, EIO, "NVML_ERROR_UNKNOWN"},
};

static int find_error(int result)
{
        for (size_t i = 0; i < KYB_ARRAY_SIZE(nvml_errors); i++)
                if (nvml_errors[i].result == result)
                        return (int)i;
        return -1;
}

int kyb_nvml_result_errno(int result)
{
        int i;

        if (result == KYB_NVML_SUCCESS)
                return 0;
        i = find_error(result);
        return i < 0 ? EIO : nvml_errors[i].errnum;
}

int kyb_nvml_fail(const kyb_nvml *n, int result, const char *op, kyb_error **err)
{
        const char *text = n->fn.error_string ? n->fn.error_string(result) : NULL;
        int i = find_error(result);

        if (i < 0)
                return kyb_error_setf(err, EIO, "nvml %s: NVML error %d: %s", op, result,
                                      text ? text : "unknown error");
        return kyb_error_setf(err, nvml_errors[i].errnum, "nvml %s: %s%s%s", op,
                              nvml_errors[i].name, text ? ": " : "", text ? text : "");
}

static int load_library(const char *name, void **out, kyb_error **err)
{
        const char *msg;

        *out = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (*out)
                return 0;
        msg = dlerror();
        if (!msg || strstr(msg, "No such file or directory"))
                return kyb_error_setf(err, ENODEV, "%s not found: no NVIDIA driver", name);
        return kyb_error_setf(err, ENODEV, "cannot load %s: %s", name, msg);
}

static int bind_symbols(kyb_nvml *n, const char *name, kyb_error **err)
{
        for (size_t i = 0; i < KYB_ARRAY_SIZE(nvml_syms); i++) {
                void *p;

                (void)dlerror();
                p = dlsym(n->dl, nvml_syms[i].name);
                if (!p && nvml_syms[i].required)
                        return kyb_error_setf(err, ENOTSUP, "%s lacks %s: NVIDIA driver too old",
                                              name, nvml_syms[i].name);
                /* POSIX: void * and function pointers share a representation. */
                memcpy((char *)&n->fn + nvml_syms[i].offset, &p, sizeof(p));
        }
        if (!n->fn.compute_procs)
                n->fn.compute_procs = n->fn.compute_procs_v2;
        if (!n->fn.compute_procs)
                return kyb_error_setf(err, ENOTSUP,
                                      "%s lacks nvmlDeviceGetComputeRunningProcesses_v3 and _v2: "
                                      "NVIDIA driver too old",
                                      name);
        return 0;
}

int kyb_nvml_open(const char *lib_path, kyb_nvml **out, kyb_error **err)
{
        const char *name = lib_path ? lib_path : KYB_NVML_LIB_DEFAULT;
        kyb_nvml *n;
        int rc, r;

        *out = NULL;
        n = calloc(1, sizeof(*n));
        if (!n)
                return kyb_error_set(err, ENOMEM, "nvml");
        rc = load_library(name, &n->dl, err);
        if (rc >= 0)
                rc = bind_symbols(n, name, err);
        if (rc >= 0) {
                r = n->fn.init();
                if (r != KYB_NVML_SUCCESS)
                        rc = kyb_nvml_fail(n, r, "init", err);
                else
                        n->initialized = true;
        }
        if (rc < 0) {
                kyb_nvml_close(n);
                return rc;
        }
        *out = n;
        return 0;
}

void kyb_nvml_close(kyb_nvml *n)
{
        if (!n)
                return;
        if (n->initialized)
                (void)n->fn.shutdown();
        if (n->dl)
                dlclose(n->dl);
        free(n);
}
