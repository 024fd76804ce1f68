/* SPDX-License-Identifier: Apache-2.0 */
/* The sidecar: watch a checkpoint directory and upload, or fetch one artifact. */
#define KYB_LOG_MODULE "sidecar"

#include "sidecar/sidecar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/validate.h"
#include "metrics/metrics.h"
#include "storage/storage.h"
#include "store/digest.h"
#include "store/fsutil.h"
#include "store/store.h"

#define RESULT_SUFFIX KYB_STORE_UPLOAD_RESULT_SUFFIX
#define ARTIFACT_EXT  ".tar.zst"
#define POD_SPEC_EXT                                                                               \
        KYB_STORE_POD_SPEC_SUFFIX /* the node agent's copy of the pod spec, for restores */
#define POD_SPEC_MAX   (1 << 20)
#define DELETING_PFX   ".sidecar-deleting-"
#define FETCHING_PFX   ".fetch-"
#define SUB_WATCH_MASK (IN_MOVED_TO | IN_CLOSE_WRITE)
#define TOP_WATCH_MASK (IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM)

const kyb_config_option kyb_sidecar_options[] = {
    {"watch-dir", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, watch_dir),
     "/var/lib/kybernate/checkpoints", 0, 0,
     "watch: shared checkpoint directory (<dir>/<id>/manifest.json)"},
    {"target", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, target), NULL, 0, 0,
     "watch: where artifacts go: s3://bucket/prefix or file:///path"},
    {"delete-after-upload", KYB_CONFIG_BOOL, offsetof(kyb_sidecar_config, delete_after_upload),
     "false", 0, 0, "watch: remove the local checkpoint after a verified upload"},
    {"grace", KYB_CONFIG_DURATION, offsetof(kyb_sidecar_config, grace_ms), "30s", 0, 3600000,
     "time the transfer in progress may take after SIGTERM before it is abandoned"},
    {"rescan-interval", KYB_CONFIG_DURATION, offsetof(kyb_sidecar_config, rescan_interval_ms),
     "30s", 100, 3600000, "watch: full re-scan of the directory besides inotify"},
    {"retry-interval", KYB_CONFIG_DURATION, offsetof(kyb_sidecar_config, retry_interval_ms), "30s",
     0, 3600000, "watch: first wait before a failed upload is tried again (doubles, jittered)"},
    {"retry-max-interval", KYB_CONFIG_DURATION, offsetof(kyb_sidecar_config, retry_max_interval_ms),
     "10m", 0, 86400000, "watch: longest wait between tries of a failing upload"},
    {"compression-level", KYB_CONFIG_INT64, offsetof(kyb_sidecar_config, compression_level), "3",
     -7, 19, "watch: zstd level"},
    {"threads", KYB_CONFIG_INT64, offsetof(kyb_sidecar_config, threads), "0", 0, 256,
     "watch: zstd worker threads (0: one per CPU, at most 4)"},
    {"max-rate", KYB_CONFIG_SIZE, offsetof(kyb_sidecar_config, max_rate), "0", 0, 0,
     "watch: upload bandwidth limit in bytes per second (0: unlimited)"},
    {"source", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, source), NULL, 0, 0,
     "fetch: artifact URI, or its location when --id is given"},
    {"dest", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, dest), NULL, 0, 0,
     "fetch: directory that receives <id>/"},
    {"id", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, id), NULL, 0, 0,
     "fetch: checkpoint ID (object <source>/<id>.tar.zst)"},
    {"credentials-dir", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, credentials_dir), NULL, 0,
     0, "S3 credentials (mounted Secret: access-key-id, secret-access-key); else AWS_*"},
    {"part-size", KYB_CONFIG_SIZE, offsetof(kyb_sidecar_config, part_size), "8Mi", 5 << 20,
     (int64_t)5 << 30, "S3 multipart part size (memory: (inflight + 1) x part size)"},
    {"inflight", KYB_CONFIG_INT64, offsetof(kyb_sidecar_config, inflight), "2", 1, 64,
     "S3 parts uploaded in parallel"},
    {"attempts", KYB_CONFIG_INT64, offsetof(kyb_sidecar_config, attempts), "5", 1, 100,
     "tries of one S3 request"},
    {"metrics-address", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, metrics_address),
     "127.0.0.1:9102", 0, 0, "HOST:PORT of /metrics and /healthz (empty: none)"},
    {"log-level", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, log_level), "info", 0, 0,
     "error, warn, info, debug, trace"},
    {"log-format", KYB_CONFIG_STRING, offsetof(kyb_sidecar_config, log_format), "text", 0, 0,
     "text or json"},
};
const size_t kyb_sidecar_n_options = KYB_ARRAY_SIZE(kyb_sidecar_options);

