/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading manifest.json strictly: every field a v1 writer emits must be
 * there with its JSON type; errors name the field as a path
 * ("manifest: gpu.devices[1].uuid: expected a string") and are -EBADMSG.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/validate.h"
#include "store/digest.h"
#include "store/manifest.h"

#define PID_MAX_LIMIT 4194304

/* jansson's own json_decrefp() releases a local at scope exit. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Where in the document a value sits, for messages: "gpu.devices[1]". */
typedef char where_t[160];

static const char *sep(const char *where)
{
        return where[0] ? "." : "";
}

static json_t *field(json_t *obj, const char *where, const char *key, json_type type,
                     const char *type_name, kyb_error **err)
{
        json_t *v = json_object_get(obj, key);

        if (!v) {
                kyb_error_setf(err, EBADMSG, "manifest: %s%s%s: missing", where, sep(where), key);
                return NULL;
        }
        if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v))) {
                kyb_error_setf(err, EBADMSG, "manifest: %s%s%s: expected %s", where, sep(where),
                               key, type_name);
                return NULL;
        }
        return v;
}

static int get_str(json_t *obj, const char *where, const char *key, char **out, kyb_error **err)
{
        json_t *v = field(obj, where, key, JSON_STRING, "a string", err);

        if (!v)
                return -EBADMSG;
        *out = strdup(json_string_value(v));
        if (!*out)
                return kyb_error_set(err, ENOMEM, "manifest");
        return 0;
}

static int get_int(json_t *obj, const char *where, const char *key, int64_t min, int64_t max,
                   int64_t *out, kyb_error **err)
{
        json_t *v = field(obj, where, key, JSON_INTEGER, "an integer", err);

        if (!v)
                return -EBADMSG;
        *out = json_integer_value(v);
        if (*out < min || *out > max)
                return kyb_error_setf(err, EBADMSG, "manifest: %s%s%s: %lld is out of range", where,
                                      sep(where), key, (long long)*out);
        return 0;
}

static int get_u64(json_t *obj, const char *where, const char *key, uint64_t *out, kyb_error **err)
{
        int64_t v;
        int rc = get_int(obj, where, key, 0, INT64_MAX, &v, err);

        *out = rc < 0 ? 0 : (uint64_t)v;
        return rc;
}

static int get_bool(json_t *obj, const char *where, const char *key, bool *out, kyb_error **err)
{
        json_t *v = field(obj, where, key, JSON_TRUE, "a boolean", err);

        if (!v)
                return -EBADMSG;
        *out = json_is_true(v);
        return 0;
}

static int get_enum(json_t *obj, const char *where, const char *key, const char *(*name)(int),
                    int n, int *out, kyb_error **err)
{
        json_t *v = field(obj, where, key, JSON_STRING, "a string", err);

        if (!v)
                return -EBADMSG;
        for (int i = 0; i < n; i++) {
                if (!strcmp(json_string_value(v), name(i))) {
                        *out = i;
                        return 0;
                }
        }
        return kyb_error_setf(err, EBADMSG, "manifest: %s%s%s: unknown value '%.32s'", where,
                              sep(where), key, json_string_value(v));
}

static const char *gpu_mode_name(int v)
{
        return kyb_gpu_mode_to_string((kyb_gpu_mode)v);
}

static const char *cuda_state_name(int v)
{
        return kyb_cuda_state_to_string((kyb_cuda_state)v);
}

static int parse_version(json_t *root, kyb_manifest *m, kyb_error **err)
{
        int64_t v;
        int rc = get_int(root, "", "formatVersion", 1, INT32_MAX, &v, err);

        if (rc < 0)
                return rc;
        if (v != KYB_MANIFEST_FORMAT_VERSION)
                return kyb_error_setf(err, ENOTSUP,
                                      "manifest: formatVersion %lld is not supported (this "
                                      "version reads %d)",
                                      (long long)v, KYB_MANIFEST_FORMAT_VERSION);
        m->format_version = (int)v;
        return 0;
}

static int parse_header(json_t *root, kyb_manifest *m, kyb_error **err)
{
        _cleanup_free_ char *created = NULL;
        _cleanup_error_ kyb_error *e = NULL;
        int rc;

        if ((rc = get_str(root, "", "checkpointId", &m->checkpoint_id, err)) < 0 ||
            (rc = get_str(root, "", "createdAt", &created, err)) < 0 ||
            (rc = get_str(root, "", "node", &m->node, err)) < 0)
                return rc;
        if (kyb_validate_id("checkpointId", m->checkpoint_id, &e) < 0)
                return kyb_error_setf(err, EBADMSG, "manifest: %s", kyb_error_message(e));
        if (kyb_time_parse_rfc3339(created, &m->created_at_ns, &e) < 0)
                return kyb_error_setf(err, EBADMSG, "manifest: createdAt: %s",
                                      kyb_error_message(e));
        return 0;
}

