/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CRIU RPC conversation without CRIU:
 *  - the session loop against an in-process fake peer on a socketpair
 *    (notification dispatch, acks, failures, EOF, deadline, bad messages);
 *  - the whole client against a fake `criu swrk`: this very binary,
 *    re-executed as "<self> swrk 3" with its behaviour chosen by the
 *    KYB_FAKE_CRIU environment variable (spawning, fd hygiene, version and
 *    feature probe, log scanning, deadline kill, crash, concurrency).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "criu/criu-internal.h"

#define FAKE_RESTORED_PID 4242

static void assert_contains(const char *s, const char *want)
{
        if (!s || !strstr(s, want))
                fail_msg("'%s' lacks '%s'", s ? s : "(null)", want);
}

/* ---- the peer side of the protocol (used by both fakes) ----------------- */

static CriuReq *peer_recv(int sk, int timeout_ms)
{
        struct pollfd p = {.fd = sk, .events = POLLIN};
        _cleanup_free_ uint8_t *buf = NULL;
        int fd = -1;
        ssize_t n;

        if (poll(&p, 1, timeout_ms) != 1)
                return NULL;
        n = kyb_criu_recv_msg(sk, &buf, &fd, NULL);
        kyb_closep(&fd);
        return n > 0 ? criu_req__unpack(NULL, (size_t)n, buf) : NULL;
}

