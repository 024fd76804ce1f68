/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarative configuration (see docs/config.md).
 *
 * A binary describes its options once, as a table of kyb_config_option that
 * points into its own settings struct, and kyb_config_load() fills that
 * struct from, in increasing precedence:
 *
 *     defaults < YAML file < environment (<PREFIX>_<NAME>) < command line
 *
 *     typedef struct { char *socket_path; int64_t timeout_ms; bool verbose; } settings;
 *     static const kyb_config_option opts[] = {
 *             {"socket-path", KYB_CONFIG_STRING, offsetof(settings, socket_path),
 *              "/run/kybernate/agent.sock", 0, 0, "gRPC socket of the agent"},
 *             {"timeout", KYB_CONFIG_DURATION, offsetof(settings, timeout_ms), "30s",
 *              1000, 600000, "deadline of one request"},
 *             {"verbose", KYB_CONFIG_BOOL, offsetof(settings, verbose), "false", 0, 0,
 *              "log more"},
 *     };
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum kyb_config_type {
        KYB_CONFIG_STRING,   /* char *, owned by the target; kyb_config_free() frees it */
        KYB_CONFIG_BOOL,     /* bool: true/false, yes/no, on/off, 1/0 */
        KYB_CONFIG_INT64,    /* int64_t, decimal */
        KYB_CONFIG_SIZE,     /* int64_t bytes: 512, 4K (1000), 4Ki (1024), M/Mi, G/Gi, T/Ti */
        KYB_CONFIG_DURATION, /* int64_t milliseconds: 250ms, 30s, 5m, 1h, 1h30m; 0 */
} kyb_config_type;

typedef struct kyb_config_option {
        const char *name; /* "socket-path": flag --socket-path, YAML key, env SOCKET_PATH */
        kyb_config_type type;
        size_t offset;    /* offsetof() the field in the target struct */
        const char *def;  /* default, parsed like any other source; NULL: NULL/0/false */
        int64_t min, max; /* inclusive bounds for numbers; both 0: unbounded */
        const char *help; /* one line */
} kyb_config_option;

typedef struct kyb_config_sources {
        const char *env_prefix;   /* "KYBERNATE" -> KYBERNATE_SOCKET_PATH; NULL: no environment */
        char *const *envp;        /* NULL: the process environment */
        int argc;                 /* argv[0] (program or subcommand name) is skipped */
        char *const *argv;        /* NULL: no command line */
        const char *default_file; /* YAML file read when none is named; may be missing */
} kyb_config_sources;

typedef struct kyb_config_status {
        int next_arg; /* first argument not consumed: a subcommand, the one after "--", or argc */
        bool help;    /* --help or -h was given: only the defaults were applied */
        const char *file; /* the YAML file that was read, or NULL; points into the sources */
} kyb_config_status;

/*
 * Fills `target` (which must be zeroed or previously loaded) from all
 * sources. The YAML file is the one named by --config FILE, else by
 * <PREFIX>_CONFIG, else src->default_file if it exists; an empty name means
 * none. Empty environment variables count as unset. Command-line parsing
 * stops at "--" or the first argument not starting with "-".
 * Errors name the source and the option:
 *     "config /etc/kyb.yaml:3:10: option timeout: '10x' is not a duration"
 * On failure the target's strings are freed and set to NULL.
 */
int kyb_config_load(const kyb_config_option *table, size_t n, void *target,
                    const kyb_config_sources *src, kyb_config_status *status, kyb_error **err);

/* Frees the string fields of target and sets them to NULL. */
void kyb_config_free(const kyb_config_option *table, size_t n, void *target);

/* Sets one option from text, as every source does ("'10x' is not a duration"). */
int kyb_config_set(const kyb_config_option *opt, void *target, const char *value, kyb_error **err);

/* Option reference for --help: name, type, help, default, range, env name.
 * Returns an allocated string, or NULL when out of memory. */
char *kyb_config_help(const kyb_config_option *table, size_t n, const char *env_prefix);

/* The parsers behind the table types, for values that come from elsewhere. */
int kyb_parse_bool(const char *s, bool *out, kyb_error **err);
int kyb_parse_int64(const char *s, int64_t *out, kyb_error **err);
int kyb_parse_size(const char *s, int64_t *out, kyb_error **err);
int kyb_parse_duration_ms(const char *s, int64_t *out, kyb_error **err);