static int parse_workload(json_t *root, kyb_manifest_workload *w, kyb_error **err)
{
        json_t *o = field(root, "", "workload", JSON_OBJECT, "an object", err);
        int rc;

        if (!o)
                return -EBADMSG;
        if ((rc = get_str(o, "workload", "podNamespace", &w->pod_namespace, err)) < 0 ||
            (rc = get_str(o, "workload", "podName", &w->pod_name, err)) < 0 ||
            (rc = get_str(o, "workload", "podUid", &w->pod_uid, err)) < 0 ||
            (rc = get_str(o, "workload", "containerName", &w->container_name, err)) < 0 ||
            (rc = get_str(o, "workload", "image", &w->image, err)) < 0)
                return rc;
        return 0;
}

static int parse_target(json_t *root, kyb_manifest_target *t, kyb_error **err)
{
        json_t *o = field(root, "", "target", JSON_OBJECT, "an object", err);
        json_t *c, *p;
        int64_t pid;
        int rc;

        if (!o)
                return -EBADMSG;
        c = json_object_get(o, "container");
        p = json_object_get(o, "process");
        if (!c == !p)
                return kyb_error_setf(err, EBADMSG,
                                      "manifest: target: needs exactly one of container, process");
        if (p) {
                if (!(p = field(o, "target", "process", JSON_OBJECT, "an object", err)))
                        return -EBADMSG;
                t->kind = KYB_TARGET_PROCESS;
                rc = get_int(p, "target.process", "pid", 1, PID_MAX_LIMIT, &pid, err);
                t->pid = (int32_t)pid;
                return rc;
        }
        if (!(c = field(o, "target", "container", JSON_OBJECT, "an object", err)))
                return -EBADMSG;
        t->kind = KYB_TARGET_CONTAINER;
        if ((rc = get_str(c, "target.container", "namespace", &t->container_namespace, err)) < 0 ||
            (rc = get_str(c, "target.container", "id", &t->container_id, err)) < 0)
                return rc;
        return 0;
}

static int parse_device(json_t *o, const char *where, kyb_manifest_gpu_device *d, kyb_error **err)
{
        int rc;

        if ((rc = get_str(o, where, "uuid", &d->uuid, err)) < 0 ||
            (rc = get_str(o, where, "model", &d->model, err)) < 0 ||
            (rc = get_u64(o, where, "memoryTotalBytes", &d->memory_total_bytes, err)) < 0 ||
            (rc = get_u64(o, where, "memoryUsedBytes", &d->memory_used_bytes, err)) < 0 ||
            (rc = get_str(o, where, "pciBusId", &d->pci_bus_id, err)) < 0)
                return rc;
        return 0;
}

static int parse_uuids(json_t *o, const char *where, kyb_manifest_gpu_process *p, kyb_error **err)
{
        json_t *a = field(o, where, "gpuUuids", JSON_ARRAY, "an array", err);
        size_t i;
        json_t *v;

        if (!a)
                return -EBADMSG;
        p->gpu_uuids = calloc(json_array_size(a) + 1, sizeof(char *));
        if (!p->gpu_uuids)
                return kyb_error_set(err, ENOMEM, "manifest");
        json_array_foreach(a, i, v)
        {
                if (!json_is_string(v))
                        return kyb_error_setf(err, EBADMSG,
                                              "manifest: %s.gpuUuids[%zu]: expected a string",
                                              where, i);
                p->gpu_uuids[i] = strdup(json_string_value(v));
                if (!p->gpu_uuids[i])
                        return kyb_error_set(err, ENOMEM, "manifest");
                p->n_gpu_uuids = i + 1;
        }
        return 0;
}

static int parse_process(json_t *o, const char *where, kyb_manifest_gpu_process *p, kyb_error **err)
{
        int64_t pid;
        int state, rc;

        if ((rc = get_int(o, where, "pid", 1, PID_MAX_LIMIT, &pid, err)) < 0 ||
            (rc = get_enum(o, where, "state", cuda_state_name, 4, &state, err)) < 0 ||
            (rc = parse_uuids(o, where, p, err)) < 0 ||
            (rc = get_u64(o, where, "deviceMemoryBytes", &p->device_memory_bytes, err)) < 0)
                return rc;
        p->pid = (int32_t)pid;
        p->state = (kyb_cuda_state)state;
        return 0;
}

