/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared state of the stand-in GPU drivers (test code, never installed).
 *
 * $KYB_GPU_STUB_STATE names a JSON file (format in docs/gpu.md) describing
 * the fake GPUs, the processes that count as CUDA processes and the failures
 * to inject. Every driver call is one transaction on it: open, flock
 * (LOCK_EX), parse, act, write back in place if something changed, unlock.
 * So a test and an agent process (or several) see one consistent driver.
 * flock belongs to the open file: a process forked while another thread is
 * inside a call holds the lock too until it closes the descriptor (exec
 * does, O_CLOEXEC), so tests fork their fake CUDA processes first.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define STUB_EXPORT __attribute__((visibility("default")))

#define STUB_STATE_ENV          "KYB_GPU_STUB_STATE"
#define STUB_DEFAULT_CUDA       13000
#define STUB_DEFAULT_DRIVER     "580.65.06"
#define STUB_STATE_UNREADABLE   (-2)
#define STUB_STATE_CHECKPOINTED 2

typedef struct stub_tx {
        int fd;
        json_t *root;
        bool dirty;
} stub_tx;

/* 0, -1 when the variable is unset or the file missing (no driver), or
 * STUB_STATE_UNREADABLE. */
int stub_begin(stub_tx *tx);
void stub_end(stub_tx *tx);

json_t *stub_gpus(stub_tx *tx);
json_t *stub_gpu_by_uuid(stub_tx *tx, const char *uuid);
json_t *stub_process(stub_tx *tx, int pid);

int64_t stub_int(json_t *obj, const char *key, int64_t dflt);
const char *stub_str(json_t *obj, const char *key, const char *dflt);
void stub_set_int(stub_tx *tx, json_t *obj, const char *key, int64_t v);
void stub_count_call(stub_tx *tx, json_t *obj, const char *what);

/* "running", "locked", "checkpointed", "failed" <-> 0..3 */
int stub_proc_state(json_t *proc);
void stub_set_proc_state(stub_tx *tx, json_t *proc, int state);

/*
 * The failure injected for `op` in obj's "fail" object, or 0. A value is an
 * error name (lookup turns it into a code), a number, or
 * {"error": E, "times": N, "state": S}: fail N times (then the entry is
 * removed), leaving the process in state S. *state_after is -1 when the
 * state is not to change.
 */
int stub_fail(stub_tx *tx, json_t *obj, const char *op, int (*lookup)(const char *name),
              int *state_after);

/* Device memory in use on a GPU: what the file says others use, plus every
 * listed process that is not checkpointed. */
uint64_t stub_gpu_used(stub_tx *tx, const char *uuid);
