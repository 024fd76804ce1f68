/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sidecar (docs/storage.md, "The sidecar"): moves finished checkpoints
 * between a shared checkpoint directory and durable storage.
 *
 *   watch  waits (inotify, plus a periodic re-scan) for complete checkpoints
 *          `<dir>/<id>/manifest.json` and streams each one as
 *          `<target>/<id>.tar.zst`; then writes `<dir>/<id>.upload.json`
 *          atomically, which marks it done across restarts.
 *   fetch  downloads one artifact, extracts and verifies it into
 *          `<dest>/<id>` (through a hidden directory renamed at the end, so
 *          `<dest>/<id>` exists only complete).
 *
 * kyb_sidecar_stop() may be called from any thread (a signal thread): the
 * transfer in progress is finished within the grace period or abandoned
 * (the storage writer is aborted, no result file is written).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"

#define KYB_SIDECAR_ENV_PREFIX "KYBERNATE_SIDECAR"

typedef struct kyb_sidecar_config {
        /* watch */
        char *watch_dir;
        char *target;
        bool delete_after_upload;
        int64_t grace_ms;
        int64_t rescan_interval_ms;
        int64_t retry_interval_ms;     /* first wait after a failed upload */
        int64_t retry_max_interval_ms; /* ceiling of the doubling waits */
        int64_t compression_level;
        int64_t threads;
        int64_t max_rate; /* bytes per second of the compressed stream; 0: unlimited */
        /* fetch */
        char *source;
        char *dest;
        char *id;
        /* both */
        char *credentials_dir;
        int64_t part_size;
        int64_t inflight;
        int64_t attempts;
        char *metrics_address; /* empty: no HTTP endpoint */
        char *log_level;
        char *log_format;
} kyb_sidecar_config;

extern const kyb_config_option kyb_sidecar_options[];
extern const size_t kyb_sidecar_n_options;

typedef struct kyb_sidecar kyb_sidecar;

/* Sets up metrics (and their HTTP endpoint) and opens the storage location
 * of the mode ("watch": target, "fetch": source). cfg is borrowed. */
int kyb_sidecar_new(const kyb_sidecar_config *cfg, const char *mode, kyb_sidecar **out,
                    kyb_error **err);
void kyb_sidecar_free(kyb_sidecar *sc);

/* Port of the /metrics endpoint, or -1 when there is none. */
int kyb_sidecar_metrics_port(const kyb_sidecar *sc);

/* Runs the watch loop until kyb_sidecar_stop(). 0 after a stop; negative
 * only when watching cannot start or continue (the directory is unusable). */
int kyb_sidecar_watch(kyb_sidecar *sc, kyb_error **err);

/* Downloads, extracts and verifies one artifact. */
int kyb_sidecar_fetch(kyb_sidecar *sc, kyb_error **err);

/* Asks the running watch/fetch to stop; the current transfer may go on for
 * at most grace_ms. Thread-safe; calling it again shortens nothing. */
void kyb_sidecar_stop(kyb_sidecar *sc, int64_t grace_ms);

/*
 * The wait before the next try of a checkpoint whose upload failed
 * `failures` times in a row (1, 2, ...): a random time between half and all
 * of min(max(max_ms, base_ms), base_ms * 2^(failures - 1)), so a broken
 * target is not hammered and sidecars that failed together spread out.
 */
int64_t kyb_sidecar_retry_delay_ms(int64_t base_ms, int64_t max_ms, unsigned failures,
                                   unsigned *seed);

/* Whether a transfer started before the stop is still running past its
 * grace period plus margin_ms (the caller may then exit hard). */
bool kyb_sidecar_overdue(kyb_sidecar *sc, int64_t margin_ms);