typedef struct failure {
        char *id;
        unsigned count; /* failed uploads in a row */
        int64_t retry_at_ms;
} failure;

struct kyb_sidecar {
        const kyb_sidecar_config *cfg;
        kyb_storage *storage;
        kyb_metrics *metrics;
        kyb_http *http;
        kyb_metric *m_bytes_up, *m_bytes_down, *m_uploads, *m_downloads, *m_failures;
        kyb_metric *m_up_seconds, *m_down_seconds, *m_pending;
        int wake_fd; /* eventfd: stop() wakes the watch loop */
        atomic_bool stopping;
        atomic_llong deadline_ms; /* transfers are abandoned after this (monotonic) */
        atomic_bool busy;         /* a transfer is running */
        failure *failures;
        size_t n_failures;
        unsigned seed; /* retry jitter (rand_r) */
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool past_deadline(kyb_sidecar *sc)
{
        return atomic_load(&sc->stopping) && now_ms() >= atomic_load(&sc->deadline_ms);
}

static int health(void *ctx, kyb_error **err)
{
        (void)ctx;
        (void)err;
        return 0;
}

int kyb_sidecar_new(const kyb_sidecar_config *cfg, const char *mode, kyb_sidecar **out,
                    kyb_error **err)
{
        static const double buckets[] = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900};
        kyb_sidecar *sc = calloc(1, sizeof(*sc));
        const char *uri;
        _cleanup_free_ char *location = NULL, *key = NULL;
        int rc;

