/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the GPU unit tests: the stand-in drivers' state file, fake
 * GPUs and CUDA processes (children of the test that only sleep). */
#pragma once

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "base/error.h"

/* STUB_CUDA, STUB_NVML, STUB_CUDA_LEGACY: paths of the stand-ins (meson). */

#define GPU_A "GPU-aaaaaaaa-0000-4000-8000-000000000001"
#define GPU_B "GPU-bbbbbbbb-0000-4000-8000-000000000002"
#define GPU_C "GPU-cccccccc-0000-4000-8000-000000000003"
#define H100  "NVIDIA H100 80GB HBM3"
#define A100  "NVIDIA A100-SXM4-80GB"
#define GiB   (1024ULL * 1024 * 1024)

/* A scratch directory with an empty state file; $KYB_GPU_STUB_STATE names
 * it. Three GPUs: GPU_A and GPU_B (H100), GPU_C (A100), 80 GiB each. */
typedef struct tu_env {
        char dir[64];
        char path[96];
        pid_t kids[16];
        size_t n_kids;
} tu_env;

void tu_env_setup(tu_env *e);
void tu_env_teardown(tu_env *e);

json_t *tu_state_read(const tu_env *e);
/* Writes root (the reference is stolen) under the stand-ins' file lock. */
void tu_state_write(const tu_env *e, json_t *root);

/* Adds a CUDA process using `memory` bytes on each GPU of the NULL-ended
 * list. */
void tu_add_process(const tu_env *e, pid_t pid, uint64_t memory, ...);
/* Sets proc[key] = value (a JSON value, stolen) for pid. */
void tu_set(const tu_env *e, pid_t pid, const char *key, json_t *value);
/* Sets proc.fail[op] = value for pid (pid 0: the top level). */
void tu_fail(const tu_env *e, pid_t pid, const char *op, json_t *value);
void tu_set_root(const tu_env *e, const char *key, json_t *value);

const char *tu_state_of(const tu_env *e, pid_t pid, char buf[32]);
int64_t tu_calls(const tu_env *e, pid_t pid, const char *op);
/* The UUID of the GPU the process's gpus[index] now names. */
void tu_proc_gpu(const tu_env *e, pid_t pid, size_t index, char out[64]);

/* A child that sleeps until the teardown kills it. */
pid_t tu_spawn(tu_env *e);
/* A child that forks a grandchild; both sleep. */
pid_t tu_spawn_tree(tu_env *e, pid_t *grandchild);

#define assert_error(rc, err, want_errno, substr)                                                  \
        do {                                                                                       \
                int _rc = (rc);                                                                    \
                if (_rc != -(want_errno))                                                          \
                        fail_msg("rc %d, want %d: %s", _rc, -(want_errno),                         \
                                 kyb_error_message(err));                                          \
                if (!strstr(kyb_error_message(err), (substr)))                                     \
                        fail_msg("'%s' lacks '%s'", kyb_error_message(err), (substr));             \
                kyb_error_freep(&(err));                                                           \
        } while (0)

#define assert_ok(rc, err)                                                                         \
        do {                                                                                       \
                if ((rc) < 0)                                                                      \
                        fail_msg("failed: %s", kyb_error_message(err));                            \
        } while (0)