/* Allocates *v for the array's elements and calls parse on each object. */
static int parse_array(json_t *obj, const char *where, const char *key, size_t elem_size, void **v,
                       size_t *n, int (*parse)(json_t *, const char *, void *, kyb_error **),
                       kyb_error **err)
{
        json_t *a = field(obj, where, key, JSON_ARRAY, "an array", err);
        size_t i;
        json_t *e;

        if (!a)
                return -EBADMSG;
        *v = calloc(json_array_size(a) + 1, elem_size);
        if (!*v)
                return kyb_error_set(err, ENOMEM, "manifest");
        json_array_foreach(a, i, e)
        {
                where_t w;
                int rc;

                snprintf(w, sizeof(w), "%s%s%s[%zu]", where, sep(where), key, i);
                if (!json_is_object(e))
                        return kyb_error_setf(err, EBADMSG, "manifest: %s: expected an object", w);
                /* Count first: a half-parsed element still owns memory to free. */
                *n = i + 1;
                rc = parse(e, w, (char *)*v + i * elem_size, err);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

static int parse_device_v(json_t *o, const char *where, void *d, kyb_error **err)
{
        return parse_device(o, where, d, err);
}

static int parse_process_v(json_t *o, const char *where, void *p, kyb_error **err)
{
        return parse_process(o, where, p, err);
}

static int parse_gpu(json_t *root, kyb_manifest_gpu *g, kyb_error **err)
{
        json_t *o = field(root, "", "gpu", JSON_OBJECT, "an object", err);
        int64_t timeout, cuda;
        int mode, rc;

        if (!o)
                return -EBADMSG;
        if ((rc = get_enum(o, "gpu", "mode", gpu_mode_name, 3, &mode, err)) < 0 ||
            (rc = get_bool(o, "gpu", "captured", &g->captured, err)) < 0 ||
            (rc = get_int(o, "gpu", "lockTimeoutMs", 0, UINT32_MAX, &timeout, err)) < 0 ||
            (rc = get_str(o, "gpu", "driverVersion", &g->driver_version, err)) < 0 ||
            (rc = get_int(o, "gpu", "cudaDriverVersion", 0, INT32_MAX, &cuda, err)) < 0 ||
            (rc = parse_array(o, "gpu", "devices", sizeof(*g->devices), (void **)&g->devices,
                              &g->n_devices, parse_device_v, err)) < 0 ||
            (rc = parse_array(o, "gpu", "processes", sizeof(*g->processes), (void **)&g->processes,
                              &g->n_processes, parse_process_v, err)) < 0)
                return rc;
        g->mode = (kyb_gpu_mode)mode;
        g->lock_timeout_ms = (uint32_t)timeout;
        g->cuda_driver_version = (int32_t)cuda;
        return 0;
}

static int parse_criu(json_t *root, kyb_manifest_criu *c, kyb_error **err)
{
        json_t *o = field(root, "", "criu", JSON_OBJECT, "an object", err);
        static const char *W = "criu.options";
        json_t *opt;
        int rc;

        if (!o || get_str(o, "criu", "version", &c->version, err) < 0 ||
            !(opt = field(o, "criu", "options", JSON_OBJECT, "an object", err)))
                return -EBADMSG;
        if ((rc = get_bool(opt, W, "leaveRunning", &c->leave_running, err)) < 0 ||
            (rc = get_bool(opt, W, "tcpEstablished", &c->tcp_established, err)) < 0 ||
            (rc = get_bool(opt, W, "fileLocks", &c->file_locks, err)) < 0 ||
            (rc = get_bool(opt, W, "shellJob", &c->shell_job, err)) < 0 ||
            (rc = get_bool(opt, W, "externalUnixSockets", &c->external_unix_sockets, err)) < 0 ||
            (rc = get_bool(opt, W, "preDump", &c->pre_dump, err)) < 0 ||
            (rc = get_bool(opt, W, "lazyPages", &c->lazy_pages, err)) < 0 ||
            (rc = get_str(opt, W, "parentId", &c->parent_id, err)) < 0)
                return rc;
        /* The parent ID becomes a path (CRIU's --prev-images-dir) on restore. */
        if (c->parent_id[0] && kyb_validate_id("parent id", c->parent_id, NULL) < 0)
                return kyb_error_setf(err, EBADMSG, "manifest: criu.options.parentId: invalid");
        return 0;
}

static int parse_step(json_t *o, const char *where, void *v, kyb_error **err)
{
        kyb_manifest_step *st = v;
        int rc;

        if ((rc = get_str(o, where, "name", &st->name, err)) < 0 ||
            (rc = get_u64(o, where, "durationMs", &st->duration_ms, err)) < 0 ||
            (rc = get_u64(o, where, "bytes", &st->bytes, err)) < 0)
                return rc;
        if (!st->name[0])
                return kyb_error_setf(err, EBADMSG, "manifest: %s.name: empty", where);
        return 0;
}

static int parse_labels(json_t *root, kyb_manifest *m, kyb_error **err)
{
        json_t *o = field(root, "", "labels", JSON_OBJECT, "an object", err);
        const char *key;
        json_t *v;

        if (!o)
                return -EBADMSG;
        m->labels = calloc(json_object_size(o) + 1, sizeof(*m->labels));
        if (!m->labels)
                return kyb_error_set(err, ENOMEM, "manifest");
        json_object_foreach(o, key, v)
        {
                kyb_label *l = &m->labels[m->n_labels];

                if (!json_is_string(v) || !key[0])
                        return kyb_error_setf(err, EBADMSG,
                                              "manifest: labels: '%.64s' must be a non-empty key "
                                              "with a string value",
                                              key);
                l->key = strdup(key);
                l->value = strdup(json_string_value(v));
                m->n_labels++;
                if (!l->key || !l->value)
                        return kyb_error_set(err, ENOMEM, "manifest");
        }
        return 0;
}

/* "0644": four octal digits, permission bits only. */
static bool parse_mode(const char *s, mode_t *mode)
{
        if (strlen(s) != 4 || s[0] != '0')
                return false;
        *mode = 0;
        for (int i = 1; i < 4; i++) {
                if (s[i] < '0' || s[i] > '7')
                        return false;
                *mode = *mode * 8 + (mode_t)(s[i] - '0');
        }
        return true;
}

static int parse_file(json_t *o, const char *where, void *v, kyb_error **err)
{
        kyb_manifest_file *f = v;
        _cleanup_free_ char *sha = NULL;
        _cleanup_free_ char *mode = NULL;
        int rc;

        if ((rc = get_str(o, where, "path", &f->path, err)) < 0 ||
            (rc = get_u64(o, where, "size", &f->size, err)) < 0 ||
            (rc = get_str(o, where, "sha256", &sha, err)) < 0 ||
            (rc = get_str(o, where, "mode", &mode, err)) < 0)
                return rc;
        rc = kyb_manifest_check_path(f->path, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "manifest: %s.path", where);
        if (strlen(sha) != KYB_SHA256_HEX_LEN || strspn(sha, "0123456789abcdef") != strlen(sha))
                return kyb_error_setf(
                    err, EBADMSG, "manifest: %s.sha256: expected 64 lowercase hex digits", where);
        memcpy(f->sha256, sha, KYB_SHA256_HEX_LEN + 1);
        if (!parse_mode(mode, &f->mode))
                return kyb_error_setf(err, EBADMSG,
                                      "manifest: %s.mode: expected permission bits like \"0644\"",
                                      where);
        return 0;
}

static int cmp_file_ptr(const void *a, const void *b)
{
        return strcmp((*(kyb_manifest_file *const *)a)->path,
                      (*(kyb_manifest_file *const *)b)->path);
}

/* Two entries for one path would let one of them go unchecked. */
static int check_unique_paths(const kyb_manifest *m, kyb_error **err)
{
        _cleanup_free_ kyb_manifest_file **v = calloc(m->n_files + 1, sizeof(*v));

        if (!v)
                return kyb_error_set(err, ENOMEM, "manifest");
        for (size_t i = 0; i < m->n_files; i++)
                v[i] = &m->files[i];
        qsort(v, m->n_files, sizeof(*v), cmp_file_ptr);
        for (size_t i = 1; i < m->n_files; i++) {
                if (!strcmp(v[i - 1]->path, v[i]->path))
                        return kyb_error_setf(err, EBADMSG, "manifest: files: %s listed twice",
                                              v[i]->path);
        }
        return 0;
}

static int parse_files(json_t *root, kyb_manifest *m, kyb_error **err)
{
        json_t *totals = field(root, "", "totals", JSON_OBJECT, "an object", err);
        uint64_t nfiles, nbytes, sum = 0;
        int rc;

        if (!totals)
                return -EBADMSG;
        if ((rc = get_u64(totals, "totals", "files", &nfiles, err)) < 0 ||
            (rc = get_u64(totals, "totals", "bytes", &nbytes, err)) < 0 ||
            (rc = parse_array(root, "", "files", sizeof(*m->files), (void **)&m->files, &m->n_files,
                              parse_file, err)) < 0 ||
            (rc = check_unique_paths(m, err)) < 0)
                return rc;
        for (size_t i = 0; i < m->n_files; i++) {
                if (__builtin_add_overflow(sum, m->files[i].size, &sum))
                        return kyb_error_setf(err, EBADMSG, "manifest: file sizes overflow");
        }
        if (nfiles != m->n_files || nbytes != sum)
                return kyb_error_setf(err, EBADMSG,
                                      "manifest: totals (%llu files, %llu bytes) disagree with "
                                      "the file list (%zu files, %llu bytes)",
                                      (unsigned long long)nfiles, (unsigned long long)nbytes,
                                      m->n_files, (unsigned long long)sum);
        m->total_bytes = sum;
        return 0;
}

static int parse_root(json_t *root, kyb_manifest *m, kyb_error **err)
{
        int rc;

        if ((rc = parse_version(root, m, err)) < 0 || (rc = parse_header(root, m, err)) < 0 ||
            (rc = parse_workload(root, &m->workload, err)) < 0 ||
            (rc = parse_target(root, &m->target, err)) < 0 ||
            (rc = parse_gpu(root, &m->gpu, err)) < 0 ||
            (rc = parse_criu(root, &m->criu, err)) < 0 ||
            (rc = parse_array(root, "", "steps", sizeof(*m->steps), (void **)&m->steps, &m->n_steps,
                              parse_step, err)) < 0 ||
            (rc = parse_labels(root, m, err)) < 0 || (rc = parse_files(root, m, err)) < 0)
                return rc;
        return 0;
}

int kyb_manifest_from_json(const char *buf, size_t len, kyb_manifest **out, kyb_error **err)
{
        _cleanup_manifest_ kyb_manifest *m = NULL;
        _cleanup_json_ json_t *root = NULL;
        json_error_t jerr;
        int rc;

        *out = NULL;
        if (len > KYB_MANIFEST_MAX_BYTES)
                return kyb_error_setf(err, EBADMSG, "manifest: larger than %d bytes",
                                      KYB_MANIFEST_MAX_BYTES);
        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return kyb_error_setf(err, EBADMSG, "manifest: invalid JSON at line %d: %s",
                                      jerr.line, jerr.text);
        if (!json_is_object(root))
                return kyb_error_setf(err, EBADMSG, "manifest: expected a JSON object");
        m = calloc(1, sizeof(*m));
        if (!m)
                return kyb_error_set(err, ENOMEM, "manifest");
        rc = parse_root(root, m, err);
        if (rc < 0)
                return rc;
        *out = TAKE_PTR(m);
        return 0;
}

static int read_fd(int fd, const char *name, char **out, size_t *len, kyb_error **err)
{
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        if (fstat(fd, &st) < 0)
                return kyb_error_set(err, errno, "stat %s", name);
        if (!S_ISREG(st.st_mode))
                return kyb_error_setf(err, EBADMSG, "%s is not a regular file", name);
        if (st.st_size > KYB_MANIFEST_MAX_BYTES)
                return kyb_error_setf(err, EBADMSG, "%s is larger than %d bytes", name,
                                      KYB_MANIFEST_MAX_BYTES);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return kyb_error_set(err, ENOMEM, "reading %s", name);
        /* Read one byte past the stat size to notice a file that grew meanwhile. */
        while (n <= (size_t)st.st_size) {
                ssize_t r = read(fd, buf + n, (size_t)st.st_size + 1 - n);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return kyb_error_set(err, errno, "reading %s", name);
                if (r == 0)
                        break;
                n += (size_t)r;
        }
        if (n != (size_t)st.st_size)
                return kyb_error_setf(err, EBADMSG, "%s changed while it was read", name);
        buf[n] = '\0';
        *out = TAKE_PTR(buf);
        *len = n;
        return 0;
}

int kyb_manifest_read_at(int dirfd, const char *name, kyb_manifest **out,
                         char sha256[KYB_SHA256_HEX_LEN + 1], char **raw, size_t *raw_len,
                         kyb_error **err)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int rc;

        *out = NULL;
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0 && errno == ELOOP)
                return kyb_error_setf(err, EBADMSG, "%s is a symbolic link", name);
        if (fd < 0)
                return kyb_error_set(err, errno, "opening %s", name);
        rc = read_fd(fd, name, &buf, &len, err);
        if (rc < 0)
                return rc;
        if (sha256 && (rc = kyb_sha256_buf(buf, len, sha256, err)) < 0)
                return rc;
        rc = kyb_manifest_from_json(buf, len, out, err);
        if (rc < 0)
                return rc;
        if (raw) {
                *raw = TAKE_PTR(buf);
                *raw_len = len;
        }
        return 0;
}