static void peer_send_raw(int sk, const void *buf, size_t len, int fd)
{
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

        if (fd >= 0) {
                struct cmsghdr *c;

                mh.msg_control = ctl.buf;
                mh.msg_controllen = sizeof(ctl.buf);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        sendmsg(sk, &mh, MSG_NOSIGNAL);
}

static void peer_send(int sk, const CriuResp *m, int fd)
{
        size_t len = criu_resp__get_packed_size(m);
        _cleanup_free_ uint8_t *buf = malloc(len);

        criu_resp__pack(m, buf);
        peer_send_raw(sk, buf, len, fd);
}

/* Sends one notification and returns the client's notify_success. */
static bool peer_notify(int sk, const char *name, int pid, int fd)
{
        CriuResp m = CRIU_RESP__INIT;
        CriuNotify n = CRIU_NOTIFY__INIT;
        CriuReq *ack;
        bool ok;

        n.script = (char *)name;
        n.has_pid = pid != 0;
        n.pid = pid;
        m.type = CRIU_REQ_TYPE__NOTIFY;
        m.success = true;
        m.notify = &n;
        peer_send(sk, &m, fd);
        ack = peer_recv(sk, 5000);
        ok = ack && ack->type == CRIU_REQ_TYPE__NOTIFY && ack->has_notify_success &&
             ack->notify_success;
        if (ack)
                criu_req__free_unpacked(ack, NULL);
        return ok;
}

static void peer_reply(int sk, CriuReqType type, bool success, int cr_errno, const char *errmsg)
{
        CriuResp m = CRIU_RESP__INIT;
        CriuRestoreResp r = CRIU_RESTORE_RESP__INIT;

        m.type = type;
        m.success = success;
        m.has_cr_errno = cr_errno != 0;
        m.cr_errno = cr_errno;
        m.cr_errmsg = (char *)errmsg;
        if (type == CRIU_REQ_TYPE__RESTORE) {
                r.pid = FAKE_RESTORED_PID;
                m.restore = &r;
        }
        peer_send(sk, &m, -1);
}

/* ---- session tests: an in-process peer thread ---------------------------- */

typedef struct peer {
        int sk;
        void (*script)(struct peer *p);
        CriuReqType got_type;
        bool got_notify_scripts;
        bool acks[8];
        int n_acks;
        int pass_fd;
} peer;

typedef struct seen {
        char names[8][32];
        int pids[8];
        int fds[8];
        int n;
        const char *fail_at;
} seen;

static int on_notify(const kyb_criu_notification *n, void *data, kyb_error **err)
{
        seen *s = data;

        if (s->n < 8) {
                snprintf(s->names[s->n], sizeof(s->names[0]), "%s", n->name);
                s->pids[s->n] = n->pid;
                /* A passed fd must be usable during the callback. */
                s->fds[s->n] = n->fd >= 0 && fcntl(n->fd, F_GETFD) >= 0 ? n->fd : -1;
                s->n++;
        }
        if (s->fail_at && !strcmp(s->fail_at, n->name))
                return kyb_error_setf(err, ECANCELED, "gpu lock failed at %s", n->name);
        return 0;
}

static CriuReq *peer_take_request(peer *p)
{
        CriuReq *req = peer_recv(p->sk, 5000);

        if (req) {
                p->got_type = req->type;
                p->got_notify_scripts = req->opts && req->opts->notify_scripts;
        }
        return req;
}

static void script_notifications(peer *p)
{
        CriuReq *req = peer_take_request(p);

        if (!req)
                return;
        p->acks[p->n_acks++] = peer_notify(p->sk, "pre-dump", 0, -1);
        p->acks[p->n_acks++] = peer_notify(p->sk, "post-restore", 77, -1);
        p->acks[p->n_acks++] = peer_notify(p->sk, "orphan-pts-master", 0, p->pass_fd);
        p->acks[p->n_acks++] = peer_notify(p->sk, "brand-new-hook", 0, -1);
        peer_reply(p->sk, req->type, true, 0, NULL);
        criu_req__free_unpacked(req, NULL);
}

/* As CRIU does: a failed ack aborts, cleanup hooks still run. */
static void script_abort_on_nack(peer *p)
{
        CriuReq *req = peer_take_request(p);
        bool ok;

        if (!req)
                return;
        ok = p->acks[p->n_acks++] = peer_notify(p->sk, "pre-dump", 0, -1);
        p->acks[p->n_acks++] = peer_notify(p->sk, "network-unlock", 0, -1);
        peer_reply(p->sk, req->type, ok, 0, ok ? NULL : "RPC client reported script error");
        criu_req__free_unpacked(req, NULL);
}

static void script_close(peer *p)
{
        CriuReq *req = peer_take_request(p);

        if (req)
                criu_req__free_unpacked(req, NULL);
        close(p->sk);
        p->sk = -1;
}

static void script_silent(peer *p)
{
        CriuReq *req = peer_take_request(p);

        /* Say nothing; the client's deadline must end it. Our EOF comes
         * when the client closes its end. */
        peer_recv(p->sk, 5000);
        if (req)
                criu_req__free_unpacked(req, NULL);
}

static void script_wrong_type(peer *p)
{
        CriuReq *req = peer_take_request(p);

        peer_reply(p->sk, CRIU_REQ_TYPE__RESTORE, true, 0, NULL);
        if (req)
                criu_req__free_unpacked(req, NULL);
}

static void script_garbage(peer *p)
{
        CriuReq *req = peer_take_request(p);
        const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};

        peer_send_raw(p->sk, junk, sizeof(junk), -1);
        if (req)
                criu_req__free_unpacked(req, NULL);
}

static void script_empty_error(peer *p)
{
        CriuReq *req = peer_take_request(p);

        peer_reply(p->sk, CRIU_REQ_TYPE__EMPTY, false, EBADRQC, "Invalid req");
        if (req)
                criu_req__free_unpacked(req, NULL);
}

static void *peer_main(void *arg)
{
        peer *p = arg;

        p->script(p);
        return NULL;
}

typedef struct session_run {
        kyb_criu_session s;
        peer p;
        pthread_t th;
        int sk;
        seen seen;
} session_run;

