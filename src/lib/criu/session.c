/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One conversation with `criu swrk`: a packed criu_req per SOCK_SEQPACKET
 * datagram, notifications (type NOTIFY, each answered with a NOTIFY request
 * carrying notify_success) until the reply of the request's type arrives.
 */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "criu/criu-internal.h"

#define MAX_RECV_FDS 8 /* CRIU sends at most one; room to close strays */

void kyb_criu_session_init(kyb_criu_session *s, int sk, int pidfd, int errfd, kyb_criu_tail *out)
{
        *s = (kyb_criu_session){
            .sk = sk, .pidfd = pidfd, .errfd = out ? errfd : -1, .out = out, .deadline_ms = -1};
}

void kyb_criu_session_clear(kyb_criu_session *s)
{
        kyb_error_freep(&s->notify_err);
        free(s->notify_failed);
        s->notify_failed = NULL;
}

int kyb_criu_send_msg(int sk, const ProtobufCMessage *msg, kyb_error **err)
{
        size_t len = protobuf_c_message_get_packed_size(msg);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        ssize_t n;

        if (!buf)
                return kyb_error_set(err, ENOMEM, "pack %s", msg->descriptor->name);
        protobuf_c_message_pack(msg, buf);
        /* MSG_NOSIGNAL: a dead swrk must be an error here, not a SIGPIPE. */
        do {
                n = send(sk, buf, len, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
                return kyb_error_set(err, errno, "send %s to criu", msg->descriptor->name);
        if ((size_t)n != len)
                return kyb_error_setf(err, EPROTO, "short send of %s to criu (%zd of %zu bytes)",
                                      msg->descriptor->name, n, len);
        return 0;
}

/* Keeps the first descriptor of SCM_RIGHTS, closes any others. */
static void take_fds(struct msghdr *mh, int *fd)
{
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                size_t n;
                int fds[MAX_RECV_FDS];

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                n = KYB_MIN(n, (size_t)MAX_RECV_FDS);
                memcpy(fds, CMSG_DATA(c), n * sizeof(int));
                for (size_t i = 0; i < n; i++) {
                        if (*fd < 0)
                                *fd = fds[i];
                        else
                                close(fds[i]);
                }
        }
}

static ssize_t peek_len(int sk, kyb_error **err)
{
        ssize_t len;

        /* SEQPACKET with MSG_TRUNC reports the whole datagram's length. */
        do {
                len = recv(sk, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
        } while (len < 0 && errno == EINTR);
        if (len < 0)
                return kyb_error_set(err, errno, "receive from criu");
        return len;
}

ssize_t kyb_criu_recv_msg(int sk, uint8_t **buf, int *fd, kyb_error **err)
{
        union {
                char buf[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
                struct cmsghdr align;
        } ctl;
        struct iovec iov;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t len = peek_len(sk, err), n;

        *buf = NULL;
        *fd = -1;
        if (len <= 0)
                return len; /* EOF: CRIU never sends an empty datagram */
        *buf = malloc((size_t)len);
        if (!*buf)
                return kyb_error_set(err, ENOMEM, "receive %zd bytes from criu", len);
        iov = (struct iovec){.iov_base = *buf, .iov_len = (size_t)len};
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        do {
                n = recvmsg(sk, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
                return kyb_error_set(err, errno, "receive from criu");
        take_fds(&mh, fd);
        if (n != len || (mh.msg_flags & MSG_TRUNC))
                return kyb_error_setf(err, EPROTO, "criu message of %zd bytes arrived as %zd", len,
                                      n);
        return n;
}

int kyb_criu_tail_read(int fd, kyb_criu_tail *t)
{
        const size_t cap = KYB_CRIU_STDERR_KEEP;
        char chunk[4096];
        size_t drop;
        ssize_t n;

        do {
                n = read(fd, chunk, sizeof(chunk));
        } while (n < 0 && errno == EINTR);
        if (n <= 0)
                return n == 0 ? 0 : -errno;
        drop = t->len + (size_t)n > cap ? t->len + (size_t)n - cap : 0;
        drop = KYB_MIN(drop, t->len);
        memmove(t->buf, t->buf + drop, t->len - drop);
        t->len -= drop;
        if ((size_t)n > cap - t->len) {
                memcpy(t->buf, chunk + (size_t)n - cap, cap);
                t->len = cap;
        } else {
                memcpy(t->buf + t->len, chunk, (size_t)n);
                t->len += (size_t)n;
        }
        t->buf[t->len] = '\0';
        return 1;
}

static int fail_callback(kyb_criu_session *s, const char *name, kyb_error **cb_err, int rc)
{
        if (s->notify_err) /* the first failure is the cause; CRIU aborts on it */
                return 0;
        if (!*cb_err)
                kyb_error_set(cb_err, -rc, "callback failed");
        s->notify_err = TAKE_PTR(*cb_err);
        s->notify_failed = strdup(name);
        return 0;
}

int kyb_criu_session_notify(kyb_criu_session *s, const CriuResp *msg, int fd, kyb_error **err)
{
        const char *name = msg->notify && msg->notify->script ? msg->notify->script : "";
        kyb_criu_notification n = {
            .event = kyb_criu_event_from_name(name),
            .name = name,
            .pid = msg->notify && msg->notify->has_pid ? msg->notify->pid : 0,
            .fd = fd,
        };
        CriuReq ack = CRIU_REQ__INIT;
        int rc = 0;

        s->notifications++;
        if (s->notify) {
                kyb_error *cb_err = NULL;

                rc = s->notify(&n, s->notify_data, &cb_err);
                if (rc < 0)
                        fail_callback(s, name, &cb_err, rc);
                kyb_error_free(cb_err);
        }
        kyb_closep(&fd);
        ack.type = CRIU_REQ_TYPE__NOTIFY;
        ack.has_notify_success = true;
        ack.notify_success = rc >= 0;
        return kyb_criu_send_msg(s->sk, &ack.base, err);
}

static void drain_stderr(kyb_criu_session *s)
{
        int rc;

        if (s->errfd < 0)
                return;
        while ((rc = kyb_criu_tail_read(s->errfd, s->out)) > 0)
                ;
        if (rc == 0) /* every writer is gone; the fd is not ours to close */
                s->errfd = -1;
}

static int poll_timeout(int64_t deadline)
{
        int64_t left;

        if (deadline < 0)
                return -1;
        left = deadline - kyb_criu_now_ms();
        return (int)KYB_MAX(0, KYB_MIN(left, (int64_t)INT32_MAX));
}

/* Returns 0 once the socket has something (a message or EOF). */
static int wait_readable(kyb_criu_session *s, kyb_error **err)
{
        for (;;) {
                struct pollfd p[3] = {
                    {.fd = s->sk, .events = POLLIN},
                    {.fd = s->pidfd, .events = POLLIN},
                    {.fd = s->errfd, .events = POLLIN},
                };
                int n = poll(p, KYB_ARRAY_SIZE(p), poll_timeout(s->deadline_ms));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "poll criu swrk");
                if (p[2].revents)
                        drain_stderr(s);
                if (p[0].revents)
                        return 0;
                /* A daemon forked by swrk may hold the socket open after swrk
                 * is gone: the exit itself says no reply is coming. */
                if (p[1].revents)
                        return kyb_error_setf(err, ECONNRESET, "criu swrk exited before replying");
                if (n == 0)
                        return kyb_error_setf(err, ETIMEDOUT, "timed out waiting for criu");
        }
}

static bool is_final(const CriuResp *msg, const CriuReq *req)
{
        /* CRIU answers a request it cannot parse with type EMPTY. */
        return msg->type == req->type || msg->type == CRIU_REQ_TYPE__EMPTY;
}

/* Receives and unpacks one message; *msg stays NULL at EOF. */
static int recv_resp(kyb_criu_session *s, CriuResp **msg, int *fd, kyb_error **err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        ssize_t n = kyb_criu_recv_msg(s->sk, &buf, fd, err);

        *msg = NULL;
        if (n < 0)
                return (int)n;
        if (n == 0) {
                drain_stderr(s);
                return kyb_error_setf(err, ECONNRESET,
                                      "criu swrk closed the connection "
                                      "before replying");
        }
        *msg = criu_resp__unpack(NULL, (size_t)n, buf);
        if (!*msg) {
                kyb_closep(fd);
                *fd = -1;
                return kyb_error_setf(err, EPROTO, "malformed criu_resp (%zd bytes)", n);
        }
        return 0;
}

int kyb_criu_session_call(kyb_criu_session *s, const CriuReq *req, CriuResp **resp, kyb_error **err)
{
        int rc = kyb_criu_send_msg(s->sk, &req->base, err);

        *resp = NULL;
        while (rc == 0) {
                CriuResp *msg = NULL;
                int fd = -1;

                rc = wait_readable(s, err);
                if (rc == 0)
                        rc = recv_resp(s, &msg, &fd, err);
                if (rc < 0)
                        break;
                if (msg->type == CRIU_REQ_TYPE__NOTIFY) {
                        rc = kyb_criu_session_notify(s, msg, fd, err);
                        criu_resp__free_unpacked(msg, NULL);
                        continue;
                }
                kyb_closep(&fd);
                if (is_final(msg, req)) {
                        *resp = msg;
                        return 0;
                }
                rc = kyb_error_setf(err, EPROTO, "criu answered request type %d with type %d",
                                    req->type, msg->type);
                criu_resp__free_unpacked(msg, NULL);
        }
        drain_stderr(s);
        return rc;
}
