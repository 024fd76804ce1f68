/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Serves the test Echo service on a Unix socket for the interop tests.
 * Usage: rpc_echo_server SOCKET [ALLOWED_UID]
 * Prints "ready" once serving; SIGTERM/SIGINT shut down with a 2 s grace.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "echo_service.h"

static int check_uid(void *userdata, const kyb_rpc_peer *peer, kyb_error **err)
{
        const uid_t *allowed = userdata;

        if (peer->uid != *allowed) {
                fprintf(stderr, "refusing peer pid %d uid %u\n", peer->pid, peer->uid);
                return kyb_error_setf(err, EACCES, "uid %u not allowed", peer->uid);
        }
        return 0;
}

typedef struct server_ctx {
        echo_state state;
        uid_t allowed_uid;
} server_ctx;

static int check_peer(void *userdata, const kyb_rpc_peer *peer, kyb_error **err)
{
        server_ctx *ctx = userdata;

        return check_uid(&ctx->allowed_uid, peer, err);
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        server_ctx ctx = {.allowed_uid = geteuid()};
        kyb_rpc_server *srv = NULL;
        sigset_t set;
        int sig;

        if (argc < 2) {
                fprintf(stderr, "usage: %s SOCKET [ALLOWED_UID]\n", argv[0]);
                return 2;
        }
        if (argc > 2)
                ctx.allowed_uid = (uid_t)strtoul(argv[2], NULL, 10);
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        /* echo_state is the first member, so handlers see it as userdata. */
        kyb_rpc_server_options opts = {
            .socket_path = argv[1],
            .methods = echo_methods,
            .n_methods = ECHO_N_METHODS,
            .userdata = &ctx,
            .peer_check = check_peer,
        };
        if (kyb_rpc_server_start(&opts, &srv, &err) < 0) {
                fprintf(stderr, "rpc_echo_server: %s\n", kyb_error_message(err));
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        sigwait(&set, &sig);
        kyb_rpc_server_shutdown(srv, 2000);
        kyb_rpc_server_free(srv);
        printf("stopped\n");
        return 0;
}
