/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "store-test-util.h"
#include "store/fsutil.h"

void tu_assert_error(int rc, const kyb_error *err, int errnum, const char *fragment,
                     const char *file, int line)
{
        if (rc != -errnum)
                fail_msg("%s:%d: rc %d (%s), expected %d; message: %s", file, line, rc,
                         kyb_strerror(-rc), -errnum, kyb_error_message(err));
        if (kyb_error_errno(err) != errnum)
                fail_msg("%s:%d: error object errno %d, expected %d (%s)", file, line,
                         kyb_error_errno(err), errnum, kyb_error_message(err));
        if (fragment && !strstr(kyb_error_message(err), fragment))
                fail_msg("%s:%d: message '%s' lacks '%s'", file, line, kyb_error_message(err),
                         fragment);
}

char *tu_mkdtemp(void)
{
        const char *tmp = getenv("TMPDIR");
        char *p = NULL;

        assert_true(asprintf(&p, "%s/kyb-store-test-XXXXXX", tmp && *tmp ? tmp : "/tmp") > 0);
        assert_non_null(mkdtemp(p));
        return p;
}

void tu_rm_rf(const char *path)
{
        if (path)
                (void)kyb_fs_rm_rf_at(AT_FDCWD, path, NULL, NULL);
}

char *tu_path(const char *dir, const char *rel)
{
        char *p = NULL;

        assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
        return p;
}

static void mkdir_parents(const char *path)
{
        char buf[4096];

        for (size_t i = 1; path[i] && i < sizeof(buf); i++) {
                if (path[i] != '/')
                        continue;
                memcpy(buf, path, i);
                buf[i] = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        fail_msg("mkdir %s: %s", buf, kyb_strerror(errno));
        }
}

void tu_write(const char *dir, const char *rel, const void *data, size_t len)
{
        _cleanup_free_ char *p = tu_path(dir, rel);
        _cleanup_close_ int fd = -1;

        mkdir_parents(p);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                fail_msg("open %s: %s", p, kyb_strerror(errno));
        assert_int_equal(write(fd, data, len), (ssize_t)len);
}

void tu_write_pattern(const char *dir, const char *rel, size_t len, unsigned seed)
{
        _cleanup_free_ unsigned char *buf = malloc(len + 1);

        assert_non_null(buf);
        for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)((i * 31 + seed) ^ (i >> 8));
        tu_write(dir, rel, buf, len);
}

char *tu_read(const char *dir, const char *rel, size_t *len)
{
        _cleanup_free_ char *p = tu_path(dir, rel);
        FILE *f = fopen(p, "rb");
        char *buf = NULL;
        long n;

        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        rewind(f);
        buf = calloc(1, (size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        if (len)
                *len = (size_t)n;
        return buf;
}

bool tu_exists(const char *dir, const char *rel)
{
        _cleanup_free_ char *p = tu_path(dir, rel);
        struct stat st;

        return lstat(p, &st) == 0;
}

int tu_count_prefix(const char *dir, const char *prefix)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                n += !strncmp(de->d_name, prefix, strlen(prefix));
        closedir(d);
        return n;
}

static void set(char **field, const char *v)
{
        *field = strdup(v);
        assert_non_null(*field);
}

static void sample_gpu(kyb_manifest *m)
{
        kyb_manifest_gpu_device dev = {(char *)"GPU-11111111-2222-3333-4444-555555555555",
                                       (char *)"NVIDIA H100 80GB HBM3", 85899345920ULL,
                                       1234567890ULL, (char *)"00000000:1B:00.0"};
        char *uuids[] = {dev.uuid};
        kyb_manifest_gpu_process proc = {4242, KYB_CUDA_CHECKPOINTED, uuids, 1, 987654321ULL};

        m->gpu.mode = KYB_GPU_MODE_REQUIRED;
        m->gpu.captured = true;
        m->gpu.lock_timeout_ms = 5000;
        set(&m->gpu.driver_version, "570.86.15");
        m->gpu.cuda_driver_version = 12080;
        assert_int_equal(kyb_manifest_add_gpu_device(m, &dev, NULL), 0);
        assert_int_equal(kyb_manifest_add_gpu_process(m, &proc, NULL), 0);
}

kyb_manifest *tu_sample_manifest(void)
{
        kyb_manifest *m = NULL;

        assert_int_equal(kyb_manifest_new(&m, NULL), 0);
        set(&m->checkpoint_id, "ckpt-1");
        m->created_at_ns = 1714564800123456789LL; /* 2024-05-01T12:00:00.123456789Z */
        set(&m->node, "node-a");
        set(&m->workload.pod_namespace, "ml");
        set(&m->workload.pod_name, "llm-0");
        set(&m->workload.pod_uid, "0b6f5a5e-1d2c-4f5e-9a7b-1c2d3e4f5a6b");
        set(&m->workload.container_name, "server");
        set(&m->workload.image, "registry.example/llm:1.2");
        m->target.kind = KYB_TARGET_CONTAINER;
        set(&m->target.container_namespace, "k8s.io");
        set(&m->target.container_id, "abcdef0123");
        sample_gpu(m);
        set(&m->criu.version, "4.1.1");
        m->criu.leave_running = true;
        m->criu.tcp_established = true;
        m->criu.file_locks = true;
        m->criu.lazy_pages = true;
        set(&m->criu.parent_id, "ckpt-0");
        assert_int_equal(kyb_manifest_add_step(m, "gpu_lock", 12, 0, NULL), 0);
        assert_int_equal(kyb_manifest_add_step(m, "criu_dump", 3400, 123456789, NULL), 0);
        assert_int_equal(kyb_manifest_set_label(m, "app", "llm", NULL), 0);
        assert_int_equal(kyb_manifest_set_label(m, "kybernate.io/policy", "nightly", NULL), 0);
        return m;
}

void tu_make_checkpoint(kyb_store *s, const char *id, int64_t created_ns, size_t pages_size,
                        const char *label)
{
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_error_ kyb_error *err = NULL;
        kyb_store_txn *txn = NULL;
        const char *dir;
        int rc;

        m->created_at_ns = created_ns;
        if (label)
                assert_int_equal(kyb_manifest_set_label(m, "app", label, NULL), 0);
        rc = kyb_store_begin(s, id, &txn, &err);
        if (rc < 0)
                fail_msg("begin %s: %s", id, kyb_error_message(err));
        tu_write(kyb_store_txn_images_dir(txn), "inventory.img", "inventory", 9);
        tu_write_pattern(kyb_store_txn_images_dir(txn), "pages-1.img", pages_size, 7);
        dir = kyb_store_txn_dir(txn);
        tu_write(dir, "config.dump", "{\"id\":\"x\"}", 10);
        tu_write(dir, "spec.dump", "{}", 2);
        rc = kyb_store_commit(txn, m, &err);
        if (rc < 0)
                fail_msg("commit %s: %s", id, kyb_error_message(err));
}
