/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared harness protocol of the checkpoint/restore test workloads (zdtm
 * style). Every workload:
 *
 *   - appends one-line records to a status file (--status FILE; stdout when
 *     absent): "ready <pid> ...", "mark <progress>", "ok ...", "fail ...",
 *     "error ...", "stopped ...";
 *   - polls a control file (--ctl FILE; default "<status>.ctl") once per
 *     tick; the harness writes one command into it atomically (write a temp
 *     file, rename it over FILE) and waits for the answer before sending the
 *     next one. Commands: "mark", "verify [min=N]", "verify-exit [min=N]",
 *     "stop".
 *
 * No file stays open between records, so CRIU sees only stdio and the
 * workload's own pipes/sockets. See docs/workloads.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WL_MSG_MAX 512

struct wl {
        /* set by the workload before wl_parse_common() */
        const char *name;
        unsigned interval_ms;

        /* common options */
        const char *status_path; /* NULL: stdout */
        const char *ctl_path;    /* NULL: no control channel */
        bool verify_exit;        /* every "verify" behaves as "verify-exit" */
        unsigned verify_timeout_ms;

        /* workload callbacks */
        uint64_t (*progress)(void *ctx);
        /* Full consistency check; returns true and fills details, or false
         * and fills the reason. */
        bool (*check)(void *ctx, char *msg, size_t len);
        void *ctx;

        /* state */
        bool have_mark;
        uint64_t mark;
        char error[WL_MSG_MAX]; /* first error seen while running (sticky) */
        bool vpending;
        bool vexit;
        bool vhave_min;
        uint64_t vmin;
        uint64_t vstart;
        uint64_t vdeadline_ns;
};

/* Mixing function used for every deterministic pattern (splitmix64). */
static inline uint64_t wl_mix64(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

/* Help text for the options every workload accepts. */
extern const char wl_common_help[];

/*
 * Consumes argv[*i] (and its value) if it is a common option. Returns 1 when
 * consumed, 0 when not a common option, -1 on a bad value (message printed).
 */
int wl_parse_common(struct wl *w, int argc, char **argv, int *i);

/*
 * Matches "--name VALUE" or "--name=VALUE" at argv[*i]; on a match stores the
 * value, advances *i past it and returns 1; 0 when argv[*i] is another
 * option; -1 when the value is missing.
 */
int wl_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Number with optional binary suffix K, M, G, T (optionally followed by
 * "iB" or "B"). Returns 0 on success. */
int wl_parse_size(const char *s, uint64_t *out);
int wl_parse_u64(const char *s, uint64_t *out);

/* Finishes option handling: default ctl path, signal handlers. */
int wl_setup(struct wl *w);

/* Appends one line to the status file (or stdout). */
void wl_status(struct wl *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first error (sticky) and reports it as an "error ..." line. */
void wl_error(struct wl *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes "ready <pid> <details>". */
void wl_ready(struct wl *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Call once per loop iteration: handles SIGTERM/SIGINT, control commands and
 * pending verifications. Returns -1 to keep running, or the exit code.
 */
int wl_service(struct wl *w);

/* Sleeps one tick (interval_ms), interrupted by signals. */
void wl_tick_sleep(const struct wl *w);

/* Monotonic time in nanoseconds. */
uint64_t wl_now_ns(void);

/* read()/write() of exactly len bytes; 0 on success, -1 on error or EOF
 * (errno 0 for EOF). */
int wl_read_full(int fd, void *buf, size_t len);
int wl_write_full(int fd, const void *buf, size_t len);
