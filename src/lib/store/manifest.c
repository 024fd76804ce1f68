/* SPDX-License-Identifier: Apache-2.0 */
/* The manifest struct: construction, lookups, path rules and time format.
 * JSON lives in manifest-json.c. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/manifest.h"

int kyb_manifest_new(kyb_manifest **out, kyb_error **err)
{
        *out = calloc(1, sizeof(**out));
        if (!*out)
                return kyb_error_set(err, ENOMEM, "manifest");
        (*out)->format_version = KYB_MANIFEST_FORMAT_VERSION;
        return 0;
}

static void free_gpu(kyb_manifest_gpu *gpu)
{
        for (size_t i = 0; i < gpu->n_devices; i++) {
                free(gpu->devices[i].uuid);
                free(gpu->devices[i].model);
                free(gpu->devices[i].pci_bus_id);
        }
        free(gpu->devices);
        for (size_t i = 0; i < gpu->n_processes; i++) {
                for (size_t j = 0; j < gpu->processes[i].n_gpu_uuids; j++)
                        free(gpu->processes[i].gpu_uuids[j]);
                free(gpu->processes[i].gpu_uuids);
        }
        free(gpu->processes);
        free(gpu->driver_version);
}

void kyb_manifest_clear_files(kyb_manifest *m)
{
        for (size_t i = 0; i < m->n_files; i++)
                free(m->files[i].path);
        free(m->files);
        m->files = NULL;
        m->n_files = 0;
        m->total_bytes = 0;
}

void kyb_manifest_clear(kyb_manifest *m)
{
        if (!m)
                return;
        free(m->checkpoint_id);
        free(m->node);
        free(m->workload.pod_namespace);
        free(m->workload.pod_name);
        free(m->workload.pod_uid);
        free(m->workload.container_name);
        free(m->workload.image);
        free(m->target.container_namespace);
        free(m->target.container_id);
        free_gpu(&m->gpu);
        free(m->criu.version);
        free(m->criu.parent_id);
        for (size_t i = 0; i < m->n_steps; i++)
                free(m->steps[i].name);
        free(m->steps);
        for (size_t i = 0; i < m->n_labels; i++) {
                free(m->labels[i].key);
                free(m->labels[i].value);
        }
        free(m->labels);
        kyb_manifest_clear_files(m);
        memset(m, 0, sizeof(*m));
}

void kyb_manifest_free(kyb_manifest *m)
{
        kyb_manifest_clear(m);
        free(m);
}

/* Grows *v (of elements of size sz) by one zeroed element; *n is its count. */
static void *grow(void *v, size_t *n, size_t sz)
{
        char *nv = reallocarray(v, *n + 1, sz);

        if (!nv)
                return NULL;
        memset(nv + *n * sz, 0, sz);
        (*n)++;
        return nv;
}

static int dup_or_fail(char **dst, const char *src, kyb_error **err)
{
        *dst = strdup(src ? src : "");
        if (!*dst)
                return kyb_error_set(err, ENOMEM, "manifest");
        return 0;
}

const char *kyb_manifest_label(const kyb_manifest *m, const char *key)
{
        for (size_t i = 0; i < m->n_labels; i++) {
                if (!strcmp(m->labels[i].key, key))
                        return m->labels[i].value;
        }
        return NULL;
}

int kyb_manifest_set_label(kyb_manifest *m, const char *key, const char *value, kyb_error **err)
{
        _cleanup_free_ char *v = NULL;
        _cleanup_free_ char *k = NULL;
        kyb_label *nl;
        size_t n = m->n_labels;

        if (!key || !*key)
                return kyb_error_setf(err, EINVAL, "manifest: empty label key");
        if (dup_or_fail(&v, value, err) < 0 || dup_or_fail(&k, key, err) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_labels; i++) {
                if (!strcmp(m->labels[i].key, key)) {
                        free(m->labels[i].value);
                        m->labels[i].value = TAKE_PTR(v);
                        return 0;
                }
        }
        nl = grow(m->labels, &n, sizeof(*nl));
        if (!nl)
                return kyb_error_set(err, ENOMEM, "manifest");
        m->labels = nl;
        m->n_labels = n;
        nl[n - 1].key = TAKE_PTR(k);
        nl[n - 1].value = TAKE_PTR(v);
        return 0;
}

int kyb_manifest_add_step(kyb_manifest *m, const char *name, uint64_t duration_ms, uint64_t bytes,
                          kyb_error **err)
{
        _cleanup_free_ char *s = NULL;
        kyb_manifest_step *ns;
        size_t n = m->n_steps;

        if (!name || !*name)
                return kyb_error_setf(err, EINVAL, "manifest: empty step name");
        if (dup_or_fail(&s, name, err) < 0)
                return -ENOMEM;
        ns = grow(m->steps, &n, sizeof(*ns));
        if (!ns)
                return kyb_error_set(err, ENOMEM, "manifest");
        m->steps = ns;
        m->n_steps = n;
        ns[n - 1] = (kyb_manifest_step){TAKE_PTR(s), duration_ms, bytes};
        return 0;
}

