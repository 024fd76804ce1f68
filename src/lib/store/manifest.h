/* SPDX-License-Identifier: Apache-2.0 */
/*
 * manifest.json: the description of one checkpoint artifact (docs/store.md).
 *
 * The manifest names the workload, the node, the GPU and CRIU facts needed
 * to judge whether a restore can work, and every other file of the artifact
 * with its size and SHA-256. It is the last file written; its presence makes
 * a checkpoint complete.
 *
 * Reading is strict because manifests arrive from other nodes through object
 * storage: every known field must be present with the right JSON type,
 * formatVersion must be one this code understands, file paths must stay
 * inside the artifact. Unknown fields are ignored so that a later minor
 * addition does not break older readers; an incompatible change bumps
 * formatVersion. Malformed content is -EBADMSG, an unknown version
 * -ENOTSUP.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

#define KYB_MANIFEST_FORMAT_VERSION 1
#define KYB_MANIFEST_NAME           "manifest.json"
#define KYB_MANIFEST_IMAGES_DIR     "checkpoint"       /* CRIU images, as in Kubernetes' archives */
#define KYB_MANIFEST_MAX_BYTES      (16 * 1024 * 1024) /* refuse larger manifest.json */
#define KYB_MANIFEST_PATH_MAX       1024               /* bytes of one file path */
#define KYB_MANIFEST_PATH_DEPTH     16                 /* components of one file path */
#define KYB_SHA256_HEX_LEN          64

typedef struct kyb_label {
        char *key;
        char *value;
} kyb_label;

typedef struct kyb_manifest_workload {
        char *pod_namespace;
        char *pod_name;
        char *pod_uid;
        char *container_name;
        char *image; /* container image reference */
} kyb_manifest_workload;

typedef enum kyb_target_kind {
        KYB_TARGET_CONTAINER = 0, /* containerd namespace + container ID */
        KYB_TARGET_PROCESS = 1,   /* process tree rooted at pid */
} kyb_target_kind;

typedef struct kyb_manifest_target {
        kyb_target_kind kind;
        char *container_namespace; /* KYB_TARGET_CONTAINER */
        char *container_id;        /* KYB_TARGET_CONTAINER */
        int32_t pid;               /* KYB_TARGET_PROCESS */
} kyb_manifest_target;

typedef enum kyb_gpu_mode {
        KYB_GPU_MODE_AUTO = 0,
        KYB_GPU_MODE_OFF = 1,
        KYB_GPU_MODE_REQUIRED = 2,
} kyb_gpu_mode;

/* Same values as CUprocessState and agent.proto's CudaProcessState. */
typedef enum kyb_cuda_state {
        KYB_CUDA_RUNNING = 0,
        KYB_CUDA_LOCKED = 1,
        KYB_CUDA_CHECKPOINTED = 2,
        KYB_CUDA_FAILED = 3,
} kyb_cuda_state;

typedef struct kyb_manifest_gpu_device {
        char *uuid;  /* "GPU-xxxxxxxx-..." */
        char *model; /* NVML device name */
        uint64_t memory_total_bytes;
        uint64_t memory_used_bytes;
        char *pci_bus_id;
} kyb_manifest_gpu_device;

typedef struct kyb_manifest_gpu_process {
        int32_t pid; /* host PID at checkpoint time */
        kyb_cuda_state state;
        char **gpu_uuids;
        size_t n_gpu_uuids;
        uint64_t device_memory_bytes;
} kyb_manifest_gpu_process;

typedef struct kyb_manifest_gpu {
        kyb_gpu_mode mode; /* what was requested */
        bool captured;     /* device memory is part of this checkpoint */
        uint32_t lock_timeout_ms;
        char *driver_version;        /* NVIDIA driver, "570.86.15"; "" without GPU */
        int32_t cuda_driver_version; /* cuDriverGetVersion(), 12080; 0 without GPU */
        kyb_manifest_gpu_device *devices;
        size_t n_devices;
        kyb_manifest_gpu_process *processes;
        size_t n_processes;
} kyb_manifest_gpu;

typedef struct kyb_manifest_criu {
        char *version; /* "4.1.1" */
        bool leave_running;
        bool tcp_established;
        bool file_locks;
        bool shell_job;
        bool external_unix_sockets;
        bool pre_dump;
        bool lazy_pages;
        char *parent_id; /* checkpoint whose images this one builds on; "" when none */
} kyb_manifest_criu;

/* One step of the checkpoint flow ("gpu_lock", "criu_dump", ...). */
typedef struct kyb_manifest_step {
        char *name;
        uint64_t duration_ms;
        uint64_t bytes; /* bytes the step moved or wrote; 0 when not applicable */
} kyb_manifest_step;

