/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pieces of the CRIU client shared between its source files and its unit
 * tests (tests/unit/criu): option mapping, log scanning, the RPC session
 * loop and process spawning. Not part of the public API.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "criu/criu.h"
#include "criu/rpc.pb-c.h"

#define KYB_CRIU_LOG_ERROR_LINES 5    /* Error lines quoted in a failure */
#define KYB_CRIU_STDERR_KEEP     4096 /* bytes of swrk's stderr kept */
#define KYB_CRIU_SWRK_FD         3    /* the socket's number in the child */

/* The last bytes a child wrote to its stdout/stderr. */
typedef struct kyb_criu_tail {
        char buf[KYB_CRIU_STDERR_KEEP + 1];
        size_t len;
} kyb_criu_tail;

typedef enum kyb_criu_op {
        KYB_CRIU_OP_DUMP,
        KYB_CRIU_OP_PRE_DUMP,
        KYB_CRIU_OP_RESTORE,
} kyb_criu_op;

int64_t kyb_criu_now_ms(void);

/* ---- opts.c: kyb_criu_opts -> criu_opts ---------------------------------- */

/* A CriuOpts and the storage its pointers refer to; strings stay borrowed
 * from the kyb_criu_opts it was built from. */
typedef struct kyb_criu_pb_opts {
        CriuOpts opts;
        ExtMountMap *mnt;      /* n_ext_mnt entries */
        ExtMountMap **mnt_ptr; /* what opts.ext_mnt points at */
} kyb_criu_pb_opts;

/* "dump", "pre-dump", "restore". */
const char *kyb_criu_op_name(kyb_criu_op op);

/* Request type sent for op: pre-dump uses SINGLE_PRE_DUMP, which does not
 * wait for a following DUMP on the same connection. */
CriuReqType kyb_criu_op_req_type(kyb_criu_op op);

/* Rejects option combinations that make no sense for op, before any I/O. */
int kyb_criu_opts_validate(const kyb_criu_opts *o, kyb_criu_op op, kyb_error **err);

/* -ENOTSUP, naming the option and the missing kernel feature. */
int kyb_criu_opts_check_features(const kyb_criu_opts *o, kyb_criu_op op,
                                 const kyb_criu_feature_set *f, kyb_error **err);

/* Fills pb for op. images_fd/work_fd are descriptors of this process (-1:
 * none); CRIU opens them through /proc/<pid>/fd. Free with _free(). */
int kyb_criu_pb_opts_build(const kyb_criu_opts *o, kyb_criu_op op, int images_fd, int work_fd,
                           kyb_criu_pb_opts *pb, kyb_error **err);
void kyb_criu_pb_opts_free(kyb_criu_pb_opts *pb);

/* The log file name a request uses: o->log_file or "<op>.log". */
const char *kyb_criu_log_name(const kyb_criu_opts *o, kyb_criu_op op);

/* ---- errlog.c: CRIU's log file ------------------------------------------ */

/* True for a CRIU "Error" line: "(00.012) Error (file:line): ...", also with
 * a restore task prefix ("(00.035)      1: Error (...)") or no timestamp. */
bool kyb_criu_is_error_line(const char *line);

/* The last `max` Error lines of the log at dir_fd/name, joined with "; " and
 * trimmed; *out is NULL when there are none or the log cannot be read (a
 * failure to read the log must not hide the failure being reported). */
void kyb_criu_log_errors(int dir_fd, const char *name, size_t max, char **out);

/* Same, from text in memory (the unit tests and stderr). */
char *kyb_criu_text_errors(const char *text, size_t len, size_t max);

/*
 * The error of a failed CRIU request: "<ctx>: <log lines>" plus CRIU's
 * cr_errmsg when the lines do not already contain it, plus the tail of
 * swrk's stderr when there is nothing else to say. errnum: CRIU's cr_errno
 * when it sent one, else EIO.
 */
int kyb_criu_fail(kyb_error **err, int errnum, const char *ctx, const char *cr_errmsg,
                  const char *log_lines, const char *stderr_text);

