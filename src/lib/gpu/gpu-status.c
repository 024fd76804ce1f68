/* SPDX-License-Identifier: Apache-2.0 */
/* Which processes are CUDA processes, and what to report about them. */
#include <stdio.h>
#include <string.h>

#include "gpu/gpu-internal.h"

typedef struct proc_list {
        kyb_gpu_process *v;
        size_t n;
} proc_list;

static void proc_list_clear(proc_list *l)
{
        kyb_gpu_processes_free(l->v, l->n);
        l->v = NULL;
        l->n = 0;
}

/* Appends pid with its GPUs: NVML's when it lists pid, else the record of
 * its hibernation, else none. The driver's state when it knows pid. */
static int add_process(kyb_gpu *g, const gpu_snapshot *s, int32_t pid, proc_list *l,
                       kyb_error **err)
{
        kyb_gpu_process *grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
        kyb_gpu_process *p;
        gpu_record rec;
        int listed, rc;

        if (!grown)
                return kyb_error_set(err, ENOMEM, "gpu processes");
        l->v = grown;
        p = &l->v[l->n++];
        memset(p, 0, sizeof(*p));
        p->pid = pid;
        listed = gpu_snapshot_record(s, pid, &rec, err);
        if (listed < 0)
                return listed;
        p->nvml_listed = listed > 0;
        if (!listed && !gpu_records_get(g, pid, &rec))
                memset(&rec, 0, sizeof(rec));
        rec.pid = pid;
        rc = gpu_process_from_record(p, &rec, err);
        gpu_record_clear(&rec);
        p->state_known = rc >= 0 && gpu_state(g, pid, &p->state, NULL) >= 0;
        return rc;
}

static bool has_record(kyb_gpu *g, int32_t pid)
{
        gpu_record rec;
        bool found = gpu_records_get(g, pid, &rec);

        gpu_record_clear(&rec);
        return found;
}

/*
 * A process counts when NVML lists it, when this handle hibernated it, or
 * when it holds /dev/nvidia* descriptors even though NVML does not list it:
 * NVML lists only processes with a compute context, so one that has opened
 * the driver but not yet created its context, or one NVML cannot attribute
 * (PID namespaces, MIG or vGPU set-ups, no permission to query) would be
 * missed, and CRIU cannot dump a process with driver descriptors open. Such
 * a process must go through the driver's checkpoint API too, or fail there
 * with a message naming it, rather than deep inside CRIU.
 */
static bool is_cuda_process(kyb_gpu *g, const gpu_snapshot *s, int32_t pid)
{
        gpu_record rec;
        int listed = gpu_snapshot_record(s, pid, &rec, NULL);

        gpu_record_clear(&rec);
        return listed > 0 || has_record(g, pid) || gpu_proc_has_nvidia_fd(g, pid);
}

int kyb_gpu_find_processes(kyb_gpu *g, int32_t root_pid, kyb_gpu_process **out, size_t *n_out,
                           kyb_error **err)
{
        _cleanup_free_ int32_t *tree = NULL;
        proc_list l = {0};
        gpu_snapshot s;
        size_t n_tree = 0;
        int rc = gpu_require(g, err);

        *out = NULL;
        *n_out = 0;
        if (rc >= 0)
                rc = gpu_proc_tree(g, root_pid, &tree, &n_tree, err);
        if (rc < 0)
                return rc;
        rc = gpu_snapshot_take(g, &s, err);
        if (rc < 0)
                return rc;
        for (size_t i = 0; rc >= 0 && i < n_tree; i++)
                if (is_cuda_process(g, &s, tree[i]))
                        rc = add_process(g, &s, tree[i], &l, err);
        gpu_snapshot_clear(&s);
        if (rc < 0) {
                proc_list_clear(&l);
                return rc;
        }
        *out = l.v;
        *n_out = l.n;
        return 0;
}

static bool listed_already(const proc_list *l, int32_t pid)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].pid == pid)
                        return true;
        return false;
}

/* Every process NVML lists (once, whatever its number of GPUs), then the
 * hibernated ones, which NVML does not list. */
static int add_all(kyb_gpu *g, const gpu_snapshot *s, proc_list *l, kyb_error **err)
{
        _cleanup_free_ int32_t *hibernated = NULL;
        size_t n_hibernated = 0;
        int rc = 0;

        for (size_t d = 0; rc >= 0 && d < s->n_devices; d++)
                for (size_t j = 0; rc >= 0 && j < s->n_procs[d]; j++)
                        if (!listed_already(l, s->procs[d][j].pid))
                                rc = add_process(g, s, s->procs[d][j].pid, l, err);
        if (rc >= 0)
                rc = gpu_records_pids(g, &hibernated, &n_hibernated, err);
        for (size_t i = 0; rc >= 0 && i < n_hibernated; i++)
                if (!listed_already(l, hibernated[i]))
                        rc = add_process(g, s, hibernated[i], l, err);
        return rc;
}