static void session_start(session_run *r, void (*script)(peer *), int64_t timeout_ms)
{
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        r->sk = sv[0];
        r->p = (peer){.sk = sv[1], .script = script, .pass_fd = -1};
        r->seen = (seen){0};
        kyb_criu_session_init(&r->s, r->sk, -1, -1, NULL);
        r->s.notify = on_notify;
        r->s.notify_data = &r->seen;
        if (timeout_ms > 0)
                r->s.deadline_ms = kyb_criu_now_ms() + timeout_ms;
}

static int session_call(session_run *r, CriuResp **resp, kyb_error **err)
{
        CriuOpts opts = CRIU_OPTS__INIT;
        CriuReq req = CRIU_REQ__INIT;
        int rc;

        opts.has_notify_scripts = opts.notify_scripts = true;
        req.type = CRIU_REQ_TYPE__DUMP;
        req.opts = &opts;
        assert_int_equal(pthread_create(&r->th, NULL, peer_main, &r->p), 0);
        rc = kyb_criu_session_call(&r->s, &req, resp, err);
        close(r->sk);
        pthread_join(r->th, NULL);
        if (r->p.sk >= 0)
                close(r->p.sk);
        return rc;
}

static void test_notifications_dispatched_in_order(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        session_run r;
        CriuResp *resp = NULL;
        int pipefd[2];

        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        session_start(&r, script_notifications, 0);
        r.p.pass_fd = pipefd[0];
        assert_int_equal(session_call(&r, &resp, &err), 0);
        assert_non_null(resp);
        assert_true(resp->success);
        assert_int_equal(resp->type, CRIU_REQ_TYPE__DUMP);
        assert_int_equal(r.p.got_type, CRIU_REQ_TYPE__DUMP);
        assert_true(r.p.got_notify_scripts);
        assert_int_equal(r.seen.n, 4);
        assert_string_equal(r.seen.names[0], "pre-dump");
        assert_string_equal(r.seen.names[1], "post-restore");
        assert_string_equal(r.seen.names[2], "orphan-pts-master");
        assert_string_equal(r.seen.names[3], "brand-new-hook"); /* unknown: still asked */
        assert_int_equal(r.seen.pids[1], 77);
        assert_int_equal(r.seen.fds[0], -1);
        assert_true(r.seen.fds[2] >= 0); /* received, usable in the callback... */
        assert_int_equal(fcntl(r.seen.fds[2], F_GETFD), -1); /* ...and closed after */
        for (int i = 0; i < 4; i++)
                assert_true(r.p.acks[i]);
        assert_int_equal(r.s.notifications, 4);
        assert_null(r.s.notify_err);
        criu_resp__free_unpacked(resp, NULL);
        kyb_criu_session_clear(&r.s);
        close(pipefd[0]);
        close(pipefd[1]);
}

static void test_failing_callback_nacks(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        session_run r;
        CriuResp *resp = NULL;

        session_start(&r, script_abort_on_nack, 0);
        r.seen.fail_at = "pre-dump";
        assert_int_equal(session_call(&r, &resp, &err), 0);
        assert_false(r.p.acks[0]); /* CRIU was told to abort */
        assert_true(r.p.acks[1]);  /* its cleanup hook still went through */
        assert_false(resp->success);
        assert_non_null(r.s.notify_err);
        assert_int_equal(kyb_error_errno(r.s.notify_err), ECANCELED);
        assert_string_equal(kyb_error_message(r.s.notify_err), "gpu lock failed at pre-dump");
        assert_string_equal(r.s.notify_failed, "pre-dump");
        criu_resp__free_unpacked(resp, NULL);
        kyb_criu_session_clear(&r.s);
}

static void expect_session_error(void (*script)(peer *), int64_t timeout_ms, int want,
                                 const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;
        session_run r;
        CriuResp *resp = NULL;

        session_start(&r, script, timeout_ms);
        assert_int_equal(session_call(&r, &resp, &err), want);
        assert_null(resp);
        assert_contains(kyb_error_message(err), fragment);
        kyb_criu_session_clear(&r.s);
}

