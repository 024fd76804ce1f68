/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proctree: a process tree joined into a ring of pipes.
 *
 * Processes: the root R, children C1..CN and a grandchild G (child of C1).
 * Ring: R -> C1 -> G -> C2 -> ... -> CN -> R, one pipe per link. R sends a
 * token with sequence number s once per tick and waits for it to come back;
 * every hop checks that it sees s = (last s it saw) + 1, counts itself into
 * the token and forwards it. The first hop to see a sequence out of order
 * records where in the token, so R learns which link broke. R (the one that
 * talks to the harness) also watches for any process of the tree exiting.
 * Progress = tokens that completed the ring.
 */
#include "wl_common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 64

struct token {
        uint64_t seq;
        uint32_t hops;    /* processes (besides R) that forwarded it */
        uint32_t bad_hop; /* 0: fine; else ring position of the first bad hop */
        uint64_t expected;
        uint64_t got;
};

struct tree {
        struct wl *w;
        unsigned nproc; /* ring length, R included: N children + 1 grandchild + 1 */
        int (*pipes)[2];
        pid_t pids[MAX_CHILDREN + 2];
        uint64_t done; /* tokens back in order (progress) */
        uint64_t sent; /* last sequence sent */
        bool in_flight;
        uint64_t last_send_ns;
};

/* ring position k reads pipes[k-1] (mod nproc) and writes pipes[k] */
static void keep_only(struct tree *t, unsigned k)
{
        unsigned in = (k + t->nproc - 1) % t->nproc;

        for (unsigned i = 0; i < t->nproc; i++) {
                if (i != in)
                        close(t->pipes[i][0]);
                if (i != k)
                        close(t->pipes[i][1]);
        }
}

static const char *role_name(unsigned k, char *buf, size_t len)
{
        if (k == 0)
                snprintf(buf, len, "root");
        else if (k == 1)
                snprintf(buf, len, "child1");
        else if (k == 2)
                snprintf(buf, len, "grandchild");
        else
                snprintf(buf, len, "child%u", k - 1);
        return buf;
}

static _Noreturn void hop_main(struct tree *t, unsigned k)
{
        unsigned in = (k + t->nproc - 1) % t->nproc;
        int rfd = t->pipes[in][0];
        int wfd = t->pipes[k][1];
        uint64_t last = 0;
        char name[32];
        char comm[16];

        snprintf(comm, sizeof(comm), "pt-%s", role_name(k, name, sizeof(name)));
        prctl(PR_SET_NAME, comm, 0, 0, 0);
        for (;;) {
                struct token tok;

                if (wl_read_full(rfd, &tok, sizeof(tok)) < 0)
                        _exit(errno ? 3 : 0); /* EOF: the ring is being torn down */
                if (!tok.bad_hop && tok.seq != last + 1) {
                        tok.bad_hop = k;
                        tok.expected = last + 1;
                        tok.got = tok.seq;
                }
                last = tok.seq;
                tok.hops++;
                if (wl_write_full(wfd, &tok, sizeof(tok)) < 0)
                        _exit(errno == EPIPE ? 0 : 4);
        }
}

static uint64_t tree_progress(void *ctx)
{
        return ((struct tree *)ctx)->done;
}

static void reap(struct tree *t)
{
        int status;
        pid_t pid;
        char name[32];

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                unsigned k;

                for (k = 1; k < t->nproc; k++)
                        if (t->pids[k] == pid)
                                break;
                if (k < t->nproc)
                        role_name(k, name, sizeof(name));
                else
                        snprintf(name, sizeof(name), "process");
                if (WIFSIGNALED(status))
                        wl_error(t->w, "%s (pid %d) killed by signal %d", name, (int)pid,
                                 WTERMSIG(status));
                else
                        wl_error(t->w, "%s (pid %d) exited with status %d", name, (int)pid,
                                 WEXITSTATUS(status));
        }
}

static bool tree_check(void *ctx, char *msg, size_t len)
{
        struct tree *t = ctx;
        char name[32];

        reap(t);
        if (t->w->error[0]) {
                snprintf(msg, len, "%s", t->w->error);
                return false;
        }
        for (unsigned k = 1; k < t->nproc; k++) {
                if (kill(t->pids[k], 0) < 0) {
                        snprintf(msg, len, "%s (pid %d) is gone", role_name(k, name, sizeof(name)),
                                 (int)t->pids[k]);
                        return false;
                }
        }
        snprintf(msg, len, "processes=%u links=%u tokens=%" PRIu64, t->nproc, t->nproc, t->done);
        return true;
}

