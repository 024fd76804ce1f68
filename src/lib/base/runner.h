/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running external programs (criu, cuda-checkpoint, ...) without a shell.
 *
 * The child gets exactly fds 0-2: stdin from /dev/null (or a given fd),
 * stdout and stderr into bounded capture buffers; every other fd is closed
 * in the child even if it lacks O_CLOEXEC. A deadline is enforced through a
 * pidfd, and the child is reaped by that pidfd, so no SIGCHLD handler and no
 * global signal state is involved: safe to call from many threads at once.
 * Requirement on the process: SIGCHLD must not be SIG_IGN and nobody may
 * call waitpid(-1, ...), which would reap our children behind our back.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

#define KYB_RUN_DEFAULT_MAX_OUTPUT ((size_t)1 << 20)

typedef struct kyb_run_opts {
        const char *const *argv; /* NULL-terminated; argv[0] is the program path */
        const char *const *envp; /* NULL-terminated; NULL: inherit our environment */
        const char *cwd;         /* NULL: inherit */
        bool search_path;        /* resolve argv[0] through $PATH (posix_spawnp) */
        bool stdin_from_fd;      /* false: stdin is /dev/null */
        int stdin_fd;            /* borrowed; becomes the child's fd 0 if stdin_from_fd */
        int64_t timeout_ms;      /* <= 0: no deadline */
        int64_t term_grace_ms;   /* > 0: on timeout SIGTERM first, SIGKILL after this */
        size_t max_output;       /* bytes kept per stream; 0: KYB_RUN_DEFAULT_MAX_OUTPUT */
} kyb_run_opts;

typedef struct kyb_run_output {
        char *data;     /* NUL-terminated, "" when the stream was empty */
        size_t len;     /* bytes kept, at most max_output */
        bool truncated; /* more was written than kept; the first bytes are kept */
} kyb_run_output;

typedef struct kyb_run_result {
        pid_t pid;
        int exit_code; /* exit status, or -1 when killed by a signal */
        int signal;    /* terminating signal, or 0 */
        bool timed_out;
        int64_t duration_ms;
        kyb_run_output out; /* stdout */
        kyb_run_output err; /* stderr */
} kyb_run_result;

/*
 * Spawns opts->argv, captures its output and reaps it. Returns 0 when the
 * program ran and was reaped, whatever its exit status (see res). Returns
 * -ETIMEDOUT when the deadline passed and the child was killed and reaped
 * (res is filled too), and another negative errno when it could not be
 * spawned ("spawn /x/y: No such file or directory"). res is overwritten,
 * not freed: release a previous result before reusing the struct. It is
 * always initialised, so kyb_run_result_free() is safe after any return.
 */
int kyb_run(const kyb_run_opts *opts, kyb_run_result *res, kyb_error **err);

/*
 * Like kyb_run(), but a non-zero exit or a terminating signal is an error
 * too (-EIO): "criu exited with code 1: Error (criu/cr-dump.c:1): ...",
 * quoting the last lines of stderr.
 */
int kyb_run_check(const kyb_run_opts *opts, kyb_run_result *res, kyb_error **err);

void kyb_run_result_free(kyb_run_result *res);

#define _cleanup_run_result_ _cleanup_(kyb_run_result_free)
