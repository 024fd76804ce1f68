/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tcpconn: an established loopback TCP connection between a server (the root
 * process, which talks to the harness) and a client (its child).
 *
 * The client keeps up to WINDOW messages in flight and sends one per tick;
 * each message carries a sequence number, the sequence number of the last
 * reply the client saw, and a payload derived from the sequence number. The
 * server checks order, acknowledgement and payload and answers with a reply
 * whose payload is derived from the sequence number too; the client checks
 * those. A client that sees something wrong reports it in-band (flag + text)
 * and the server records it. Progress = messages the server received in
 * order. Checkpoint it with CRIU's --tcp-established.
 */
#include "wl_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MSG_BYTES   256
#define PAYLOAD_LEN (MSG_BYTES - 24)
#define WINDOW      8
#define FLAG_BAD    1u
#define FLAG_REPLY  2u

struct msg {
        uint64_t seq;
        uint64_t ack;
        uint32_t flags;
        uint32_t pad;
        unsigned char payload[PAYLOAD_LEN];
};

_Static_assert(sizeof(struct msg) == MSG_BYTES, "message layout");

struct conn {
        struct wl *w;
        int fd;
        pid_t client;
        uint64_t received; /* progress: messages received in order */
        uint64_t last_ack;
        unsigned char rbuf[MSG_BYTES];
        size_t rlen;
};

static void fill_payload(unsigned char *p, uint64_t seq, uint32_t flags)
{
        uint64_t x = wl_mix64(seq ^ (flags & FLAG_REPLY ? 0x7265706c79ULL : 0x7265717565ULL));

        for (size_t i = 0; i < PAYLOAD_LEN; i++) {
                if (i % 8 == 0)
                        x = wl_mix64(x);
                p[i] = (unsigned char)(x >> (8 * (i % 8)));
        }
}

static bool payload_ok(const struct msg *m, uint32_t flags)
{
        unsigned char want[PAYLOAD_LEN];

        fill_payload(want, m->seq, flags);
        return memcmp(want, m->payload, PAYLOAD_LEN) == 0;
}

/* Reads whatever is available; returns 1 with a whole message in *m, 0 when
 * a message is still incomplete, -1 on EOF/error. */
static int recv_msg(int fd, unsigned char *buf, size_t *len, struct msg *m)
{
        ssize_t n = recv(fd, buf + *len, MSG_BYTES - *len, 0);

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (n <= 0) {
                if (n == 0)
                        errno = 0;
                return -1;
        }
        *len += (size_t)n;
        if (*len < MSG_BYTES)
                return 0;
        memcpy(m, buf, MSG_BYTES);
        *len = 0;
        return 1;
}

/* ---- client (child process) ---- */

static void client_report(int fd, uint64_t seq, uint64_t ack, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void client_report(int fd, uint64_t seq, uint64_t ack, const char *fmt, ...)
{
        struct msg m = {.seq = seq, .ack = ack, .flags = FLAG_BAD};
        va_list ap;

        va_start(ap, fmt);
        vsnprintf((char *)m.payload, PAYLOAD_LEN, fmt, ap);
        va_end(ap);
        (void)wl_write_full(fd, &m, sizeof(m));
}

static _Noreturn void client_main(struct wl *w, int fd)
{
        uint64_t next_send = 1;  /* next request sequence number */
        uint64_t next_reply = 1; /* next reply expected */
        uint64_t last_send_ns = 0;
        unsigned char buf[MSG_BYTES];
        size_t len = 0;
        bool failed = false;

        prctl(PR_SET_NAME, "tcpconn-client", 0, 0, 0);
        for (;;) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                uint64_t now = wl_now_ns();
                struct msg m;
                int r;

                if (!failed && next_send - next_reply < WINDOW &&
                    now - last_send_ns >= (uint64_t)w->interval_ms * 1000000ULL) {
                        memset(&m, 0, sizeof(m));
                        m.seq = next_send;
                        m.ack = next_reply - 1;
                        fill_payload(m.payload, m.seq, 0);
                        if (wl_write_full(fd, &m, sizeof(m)) < 0)
                                _exit(3);
                        next_send++;
                        last_send_ns = now;
                }
                r = poll(&pfd, 1, (int)(w->interval_ms ? w->interval_ms : 1));
                if (r <= 0)
                        continue;
                r = recv_msg(fd, buf, &len, &m);
                if (r < 0)
                        _exit(errno ? 4 : 0); /* server gone */
                if (r == 0 || failed)
                        continue;
                if (m.flags != FLAG_REPLY || m.seq != next_reply || !payload_ok(&m, FLAG_REPLY)) {
                        client_report(fd, next_send, next_reply - 1,
                                      "client: bad reply: seq %" PRIu64 " (expected %" PRIu64
                                      ") flags %u payload %s",
                                      m.seq, next_reply, m.flags,
                                      payload_ok(&m, FLAG_REPLY) ? "ok" : "corrupt");
                        failed = true;
                        continue;
                }
                next_reply++;
        }
}

/* ---- server (root process) ---- */

static uint64_t conn_progress(void *ctx)
{
        return ((struct conn *)ctx)->received;
}