int kyb_manifest_add_gpu_device(kyb_manifest *m, const kyb_manifest_gpu_device *dev,
                                kyb_error **err)
{
        kyb_manifest_gpu_device d = *dev;
        kyb_manifest_gpu_device *nd;
        size_t n = m->gpu.n_devices;

        d.uuid = strdup(dev->uuid ? dev->uuid : "");
        d.model = strdup(dev->model ? dev->model : "");
        d.pci_bus_id = strdup(dev->pci_bus_id ? dev->pci_bus_id : "");
        nd = (d.uuid && d.model && d.pci_bus_id) ? grow(m->gpu.devices, &n, sizeof(*nd)) : NULL;
        if (!nd) {
                free(d.uuid);
                free(d.model);
                free(d.pci_bus_id);
                return kyb_error_set(err, ENOMEM, "manifest");
        }
        m->gpu.devices = nd;
        m->gpu.n_devices = n;
        nd[n - 1] = d;
        return 0;
}

static void free_strv(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

int kyb_manifest_add_gpu_process(kyb_manifest *m, const kyb_manifest_gpu_process *proc,
                                 kyb_error **err)
{
        kyb_manifest_gpu_process p = *proc;
        kyb_manifest_gpu_process *np;
        size_t n = m->gpu.n_processes;

        p.gpu_uuids = calloc(proc->n_gpu_uuids + 1, sizeof(char *));
        if (!p.gpu_uuids)
                return kyb_error_set(err, ENOMEM, "manifest");
        for (size_t i = 0; i < proc->n_gpu_uuids; i++) {
                if (dup_or_fail(&p.gpu_uuids[i], proc->gpu_uuids[i], err) < 0) {
                        free_strv(p.gpu_uuids, i);
                        return -ENOMEM;
                }
        }
        np = grow(m->gpu.processes, &n, sizeof(*np));
        if (!np) {
                free_strv(p.gpu_uuids, proc->n_gpu_uuids);
                return kyb_error_set(err, ENOMEM, "manifest");
        }
        m->gpu.processes = np;
        m->gpu.n_processes = n;
        np[n - 1] = p;
        return 0;
}

static bool is_sha256_hex(const char *s)
{
        size_t i;

        for (i = 0; s[i]; i++) {
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        }
        return i == KYB_SHA256_HEX_LEN;
}

int kyb_manifest_add_file(kyb_manifest *m, const char *path, uint64_t size, const char *sha256,
                          mode_t mode, kyb_error **err)
{
        _cleanup_free_ char *p = NULL;
        kyb_manifest_file *nf;
        size_t n = m->n_files;
        int rc;

        rc = kyb_manifest_check_path(path, err);
        if (rc < 0)
                return rc;
        if (!sha256 || !is_sha256_hex(sha256))
                return kyb_error_setf(err, EINVAL, "manifest: file %s: bad sha256", path);
        if (dup_or_fail(&p, path, err) < 0)
                return -ENOMEM;
        nf = grow(m->files, &n, sizeof(*nf));
        if (!nf)
                return kyb_error_set(err, ENOMEM, "manifest");
        m->files = nf;
        m->n_files = n;
        nf[n - 1].path = TAKE_PTR(p);
        nf[n - 1].size = size;
        nf[n - 1].mode = mode & 0777;
        memcpy(nf[n - 1].sha256, sha256, KYB_SHA256_HEX_LEN + 1);
        m->total_bytes += size;
        return 0;
}

const kyb_manifest_file *kyb_manifest_find_file(const kyb_manifest *m, const char *path)
{
        for (size_t i = 0; i < m->n_files; i++) {
                if (!strcmp(m->files[i].path, path))
                        return &m->files[i];
        }
        return NULL;
}

/* Checks one component [start, end) of a path. */
static bool component_ok(const char *c, size_t len)
{
        if (len == 0 || c[0] == '.')
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)c[i];

                if (ch <= 0x20 || ch >= 0x7f || ch == '\\')
                        return false;
        }
        return true;
}

/* Length of the leading run of printable ASCII, so messages never echo raw
 * control characters from an untrusted manifest. */
static size_t printable_prefix(const char *s)
{
        size_t i = 0;

        while (s[i] >= 0x20 && s[i] < 0x7f)
                i++;
        return i;
}

int kyb_manifest_check_path(const char *path, kyb_error **err)
{
        size_t len = path ? strnlen(path, KYB_MANIFEST_PATH_MAX + 1) : 0;
        size_t depth = 0;
        const char *c = path;

        if (len == 0 || len > KYB_MANIFEST_PATH_MAX)
                return kyb_error_setf(err, EBADMSG, "file path of %zu bytes is not allowed", len);
        if (!strcmp(path, KYB_MANIFEST_NAME))
                return kyb_error_setf(err, EBADMSG, "file path %s is reserved", path);
        for (;;) {
                const char *slash = strchr(c, '/');
                size_t clen = slash ? (size_t)(slash - c) : strlen(c);

                if (!component_ok(c, clen) || ++depth > KYB_MANIFEST_PATH_DEPTH)
                        return kyb_error_setf(
                            err, EBADMSG,
                            "file path '%.*s' is not allowed (relative, at most %d levels, no "
                            "'..', hidden or empty components, printable ASCII)",
                            (int)printable_prefix(path), path, KYB_MANIFEST_PATH_DEPTH);
                if (!slash)
                        return 0;
                c = slash + 1;
        }
}