static int copy_devices(const gpu_snapshot *s, kyb_gpu_info *out, kyb_error **err)
{
        if (s->n_devices == 0)
                return 0;
        out->devices = calloc(s->n_devices, sizeof(*out->devices));
        if (!out->devices)
                return kyb_error_set(err, ENOMEM, "gpu status");
        for (size_t i = 0; i < s->n_devices; i++) {
                const kyb_nvml_device *src = &s->devices[i];
                kyb_gpu_device *dst = &out->devices[i];

                dst->index = src->index;
                snprintf(dst->uuid, sizeof(dst->uuid), "%s", src->uuid);
                snprintf(dst->name, sizeof(dst->name), "%s", src->name);
                snprintf(dst->pci_bus_id, sizeof(dst->pci_bus_id), "%s", src->pci_bus_id);
                dst->memory_total_bytes = src->memory_total_bytes;
                dst->memory_used_bytes = src->memory_used_bytes;
                dst->minor_number = src->minor_number;
        }
        out->n_devices = s->n_devices;
        return 0;
}

static int check_status_pid(kyb_gpu *g, int32_t pid, kyb_error **err)
{
        kyb_cuda_state state;
        int rc = gpu_require(g, err);

        if (rc >= 0 && pid != 0)
                rc = gpu_require_process(g, pid, err);
        if (rc >= 0 && pid != 0)
                rc = gpu_state(g, pid, &state, err);
        return rc;
}

int kyb_gpu_status(kyb_gpu *g, int32_t pid, kyb_gpu_info *out, kyb_error **err)
{
        proc_list l = {0};
        gpu_snapshot s;
        int rc;

        memset(out, 0, sizeof(*out));
        rc = check_status_pid(g, pid, err);
        if (rc < 0)
                return rc;
        rc = gpu_snapshot_take(g, &s, err);
        if (rc < 0)
                return rc;
        snprintf(out->driver_version, sizeof(out->driver_version), "%s", g->driver_version);
        out->cuda_driver_version = kyb_cuda_version(g->cuda);
        rc = copy_devices(&s, out, err);
        if (rc >= 0)
                rc = pid ? add_process(g, &s, pid, &l, err) : add_all(g, &s, &l, err);
        gpu_snapshot_clear(&s);
        out->processes = l.v;
        out->n_processes = l.n;
        if (rc < 0)
                kyb_gpu_info_clear(out);
        return rc;
}

static int describe_devices(const kyb_gpu_info *info, kyb_manifest *m, kyb_error **err)
{
        for (size_t i = 0; i < info->n_devices; i++) {
                const kyb_gpu_device *d = &info->devices[i];
                kyb_manifest_gpu_device md = {
                    .uuid = (char *)d->uuid,
                    .model = (char *)d->name,
                    .memory_total_bytes = d->memory_total_bytes,
                    .memory_used_bytes = d->memory_used_bytes,
                    .pci_bus_id = (char *)d->pci_bus_id,
                };
                int rc = kyb_manifest_add_gpu_device(m, &md, err);

                if (rc < 0)
                        return rc;
        }
        return 0;
}

static int describe_process(kyb_gpu *g, const gpu_snapshot *s, int32_t pid, kyb_manifest *m,
                            kyb_error **err)
{
        proc_list l = {0};
        kyb_manifest_gpu_process mp;
        int rc = gpu_require_process(g, pid, err);

        if (rc >= 0)
                rc = add_process(g, s, pid, &l, err);
        if (rc >= 0 && !l.v[0].state_known)
                rc = gpu_state(g, pid, &l.v[0].state, err);
        if (rc >= 0) {
                mp = (kyb_manifest_gpu_process){
                    .pid = pid,
                    .state = l.v[0].state,
                    .gpu_uuids = l.v[0].gpu_uuids,
                    .n_gpu_uuids = l.v[0].n_gpu_uuids,
                    .device_memory_bytes = l.v[0].device_memory_bytes,
                };
                rc = kyb_manifest_add_gpu_process(m, &mp, err);
        }
        proc_list_clear(&l);
        return rc;
}

static int describe_driver(kyb_gpu *g, kyb_manifest *m, kyb_error **err)
{
        char *version = strdup(g->driver_version);

        if (!version)
                return kyb_error_set(err, ENOMEM, "gpu describe");
        free(m->gpu.driver_version);
        m->gpu.driver_version = version;
        m->gpu.cuda_driver_version = kyb_cuda_version(g->cuda);
        return 0;
}

int kyb_gpu_describe(kyb_gpu *g, const int32_t *pids, size_t n_pids, kyb_manifest *m,
                     kyb_error **err)
{
        kyb_gpu_info info = {0};
        gpu_snapshot s;
        int rc = gpu_require(g, err);

        if (rc < 0)
                return rc;
        rc = gpu_snapshot_take(g, &s, err);
        if (rc < 0)
                return rc;
        rc = describe_driver(g, m, err);
        if (rc >= 0)
                rc = copy_devices(&s, &info, err);
        if (rc >= 0)
                rc = describe_devices(&info, m, err);
        for (size_t i = 0; rc >= 0 && i < n_pids; i++)
                rc = describe_process(g, &s, pids[i], m, err);
        kyb_gpu_info_clear(&info);
        gpu_snapshot_clear(&s);
        return rc;
}
