/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "agent/convert.h"
#include "gpu/gpu.h"

typedef Kybernate__Agent__V1__CheckpointInfo CheckpointInfo;
typedef Kybernate__Agent__V1__StepDuration StepDuration;

static kyb_gpu_mode gpu_mode(Kybernate__Agent__V1__GpuMode m)
{
        switch (m) {
        case KYBERNATE__AGENT__V1__GPU_MODE__GPU_MODE_OFF:
                return KYB_GPU_MODE_OFF;
        case KYBERNATE__AGENT__V1__GPU_MODE__GPU_MODE_REQUIRED:
                return KYB_GPU_MODE_REQUIRED;
        default:
                return KYB_GPU_MODE_AUTO;
        }
}

static int convert_target(const Kybernate__Agent__V1__Target *t, kyb_manifest_target *out,
                          kyb_error **err)
{
        if (t && t->kind_case == KYBERNATE__AGENT__V1__TARGET__KIND_PROCESS && t->process) {
                out->kind = KYB_TARGET_PROCESS;
                out->pid = t->process->pid;
                return 0;
        }
        if (t && t->kind_case == KYBERNATE__AGENT__V1__TARGET__KIND_CONTAINER && t->container) {
                out->kind = KYB_TARGET_CONTAINER;
                out->container_namespace = t->container->namespace_;
                out->container_id = t->container->id;
                return 0;
        }
        return kyb_error_setf(err, EINVAL, "request names no target (container or process)");
}

/* Options the engine cannot honour yet are refused, not ignored. */
static int check_unsupported(const Kybernate__Agent__V1__CheckpointOptions *o, kyb_error **err)
{
        if (o->n_external_mounts)
                return kyb_error_setf(err, ENOTSUP, "external_mounts: not supported yet");
        if (o->cgroup_mode != KYBERNATE__AGENT__V1__CGROUP_MODE__CGROUP_MODE_DEFAULT)
                return kyb_error_setf(err, ENOTSUP, "cgroup_mode: not supported yet");
        return 0;
}

static void convert_options(const Kybernate__Agent__V1__CheckpointOptions *o,
                            kyb_checkpoint_spec *spec)
{
        spec->leave_running = o->leave_running;
        spec->gpu_mode = gpu_mode(o->gpu_mode);
        spec->gpu_lock_timeout_ms = o->gpu_lock_timeout_ms;
        spec->tcp_established = o->tcp_established;
        spec->file_locks = o->file_locks;
        spec->shell_job = o->shell_job;
        spec->external_unix_sockets = o->external_unix_sockets;
        spec->ghost_limit_bytes = (uint32_t)KYB_MIN(o->ghost_limit_bytes, UINT32_MAX);
        spec->pre_dump = o->pre_dump;
        spec->parent_id = o->parent_checkpoint_id;
        spec->lazy_pages = o->lazy_pages;
        spec->timeout_ms = o->timeout_ms;
}

static void convert_workload(const Kybernate__Agent__V1__WorkloadIdentity *w,
                             kyb_manifest_workload *out)
{
        if (!w)
                return;
        out->pod_namespace = w->pod_namespace;
        out->pod_name = w->pod_name;
        out->pod_uid = w->pod_uid;
        out->container_name = w->container_name;
        out->image = w->image;
}

int kyb_agent_checkpoint_spec(const Kybernate__Agent__V1__CheckpointRequest *req,
                              kyb_checkpoint_spec *spec, kyb_label **labels, kyb_error **err)
{
        int rc;

        *spec = (kyb_checkpoint_spec){.id = req->checkpoint_id};
        rc = convert_target(req->target, &spec->target, err);
        if (rc >= 0 && req->options)
                rc = check_unsupported(req->options, err);
        if (rc < 0)
                return rc;
        if (req->options)
                convert_options(req->options, spec);
        convert_workload(req->workload, &spec->workload);
        *labels = calloc(req->n_labels ? req->n_labels : 1, sizeof(**labels));
        if (!*labels)
                return kyb_error_set(err, ENOMEM, "labels");
        for (size_t i = 0; i < req->n_labels; i++)
                (*labels)[i] = (kyb_label){req->labels[i]->key, req->labels[i]->value};
        spec->labels = *labels;
        spec->n_labels = req->n_labels;
        return 0;
}

int kyb_agent_restore_spec(const Kybernate__Agent__V1__RestoreRequest *req, kyb_restore_spec *spec,
                           struct kyb_gpu_uuid_pair **pairs, kyb_error **err)
{
        const Kybernate__Agent__V1__RestoreOptions *o = req->options;

        *spec = (kyb_restore_spec){.checkpoint_id = req->checkpoint_id};
        *pairs = NULL;
        if (!o)
                return 0;
        if (o->n_gpu_uuid_map && !(*pairs = calloc(o->n_gpu_uuid_map, sizeof(**pairs))))
                return kyb_error_set(err, ENOMEM, "gpu uuid map");
        for (size_t i = 0; i < o->n_gpu_uuid_map; i++)
                (*pairs)[i] =
                    (kyb_gpu_uuid_pair){o->gpu_uuid_map[i]->old_uuid, o->gpu_uuid_map[i]->new_uuid};
        spec->gpu_uuid_map = *pairs;
        spec->n_gpu_uuid_map = o->n_gpu_uuid_map;
        /* The engine fills what is left empty from the checkpoint. */
        if (o->container) {
                spec->container_namespace = o->container->namespace_;
                spec->container_id = o->container->id;
        }
        spec->bundle = o->bundle;
        spec->tcp_established = o->tcp_established;
        spec->file_locks = o->file_locks;
        spec->shell_job = o->shell_job;
        spec->external_unix_sockets = o->external_unix_sockets;
        spec->lazy_pages = o->lazy_pages;
        spec->gpu_mode = gpu_mode(o->gpu_mode);
        spec->timeout_ms = o->timeout_ms;
        return 0;
}