        if (!sc)
                return kyb_error_set(err, ENOMEM, "sidecar");
        sc->cfg = cfg;
        sc->wake_fd = -1;
        if (getrandom(&sc->seed, sizeof(sc->seed), GRND_NONBLOCK) != sizeof(sc->seed))
                sc->seed = (unsigned)now_ms() ^ (unsigned)getpid();
        if (!strcmp(mode, "watch")) {
                if (!cfg->target || !*cfg->target) {
                        rc = kyb_error_setf(err, EINVAL, "watch: --target is required");
                        goto fail;
                }
                uri = cfg->target;
        } else {
                if (!cfg->source || !*cfg->source || !cfg->dest || !*cfg->dest) {
                        rc = kyb_error_setf(err, EINVAL, "fetch: --source and --dest are required");
                        goto fail;
                }
                if (cfg->id)
                        uri = cfg->source;
                else {
                        rc = kyb_storage_uri_split(cfg->source, &location, &key, err);
                        if (rc < 0)
                                goto fail;
                        uri = location;
                }
        }
        kyb_storage_opts opts = {
            .credentials_dir =
                cfg->credentials_dir && *cfg->credentials_dir ? cfg->credentials_dir : NULL,
            /* The AWS SDKs' variables; the URI's query wins over them. */
            .endpoint = getenv("AWS_ENDPOINT_URL"),
            .region = getenv("AWS_REGION") ? getenv("AWS_REGION") : getenv("AWS_DEFAULT_REGION"),
            .part_size = (size_t)cfg->part_size,
            .max_parts_in_flight = (unsigned)cfg->inflight,
            .max_attempts = (unsigned)cfg->attempts,
        };
        rc = kyb_storage_open(uri, &opts, &sc->storage, err);
        if (rc < 0) {
                rc = kyb_error_wrap(err, rc, "open storage");
                goto fail;
        }
        sc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sc->wake_fd < 0) {
                rc = kyb_error_set(err, errno, "eventfd");
                goto fail;
        }
        rc = kyb_metrics_new(&sc->metrics, err);
        if (rc < 0)
                goto fail;
        sc->m_bytes_up = kyb_metrics_counter(sc->metrics, "kybernate_sidecar_uploaded_bytes_total",
                                             "Compressed artifact bytes uploaded", NULL);
        sc->m_bytes_down =
            kyb_metrics_counter(sc->metrics, "kybernate_sidecar_downloaded_bytes_total",
                                "Compressed artifact bytes downloaded", NULL);
        sc->m_uploads = kyb_metrics_counter(sc->metrics, "kybernate_sidecar_uploads_total",
                                            "Checkpoints uploaded", NULL);
        sc->m_downloads = kyb_metrics_counter(sc->metrics, "kybernate_sidecar_downloads_total",
                                              "Artifacts downloaded and verified", NULL);
        sc->m_failures = kyb_metrics_counter(sc->metrics, "kybernate_sidecar_failures_total",
                                             "Failed transfers", "operation");
        sc->m_up_seconds = kyb_metrics_histogram(
            sc->metrics, "kybernate_sidecar_upload_duration_seconds",
            "Duration of successful uploads", NULL, buckets, KYB_ARRAY_SIZE(buckets));
        sc->m_down_seconds = kyb_metrics_histogram(
            sc->metrics, "kybernate_sidecar_download_duration_seconds",
            "Duration of successful downloads", NULL, buckets, KYB_ARRAY_SIZE(buckets));
        sc->m_pending = kyb_metrics_gauge(sc->metrics, "kybernate_sidecar_pending_checkpoints",
                                          "Complete checkpoints not uploaded yet", NULL);
        if (!sc->m_bytes_up || !sc->m_bytes_down || !sc->m_uploads || !sc->m_downloads ||
            !sc->m_failures || !sc->m_up_seconds || !sc->m_down_seconds || !sc->m_pending) {
                rc = kyb_error_set(err, ENOMEM, "metrics");
                goto fail;
        }
        if (cfg->metrics_address && *cfg->metrics_address) {
                rc = kyb_http_start(cfg->metrics_address, sc->metrics, health, sc, &sc->http, err);
                if (rc < 0) {
                        rc = kyb_error_wrap(err, rc, "metrics endpoint %s", cfg->metrics_address);
                        goto fail;
                }
        }
        *out = sc;
        return 0;
fail:
        kyb_sidecar_free(sc);
        return rc;
}

void kyb_sidecar_free(kyb_sidecar *sc)
{
        if (!sc)
                return;
        if (sc->http)
                kyb_http_stop(sc->http);
        kyb_metrics_free(sc->metrics);
        kyb_storage_close(sc->storage);
        if (sc->wake_fd >= 0)
                close(sc->wake_fd);
        for (size_t i = 0; i < sc->n_failures; i++)
                free(sc->failures[i].id);
        free(sc->failures);
        free(sc);
}

int kyb_sidecar_metrics_port(const kyb_sidecar *sc)
{
        return sc->http ? kyb_http_port(sc->http) : -1;
}

void kyb_sidecar_stop(kyb_sidecar *sc, int64_t grace_ms)
{
        uint64_t one = 1;

        if (!atomic_exchange(&sc->stopping, true))
                atomic_store(&sc->deadline_ms, now_ms() + grace_ms);
        if (write(sc->wake_fd, &one, sizeof(one)) < 0) {
                /* the counter is already non-zero: the loop wakes anyway */
        }
}

bool kyb_sidecar_overdue(kyb_sidecar *sc, int64_t margin_ms)
{
        return atomic_load(&sc->stopping) && atomic_load(&sc->busy) &&
               now_ms() >= atomic_load(&sc->deadline_ms) + margin_ms;
}

/* ---- upload ------------------------------------------------------------ */

typedef struct upload_ctx {
        kyb_sidecar *sc;
        kyb_storage_writer *w;
        kyb_sha256 *hash;
        uint64_t bytes;
        int64_t start_ms;
} upload_ctx;