static void test_session_errors(void **state)
{
        int64_t t0 = kyb_criu_now_ms();

        expect_session_error(script_silent, 200, -ETIMEDOUT, "timed out waiting for criu");
        assert_true(kyb_criu_now_ms() - t0 >= 190);
        assert_true(kyb_criu_now_ms() - t0 < 3000);
        expect_session_error(script_close, 0, -ECONNRESET, "closed the connection");
        expect_session_error(script_wrong_type, 0, -EPROTO,
                             "criu answered request type 1 with type 2");
        expect_session_error(script_garbage, 0, -EPROTO, "malformed criu_resp (5 bytes)");
}

static void test_empty_reply_is_final(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        session_run r;
        CriuResp *resp = NULL;

        session_start(&r, script_empty_error, 0);
        assert_int_equal(session_call(&r, &resp, &err), 0);
        assert_int_equal(resp->type, CRIU_REQ_TYPE__EMPTY);
        assert_false(resp->success);
        assert_string_equal(resp->cr_errmsg, "Invalid req");
        criu_resp__free_unpacked(resp, NULL);
        kyb_criu_session_clear(&r.s);
}

static void test_tail_keeps_the_end(void **state)
{
        kyb_criu_tail *t = calloc(1, sizeof(*t));
        int p[2];
        char chunk[3000];

        assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
        for (int i = 0; i < 5; i++) {
                memset(chunk, 'a' + i, sizeof(chunk));
                assert_int_equal(write(p[1], chunk, sizeof(chunk)), sizeof(chunk));
                while (kyb_criu_tail_read(p[0], t) > 0)
                        ;
        }
        assert_int_equal(t->len, KYB_CRIU_STDERR_KEEP);
        assert_int_equal(t->buf[KYB_CRIU_STDERR_KEEP - 1], 'e');
        assert_int_equal(t->buf[KYB_CRIU_STDERR_KEEP - 3000], 'e');
        assert_int_equal(t->buf[KYB_CRIU_STDERR_KEEP - 3001], 'd');
        assert_int_equal(t->buf[KYB_CRIU_STDERR_KEEP], '\0');
        assert_int_equal(kyb_criu_tail_read(p[0], t), -EAGAIN);
        close(p[1]);
        assert_int_equal(kyb_criu_tail_read(p[0], t), 0);
        close(p[0]);
        free(t);
}

/* ---- spawn -------------------------------------------------------------- */

static void test_spawn_passes_only_its_fd(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_proc p;
        /* No O_CLOEXEC on purpose, and well above 3 so it cannot be mistaken
         * for the passed socket. */
        int leak = fcntl(STDIN_FILENO, F_DUPFD, 20);
        int sv[2];
        char script[512];

        assert_true(leak > 2);
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        /* The shell's own descriptors (ls runs as its child): exactly stdio
         * and the socket at 3; neither the stray fd nor our end got in. */
        snprintf(script, sizeof(script),
                 "[ -S /proc/$$/fd/3 ] || exit 10; "
                 "[ \"$(readlink /proc/$$/fd/0)\" = /dev/null ] || exit 13; "
                 "ls /proc/$$/fd; echo err >&2; exit 7");
        assert_int_equal(
            kyb_criu_spawn((const char *const[]){"/bin/sh", "-c", script, NULL}, sv[1], &p, &err),
            0);
        assert_int_equal(kyb_criu_proc_wait(&p, kyb_criu_now_ms() + 5000, true, &err), 0);
        assert_true(p.reaped);
        assert_int_equal(p.status, 7);
        assert_string_equal(p.out.buf, "0\n1\n2\n3\nerr\n");
        kyb_criu_proc_release(&p);
        close(leak);
        close(sv[0]);
        close(sv[1]);
}