typedef struct kyb_manifest_file {
        char *path; /* relative to the checkpoint directory, see kyb_manifest_check_path() */
        uint64_t size;
        char sha256[KYB_SHA256_HEX_LEN + 1]; /* lowercase hex */
        mode_t mode;                         /* permission bits only (<= 0777) */
} kyb_manifest_file;

typedef struct kyb_manifest {
        int format_version; /* KYB_MANIFEST_FORMAT_VERSION when built or read */
        char *checkpoint_id;
        int64_t created_at_ns; /* Unix epoch, UTC; written as RFC 3339 */
        char *node;
        kyb_manifest_workload workload;
        kyb_manifest_target target;
        kyb_manifest_gpu gpu;
        kyb_manifest_criu criu;
        kyb_manifest_step *steps;
        size_t n_steps;
        kyb_label *labels;
        size_t n_labels;
        kyb_manifest_file *files; /* sorted by path after kyb_store_commit() */
        size_t n_files;
        uint64_t total_bytes; /* sum of files[].size */
} kyb_manifest;

/* Allocates a zeroed manifest with format_version set. */
int kyb_manifest_new(kyb_manifest **out, kyb_error **err);

/* Frees everything the manifest owns and zeroes it (for embedded structs). */
void kyb_manifest_clear(kyb_manifest *m);

void kyb_manifest_free(kyb_manifest *m);

static inline void kyb_manifest_freep(kyb_manifest **m)
{
        kyb_manifest_free(*m);
        *m = NULL;
}

#define _cleanup_manifest_ _cleanup_(kyb_manifest_freep)

/* Builders: copy their arguments. A label with an existing key replaces it. */
int kyb_manifest_set_label(kyb_manifest *m, const char *key, const char *value, kyb_error **err);
int kyb_manifest_add_step(kyb_manifest *m, const char *name, uint64_t duration_ms, uint64_t bytes,
                          kyb_error **err);
int kyb_manifest_add_gpu_device(kyb_manifest *m, const kyb_manifest_gpu_device *dev,
                                kyb_error **err);
int kyb_manifest_add_gpu_process(kyb_manifest *m, const kyb_manifest_gpu_process *proc,
                                 kyb_error **err);
/* sha256 is 64 hex characters; mode is masked to 0777. Recomputes total_bytes. */
int kyb_manifest_add_file(kyb_manifest *m, const char *path, uint64_t size, const char *sha256,
                          mode_t mode, kyb_error **err);

/* Drops the file list and totals (before a commit refills them). */
void kyb_manifest_clear_files(kyb_manifest *m);

/* NULL when absent. */
const char *kyb_manifest_label(const kyb_manifest *m, const char *key);
const kyb_manifest_file *kyb_manifest_find_file(const kyb_manifest *m, const char *path);

/*
 * A file path of an artifact: relative, at most KYB_MANIFEST_PATH_MAX bytes
 * and KYB_MANIFEST_PATH_DEPTH components, components of printable ASCII
 * without '\' that do not start with '.' (so no "..", no hidden files and no
 * clash with the store's temporary names), not "manifest.json" itself.
 * -EBADMSG naming the path otherwise.
 */
int kyb_manifest_check_path(const char *path, kyb_error **err);

/* Serialises to indented JSON with a trailing newline; *out is NUL-terminated. */
int kyb_manifest_to_json(const kyb_manifest *m, char **out, size_t *len, kyb_error **err);

/* Parses and checks a manifest (see the top of this file). */
int kyb_manifest_from_json(const char *buf, size_t len, kyb_manifest **out, kyb_error **err);

/*
 * Reads <dirfd>/<name> (not following a symlink, a regular file of at most
 * KYB_MANIFEST_MAX_BYTES) and parses it. sha256 (may be NULL) receives the
 * hash of the bytes read; raw (may be NULL) receives the bytes themselves.
 */
int kyb_manifest_read_at(int dirfd, const char *name, kyb_manifest **out,
                         char sha256[KYB_SHA256_HEX_LEN + 1], char **raw, size_t *raw_len,
                         kyb_error **err);

/* RFC 3339 UTC ("2024-05-01T12:00:00.5Z"); buffer of KYB_TIME_RFC3339_MAX bytes. */
#define KYB_TIME_RFC3339_MAX 40
int kyb_time_format_rfc3339(int64_t ns, char buf[KYB_TIME_RFC3339_MAX], kyb_error **err);
int kyb_time_parse_rfc3339(const char *s, int64_t *ns, kyb_error **err);

const char *kyb_gpu_mode_to_string(kyb_gpu_mode mode);
const char *kyb_cuda_state_to_string(kyb_cuda_state state);
