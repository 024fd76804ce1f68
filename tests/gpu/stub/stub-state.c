/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "stub-state.h"

static const char *const state_names[] = {"running", "locked", "checkpointed", "failed"};

int stub_begin(stub_tx *tx)
{
        const char *path = getenv(STUB_STATE_ENV);
        json_error_t jerr;

        memset(tx, 0, sizeof(*tx));
        tx->fd = -1;
        if (!path || !*path)
                return -1;
        tx->fd = open(path, O_RDWR | O_CLOEXEC);
        if (tx->fd < 0)
                return -1;
        if (flock(tx->fd, LOCK_EX) < 0) {
                stub_end(tx);
                return STUB_STATE_UNREADABLE;
        }
        tx->root = json_loadfd(tx->fd, 0, &jerr);
        if (!tx->root || !json_is_object(tx->root)) {
                stub_end(tx);
                return STUB_STATE_UNREADABLE;
        }
        return 0;
}

static void write_back(stub_tx *tx)
{
        char *text = json_dumps(tx->root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        size_t len, off = 0;

        if (!text)
                return;
        len = strlen(text);
        if (ftruncate(tx->fd, 0) == 0) {
                while (off < len) {
                        ssize_t n = pwrite(tx->fd, text + off, len - off, (off_t)off);

                        if (n <= 0 && errno != EINTR)
                                break;
                        if (n > 0)
                                off += (size_t)n;
                }
        }
        free(text);
}

void stub_end(stub_tx *tx)
{
        if (tx->root && tx->dirty)
                write_back(tx);
        json_decref(tx->root);
        if (tx->fd >= 0)
                close(tx->fd); /* releases the flock */
        memset(tx, 0, sizeof(*tx));
        tx->fd = -1;
}

json_t *stub_gpus(stub_tx *tx)
{
        json_t *a = json_object_get(tx->root, "gpus");

        return json_is_array(a) ? a : NULL;
}

json_t *stub_gpu_by_uuid(stub_tx *tx, const char *uuid)
{
        json_t *a = stub_gpus(tx), *g;
        size_t i;

        json_array_foreach(a, i, g)
        {
                if (!strcasecmp(stub_str(g, "uuid", ""), uuid))
                        return g;
        }
        return NULL;
}

json_t *stub_process(stub_tx *tx, int pid)
{
        json_t *a = json_object_get(tx->root, "processes"), *p;
        size_t i;

        json_array_foreach(a, i, p)
        {
                if (stub_int(p, "pid", -1) == pid)
                        return p;
        }
        return NULL;
}

int64_t stub_int(json_t *obj, const char *key, int64_t dflt)
{
        json_t *v = json_object_get(obj, key);

        return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

const char *stub_str(json_t *obj, const char *key, const char *dflt)
{
        json_t *v = json_object_get(obj, key);

        return json_is_string(v) ? json_string_value(v) : dflt;
}

void stub_set_int(stub_tx *tx, json_t *obj, const char *key, int64_t v)
{
        json_object_set_new(obj, key, json_integer(v));
        tx->dirty = true;
}

void stub_count_call(stub_tx *tx, json_t *obj, const char *what)
{
        json_t *calls = json_object_get(obj, "calls");

        if (!json_is_object(calls)) {
                calls = json_object();
                json_object_set_new(obj, "calls", calls);
        }
        stub_set_int(tx, calls, what, stub_int(calls, what, 0) + 1);
}

static int parse_state(const char *s)
{
        for (int i = 0; i < 4; i++)
                if (!strcmp(s, state_names[i]))
                        return i;
        return -1;
}

int stub_proc_state(json_t *proc)
{
        int s = parse_state(stub_str(proc, "state", "running"));

        return s < 0 ? 3 : s;
}

void stub_set_proc_state(stub_tx *tx, json_t *proc, int state)
{
        json_object_set_new(proc, "state", json_string(state_names[state & 3]));
        tx->dirty = true;
}

static int error_code(json_t *v, int (*lookup)(const char *name))
{
        if (json_is_integer(v))
                return (int)json_integer_value(v);
        if (json_is_string(v))
                return lookup(json_string_value(v));
        return 0;
}

int stub_fail(stub_tx *tx, json_t *obj, const char *op, int (*lookup)(const char *name),
              int *state_after)
{
        json_t *fail = json_object_get(obj, "fail");
        json_t *v = json_object_get(fail, op);
        int code;

        *state_after = -1;
        if (!v)
                return 0;
        if (!json_is_object(v))
                return error_code(v, lookup);
        code = error_code(json_object_get(v, "error"), lookup);
        *state_after = parse_state(stub_str(v, "state", ""));
        if (json_is_integer(json_object_get(v, "times"))) {
                int64_t left = stub_int(v, "times", 1) - 1;

                if (left <= 0)
                        json_object_del(fail, op);
                else
                        stub_set_int(tx, v, "times", left);
                tx->dirty = true;
        }
        return code;
}

uint64_t stub_gpu_used(stub_tx *tx, const char *uuid)
{
        json_t *gpu = stub_gpu_by_uuid(tx, uuid);
        json_t *procs = json_object_get(tx->root, "processes"), *p, *pg;
        uint64_t used = gpu ? (uint64_t)stub_int(gpu, "memory_used", 0) : 0;
        size_t i, j;

        json_array_foreach(procs, i, p)
        {
                if (stub_proc_state(p) == STUB_STATE_CHECKPOINTED)
                        continue; /* checkpointed: its memory is in host RAM */
                json_array_foreach(json_object_get(p, "gpus"), j, pg)
                {
                        if (!strcasecmp(stub_str(pg, "uuid", ""), uuid))
                                used += (uint64_t)stub_int(pg, "memory", 0);
                }
        }
        return used;
}