static void test_spawn_output_and_deadline(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_proc p;
        char how[96];
        int64_t t0 = kyb_criu_now_ms();

        assert_int_equal(kyb_criu_spawn((const char *const[]){"/bin/sh", "-c",
                                                              "echo hello; echo oops >&2; "
                                                              "exec sleep 30",
                                                              NULL},
                                        -1, &p, &err),
                         0);
        /* Without kill_late the deadline only reports. */
        assert_int_equal(kyb_criu_proc_wait(&p, kyb_criu_now_ms() + 100, false, &err), -ETIMEDOUT);
        assert_false(p.reaped);
        kyb_error_freep(&err);
        assert_int_equal(kyb_criu_proc_wait(&p, kyb_criu_now_ms() + 200, true, &err), -ETIMEDOUT);
        assert_true(p.reaped);
        assert_true(kyb_criu_now_ms() - t0 < 5000);
        assert_contains(p.out.buf, "hello\noops\n");
        kyb_criu_proc_describe(&p, how, sizeof(how));
        assert_string_equal(how, "was killed by signal 9 (SIGKILL)");
        kyb_criu_proc_release(&p);
}

static void test_spawn_missing_binary(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_proc p;

        assert_int_equal(
            kyb_criu_spawn((const char *const[]){"/nonexistent/criu", "swrk", NULL}, -1, &p, &err),
            -ENOENT);
        assert_contains(kyb_error_message(err), "spawn /nonexistent/criu");
        kyb_criu_proc_release(&p);
}

/* ---- the client against a fake `criu swrk` ------------------------------ */

static char self_exe[4096];

static const char *fake_mode(void)
{
        const char *m = getenv("KYB_FAKE_CRIU");

        return m ? m : "ok";
}

/* Everything but 0-3 (and the directory being listed) is a leak. */
static void fake_leaked_fds(char *buf, size_t size)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        size_t pos = 0;

        buf[0] = '\0';
        while (d && (e = readdir(d))) {
                int fd = atoi(e->d_name);

                if (e->d_name[0] == '.' || fd <= KYB_CRIU_SWRK_FD || fd == dirfd(d))
                        continue;
                pos += (size_t)snprintf(buf + pos, size - pos, " %d", fd);
        }
        if (d)
                closedir(d);
}

/* Opens the client's images dir as CRIU does: through /proc/<peer>/fd. */
static int fake_open_dir(int sk, int fd)
{
        struct ucred cr;
        socklen_t len = sizeof(cr);
        char path[64];

        if (fd < 0 || getsockopt(sk, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
                return -1;
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)cr.pid, fd);
        return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void fake_write_log(int dir, const char *name, const char *text)
{
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd >= 0) {
                if (write(fd, text, strlen(text)) < 0)
                        _exit(99);
                close(fd);
        }
}

static void fake_answer_info(int sk, const CriuReq *req)
{
        CriuResp m = CRIU_RESP__INIT;
        CriuVersion v = CRIU_VERSION__INIT;
        CriuFeatures f = CRIU_FEATURES__INIT;
        bool old = !strcmp(fake_mode(), "old");

        m.type = req->type;
        m.success = true;
        if (req->type == CRIU_REQ_TYPE__VERSION) {
                v.major_number = old ? 3 : 4;
                v.minor_number = old ? 14 : 1;
                v.has_sublevel = !old;
                v.sublevel = 1;
                m.version = &v;
        } else {
                f.has_mem_track = f.has_lazy_pages = f.has_pidfd_store = true;
                f.lazy_pages = f.pidfd_store = true;
                m.features = &f;
        }
        peer_send(sk, &m, -1);
}

/* The log and the reply of a failed operation. */
static void fake_fail(int sk, const CriuReq *req, int logdir, const char *log, int cr_errno)
{
        fake_write_log(logdir, log,
                       "(00.001) Error (criu/util.c:1533): rlimit: harmless\n"
                       "(00.002) Info: working\n"
                       "(00.003) Error (criu/seize.c:1080): Can't seize 1234: No such process\n"
                       "(00.004) Error (criu/cr-dump.c:2111): Dumping FAILED.\n");
        peer_reply(sk, req->type, false, cr_errno, "Error (criu/util.c:1533): rlimit: harmless\n");
}