/* ---- session.c: one RPC conversation ------------------------------------- */

typedef struct kyb_criu_session {
        int sk;              /* our end of the socketpair (borrowed) */
        int pidfd;           /* swrk's pidfd, -1 when there is no process (unit tests) */
        int errfd;           /* read end of swrk's stderr, -1: none (borrowed) */
        kyb_criu_tail *out;  /* where its output goes; NULL with errfd -1 */
        int64_t deadline_ms; /* kyb_criu_now_ms() clock; < 0: none */
        kyb_criu_notify_fn notify;
        void *notify_data;
        /* results */
        unsigned notifications;
        kyb_error *notify_err; /* the first callback failure, owned */
        char *notify_failed;   /* name of the notification that failed, owned */
} kyb_criu_session;

void kyb_criu_session_init(kyb_criu_session *s, int sk, int pidfd, int errfd, kyb_criu_tail *out);
void kyb_criu_session_clear(kyb_criu_session *s);

/*
 * Sends req and serves notifications until a reply of req's type arrives
 * (*resp, free with criu_resp__free_unpacked). Fails with -ETIMEDOUT at the
 * deadline, -ECONNRESET when swrk exits or closes the socket first, -EPROTO
 * on a malformed or unexpected message (CRIU's EMPTY error reply included).
 */
int kyb_criu_session_call(kyb_criu_session *s, const CriuReq *req, CriuResp **resp,
                          kyb_error **err);

/* Answers one NOTIFY message: runs the callback and sends the ack. fd is the
 * descriptor that came with it or -1; it is closed here. */
int kyb_criu_session_notify(kyb_criu_session *s, const CriuResp *msg, int fd, kyb_error **err);

/* Sends one packed message (one datagram). */
int kyb_criu_send_msg(int sk, const ProtobufCMessage *msg, kyb_error **err);

/* Receives one datagram and the fds that came with it (at most one is
 * kept in *fd, others are closed). Returns its length; 0 at EOF. */
ssize_t kyb_criu_recv_msg(int sk, uint8_t **buf, int *fd, kyb_error **err);

/* ---- spawn.c: criu child processes ---------------------------------------- */

typedef struct kyb_criu_proc {
        pid_t pid;
        int pidfd;
        int errfd; /* read end of its stdout+stderr, non-blocking */
        kyb_criu_tail out;
        bool reaped;
        int status; /* waitid: exit code, or -signal */
} kyb_criu_proc;

#define KYB_CRIU_PROC_INIT                                                                         \
        {                                                                                          \
                .pid = -1, .pidfd = -1, .errfd = -1, .status = -1                                  \
        }

/*
 * Spawns argv[0] with stdin from /dev/null, stdout+stderr into a pipe and,
 * when pass_fd >= 0, pass_fd as KYB_CRIU_SWRK_FD; every other descriptor is
 * closed in the child. Default signal dispositions, empty mask.
 */
int kyb_criu_spawn(const char *const *argv, int pass_fd, kyb_criu_proc *p, kyb_error **err);

/* Waits for the exit until deadline_ms (< 0: forever) and reaps it. At the
 * deadline returns -ETIMEDOUT, after SIGKILL and reaping when kill_late,
 * else leaving it running. */
int kyb_criu_proc_wait(kyb_criu_proc *p, int64_t deadline_ms, bool kill_late, kyb_error **err);

/* SIGKILL and reap, for error paths. Idempotent. */
void kyb_criu_proc_kill(kyb_criu_proc *p);

/* Closes the descriptors; kills and reaps a child still running. */
void kyb_criu_proc_release(kyb_criu_proc *p);

/* "exited with code 1" / "killed by signal 9 (SIGKILL)" */
void kyb_criu_proc_describe(const kyb_criu_proc *p, char *buf, size_t size);

/* Reads one chunk of what is available from fd into t (which keeps the
 * last KYB_CRIU_STDERR_KEEP bytes). Returns 1 after data, 0 at EOF and a
 * negative errno otherwise (-EAGAIN: nothing more for now). */
int kyb_criu_tail_read(int fd, kyb_criu_tail *t);
