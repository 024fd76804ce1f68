/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stand-in libnvidia-ml.so.1 for tests (never installed): the GPUs and
 * compute processes of the JSON state file of stub-state.h. A process is
 * listed on each GPU of its "gpus" unless it is checkpointed (it holds no
 * GPU resources then) or marked "nvml_hidden" (a process NVML cannot
 * attribute). Used memory is the GPU's "memory_used" plus its listed
 * processes' memory. Calls before nvmlInit_v2 are NVML_ERROR_UNINITIALIZED.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "nvml/nvml-abi.h"
#include "stub-state.h"

static const struct {
        int code;
        const char *name;
        const char *text;
} errors[] = {
    {KYB_NVML_SUCCESS, "NVML_SUCCESS", "Success"},
    {KYB_NVML_ERROR_UNINITIALIZED, "NVML_ERROR_UNINITIALIZED", "Uninitialized"},
    {KYB_NVML_ERROR_INVALID_ARGUMENT, "NVML_ERROR_INVALID_ARGUMENT", "Invalid Argument"},
    {KYB_NVML_ERROR_NOT_SUPPORTED, "NVML_ERROR_NOT_SUPPORTED", "Not Supported"},
    {KYB_NVML_ERROR_NO_PERMISSION, "NVML_ERROR_NO_PERMISSION", "Insufficient Permissions"},
    {KYB_NVML_ERROR_INSUFFICIENT_SIZE, "NVML_ERROR_INSUFFICIENT_SIZE", "Insufficient Size"},
    {KYB_NVML_ERROR_DRIVER_NOT_LOADED, "NVML_ERROR_DRIVER_NOT_LOADED", "Driver Not Loaded"},
    {KYB_NVML_ERROR_GPU_IS_LOST, "NVML_ERROR_GPU_IS_LOST", "GPU is lost"},
    {KYB_NVML_ERROR_UNKNOWN, "NVML_ERROR_UNKNOWN", "Unknown Error"},
};

/* The exports, checked against the function-pointer types the library
 * loads them as. */