static void on_token(struct tree *t, const struct token *tok)
{
        char name[32];

        t->in_flight = false;
        if (tok->bad_hop) {
                wl_error(t->w, "link into %s out of order: expected %" PRIu64 ", got %" PRIu64,
                         role_name(tok->bad_hop, name, sizeof(name)), tok->expected, tok->got);
        } else if (tok->seq != t->sent) {
                wl_error(t->w, "link into root out of order: expected %" PRIu64 ", got %" PRIu64,
                         t->sent, tok->seq);
        } else if (tok->hops != t->nproc - 1) {
                wl_error(t->w, "token %" PRIu64 " passed %u hops, expected %u", tok->seq, tok->hops,
                         t->nproc - 1);
        } else if (!t->w->error[0]) {
                t->done++;
        }
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: proctree [options]\n"
                "A root process, N children and a grandchild (child of the first child) in a\n"
                "ring of pipes passing sequence numbers; every hop checks the order. Progress\n"
                "is the number of tokens that went round the ring.\n"
                "  --children N           direct children of the root (default 3, max %d)\n"
                "Ticks default to 1 ms (one token per tick).\n"
                "%s",
                MAX_CHILDREN, wl_common_help);
}

int main(int argc, char **argv)
{
        struct wl w = {.name = "proctree", .interval_ms = 1};
        struct tree t = {.w = &w};
        uint64_t nchildren = 3;
        const char *v;
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
                if ((r = wl_opt_value(argc, argv, &i, "--children", &v)) != 0) {
                        if (r < 0 || wl_parse_u64(v, &nchildren) || nchildren == 0 ||
                            nchildren > MAX_CHILDREN) {
                                fprintf(stderr, "bad --children (1..%d)\n", MAX_CHILDREN);
                                return 2;
                        }
                        continue;
                }
                fprintf(stderr, "proctree: unknown argument '%s'\n", argv[i]);
                usage(stderr);
                return 2;
        }
        if (wl_setup(&w) < 0)
                return 2;
        w.progress = tree_progress;
        w.check = tree_check;
        w.ctx = &t;

        t.nproc = (unsigned)nchildren + 2;
        t.pipes = calloc(t.nproc, sizeof(*t.pipes));
        if (!t.pipes)
                return 2;
        for (unsigned i = 0; i < t.nproc; i++) {
                if (pipe2(t.pipes[i], O_CLOEXEC) < 0) {
                        perror("pipe2");
                        return 2;
                }
        }
        int setup[2]; /* child1 -> root: the grandchild's pid */

        if (pipe2(setup, O_CLOEXEC) < 0) {
                perror("pipe2");
                return 2;
        }
        t.pids[0] = getpid();
        /* ring positions: 0 root, 1 child1, 2 grandchild, 3.. child2..childN */
        for (unsigned k = 1; k < t.nproc; k++) {
                pid_t pid;

                if (k == 2)
                        continue; /* forked by child1 */
                pid = fork();
                if (pid < 0) {
                        perror("fork");
                        return 2;
                }
                if (pid == 0) {
                        if (k == 1) {
                                pid_t g = fork();

                                if (g < 0)
                                        _exit(5);
                                if (g == 0) {
                                        close(setup[0]);
                                        close(setup[1]);
                                        keep_only(&t, 2);
                                        hop_main(&t, 2);
                                }
                                if (wl_write_full(setup[1], &g, sizeof(g)) < 0)
                                        _exit(6);
                                close(setup[0]);
                                close(setup[1]);
                                keep_only(&t, 1);
                                hop_main(&t, 1);
                        }
                        close(setup[0]);
                        close(setup[1]);
                        keep_only(&t, k);
                        hop_main(&t, k);
                }
                t.pids[k] = pid;
        }
        keep_only(&t, 0);

        int rfd = t.pipes[t.nproc - 1][0];
        int wfd = t.pipes[0][1];
        close(setup[1]);
        if (wl_read_full(setup[0], &t.pids[2], sizeof(t.pids[2])) < 0) {
                fprintf(stderr, "proctree: child1 did not report the grandchild\n");
                return 2;
        }
        close(setup[0]);

        wl_ready(&w, "processes=%u", t.nproc);
        for (;;) {
                struct pollfd pfd = {.fd = rfd, .events = POLLIN};
                uint64_t now = wl_now_ns();

                if (!t.in_flight && now - t.last_send_ns >= (uint64_t)w.interval_ms * 1000000ULL) {
                        struct token tok = {.seq = t.sent + 1};

                        if (wl_write_full(wfd, &tok, sizeof(tok)) < 0) {
                                wl_error(&w, "write to child1: %s", strerror(errno));
                        } else {
                                t.sent++;
                                t.in_flight = true;
                                t.last_send_ns = now;
                        }
                }
                r = poll(&pfd, 1, (int)(w.interval_ms ? w.interval_ms : 1));
                if (r > 0) {
                        struct token tok;

                        if (wl_read_full(rfd, &tok, sizeof(tok)) < 0) {
                                wl_error(&w, "ring closed before root: %s",
                                         errno ? strerror(errno) : "EOF");
                                pfd.fd = -1;
                                rfd = -1;
                        } else {
                                on_token(&t, &tok);
                        }
                }
                reap(&t);
                r = wl_service(&w);
                if (r >= 0)
                        return r;
                if (rfd < 0)
                        wl_tick_sleep(&w);
        }
}