static void fake_operation(int sk, const CriuReq *req)
{
        const char *mode = fake_mode();
        const CriuOpts *o = req->opts;
        const char *log = o && o->log_file ? o->log_file : "criu.log";
        char leaks[256];
        int dir, logdir;
        bool ok = true;

        fake_leaked_fds(leaks, sizeof(leaks)); /* before opening anything */
        dir = fake_open_dir(sk, o ? o->images_dir_fd : -1);
        logdir = o && o->has_work_dir_fd ? fake_open_dir(sk, o->work_dir_fd) : dir;
        if (!strcmp(mode, "hang"))
                pause();
        if (!strcmp(mode, "crash")) {
                fprintf(stderr, "fake criu: boom\n");
                _exit(3);
        }
        if (dir < 0 || logdir < 0) {
                peer_reply(sk, req->type, false, ENOENT, "Error (fake): images dir");
                return;
        }
        if (leaks[0]) {
                peer_reply(sk, req->type, false, EBADF, leaks);
                return;
        }
        if (o->notify_scripts) {
                ok = peer_notify(sk, "pre-dump", 0, -1);
                ok = ok && peer_notify(sk, "post-dump", 0, -1);
        }
        if (!strcmp(mode, "fail") || !ok) {
                fake_fail(sk, req, logdir, log, ok ? ESRCH : 0);
                return;
        }
        fake_write_log(logdir, log, "(00.001) Info: all good\n");
        peer_reply(sk, req->type, true, 0, NULL);
}

static int fake_swrk(int sk)
{
        for (;;) {
                CriuReq *req = peer_recv(sk, -1);
                bool more;

                if (!req)
                        return 0;
                if (req->type == CRIU_REQ_TYPE__VERSION ||
                    req->type == CRIU_REQ_TYPE__FEATURE_CHECK)
                        fake_answer_info(sk, req);
                else
                        fake_operation(sk, req);
                more = req->keep_open;
                criu_req__free_unpacked(req, NULL);
                if (!more)
                        return 0;
        }
}

static void set_mode(const char *mode)
{
        setenv("KYB_FAKE_CRIU", mode, 1);
}

static void test_open_probes_version_and_features(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_criu_ kyb_criu *c = NULL;

        set_mode("ok");
        assert_int_equal(kyb_criu_open(self_exe, &c, &err), 0);
        assert_string_equal(kyb_criu_version(c)->text, "4.1.1");
        assert_int_equal(kyb_criu_version(c)->major, 4);
        assert_false(kyb_criu_features(c)->mem_track);
        assert_true(kyb_criu_features(c)->lazy_pages);
        assert_true(kyb_criu_features(c)->pidfd_store);
        assert_string_equal(kyb_criu_path(c), self_exe);
        /* swrk was reaped: no child of ours is left. */
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void test_open_failures(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu *c = NULL;

        set_mode("old");
        assert_int_equal(kyb_criu_open(self_exe, &c, &err), -ENOTSUP);
        assert_contains(kyb_error_message(err), "version 3.14 is too old");
        assert_null(c);
        assert_int_equal(kyb_criu_open("/nonexistent/criu", &c, &err), -ENOENT);
        assert_contains(kyb_error_message(err), "criu /nonexistent/criu: spawn");
}

typedef struct fixture {
        kyb_criu *c;
        char dir[64];
} fixture;

static int fixture_setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));

        set_mode("ok");
        snprintf(f->dir, sizeof(f->dir), "/tmp/kyb-criu-rpc-XXXXXX");
        if (!mkdtemp(f->dir) || kyb_criu_open(self_exe, &f->c, NULL) < 0)
                return -1;
        *state = f;
        return 0;
}

