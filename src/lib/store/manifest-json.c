/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.json <-> kyb_manifest: writing. Reading is in manifest-parse.c. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "store/manifest.h"

/* jansson's own json_decrefp() releases a local at scope exit. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* NULL strings are written as "": the reader requires every field. */
static const char *S(const char *s)
{
        return s ? s : "";
}

/* Sizes are uint64 in C and JSON integers are int64 in jansson; nothing we
 * describe comes near 2^63, so clamp rather than fail. */
static json_int_t U(uint64_t v)
{
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v;
}

static json_t *workload_json(const kyb_manifest_workload *w)
{
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "podNamespace", S(w->pod_namespace),
                         "podName", S(w->pod_name), "podUid", S(w->pod_uid), "containerName",
                         S(w->container_name), "image", S(w->image));
}

static json_t *target_json(const kyb_manifest_target *t)
{
        if (t->kind == KYB_TARGET_PROCESS)
                return json_pack("{s:{s:i}}", "process", "pid", (int)t->pid);
        return json_pack("{s:{s:s, s:s}}", "container", "namespace", S(t->container_namespace),
                         "id", S(t->container_id));
}

static json_t *device_json(const kyb_manifest_gpu_device *d)
{
        return json_pack("{s:s, s:s, s:I, s:I, s:s}", "uuid", S(d->uuid), "model", S(d->model),
                         "memoryTotalBytes", U(d->memory_total_bytes), "memoryUsedBytes",
                         U(d->memory_used_bytes), "pciBusId", S(d->pci_bus_id));
}

static json_t *process_json(const kyb_manifest_gpu_process *p)
{
        json_t *uuids = json_array();

        for (size_t i = 0; uuids && i < p->n_gpu_uuids; i++) {
                if (json_array_append_new(uuids, json_string(S(p->gpu_uuids[i]))) < 0) {
                        json_decref(uuids);
                        return NULL;
                }
        }
        return json_pack("{s:i, s:s?, s:o, s:I}", "pid", (int)p->pid, "state",
                         kyb_cuda_state_to_string(p->state), "gpuUuids", uuids, "deviceMemoryBytes",
                         U(p->device_memory_bytes));
}

static json_t *gpu_json(const kyb_manifest_gpu *g)
{
        json_t *devices = json_array();
        json_t *procs = json_array();

        for (size_t i = 0; devices && i < g->n_devices; i++)
                json_array_append_new(devices, device_json(&g->devices[i]));
        for (size_t i = 0; procs && i < g->n_processes; i++)
                json_array_append_new(procs, process_json(&g->processes[i]));
        /* A failed append (out of memory) shows up as a short array: catch it here. */
        if (devices && json_array_size(devices) != g->n_devices) {
                json_decref(devices);
                devices = NULL;
        }
        if (procs && json_array_size(procs) != g->n_processes) {
                json_decref(procs);
                procs = NULL;
        }
        return json_pack("{s:s?, s:b, s:I, s:s, s:i, s:o, s:o}", "mode",
                         kyb_gpu_mode_to_string(g->mode), "captured", g->captured, "lockTimeoutMs",
                         (json_int_t)g->lock_timeout_ms, "driverVersion", S(g->driver_version),
                         "cudaDriverVersion", (int)g->cuda_driver_version, "devices", devices,
                         "processes", procs);
}

static json_t *criu_json(const kyb_manifest_criu *c)
{
        return json_pack("{s:s, s:{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:s}}", "version",
                         S(c->version), "options", "leaveRunning", c->leave_running,
                         "tcpEstablished", c->tcp_established, "fileLocks", c->file_locks,
                         "shellJob", c->shell_job, "externalUnixSockets", c->external_unix_sockets,
                         "preDump", c->pre_dump, "lazyPages", c->lazy_pages, "parentId",
                         S(c->parent_id));
}

static json_t *steps_json(const kyb_manifest *m)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < m->n_steps; i++) {
                const kyb_manifest_step *st = &m->steps[i];

                if (json_array_append_new(a, json_pack("{s:s, s:I, s:I}", "name", S(st->name),
                                                       "durationMs", U(st->duration_ms), "bytes",
                                                       U(st->bytes))) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *labels_json(const kyb_manifest *m)
{
        json_t *o = json_object();

        for (size_t i = 0; o && i < m->n_labels; i++) {
                if (json_object_set_new(o, S(m->labels[i].key),
                                        json_string(S(m->labels[i].value))) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

static json_t *files_json(const kyb_manifest *m)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < m->n_files; i++) {
                const kyb_manifest_file *f = &m->files[i];
                char mode[8];

                snprintf(mode, sizeof(mode), "%04o", (unsigned)(f->mode & 0777));
                if (json_array_append_new(a, json_pack("{s:s, s:I, s:s, s:s}", "path", S(f->path),
                                                       "size", U(f->size), "sha256", f->sha256,
                                                       "mode", mode)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *manifest_json(const kyb_manifest *m, const char *created, json_error_t *jerr)
{
        return json_pack_ex(
            jerr, 0, "{s:i, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I}, s:o}",
            "formatVersion", KYB_MANIFEST_FORMAT_VERSION, "checkpointId", S(m->checkpoint_id),
            "createdAt", created, "node", S(m->node), "workload", workload_json(&m->workload),
            "target", target_json(&m->target), "gpu", gpu_json(&m->gpu), "criu",
            criu_json(&m->criu), "steps", steps_json(m), "labels", labels_json(m), "totals",
            "files", (json_int_t)m->n_files, "bytes", U(m->total_bytes), "files", files_json(m));
}

int kyb_manifest_to_json(const kyb_manifest *m, char **out, size_t *len, kyb_error **err)
{
        _cleanup_json_ json_t *root = NULL;
        char created[KYB_TIME_RFC3339_MAX];
        json_error_t jerr = {0};
        char *text;
        int rc;

        *out = NULL;
        rc = kyb_time_format_rfc3339(m->created_at_ns, created, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "manifest: createdAt");
        root = manifest_json(m, created, &jerr);
        if (!root)
                /* jansson refuses strings that are not UTF-8; anything else is memory. */
                return kyb_error_setf(err, EINVAL, "manifest: cannot encode as JSON (%s)",
                                      jerr.text[0] ? jerr.text : "invalid UTF-8 or out of memory");
        text = json_dumps(root, JSON_INDENT(2));
        if (!text)
                return kyb_error_set(err, ENOMEM, "manifest: encoding JSON");
        /* json_dumps leaves off the final newline that text tools expect. */
        rc = asprintf(out, "%s\n", text);
        free(text);
        if (rc < 0) {
                *out = NULL;
                return kyb_error_set(err, ENOMEM, "manifest: encoding JSON");
        }
        *len = (size_t)rc;
        return 0;
}