int kyb_time_format_rfc3339(int64_t ns, char buf[KYB_TIME_RFC3339_MAX], kyb_error **err)
{
        time_t secs = (time_t)(ns / 1000000000);
        long frac = (long)(ns % 1000000000);
        struct tm tm;
        char digits[16];
        size_t n;

        if (ns < 0 || !gmtime_r(&secs, &tm))
                return kyb_error_setf(err, EINVAL, "time %lld ns is out of range", (long long)ns);
        n = strftime(buf, KYB_TIME_RFC3339_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0)
                return kyb_error_setf(err, EINVAL, "time %lld ns is out of range", (long long)ns);
        if (frac) {
                /* Shortest exact fraction, as Go's RFC3339Nano: .5 rather than .500000000. */
                snprintf(digits, sizeof(digits), "%09ld", frac);
                for (size_t i = 8; digits[i] == '0'; i--)
                        digits[i] = '\0';
                snprintf(buf + n, KYB_TIME_RFC3339_MAX - n, ".%sZ", digits);
        } else {
                snprintf(buf + n, KYB_TIME_RFC3339_MAX - n, "Z");
        }
        return 0;
}

/* Reads exactly n decimal digits. */
static bool read_digits(const char **s, int n, int *out)
{
        int v = 0;

        for (int i = 0; i < n; i++) {
                if ((*s)[i] < '0' || (*s)[i] > '9')
                        return false;
                v = v * 10 + ((*s)[i] - '0');
        }
        *s += n;
        *out = v;
        return true;
}

static bool expect_char(const char **s, char c)
{
        if (**s != c)
                return false;
        (*s)++;
        return true;
}

static bool parse_fraction(const char **s, long *frac)
{
        long scale = 100000000;
        int n = 0;

        *frac = 0;
        if (**s != '.')
                return true;
        (*s)++;
        while (**s >= '0' && **s <= '9') {
                if (++n > 9)
                        return false;
                *frac += (**s - '0') * scale;
                scale /= 10;
                (*s)++;
        }
        return n > 0;
}

int kyb_time_parse_rfc3339(const char *s, int64_t *ns, kyb_error **err)
{
        const char *p = s ? s : "";
        struct tm tm = {0}, check;
        long frac;
        time_t secs;
        int y, mo, d, h, mi, sec;

        if (!read_digits(&p, 4, &y) || !expect_char(&p, '-') || !read_digits(&p, 2, &mo) ||
            !expect_char(&p, '-') || !read_digits(&p, 2, &d) || !expect_char(&p, 'T') ||
            !read_digits(&p, 2, &h) || !expect_char(&p, ':') || !read_digits(&p, 2, &mi) ||
            !expect_char(&p, ':') || !read_digits(&p, 2, &sec) || !parse_fraction(&p, &frac) ||
            !expect_char(&p, 'Z') || *p)
                return kyb_error_setf(err, EINVAL, "'%.40s' is not an RFC 3339 UTC time", s);
        tm = (struct tm){.tm_year = y - 1900,
                         .tm_mon = mo - 1,
                         .tm_mday = d,
                         .tm_hour = h,
                         .tm_min = mi,
                         .tm_sec = sec};
        secs = timegm(&tm);
        /* timegm normalises 2024-02-30 into March: a round trip catches that. */
        if (y < 1970 || !gmtime_r(&secs, &check) || check.tm_mday != d || check.tm_mon != mo - 1 ||
            check.tm_hour != h || check.tm_min != mi || check.tm_sec != sec)
                return kyb_error_setf(err, EINVAL, "'%.40s' is not a valid UTC time", s);
        /* Nanoseconds since 1970 in an int64_t end in April 2262. */
        if (secs > (INT64_MAX - 999999999) / 1000000000)
                return kyb_error_setf(err, EINVAL, "'%.40s' is out of range (after 2262)", s);
        *ns = (int64_t)secs * 1000000000 + frac;
        return 0;
}

const char *kyb_gpu_mode_to_string(kyb_gpu_mode mode)
{
        switch (mode) {
        case KYB_GPU_MODE_AUTO:
                return "auto";
        case KYB_GPU_MODE_OFF:
                return "off";
        case KYB_GPU_MODE_REQUIRED:
                return "required";
        }
        return NULL;
}

const char *kyb_cuda_state_to_string(kyb_cuda_state state)
{
        switch (state) {
        case KYB_CUDA_RUNNING:
                return "running";
        case KYB_CUDA_LOCKED:
                return "locked";
        case KYB_CUDA_CHECKPOINTED:
                return "checkpointed";
        case KYB_CUDA_FAILED:
                return "failed";
        }
        return NULL;
}