static int upload_sink(void *ctx, const void *buf, size_t len, kyb_error **err)
{
        upload_ctx *u = ctx;
        int64_t rate = u->sc->cfg->max_rate;
        int rc;

        for (;;) {
                if (past_deadline(u->sc))
                        return kyb_error_setf(err, ECANCELED,
                                              "abandoned: grace period after SIGTERM is over");
                if (rate <= 0)
                        break;
                /* Bytes allowed so far at this rate; sleep in slices of <= 100 ms. */
                int64_t elapsed = now_ms() - u->start_ms;
                int64_t due_ms = (int64_t)((double)u->bytes * 1000.0 / (double)rate);
                if (due_ms <= elapsed)
                        break;
                int64_t wait = KYB_MIN(due_ms - elapsed, 100);
                struct timespec ts = {.tv_sec = 0, .tv_nsec = wait * 1000000};
                nanosleep(&ts, NULL);
        }
        rc = kyb_sha256_update(u->hash, buf, len, err);
        if (rc < 0)
                return rc;
        rc = kyb_storage_writer_write(u->w, buf, len, err);
        if (rc < 0)
                return rc;
        u->bytes += len;
        return 0;
}

static char *artifact_uri(const char *target, const char *key)
{
        const char *q = strchr(target, '?');
        size_t base = q ? (size_t)(q - target) : strlen(target);
        char *out = NULL;

        while (base > 0 && target[base - 1] == '/')
                base--;
        if (asprintf(&out, "%.*s/%s%s", (int)base, target, key, q ? q : "") < 0)
                return NULL;
        return out;
}

static void utc_now(char buf[32])
{
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static int write_result(int dirfd, const char *id, const char *uri, const char *key, uint64_t size,
                        const char *sha, int64_t duration_ms, const kyb_archive_stats *stats,
                        kyb_error **err)
{
        _cleanup_free_ char *name = NULL, *tmp = NULL, *text = NULL;
        char when[32];
        json_t *j;
        int rc;

        utc_now(when);
        j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:I, s:I}", "checkpointId", id,
                      "artifact", uri, "key", key, "size", (json_int_t)size, "sha256", sha,
                      "durationMs", (json_int_t)duration_ms, "uploadedAt", when, "files",
                      (json_int_t)stats->files, "fileBytes", (json_int_t)stats->file_bytes);
        if (j)
                text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        if (!text || asprintf(&name, "%s" RESULT_SUFFIX, id) < 0 ||
            asprintf(&tmp, ".%s" RESULT_SUFFIX ".tmp", id) < 0)
                return kyb_error_set(err, ENOMEM, "result file");
        _cleanup_free_ char *line = NULL;
        if (asprintf(&line, "%s\n", text) < 0)
                return kyb_error_set(err, ENOMEM, "result file");
        size_t len = strlen(line);
        unlinkat(dirfd, tmp, 0); /* a leftover of a crash */
        rc = kyb_fs_write_at(dirfd, tmp, name, line, len, 0644, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "write %s", name);
        if (fsync(dirfd) < 0)
                return kyb_error_set(err, errno, "fsync after %s", name);
        return 0;
}

/*
 * <id>.pod.json, when the node agent wrote one, goes beside the archive
 * first: an artifact whose result file exists then always has its pod spec
 * (a RestoreRequest by artifact URI recreates the pod from it).
 */
static int upload_pod_spec(kyb_sidecar *sc, int dirfd, const char *id, kyb_error **err)
{
        _cleanup_free_ char *name = NULL, *buf = NULL;
        _cleanup_close_ int fd = -1;
        kyb_storage_writer *w = NULL;
        ssize_t n;
        int rc;

        if (asprintf(&name, "%s" POD_SPEC_EXT, id) < 0 || !(buf = malloc(POD_SPEC_MAX)))
                return kyb_error_set(err, ENOMEM, "%s", id);
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : kyb_error_set(err, errno, "%s", name);
        n = read(fd, buf, POD_SPEC_MAX);
        if (n < 0 || n == POD_SPEC_MAX)
                return kyb_error_set(err, n < 0 ? errno : EFBIG, "%s", name);
        if ((rc = kyb_storage_writer_open(sc->storage, name, &w, err)) < 0)
                return kyb_error_wrap(err, rc, "upload %s", name);
        if ((rc = kyb_storage_writer_write(w, buf, (size_t)n, err)) < 0) {
                kyb_storage_writer_abort(w);
                return kyb_error_wrap(err, rc, "upload %s", name);
        }
        rc = kyb_storage_writer_commit(w, NULL, err);
        return rc < 0 ? kyb_error_wrap(err, rc, "upload %s", name) : 0;
}

