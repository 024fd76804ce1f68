/* SPDX-License-Identifier: Apache-2.0 */
/* Driver version, devices and their compute processes. */
#include <stdio.h>
#include <string.h>

#include "nvml/nvml-internal.h"

/* A few rounds are enough: the list only grows by processes started
 * between two calls. */
#define PROCESS_QUERY_ROUNDS 4

int kyb_nvml_driver_version(kyb_nvml *n, char out[KYB_NVML_VERSION_MAX], kyb_error **err)
{
        int r = n->fn.driver_version(out, KYB_NVML_VERSION_MAX);

        if (r != KYB_NVML_SUCCESS)
                return kyb_nvml_fail(n, r, "driver version", err);
        out[KYB_NVML_VERSION_MAX - 1] = '\0';
        return 0;
}

int kyb_nvml_device_count(kyb_nvml *n, unsigned int *count, kyb_error **err)
{
        int r = n->fn.device_count(count);

        return r == KYB_NVML_SUCCESS ? 0 : kyb_nvml_fail(n, r, "device count", err);
}

static int handle(kyb_nvml *n, unsigned int index, kyb_nvmlDevice_t *dev, kyb_error **err)
{
        char op[48];
        int r = n->fn.device_by_index(index, dev);

        if (r == KYB_NVML_SUCCESS)
                return 0;
        snprintf(op, sizeof(op), "device %u", index);
        return kyb_nvml_fail(n, r, op, err);
}

static int query_strings(kyb_nvml *n, kyb_nvmlDevice_t dev, kyb_nvml_device *out, kyb_error **err)
{
        char op[48];
        int r = n->fn.device_uuid(dev, out->uuid, sizeof(out->uuid));

        if (r == KYB_NVML_SUCCESS)
                r = n->fn.device_name(dev, out->name, sizeof(out->name));
        if (r != KYB_NVML_SUCCESS) {
                snprintf(op, sizeof(op), "device %u %s", out->index,
                         out->uuid[0] ? "name" : "uuid");
                return kyb_nvml_fail(n, r, op, err);
        }
        out->uuid[sizeof(out->uuid) - 1] = '\0';
        out->name[sizeof(out->name) - 1] = '\0';
        return 0;
}

/* Minor number and PCI address are descriptive: some configurations
 * (vGPU, some containers) do not report them, which must not hide the
 * device. */
static void query_optional(kyb_nvml *n, kyb_nvmlDevice_t dev, kyb_nvml_device *out)
{
        kyb_nvmlPciInfo_t pci;
        unsigned int minor;

        out->minor_number = KYB_NVML_MINOR_UNKNOWN;
        if (n->fn.device_minor && n->fn.device_minor(dev, &minor) == KYB_NVML_SUCCESS)
                out->minor_number = minor;
        memset(&pci, 0, sizeof(pci));
        if (n->fn.device_pci && n->fn.device_pci(dev, &pci) == KYB_NVML_SUCCESS) {
                memcpy(out->pci_bus_id, pci.busId, sizeof(out->pci_bus_id));
                out->pci_bus_id[sizeof(out->pci_bus_id) - 1] = '\0';
        }
}

int kyb_nvml_device_info(kyb_nvml *n, unsigned int index, kyb_nvml_device *out, kyb_error **err)
{
        kyb_nvmlDevice_t dev;
        kyb_nvmlMemory_t mem;
        char op[48];
        int rc, r;

        memset(out, 0, sizeof(*out));
        out->index = index;
        rc = handle(n, index, &dev, err);
        if (rc < 0)
                return rc;
        rc = query_strings(n, dev, out, err);
        if (rc < 0)
                return rc;
        r = n->fn.device_memory(dev, &mem);
        if (r != KYB_NVML_SUCCESS) {
                snprintf(op, sizeof(op), "device %u memory", index);
                return kyb_nvml_fail(n, r, op, err);
        }
        out->memory_total_bytes = mem.total;
        out->memory_used_bytes = mem.used;
        query_optional(n, dev, out);
        return 0;
}

static int copy_processes(const kyb_nvmlProcessInfo_t *infos, unsigned int count,
                          kyb_nvml_process **out, size_t *n_out, kyb_error **err)
{
        if (count == 0)
                return 0;
        *out = calloc(count, sizeof(**out));
        if (!*out)
                return kyb_error_set(err, ENOMEM, "nvml compute processes");
        for (unsigned int i = 0; i < count; i++) {
                bool known = infos[i].usedGpuMemory != KYB_NVML_VALUE_NOT_AVAILABLE;

                (*out)[i].pid = (int32_t)infos[i].pid;
                (*out)[i].used_memory_known = known;
                (*out)[i].used_memory_bytes = known ? infos[i].usedGpuMemory : 0;
        }
        *n_out = count;
        return 0;
}

int kyb_nvml_compute_processes(kyb_nvml *n, unsigned int index, kyb_nvml_process **out,
                               size_t *n_out, kyb_error **err)
{
        _cleanup_free_ kyb_nvmlProcessInfo_t *infos = NULL;
        unsigned int cap = 16, count;
        kyb_nvmlDevice_t dev;
        char op[48];
        int rc, r = KYB_NVML_ERROR_INSUFFICIENT_SIZE;

        *out = NULL;
        *n_out = 0;
        rc = handle(n, index, &dev, err);
        if (rc < 0)
                return rc;
        for (int round = 0; round < PROCESS_QUERY_ROUNDS; round++) {
                free(infos);
                infos = calloc(cap, sizeof(*infos));
                if (!infos)
                        return kyb_error_set(err, ENOMEM, "nvml compute processes");
                count = cap;
                r = n->fn.compute_procs(dev, &count, infos);
                if (r != KYB_NVML_ERROR_INSUFFICIENT_SIZE)
                        break;
                /* count now holds what is needed; leave room for newcomers. */
                cap = KYB_MAX(count, cap) + 16;
        }
        if (r != KYB_NVML_SUCCESS) {
                snprintf(op, sizeof(op), "device %u compute processes", index);
                return kyb_nvml_fail(n, r, op, err);
        }
        return copy_processes(infos, KYB_MIN(count, cap), out, n_out, err);
}