static int fixture_teardown(void **state)
{
        fixture *f = *state;
        const char *logs[] = {"dump.log", "restore.log", "pre-dump.log"};

        for (size_t i = 0; i < KYB_ARRAY_SIZE(logs); i++) {
                char path[128];

                snprintf(path, sizeof(path), "%s/%s", f->dir, logs[i]);
                unlink(path);
        }
        rmdir(f->dir);
        kyb_criu_free(f->c);
        free(f);
        return 0;
}

static void test_dump_through_fake(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_close_ int leak = fcntl(STDIN_FILENO, F_DUPFD, 20); /* must not reach swrk */
        seen s = {0};
        kyb_criu_opts o = {
            .pid = 1234, .images_dir = f->dir, .notify = on_notify, .notify_data = &s};
        kyb_criu_result res;

        set_mode("ok");
        if (kyb_criu_dump(f->c, &o, &res, &err) < 0)
                fail_msg("%s", kyb_error_message(err));
        assert_int_equal(res.notifications, 2);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.names[0], "pre-dump");
        assert_string_equal(s.names[1], "post-dump");
        assert_int_equal(res.pid, 0);
        assert_true(res.duration_ms >= 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void test_restore_returns_pid(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_close_ int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        kyb_criu_opts o = {.images_dir_fd = dfd};
        kyb_criu_result res;

        set_mode("ok");
        assert_int_equal(kyb_criu_restore(f->c, &o, &res, &err), 0);
        assert_int_equal(res.pid, FAKE_RESTORED_PID);
        assert_int_equal(res.notifications, 0); /* none asked for */
}

static void test_failure_quotes_log(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_opts o = {.pid = 1234, .images_dir = f->dir};

        set_mode("fail");
        assert_int_equal(kyb_criu_dump(f->c, &o, NULL, &err), -ESRCH);
        assert_string_equal(kyb_error_message(err),
                            "criu dump pid 1234: (00.001) Error (criu/util.c:1533): rlimit: "
                            "harmless; (00.003) Error (criu/seize.c:1080): Can't seize 1234: No "
                            "such process; (00.004) Error (criu/cr-dump.c:2111): Dumping FAILED.");
}

static void test_callback_failure_aborts(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        seen s = {.fail_at = "post-dump"};
        kyb_criu_opts o = {
            .pid = 1234, .images_dir = f->dir, .notify = on_notify, .notify_data = &s};

        set_mode("ok");
        assert_int_equal(kyb_criu_dump(f->c, &o, NULL, &err), -ECANCELED);
        assert_string_equal(kyb_error_message(err), "criu dump pid 1234: post-dump notification: "
                                                    "gpu lock failed at post-dump");
}

static void test_deadline_kills_swrk(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_opts o = {.pid = 1234, .images_dir = f->dir, .timeout_ms = 300};
        int64_t t0 = kyb_criu_now_ms();

        set_mode("hang");
        assert_int_equal(kyb_criu_dump(f->c, &o, NULL, &err), -ETIMEDOUT);
        assert_true(kyb_criu_now_ms() - t0 < 3000);
        assert_contains(kyb_error_message(err), "criu dump pid 1234: ");
        assert_contains(kyb_error_message(err), "timed out after 300 ms; criu swrk killed");
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void test_swrk_crash(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_opts o = {.images_dir = f->dir};

        set_mode("crash");
        assert_int_equal(kyb_criu_restore(f->c, &o, NULL, &err), -ECONNRESET);
        assert_contains(kyb_error_message(err), "criu restore from /tmp/kyb-criu-rpc-");
        assert_contains(kyb_error_message(err), "criu swrk exited with code 3");
        assert_contains(kyb_error_message(err), "fake criu: boom");
}

static void test_features_checked_before_spawn(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_opts o = {.pid = 1234, .images_dir = f->dir};

        set_mode("crash"); /* would fail differently if it ran */
        assert_int_equal(kyb_criu_pre_dump(f->c, &o, NULL, &err), -ENOTSUP);
        assert_contains(kyb_error_message(err), "criu pre-dump pid 1234: pre-dump needs memory");
        kyb_error_freep(&err);
        o.images_dir = "/nonexistent/images";
        set_mode("ok");
        assert_int_equal(kyb_criu_dump(f->c, &o, NULL, &err), -ENOENT);
        assert_contains(kyb_error_message(err), "open images dir /nonexistent/images");
}

typedef struct job {
        const kyb_criu *c;
        char dir[64];
        seen s;
        int rc;
        kyb_criu_result res;
} job;

static void *run_job(void *arg)
{
        job *j = arg;
        kyb_criu_opts o = {
            .pid = 1234, .images_dir = j->dir, .notify = on_notify, .notify_data = &j->s};

        j->rc = kyb_criu_dump(j->c, &o, &j->res, NULL);
        return NULL;
}

static void test_concurrent_requests(void **state)
{
        fixture *f = *state;
        job jobs[8];
        pthread_t th[8];

        set_mode("ok");
        for (int i = 0; i < 8; i++) {
                jobs[i] = (job){.c = f->c};
                snprintf(jobs[i].dir, sizeof(jobs[i].dir), "/tmp/kyb-criu-job-XXXXXX");
                assert_non_null(mkdtemp(jobs[i].dir));
        }
        for (int i = 0; i < 8; i++)
                assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
        for (int i = 0; i < 8; i++) {
                char path[128];

                pthread_join(th[i], NULL);
                assert_int_equal(jobs[i].rc, 0);
                assert_int_equal(jobs[i].s.n, 2); /* each request saw only its own */
                snprintf(path, sizeof(path), "%s/dump.log", jobs[i].dir);
                assert_int_equal(access(path, F_OK), 0);
                unlink(path);
                rmdir(jobs[i].dir);
        }
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_notifications_dispatched_in_order),
            cmocka_unit_test(test_failing_callback_nacks),
            cmocka_unit_test(test_session_errors),
            cmocka_unit_test(test_empty_reply_is_final),
            cmocka_unit_test(test_tail_keeps_the_end),
            cmocka_unit_test(test_spawn_passes_only_its_fd),
            cmocka_unit_test(test_spawn_output_and_deadline),
            cmocka_unit_test(test_spawn_missing_binary),
            cmocka_unit_test(test_open_probes_version_and_features),
            cmocka_unit_test(test_open_failures),
            cmocka_unit_test_setup_teardown(test_dump_through_fake, fixture_setup,
                                            fixture_teardown),
            cmocka_unit_test_setup_teardown(test_restore_returns_pid, fixture_setup,
                                            fixture_teardown),
            cmocka_unit_test_setup_teardown(test_failure_quotes_log, fixture_setup,
                                            fixture_teardown),
            cmocka_unit_test_setup_teardown(test_callback_failure_aborts, fixture_setup,
                                            fixture_teardown),
            cmocka_unit_test_setup_teardown(test_deadline_kills_swrk, fixture_setup,
                                            fixture_teardown),
            cmocka_unit_test_setup_teardown(test_swrk_crash, fixture_setup, fixture_teardown),
            cmocka_unit_test_setup_teardown(test_features_checked_before_spawn, fixture_setup,
                                            fixture_teardown),
            cmocka_unit_test_setup_teardown(test_concurrent_requests, fixture_setup,
                                            fixture_teardown),
        };
        ssize_t n;

        /* Re-executed by the client as its "criu": be the fake swrk. */
        if (argc == 3 && !strcmp(argv[1], "swrk"))
                return fake_swrk(atoi(argv[2]));
        n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
        if (n <= 0)
                return 1;
        self_exe[n] = '\0';
        return cmocka_run_group_tests(tests, NULL, NULL);
}