static int upload_one(kyb_sidecar *sc, int dirfd, const char *id, kyb_error **err)
{
        const kyb_sidecar_config *cfg = sc->cfg;
        _cleanup_free_ char *key = NULL, *uri = NULL, *dir = NULL;
        _cleanup_sha256_ kyb_sha256 *hash = NULL;
        kyb_archive_write_opts aopts = {.level = (int)cfg->compression_level,
                                        .threads = (unsigned)cfg->threads};
        kyb_archive_stats stats = {0};
        kyb_storage_object info = {0}, stored = {0};
        char sha[KYB_SHA256_HEX_LEN + 1];
        upload_ctx u = {.sc = sc, .start_ms = now_ms()};
        int rc;

        if (asprintf(&key, "%s" ARTIFACT_EXT, id) < 0 || !(uri = artifact_uri(cfg->target, key)) ||
            asprintf(&dir, "%s/%s", cfg->watch_dir, id) < 0)
                return kyb_error_set(err, ENOMEM, "upload %s", id);
        rc = kyb_sha256_new(&hash, err);
        if (rc < 0)
                return rc;
        u.hash = hash;
        kyb_log_info("uploading checkpoint %s to %s", id, uri);
        if ((rc = upload_pod_spec(sc, dirfd, id, err)) < 0)
                return rc;
        atomic_store(&sc->busy, true);
        rc = kyb_storage_writer_open(sc->storage, key, &u.w, err);
        if (rc >= 0) {
                rc = kyb_archive_write(dir, upload_sink, &u, &aopts, &stats, err);
                if (rc < 0)
                        kyb_storage_writer_abort_after(u.w, err);
                else if (past_deadline(sc)) {
                        kyb_storage_writer_abort(u.w);
                        rc = kyb_error_setf(err, ECANCELED,
                                            "abandoned: grace period after SIGTERM is over");
                } else
                        rc = kyb_storage_writer_commit(u.w, &info, err);
        }
        atomic_store(&sc->busy, false);
        if (rc >= 0)
                rc = kyb_sha256_final(hash, sha, err);
        if (rc >= 0) {
                /* Verify what the storage holds before it counts as done. */
                rc = kyb_storage_stat(sc->storage, key, &stored, err);
                if (rc >= 0 && stored.size != u.bytes)
                        rc = kyb_error_setf(
                            err, EBADMSG, "stored object has %llu bytes, %llu were sent",
                            (unsigned long long)stored.size, (unsigned long long)u.bytes);
                if (rc < 0)
                        rc = kyb_error_wrap(err, rc, "verify %s", key);
        }
        kyb_storage_object_clear(&info);
        kyb_storage_object_clear(&stored);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "upload %s", id);
        int64_t duration = now_ms() - u.start_ms;
        rc = write_result(dirfd, id, uri, key, u.bytes, sha, duration, &stats, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "upload %s", id);
        kyb_metric_add(sc->m_bytes_up, NULL, (double)u.bytes);
        kyb_metric_add(sc->m_uploads, NULL, 1);
        kyb_metric_observe(sc->m_up_seconds, NULL, (double)duration / 1000.0);
        kyb_log_info("uploaded checkpoint %s: %s, %llu bytes, sha256 %s, %lld ms", id, uri,
                     (unsigned long long)u.bytes, sha, (long long)duration);
        if (cfg->delete_after_upload) {
                _cleanup_free_ char *gone = NULL;
                if (asprintf(&gone, DELETING_PFX "%s", id) < 0)
                        return kyb_error_set(err, ENOMEM, "delete %s", id);
                /* Rename first: a crash half-way never leaves a partial <id>. */
                if (renameat(dirfd, id, dirfd, gone) < 0)
                        return kyb_error_set(err, errno, "delete %s after upload", id);
                rc = kyb_fs_rm_rf_at(dirfd, gone, NULL, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "delete %s after upload", id);
                kyb_log_info("deleted local checkpoint %s after verified upload", id);
        }
        return 0;
}

