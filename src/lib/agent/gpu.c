/* SPDX-License-Identifier: Apache-2.0 */
/* GpuHibernate, GpuResume, GpuStatus: the GPU state of one process, in
 * place, through the GPU facade (the primitive behind GPU seats). */
#define KYB_LOG_MODULE "agent"

#include <string.h>

#include "agent.pb-c.h"
#include "agent/service.h"
#include "base/log.h"
#include "gpu/gpu.h"

typedef Kybernate__Agent__V1__GpuProcess GpuProcess;
typedef Kybernate__Agent__V1__GpuDevice GpuDevice;
typedef Kybernate__Agent__V1__GpuInfo GpuInfo;

static kyb_gpu *gpu_of(kyb_rpc_call *call)
{
        kyb_agent *agent = kyb_rpc_call_userdata(call);

        kyb_metric_add(agent->requests, kyb_rpc_call_method(call), 1);
        return kyb_engine_gpu(agent->engine);
}

static int finish(kyb_rpc_call *call, int rc, kyb_error **err)
{
        kyb_agent *agent = kyb_rpc_call_userdata(call);

        if (rc < 0) {
                kyb_metric_add(agent->request_errors, kyb_rpc_call_method(call), 1);
                kyb_log_warn("%s: %s", kyb_rpc_call_method(call), kyb_error_message(*err));
        }
        return rc;
}

static int check_available(kyb_gpu *g, kyb_error **err)
{
        if (kyb_gpu_available(g))
                return 0;
        return kyb_error_setf(err, kyb_gpu_unavailable_errno(g), "%s",
                              kyb_gpu_unavailable_reason(g));
}

static GpuProcess *process_msg(const kyb_gpu_process *p)
{
        GpuProcess *m = malloc(sizeof(*m));

        if (!m)
                return NULL;
        kybernate__agent__v1__gpu_process__init(m);
        m->pid = p->pid;
        m->state = (Kybernate__Agent__V1__CudaProcessState)p->state;
        m->device_memory_bytes = p->device_memory_bytes;
        m->gpu_uuids = calloc(p->n_gpu_uuids + 1, sizeof(char *));
        for (size_t i = 0; m->gpu_uuids && i < p->n_gpu_uuids; i++)
                if ((m->gpu_uuids[m->n_gpu_uuids] = strdup(p->gpu_uuids[i])))
                        m->n_gpu_uuids++;
        return m;
}

static GpuDevice *device_msg(const kyb_gpu_device *d)
{
        GpuDevice *m = malloc(sizeof(*m));

        if (!m)
                return NULL;
        kybernate__agent__v1__gpu_device__init(m);
        m->uuid = strdup(d->uuid);
        m->name = strdup(d->name);
        m->memory_total_bytes = d->memory_total_bytes;
        m->memory_used_bytes = d->memory_used_bytes;
        m->pci_bus_id = strdup(d->pci_bus_id);
        m->minor_number = d->minor_number;
        return m;
}

static GpuInfo *info_msg(const kyb_gpu_info *info)
{
        GpuInfo *m = malloc(sizeof(*m));

        if (!m)
                return NULL;
        kybernate__agent__v1__gpu_info__init(m);
        m->driver_version = strdup(info->driver_version);
        m->cuda_driver_version = info->cuda_driver_version;
        m->devices = calloc(info->n_devices + 1, sizeof(*m->devices));
        for (size_t i = 0; m->devices && i < info->n_devices; i++)
                if ((m->devices[m->n_devices] = device_msg(&info->devices[i])))
                        m->n_devices++;
        m->processes = calloc(info->n_processes + 1, sizeof(*m->processes));
        for (size_t i = 0; m->processes && i < info->n_processes; i++)
                if ((m->processes[m->n_processes] = process_msg(&info->processes[i])))
                        m->n_processes++;
        return m;
}