#define EXPORT_OF(name, type)                                                                      \
        STUB_EXPORT __typeof__(*(type)0) name;                                                     \
        _Static_assert(__builtin_types_compatible_p(__typeof__(&name), type), #name)

EXPORT_OF(nvmlErrorString, kyb_nvmlErrorString_fn);
EXPORT_OF(nvmlInit_v2, kyb_nvmlInit_v2_fn);
EXPORT_OF(nvmlShutdown, kyb_nvmlShutdown_fn);
EXPORT_OF(nvmlSystemGetDriverVersion, kyb_nvmlSystemGetDriverVersion_fn);
EXPORT_OF(nvmlDeviceGetCount_v2, kyb_nvmlDeviceGetCount_v2_fn);
EXPORT_OF(nvmlDeviceGetHandleByIndex_v2, kyb_nvmlDeviceGetHandleByIndex_v2_fn);
EXPORT_OF(nvmlDeviceGetUUID, kyb_nvmlDeviceGetString_fn);
EXPORT_OF(nvmlDeviceGetName, kyb_nvmlDeviceGetString_fn);
EXPORT_OF(nvmlDeviceGetMemoryInfo, kyb_nvmlDeviceGetMemoryInfo_fn);
EXPORT_OF(nvmlDeviceGetMinorNumber, kyb_nvmlDeviceGetMinorNumber_fn);
EXPORT_OF(nvmlDeviceGetPciInfo_v3, kyb_nvmlDeviceGetPciInfo_v3_fn);
EXPORT_OF(nvmlDeviceGetComputeRunningProcesses_v3, kyb_nvmlDeviceGetComputeRunningProcesses_fn);
EXPORT_OF(nvmlDeviceGetComputeRunningProcesses_v2, kyb_nvmlDeviceGetComputeRunningProcesses_fn);

/* nvmlInit_v2 minus nvmlShutdown calls in this process, as NVML counts. */
static atomic_int init_count;

static int lookup_error(const char *name)
{
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
                if (!strcmp(errors[i].name, name))
                        return errors[i].code;
        return KYB_NVML_ERROR_UNKNOWN;
}

STUB_EXPORT const char *nvmlErrorString(kyb_nvmlReturn_t r)
{
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
                if (errors[i].code == r)
                        return errors[i].text;
        return "Unknown Error";
}

STUB_EXPORT kyb_nvmlReturn_t nvmlInit_v2(void)
{
        stub_tx tx;
        int r, ignored;

        r = stub_begin(&tx);
        if (r < 0)
                return r == -1 ? KYB_NVML_ERROR_DRIVER_NOT_LOADED : KYB_NVML_ERROR_UNKNOWN;
        stub_count_call(&tx, tx.root, "nvmlInit");
        r = stub_fail(&tx, tx.root, "nvmlInit", lookup_error, &ignored);
        stub_end(&tx);
        if (r == 0)
                atomic_fetch_add(&init_count, 1);
        return r;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlShutdown(void)
{
        int n = atomic_load(&init_count);

        while (n > 0 && !atomic_compare_exchange_weak(&init_count, &n, n - 1))
                ;
        return n > 0 ? KYB_NVML_SUCCESS : KYB_NVML_ERROR_UNINITIALIZED;
}

/* Prologue of every query: initialised, the file, an injected failure. */
static int begin(stub_tx *tx, const char *op)
{
        int r, ignored;

        if (atomic_load(&init_count) <= 0)
                return KYB_NVML_ERROR_UNINITIALIZED;
        r = stub_begin(tx);
        if (r < 0)
                return r == -1 ? KYB_NVML_ERROR_DRIVER_NOT_LOADED : KYB_NVML_ERROR_UNKNOWN;
        r = stub_fail(tx, tx->root, op, lookup_error, &ignored);
        if (r != 0)
                stub_end(tx);
        return r;
}

static int copy_out(const char *s, char *buf, unsigned int len)
{
        if (!buf || strlen(s) + 1 > len)
                return KYB_NVML_ERROR_INSUFFICIENT_SIZE;
        memcpy(buf, s, strlen(s) + 1);
        return KYB_NVML_SUCCESS;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
        stub_tx tx;
        int r = begin(&tx, "nvmlSystemGetDriverVersion");

        if (r != 0)
                return r;
        r = copy_out(stub_str(tx.root, "driver_version", STUB_DEFAULT_DRIVER), version, length);
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
        stub_tx tx;
        int r = begin(&tx, "nvmlDeviceGetCount");

        if (r != 0)
                return r;
        *count = (unsigned int)json_array_size(stub_gpus(&tx));
        stub_end(&tx);
        return KYB_NVML_SUCCESS;
}

/* Handles are index + 1, so NULL is never a valid one. */
STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                                           kyb_nvmlDevice_t *device)
{
        stub_tx tx;
        int r = begin(&tx, "nvmlDeviceGetHandleByIndex");

        if (r != 0)
                return r;
        if (!device || index >= json_array_size(stub_gpus(&tx)))
                r = KYB_NVML_ERROR_INVALID_ARGUMENT;
        else
                *device = (kyb_nvmlDevice_t)(uintptr_t)(index + 1);
        stub_end(&tx);
        return r;
}

/* The device's JSON object inside an open transaction, or NULL. */
static json_t *device(stub_tx *tx, kyb_nvmlDevice_t dev)
{
        uintptr_t i = (uintptr_t)dev;

        return i == 0 ? NULL : json_array_get(stub_gpus(tx), i - 1);
}

static int device_string(kyb_nvmlDevice_t dev, const char *op, const char *key, char *buf,
                         unsigned int len)
{
        stub_tx tx;
        json_t *g;
        int r = begin(&tx, op);

        if (r != 0)
                return r;
        g = device(&tx, dev);
        r = g ? copy_out(stub_str(g, key, ""), buf, len) : KYB_NVML_ERROR_INVALID_ARGUMENT;
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetUUID(kyb_nvmlDevice_t dev, char *uuid,
                                               unsigned int length)
{
        return device_string(dev, "nvmlDeviceGetUUID", "uuid", uuid, length);
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetName(kyb_nvmlDevice_t dev, char *name,
                                               unsigned int length)
{
        return device_string(dev, "nvmlDeviceGetName", "name", name, length);
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetMemoryInfo(kyb_nvmlDevice_t dev, kyb_nvmlMemory_t *mem)
{
        stub_tx tx;
        json_t *g;
        int r = begin(&tx, "nvmlDeviceGetMemoryInfo");

        if (r != 0)
                return r;
        g = device(&tx, dev);
        if (g && mem) {
                mem->total = (unsigned long long)stub_int(g, "memory_total", 0);
                mem->used = stub_gpu_used(&tx, stub_str(g, "uuid", ""));
                mem->free = mem->used < mem->total ? mem->total - mem->used : 0;
        } else {
                r = KYB_NVML_ERROR_INVALID_ARGUMENT;
        }
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetMinorNumber(kyb_nvmlDevice_t dev, unsigned int *minor)
{
        stub_tx tx;
        json_t *g;
        int r = begin(&tx, "nvmlDeviceGetMinorNumber");

        if (r != 0)
                return r;
        g = device(&tx, dev);
        if (g && minor)
                *minor = (unsigned int)stub_int(g, "minor", (int64_t)(uintptr_t)dev - 1);
        else
                r = KYB_NVML_ERROR_INVALID_ARGUMENT;
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetPciInfo_v3(kyb_nvmlDevice_t dev, kyb_nvmlPciInfo_t *pci)
{
        stub_tx tx;
        json_t *g;
        int r = begin(&tx, "nvmlDeviceGetPciInfo");

        if (r != 0)
                return r;
        g = device(&tx, dev);
        if (g && pci) {
                memset(pci, 0, sizeof(*pci));
                pci->bus = (unsigned int)(uintptr_t)dev;
                snprintf(pci->busId, sizeof(pci->busId), "%s",
                         stub_str(g, "pci_bus_id", "00000000:00:00.0"));
                snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%.12s", pci->busId + 4);
        } else {
                r = KYB_NVML_ERROR_INVALID_ARGUMENT;
        }
        stub_end(&tx);
        return r;
}

static unsigned int list_processes(stub_tx *tx, const char *uuid, kyb_nvmlProcessInfo_t *infos,
                                   unsigned int cap)
{
        json_t *procs = json_object_get(tx->root, "processes"), *p, *pg;
        unsigned int n = 0;
        size_t i, j;

        json_array_foreach(procs, i, p)
        {
                if (stub_proc_state(p) == STUB_STATE_CHECKPOINTED ||
                    json_is_true(json_object_get(p, "nvml_hidden")))
                        continue;
                json_array_foreach(json_object_get(p, "gpus"), j, pg)
                {
                        if (strcasecmp(stub_str(pg, "uuid", ""), uuid))
                                continue;
                        if (infos && n < cap) {
                                memset(&infos[n], 0, sizeof(infos[n]));
                                infos[n].pid = (unsigned int)stub_int(p, "pid", 0);
                                infos[n].usedGpuMemory = (unsigned long long)stub_int(
                                    pg, "memory", (int64_t)KYB_NVML_VALUE_NOT_AVAILABLE);
                                infos[n].gpuInstanceId = 0xFFFFFFFF;
                                infos[n].computeInstanceId = 0xFFFFFFFF;
                        }
                        n++;
                }
        }
        return n;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(kyb_nvmlDevice_t dev,
                                                                     unsigned int *count,
                                                                     kyb_nvmlProcessInfo_t *infos)
{
        unsigned int need;
        stub_tx tx;
        json_t *g;
        int r = begin(&tx, "nvmlDeviceGetComputeRunningProcesses");

        if (r != 0)
                return r;
        g = device(&tx, dev);
        if (!g || !count) {
                stub_end(&tx);
                return KYB_NVML_ERROR_INVALID_ARGUMENT;
        }
        need = list_processes(&tx, stub_str(g, "uuid", ""), infos, *count);
        if (need > *count)
                r = KYB_NVML_ERROR_INSUFFICIENT_SIZE;
        *count = need;
        stub_end(&tx);
        return r;
}

STUB_EXPORT kyb_nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(kyb_nvmlDevice_t dev,
                                                                     unsigned int *count,
                                                                     kyb_nvmlProcessInfo_t *infos)
{
        return nvmlDeviceGetComputeRunningProcesses_v3(dev, count, infos);
}