/* ---- watch ------------------------------------------------------------- */

static failure *find_failure(kyb_sidecar *sc, const char *id)
{
        for (size_t i = 0; i < sc->n_failures; i++)
                if (!strcmp(sc->failures[i].id, id))
                        return &sc->failures[i];
        return NULL;
}

#define MAX_DOUBLINGS 30

int64_t kyb_sidecar_retry_delay_ms(int64_t base_ms, int64_t max_ms, unsigned failures,
                                   unsigned *seed)
{
        unsigned shift = KYB_MIN(failures > 0 ? failures - 1 : 0, MAX_DOUBLINGS);
        int64_t cap = KYB_MAX(max_ms, base_ms);
        int64_t wait;

        if (base_ms <= 0)
                return 0;
        wait = base_ms > cap >> shift ? cap : base_ms << shift;
        /* Equal jitter, as the S3 client's: at least half the wait. */
        return wait / 2 + (int64_t)((uint64_t)rand_r(seed) % (uint64_t)(wait / 2 + 1));
}

/* Records one more failure of id; returns the wait before its next try. */
static int64_t note_failure(kyb_sidecar *sc, const char *id)
{
        failure *f = find_failure(sc, id);
        int64_t delay;

        if (!f) {
                failure *v = realloc(sc->failures, (sc->n_failures + 1) * sizeof(*v));
                char *copy = strdup(id);
                if (!v || !copy) {
                        free(copy);
                        if (v)
                                sc->failures = v;
                        return sc->cfg->retry_interval_ms;
                }
                sc->failures = v;
                f = &v[sc->n_failures++];
                *f = (failure){.id = copy};
        }
        f->count++;
        delay = kyb_sidecar_retry_delay_ms(sc->cfg->retry_interval_ms,
                                           sc->cfg->retry_max_interval_ms, f->count, &sc->seed);
        f->retry_at_ms = now_ms() + delay;
        return delay;
}

static void clear_failure(kyb_sidecar *sc, const char *id)
{
        failure *f = find_failure(sc, id);

        if (f) {
                free(f->id);
                *f = sc->failures[--sc->n_failures];
        }
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);
        return n >= m && !strcmp(s + n - m, suffix);
}

/*
 * Lists the complete checkpoints without a result file, sorted; watches
 * incomplete ones for their manifest; removes leftovers of interrupted
 * deletions. *next_ms is lowered to the earliest retry time of a failure.
 */