/* The process's state after an operation, as GpuStatus reports it. */
static int process_state(kyb_gpu *g, int32_t pid, ProtobufCMessage **response, kyb_error **err)
{
        kyb_gpu_info info = {0};
        GpuProcess *m = NULL;
        int rc = kyb_gpu_status(g, pid, &info, err);

        for (size_t i = 0; rc >= 0 && i < info.n_processes && !m; i++)
                if (info.processes[i].pid == pid)
                        m = process_msg(&info.processes[i]);
        if (rc >= 0 && !m) {
                kyb_gpu_process bare = {.pid = pid};
                m = process_msg(&bare);
        }
        kyb_gpu_info_clear(&info);
        if (rc >= 0 && !m)
                rc = kyb_error_set(err, ENOMEM, "gpu status");
        if (rc >= 0)
                *response = &m->base;
        return rc;
}

int kyb_agent_gpu_hibernate(kyb_rpc_call *call, const ProtobufCMessage *request,
                            ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__GpuHibernateRequest *req = (const void *)request;
        kyb_gpu *g = gpu_of(call);
        int rc = check_available(g, err);

        if (rc >= 0)
                rc = kyb_gpu_hibernate(g, req->pid, req->lock_timeout_ms, NULL, err);
        if (rc >= 0)
                rc = process_state(g, req->pid, response, err);
        if (rc < 0)
                kyb_error_wrap(err, rc, "gpu hibernate pid %d", req->pid);
        return finish(call, rc, err);
}

static int uuid_map(const Kybernate__Agent__V1__GpuResumeRequest *req, kyb_gpu_uuid_pair **pairs,
                    kyb_error **err)
{
        *pairs = calloc(req->n_gpu_uuid_map + 1, sizeof(**pairs));
        if (!*pairs)
                return kyb_error_set(err, ENOMEM, "gpu uuid map");
        for (size_t i = 0; i < req->n_gpu_uuid_map; i++)
                (*pairs)[i] = (kyb_gpu_uuid_pair){req->gpu_uuid_map[i]->old_uuid,
                                                  req->gpu_uuid_map[i]->new_uuid};
        return 0;
}

int kyb_agent_gpu_resume(kyb_rpc_call *call, const ProtobufCMessage *request,
                         ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__GpuResumeRequest *req = (const void *)request;
        _cleanup_free_ kyb_gpu_uuid_pair *pairs = NULL;
        kyb_gpu *g = gpu_of(call);
        int rc = check_available(g, err);

        if (rc >= 0)
                rc = uuid_map(req, &pairs, err);
        if (rc >= 0) {
                kyb_gpu_uuid_map map = {.pairs = pairs, .n_pairs = req->n_gpu_uuid_map};
                rc = kyb_gpu_resume(g, req->pid, req->n_gpu_uuid_map ? &map : NULL, err);
        }
        if (rc >= 0)
                rc = process_state(g, req->pid, response, err);
        if (rc < 0)
                kyb_error_wrap(err, rc, "gpu resume pid %d", req->pid);
        return finish(call, rc, err);
}

int kyb_agent_gpu_status(kyb_rpc_call *call, const ProtobufCMessage *request,
                         ProtobufCMessage **response, kyb_error **err)
{
        const Kybernate__Agent__V1__GpuStatusRequest *req = (const void *)request;
        Kybernate__Agent__V1__GpuStatusResponse *resp = NULL;
        kyb_gpu_info info = {0};
        kyb_gpu *g = gpu_of(call);
        int rc = check_available(g, err);

        if (rc >= 0)
                rc = kyb_gpu_status(g, req->pid, &info, err);
        if (rc >= 0 && !(resp = malloc(sizeof(*resp))))
                rc = kyb_error_set(err, ENOMEM, "gpu status");
        if (rc >= 0) {
                kybernate__agent__v1__gpu_status_response__init(resp);
                resp->gpu = info_msg(&info);
                *response = &resp->base;
        } else {
                kyb_error_wrap(err, rc, "gpu status");
        }
        kyb_gpu_info_clear(&info);
        return finish(call, rc, err);
}