/* ------------------------------------------------------------------------ */
/* outgoing */

static char *dup_or_empty(const char *s)
{
        return strdup(s ? s : "");
}

static Kybernate__Agent__V1__Target *target_msg(const kyb_manifest_target *t)
{
        Kybernate__Agent__V1__Target *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        kybernate__agent__v1__target__init(m);
        if (t->kind == KYB_TARGET_PROCESS) {
                m->process = malloc(sizeof(*m->process));
                if (!m->process)
                        return m;
                kybernate__agent__v1__process_target__init(m->process);
                m->process->pid = t->pid;
                m->kind_case = KYBERNATE__AGENT__V1__TARGET__KIND_PROCESS;
                return m;
        }
        m->container = malloc(sizeof(*m->container));
        if (!m->container)
                return m;
        kybernate__agent__v1__container_target__init(m->container);
        m->container->namespace_ = dup_or_empty(t->container_namespace);
        m->container->id = dup_or_empty(t->container_id);
        m->kind_case = KYBERNATE__AGENT__V1__TARGET__KIND_CONTAINER;
        return m;
}

static Kybernate__Agent__V1__WorkloadIdentity *workload_msg(const kyb_manifest_workload *w)
{
        Kybernate__Agent__V1__WorkloadIdentity *m = malloc(sizeof(*m));

        if (!m)
                return NULL;
        kybernate__agent__v1__workload_identity__init(m);
        m->pod_namespace = dup_or_empty(w->pod_namespace);
        m->pod_name = dup_or_empty(w->pod_name);
        m->pod_uid = dup_or_empty(w->pod_uid);
        m->container_name = dup_or_empty(w->container_name);
        m->image = dup_or_empty(w->image);
        return m;
}

static kyb_step step_from_name(const char *name)
{
        for (int s = KYB_STEP_VALIDATE; s <= KYB_STEP_DONE; s++)
                if (!strcmp(kyb_step_name((kyb_step)s), name))
                        return (kyb_step)s;
        return 0;
}

static StepDuration *step_msg(kyb_step step, int64_t ns)
{
        StepDuration *d = malloc(sizeof(*d));

        if (!d)
                return NULL;
        kybernate__agent__v1__step_duration__init(d);
        d->step = (Kybernate__Agent__V1__Step)step;
        d->duration_ns = ns;
        return d;
}

static void add_steps(CheckpointInfo *ci, const kyb_manifest *m)
{
        ci->durations = calloc(m->n_steps ? m->n_steps : 1, sizeof(*ci->durations));
        if (!ci->durations)
                return;
        for (size_t i = 0; i < m->n_steps; i++) {
                StepDuration *d = step_msg(step_from_name(m->steps[i].name),
                                           (int64_t)m->steps[i].duration_ms * 1000000);
                if (d)
                        ci->durations[ci->n_durations++] = d;
        }
}

static void add_labels(CheckpointInfo *ci, const kyb_manifest *m)
{
        ci->labels = calloc(m->n_labels ? m->n_labels : 1, sizeof(*ci->labels));
        if (!ci->labels)
                return;
        for (size_t i = 0; i < m->n_labels; i++) {
                Kybernate__Agent__V1__CheckpointInfo__LabelsEntry *e = malloc(sizeof(*e));
                if (!e)
                        return;
                kybernate__agent__v1__checkpoint_info__labels_entry__init(e);
                e->key = strdup(m->labels[i].key);
                e->value = strdup(m->labels[i].value);
                ci->labels[ci->n_labels++] = e;
        }
}

CheckpointInfo *kyb_agent_checkpoint_info(const kyb_checkpoint *c)
{
        const kyb_manifest *m = c->manifest;
        CheckpointInfo *ci = malloc(sizeof(*ci));

        if (!ci)
                return NULL;
        kybernate__agent__v1__checkpoint_info__init(ci);
        ci->id = strdup(c->id);
        ci->target = target_msg(&m->target);
        ci->workload = workload_msg(&m->workload);
        ci->node = dup_or_empty(m->node);
        ci->created_at_ns = m->created_at_ns;
        ci->size_bytes = c->size_bytes;
        ci->file_count = (uint32_t)m->n_files + 1;
        ci->manifest_sha256 = strdup(c->manifest_sha256);
        ci->path = strdup(c->path);
        ci->parent_id = dup_or_empty(m->criu.parent_id);
        ci->pre_dump = m->criu.pre_dump;
        ci->lazy_pages = m->criu.lazy_pages;
        ci->criu_version = dup_or_empty(m->criu.version);
        add_steps(ci, m);
        add_labels(ci, m);
        return ci;
}

Kybernate__Agent__V1__RestoreResult *kyb_agent_restore_result(const kyb_restore_result *r)
{
        Kybernate__Agent__V1__RestoreResult *m = malloc(sizeof(*m));

        if (!m)
                return NULL;
        kybernate__agent__v1__restore_result__init(m);
        m->pid = r->pid;
        if (r->container_id[0]) {
                m->container = malloc(sizeof(*m->container));
                if (m->container) {
                        kybernate__agent__v1__container_target__init(m->container);
                        m->container->namespace_ = strdup(r->container_namespace);
                        m->container->id = strdup(r->container_id);
                }
        }
        m->durations = calloc(r->n_steps ? r->n_steps : 1, sizeof(*m->durations));
        for (size_t i = 0; m->durations && i < r->n_steps; i++) {
                StepDuration *d = step_msg(r->steps[i].step, r->steps[i].duration_ns);
                if (d)
                        m->durations[m->n_durations++] = d;
        }
        return m;
}
