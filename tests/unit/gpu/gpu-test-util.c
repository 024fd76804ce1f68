/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu-test-util.h"

static json_t *gpu(const char *uuid, const char *name, int minor)
{
        char bus[32];

        snprintf(bus, sizeof(bus), "00000000:%02X:00.0", 0x1a + minor);
        return json_pack("{s:s, s:s, s:I, s:I, s:s, s:i}", "uuid", uuid, "name", name,
                         "memory_total", (json_int_t)(80 * GiB), "memory_used",
                         (json_int_t)(1 * GiB), "pci_bus_id", bus, "minor", minor);
}

void tu_env_setup(tu_env *e)
{
        json_t *root;

        memset(e, 0, sizeof(*e));
        snprintf(e->dir, sizeof(e->dir), "/tmp/kyb-gpu-test-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        snprintf(e->path, sizeof(e->path), "%s/state.json", e->dir);
        root = json_pack("{s:s, s:i, s:[o,o,o], s:[]}", "driver_version", "580.65.06",
                         "cuda_version", 13000, "gpus", gpu(GPU_A, H100, 0), gpu(GPU_B, H100, 1),
                         gpu(GPU_C, A100, 2), "processes");
        assert_non_null(root);
        tu_state_write(e, root);
        assert_int_equal(setenv("KYB_GPU_STUB_STATE", e->path, 1), 0);
}

void tu_env_teardown(tu_env *e)
{
        for (size_t i = 0; i < e->n_kids; i++) {
                /* Never a group or "every process": only a child we forked. */
                if (e->kids[i] <= 1)
                        continue;
                kill(e->kids[i], SIGKILL);
                waitpid(e->kids[i], NULL, 0);
        }
        unsetenv("KYB_GPU_STUB_STATE");
        unlink(e->path);
        rmdir(e->dir);
}

/* Under a shared flock: the stand-ins rewrite the file in place. */
json_t *tu_state_read(const tu_env *e)
{
        int fd = open(e->path, O_RDONLY | O_CLOEXEC);
        json_error_t jerr;
        json_t *root;

        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_SH), 0);
        root = json_loadfd(fd, 0, &jerr);
        close(fd);
        if (!root)
                fail_msg("state file: %s", jerr.text);
        return root;
}

void tu_state_write(const tu_env *e, json_t *root)
{
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        int fd = open(e->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

        assert_non_null(text);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX), 0);
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, text, strlen(text), 0), (ssize_t)strlen(text));
        close(fd);
        free(text);
        json_decref(root);
}

static json_t *find_proc(json_t *root, pid_t pid)
{
        json_t *p;
        size_t i;

        json_array_foreach(json_object_get(root, "processes"), i, p)
        {
                if (json_integer_value(json_object_get(p, "pid")) == pid)
                        return p;
        }
        fail_msg("pid %d not in the state file", (int)pid);
        return NULL;
}

void tu_add_process(const tu_env *e, pid_t pid, uint64_t memory, ...)
{
        json_t *root = tu_state_read(e);
        json_t *gpus = json_array();
        const char *uuid;
        va_list ap;

        va_start(ap, memory);
        while ((uuid = va_arg(ap, const char *)))
                json_array_append_new(
                    gpus, json_pack("{s:s, s:I}", "uuid", uuid, "memory", (json_int_t)memory));
        va_end(ap);
        json_array_append_new(
            json_object_get(root, "processes"),
            json_pack("{s:i, s:s, s:o}", "pid", (int)pid, "state", "running", "gpus", gpus));
        tu_state_write(e, root);
}

void tu_set(const tu_env *e, pid_t pid, const char *key, json_t *value)
{
        json_t *root = tu_state_read(e);

        json_object_set_new(find_proc(root, pid), key, value);
        tu_state_write(e, root);
}

void tu_set_root(const tu_env *e, const char *key, json_t *value)
{
        json_t *root = tu_state_read(e);

        json_object_set_new(root, key, value);
        tu_state_write(e, root);
}

void tu_fail(const tu_env *e, pid_t pid, const char *op, json_t *value)
{
        json_t *root = tu_state_read(e);
        json_t *obj = pid ? find_proc(root, pid) : root;
        json_t *fail = json_object_get(obj, "fail");

        if (!fail) {
                fail = json_object();
                json_object_set_new(obj, "fail", fail);
        }
        if (value)
                json_object_set_new(fail, op, value);
        else
                json_object_del(fail, op);
        tu_state_write(e, root);
}

const char *tu_state_of(const tu_env *e, pid_t pid, char buf[32])
{
        json_t *root = tu_state_read(e);

        snprintf(buf, 32, "%s", json_string_value(json_object_get(find_proc(root, pid), "state")));
        json_decref(root);
        return buf;
}

int64_t tu_calls(const tu_env *e, pid_t pid, const char *op)
{
        json_t *root = tu_state_read(e);
        json_t *obj = pid ? find_proc(root, pid) : root;
        int64_t n = json_integer_value(json_object_get(json_object_get(obj, "calls"), op));

        json_decref(root);
        return n;
}

void tu_proc_gpu(const tu_env *e, pid_t pid, size_t index, char out[64])
{
        json_t *root = tu_state_read(e);
        json_t *g = json_array_get(json_object_get(find_proc(root, pid), "gpus"), index);

        snprintf(out, 64, "%s", json_string_value(json_object_get(g, "uuid")));
        json_decref(root);
}

static void sleep_forever(void)
{
        for (;;)
                pause();
}

pid_t tu_spawn(tu_env *e)
{
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0)
                sleep_forever();
        assert_true(e->n_kids < sizeof(e->kids) / sizeof(e->kids[0]));
        e->kids[e->n_kids++] = pid;
        return pid;
}

pid_t tu_spawn_tree(tu_env *e, pid_t *grandchild)
{
        int fds[2];
        pid_t pid;

        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                pid_t g = fork();

                if (g == 0)
                        sleep_forever();
                if (write(fds[1], &g, sizeof(g)) != sizeof(g))
                        _exit(1);
                sleep_forever();
        }
        assert_int_equal(read(fds[0], grandchild, sizeof(*grandchild)), sizeof(*grandchild));
        close(fds[0]);
        close(fds[1]);
        e->kids[e->n_kids++] = pid;
        e->kids[e->n_kids++] = *grandchild;
        return pid;
}
