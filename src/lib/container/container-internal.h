/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/lib/container (and its unit tests): the pure parts. */
#pragma once

#include <stddef.h>

#include "base/runner.h"
#include "container/container.h"

struct kyb_runc {
        char *runc_path;
        bool search_path; /* runc_path has no '/': posix_spawnp */
        char **templates; /* NULL-terminated, absolute, may contain "{namespace}" */
        char *criu_path;  /* NULL: runc's default */
};

/* A growing NULL-terminated argv whose strings it owns. */
typedef struct kyb_strv {
        char **v;
        size_t n, cap;
        bool oom; /* a push failed: the vector is incomplete */
} kyb_strv;

void kyb_strv_push(kyb_strv *s, const char *str);
void kyb_strv_pushf(kyb_strv *s, const char *fmt, ...) _printf_(2, 3);
void kyb_strv_clear(kyb_strv *s);

#define _cleanup_strv_ _cleanup_(kyb_strv_clear)

/* Runs a runc command line and fails unless it exits 0: "<what>: runc
 * exited with code 1: <runc's error messages>". */
int kyb_runc_run(const kyb_runc *r, char *const *argv, int64_t timeout_ms, const char *what,
                 kyb_run_result *res, kyb_error **err);

/* Splits ':'-separated templates; -EINVAL for an empty or relative entry. */
int kyb_runc_parse_templates(const char *text, char ***out, kyb_error **err);
void kyb_runc_free_templates(char **v);

/* "{namespace}" replaced by ns in every place it occurs. */
int kyb_runc_expand_root(const char *tmpl, const char *ns, char **out, kyb_error **err);

/* Parses `runc state` output. -EBADMSG naming the field for bad JSON, a
 * missing or mistyped id/pid/status/bundle, or a bundle that is not
 * absolute. Only fills id, pid, status and bundle of out. */
int kyb_runc_parse_state(const char *json, size_t len, kyb_container *out, kyb_error **err);

kyb_container_status kyb_container_status_from_name(const char *s);

/* `runc [--criu C] --log-format json --root R <verb>` : the common prefix. */
void kyb_runc_argv_prefix(const kyb_runc *r, const char *root, const char *verb, kyb_strv *argv);

int kyb_runc_checkpoint_argv(const kyb_runc *r, const kyb_container *c,
                             const kyb_runc_checkpoint_opts *o, kyb_strv *argv, kyb_error **err);
/* pid_file: where runc writes the init PID. */
int kyb_runc_restore_argv(const kyb_runc *r, const char *id, const kyb_runc_restore_opts *o,
                          const char *pid_file, kyb_strv *argv, kyb_error **err);

/*
 * runc's own error messages from its stderr in --log-format json: the
 * "msg" of every error/fatal line, joined with "; " and folded to one line.
 * Lines that are not JSON are quoted as they are. NULL when there is
 * nothing to quote (or no memory).
 */
char *kyb_runc_stderr_errors(const char *text, size_t len);

/* The last `max` CRIU "Error" lines of text, timestamps dropped, repeated
 * lines once, joined with "; ". NULL when there are none. */
char *kyb_runc_criu_errors(const char *text, size_t len, size_t max);