static bool conn_check(void *ctx, char *msg, size_t len)
{
        struct conn *c = ctx;
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);

        if (c->fd < 0) {
                snprintf(msg, len, "connection is closed");
                return false;
        }
        if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0) {
                snprintf(msg, len, "TCP_INFO: %s", strerror(errno));
                return false;
        }
        if (ti.tcpi_state != 1 /* TCP_ESTABLISHED */) {
                snprintf(msg, len, "connection state %u, not established", ti.tcpi_state);
                return false;
        }
        if (kill(c->client, 0) < 0) {
                snprintf(msg, len, "client pid %d is gone", (int)c->client);
                return false;
        }
        snprintf(msg, len, "messages=%" PRIu64 " acked=%" PRIu64, c->received, c->last_ack);
        return true;
}

static void server_msg(struct conn *c, const struct msg *m)
{
        struct msg reply;

        if (m->flags & FLAG_BAD) {
                char text[PAYLOAD_LEN + 1];

                memcpy(text, m->payload, PAYLOAD_LEN);
                text[PAYLOAD_LEN] = '\0';
                wl_error(c->w, "%s", text);
                return;
        }
        if (m->seq != c->received + 1) {
                wl_error(c->w, "server: message seq %" PRIu64 ", expected %" PRIu64, m->seq,
                         c->received + 1);
                return;
        }
        if (m->ack < c->last_ack || m->ack > c->received) {
                wl_error(c->w, "server: ack %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 "]", m->ack,
                         c->last_ack, c->received);
                return;
        }
        if (!payload_ok(m, 0)) {
                wl_error(c->w, "server: payload of message %" PRIu64 " corrupt", m->seq);
                return;
        }
        c->received++;
        c->last_ack = m->ack;
        memset(&reply, 0, sizeof(reply));
        reply.seq = m->seq;
        reply.flags = FLAG_REPLY;
        fill_payload(reply.payload, reply.seq, FLAG_REPLY);
        if (wl_write_full(c->fd, &reply, sizeof(reply)) < 0)
                wl_error(c->w, "server: send: %s", strerror(errno));
}

static void reap(struct conn *c)
{
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (WIFSIGNALED(status))
                        wl_error(c->w, "client (pid %d) killed by signal %d", (int)pid,
                                 WTERMSIG(status));
                else
                        wl_error(c->w, "client (pid %d) exited with status %d", (int)pid,
                                 WEXITSTATUS(status));
        }
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: tcpconn [options]\n"
                "A server (this process) and a client (its child) on an established loopback\n"
                "TCP connection exchanging sequence-numbered messages, both sides checking\n"
                "order and payload. Progress is the number of messages the server received.\n"
                "Checkpoint with criu --tcp-established.\n"
                "  --port N               server port on 127.0.0.1 (default 0: any free port)\n"
                "Ticks default to 1 ms (at most one message per tick).\n"
                "%s",
                wl_common_help);
}

int main(int argc, char **argv)
{
        struct wl w = {.name = "tcpconn", .interval_ms = 1};
        struct conn c = {.w = &w, .fd = -1};
        struct sockaddr_in addr = {.sin_family = AF_INET};
        socklen_t alen = sizeof(addr);
        uint64_t port = 0;
        const char *v;
        int one = 1;
        int lfd;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        usage(stdout);
                        return 0;
                }
                r = wl_parse_common(&w, argc, argv, &i);
                if (r < 0)
                        return 2;
                if (r > 0)
                        continue;
                if ((r = wl_opt_value(argc, argv, &i, "--port", &v)) != 0) {
                        if (r < 0 || wl_parse_u64(v, &port) || port > 65535) {
                                fprintf(stderr, "bad --port\n");
                                return 2;
                        }
                        continue;
                }
                fprintf(stderr, "tcpconn: unknown argument '%s'\n", argv[i]);
                usage(stderr);
                return 2;
        }
        if (wl_setup(&w) < 0)
                return 2;
        w.progress = conn_progress;
        w.check = conn_check;
        w.ctx = &c;

        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons((uint16_t)port);
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0) {
                perror("socket");
                return 2;
        }
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0) {
                perror("bind/listen on 127.0.0.1 (is lo up?)");
                return 2;
        }
        if (getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
                perror("getsockname");
                return 2;
        }

        c.client = fork();
        if (c.client < 0) {
                perror("fork");
                return 2;
        }
        if (c.client == 0) {
                int fd;

                close(lfd);
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                        perror("client connect");
                        _exit(2);
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                client_main(&w, fd);
        }
        c.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c.fd < 0) {
                perror("accept");
                return 2;
        }
        close(lfd); /* only the established pair remains */
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        wl_ready(&w, "port=%u client=%d", (unsigned)ntohs(addr.sin_port), (int)c.client);
        for (;;) {
                struct pollfd pfd = {.fd = c.fd, .events = POLLIN};

                r = poll(&pfd, 1, (int)(w.interval_ms ? w.interval_ms : 1));
                if (r > 0 && c.fd >= 0) {
                        struct msg m;

                        r = recv_msg(c.fd, c.rbuf, &c.rlen, &m);
                        if (r < 0) {
                                wl_error(&w, "server: connection closed: %s",
                                         errno ? strerror(errno) : "EOF");
                                close(c.fd);
                                c.fd = -1;
                        } else if (r > 0) {
                                server_msg(&c, &m);
                        }
                }
                reap(&c);
                r = wl_service(&w);
                if (r >= 0)
                        return r;
                if (c.fd < 0)
                        wl_tick_sleep(&w);
        }
}