static int scan(kyb_sidecar *sc, int dirfd, int ino, char ***ids, size_t *n, int64_t *next_ms,
                kyb_error **err)
{
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        char **v = NULL;
        size_t cnt = 0;

        if (fd < 0)
                return kyb_error_set(err, errno, "scan %s", sc->cfg->watch_dir);
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return kyb_error_set(err, errno, "scan %s", sc->cfg->watch_dir);
        }
        while ((de = readdir(d))) {
                const char *name = de->d_name;
                struct stat st;

                if (!strncmp(name, DELETING_PFX, strlen(DELETING_PFX))) {
                        kyb_fs_rm_rf_at(dirfd, name, NULL, NULL);
                        continue;
                }
                if (name[0] == '.' || ends_with(name, RESULT_SUFFIX) ||
                    kyb_validate_id("checkpoint id", name, NULL) < 0)
                        continue;
                if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                _cleanup_free_ char *result = NULL, *manifest = NULL;
                if (asprintf(&result, "%s" RESULT_SUFFIX, name) < 0 ||
                    asprintf(&manifest, "%s/manifest.json", name) < 0)
                        goto oom;
                if (fstatat(dirfd, result, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        continue; /* done */
                if (fstatat(dirfd, manifest, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode)) {
                        _cleanup_free_ char *path = NULL;
                        if (ino >= 0 && asprintf(&path, "%s/%s", sc->cfg->watch_dir, name) >= 0 &&
                            inotify_add_watch(ino, path, SUB_WATCH_MASK | IN_ONLYDIR) < 0)
                                kyb_log_warn("inotify watch %s: %s", path, kyb_strerror(errno));
                        continue; /* not complete yet */
                }
                failure *f = find_failure(sc, name);
                if (f && f->retry_at_ms > now_ms()) {
                        *next_ms = KYB_MIN(*next_ms, f->retry_at_ms);
                        continue;
                }
                char **nv = realloc(v, (cnt + 1) * sizeof(*nv));
                if (!nv)
                        goto oom;
                v = nv;
                if (!(v[cnt] = strdup(name)))
                        goto oom;
                cnt++;
        }
        closedir(d);
        if (cnt)
                qsort(v, cnt, sizeof(*v), cmp_str);
        *ids = v;
        *n = cnt;
        return 0;
oom:
        closedir(d);
        for (size_t i = 0; i < cnt; i++)
                free(v[i]);
        free(v);
        return kyb_error_set(err, ENOMEM, "scan %s", sc->cfg->watch_dir);
}

int kyb_sidecar_watch(kyb_sidecar *sc, kyb_error **err)
{
        const kyb_sidecar_config *cfg = sc->cfg;
        _cleanup_close_ int dirfd = -1, ino = -1;
        int rc;

        rc = kyb_mkdir_p(cfg->watch_dir, 0755, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "watch directory");
        dirfd = open(cfg->watch_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return kyb_error_set(err, errno, "open %s", cfg->watch_dir);
        ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (ino < 0)
                return kyb_error_set(err, errno, "inotify");
        if (inotify_add_watch(ino, cfg->watch_dir, TOP_WATCH_MASK | IN_ONLYDIR) < 0)
                return kyb_error_set(err, errno, "inotify watch %s", cfg->watch_dir);
        kyb_log_info("watching %s, uploading to %s", cfg->watch_dir, cfg->target);

        while (!atomic_load(&sc->stopping)) {
                char **ids = NULL;
                size_t n = 0;
                int64_t next = now_ms() + cfg->rescan_interval_ms;

                rc = scan(sc, dirfd, ino, &ids, &n, &next, err);
                if (rc < 0)
                        return rc;
                kyb_metric_set(sc->m_pending, NULL, (double)n);
                for (size_t i = 0; i < n; i++) {
                        _cleanup_error_ kyb_error *e = NULL;
                        if (!atomic_load(&sc->stopping)) {
                                if (upload_one(sc, dirfd, ids[i], &e) < 0) {
                                        if (kyb_error_errno(e) == ECANCELED) {
                                                kyb_log_warn("%s; no result file written",
                                                             kyb_error_message(e));
                                        } else {
                                                int64_t wait = note_failure(sc, ids[i]);

                                                kyb_metric_add(sc->m_failures, "upload", 1);
                                                kyb_log_error_ctx(
                                                    e, "checkpoint %s (retry in %lld ms)", ids[i],
                                                    (long long)wait);
                                        }
                                } else
                                        clear_failure(sc, ids[i]);
                        }
                        free(ids[i]);
                }
                free(ids);
                if (n > 0)
                        continue; /* more may have arrived meanwhile */

                struct pollfd p[2] = {{.fd = ino, .events = POLLIN},
                                      {.fd = sc->wake_fd, .events = POLLIN}};
                int64_t timeout = KYB_MAX(next - now_ms(), 0);
                if (poll(p, 2, (int)KYB_MIN(timeout, 3600000)) < 0 && errno != EINTR)
                        return kyb_error_set(err, errno, "poll");
                if (p[0].revents & POLLIN) {
                        char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
                        while (read(ino, buf, sizeof(buf)) > 0) {
                                /* any event: re-scan; the directory is the truth */
                        }
                }
        }
        kyb_log_info("stopped watching %s", cfg->watch_dir);
        return 0;
}

/* ---- fetch ------------------------------------------------------------- */

typedef struct fetch_ctx {
        kyb_sidecar *sc;
        kyb_storage_reader *r;
        uint64_t bytes;
} fetch_ctx;

static ssize_t fetch_source(void *ctx, void *buf, size_t len, kyb_error **err)
{
        fetch_ctx *f = ctx;
        ssize_t n;

        if (past_deadline(f->sc))
                return kyb_error_setf(err, ECANCELED, "abandoned: stopped by a signal");
        n = kyb_storage_reader_read(f->r, buf, len, err);
        if (n > 0)
                f->bytes += (uint64_t)n;
        return n;
}

int kyb_sidecar_fetch(kyb_sidecar *sc, kyb_error **err)
{
        const kyb_sidecar_config *cfg = sc->cfg;
        _cleanup_free_ char *location = NULL, *key = NULL, *id = NULL, *tmp = NULL,
                            *tmp_path = NULL, *final_path = NULL;
        _cleanup_close_ int dfd = -1;
        fetch_ctx f = {.sc = sc};
        int64_t start = now_ms();
        struct stat st;
        int rc;

        if (cfg->id) {
                if (asprintf(&key, "%s" ARTIFACT_EXT, cfg->id) < 0 || !(id = strdup(cfg->id)))
                        return kyb_error_set(err, ENOMEM, "fetch");
        } else {
                rc = kyb_storage_uri_split(cfg->source, &location, &key, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "fetch");
                const char *base = strrchr(key, '/');
                base = base ? base + 1 : key;
                if (!ends_with(base, ARTIFACT_EXT) || strlen(base) == strlen(ARTIFACT_EXT))
                        return kyb_error_setf(err, EINVAL,
                                              "fetch: artifact name must end in " ARTIFACT_EXT
                                              " (or give --id)");
                id = strndup(base, strlen(base) - strlen(ARTIFACT_EXT));
                if (!id)
                        return kyb_error_set(err, ENOMEM, "fetch");
        }
        rc = kyb_validate_id("checkpoint id", id, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "fetch");
        rc = kyb_mkdir_p(cfg->dest, 0755, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "fetch: destination");
        dfd = open(cfg->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return kyb_error_set(err, errno, "fetch: open %s", cfg->dest);
        if (asprintf(&tmp, FETCHING_PFX "%s", id) < 0 ||
            asprintf(&tmp_path, "%s/%s", cfg->dest, tmp) < 0 ||
            asprintf(&final_path, "%s/%s", cfg->dest, id) < 0)
                return kyb_error_set(err, ENOMEM, "fetch");
        if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                /* Only a verified extraction is ever renamed to <id>. */
                kyb_log_info("checkpoint %s is already at %s", id, final_path);
                return 0;
        }
        {
                _cleanup_error_ kyb_error *e = NULL;
                rc = kyb_fs_rm_rf_at(dfd, tmp, NULL, &e); /* a leftover of a killed fetch */
                if (rc < 0 && rc != -ENOENT) {
                        kyb_error_move(err, &e);
                        return kyb_error_wrap(err, rc, "fetch: remove %s", tmp_path);
                }
        }

        kyb_log_info("fetching %s into %s", key, final_path);
        rc = kyb_storage_reader_open(sc->storage, key, &f.r, err);
        if (rc >= 0) {
                atomic_store(&sc->busy, true);
                rc = kyb_archive_extract(fetch_source, &f, tmp_path, NULL, err);
                atomic_store(&sc->busy, false);
                kyb_storage_reader_close(f.r);
        }
        if (rc >= 0 && renameat(dfd, tmp, dfd, id) < 0) {
                rc = kyb_error_set(err, errno, "rename %s to %s", tmp_path, final_path);
                kyb_fs_rm_rf_at(dfd, tmp, NULL, NULL);
        }
        if (rc >= 0 && fsync(dfd) < 0)
                rc = kyb_error_set(err, errno, "fsync %s", cfg->dest);
        kyb_metric_add(sc->m_bytes_down, NULL, (double)f.bytes);
        if (rc < 0) {
                kyb_metric_add(sc->m_failures, "download", 1);
                return kyb_error_wrap(err, rc, "fetch %s", key);
        }
        int64_t duration = now_ms() - start;
        kyb_metric_add(sc->m_downloads, NULL, 1);
        kyb_metric_observe(sc->m_down_seconds, NULL, (double)duration / 1000.0);
        kyb_log_info("fetched checkpoint %s: %llu bytes, verified, at %s (%lld ms)", id,
                     (unsigned long long)f.bytes, final_path, (long long)duration);
        return 0;
}
