/* SPDX-License-Identifier: Apache-2.0 */
/* kybernate-sidecar: upload finished checkpoints (watch) or fetch one (fetch). */
#define KYB_LOG_MODULE "main"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/log.h"
#include "sidecar/sidecar.h"

static const char usage[] =
    "Usage: kybernate-sidecar watch --target URI [--watch-dir DIR] [OPTIONS]\n"
    "       kybernate-sidecar fetch --source URI --dest DIR [--id ID] [OPTIONS]\n"
    "\n"
    "watch: uploads every complete checkpoint <dir>/<id>/ (manifest.json present) as\n"
    "<target>/<id>.tar.zst and writes <dir>/<id>.upload.json. Runs until SIGTERM,\n"
    "which lets the transfer in progress finish within --grace or abandons it.\n"
    "fetch: downloads, extracts and verifies one artifact into <dest>/<id>; exits 0\n"
    "only when it is complete and verified, and leaves nothing behind otherwise.\n"
    "\n"
    "Targets: s3://bucket/prefix[?endpoint=URL&region=R&path-style=true], file:///path.\n"
    "S3 credentials: --credentials-dir (a mounted Secret) or AWS_ACCESS_KEY_ID,\n"
    "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. Options are also read from\n"
    "$" KYB_SIDECAR_ENV_PREFIX "_<NAME> and a YAML file (--config FILE).\n"
    "\n";

typedef struct sigctx {
        kyb_sidecar *sc;
        int64_t grace_ms;
} sigctx;

static void *signal_thread(void *arg)
{
        sigctx *c = arg;
        sigset_t set;
        int sig;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        if (sigwait(&set, &sig) != 0)
                return NULL;
        kyb_log_info("received %s, stopping (grace %lld ms)", strsignal(sig),
                     (long long)c->grace_ms);
        kyb_sidecar_stop(c->sc, c->grace_ms);
        /* A transfer blocked inside the storage library (retries of a dead
         * server) cannot see the deadline: exit hard well after it. */
        for (;;) {
                struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
                nanosleep(&ts, NULL);
                if (kyb_sidecar_overdue(c->sc, 10000)) {
                        kyb_log_warn("transfer still running 10 s after the grace period; "
                                     "exiting without a result");
                        _exit(0);
                }
        }
        return NULL;
}

static int run(const kyb_sidecar_config *cfg, const char *mode)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_sidecar *sc = NULL;
        sigctx c = {.grace_ms = cfg->grace_ms};
        pthread_t th;
        sigset_t set;
        int rc;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (kyb_sidecar_new(cfg, mode, &sc, &err) < 0) {
                kyb_log_error("%s: %s", mode, kyb_error_message(err));
                return 1;
        }
        if (kyb_sidecar_metrics_port(sc) >= 0)
                kyb_log_info("metrics on port %d", kyb_sidecar_metrics_port(sc));
        c.sc = sc;
        if (pthread_create(&th, NULL, signal_thread, &c) != 0) {
                kyb_log_error("cannot start the signal thread");
                kyb_sidecar_free(sc);
                return 1;
        }
        pthread_detach(th);
        if (!strcmp(mode, "watch"))
                rc = kyb_sidecar_watch(sc, &err);
        else
                rc = kyb_sidecar_fetch(sc, &err);
        if (rc < 0)
                kyb_log_error("%s", kyb_error_message(err));
        /* The signal thread stays parked; exiting ends it. */
        kyb_sidecar_free(sc);
        return rc < 0 ? 1 : 0;
}

static int print_help(void)
{
        _cleanup_free_ char *opts =
            kyb_config_help(kyb_sidecar_options, kyb_sidecar_n_options, KYB_SIDECAR_ENV_PREFIX);

        fputs(usage, stdout);
        fputs(opts ? opts : "", stdout);
        fputs("  --version\n      print the version and exit\n", stdout);
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_sidecar_config cfg = {0};
        kyb_config_status status = {0};
        const char *mode;
        int rc;

        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--version")) {
                        kyb_cli_print_version(stdout, "kybernate-sidecar");
                        return 0;
                }
        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
                return argc < 2 ? (fputs(usage, stderr), 2) : print_help();
        mode = argv[1];
        if (strcmp(mode, "watch") && strcmp(mode, "fetch")) {
                fprintf(stderr, "kybernate-sidecar: unknown mode '%s' (watch or fetch)\n", mode);
                return 2;
        }
        kyb_config_sources src = {
            .env_prefix = KYB_SIDECAR_ENV_PREFIX, .argc = argc - 1, .argv = argv + 1};
        if (kyb_config_load(kyb_sidecar_options, kyb_sidecar_n_options, &cfg, &src, &status, &err) <
            0) {
                fprintf(stderr, "kybernate-sidecar: %s\n", kyb_error_message(err));
                return 2;
        }
        if (status.help)
                rc = print_help();
        else if (status.next_arg < argc - 1) {
                fprintf(stderr, "kybernate-sidecar: unexpected argument '%s'\n",
                        argv[1 + status.next_arg]);
                rc = 2;
        } else if (kyb_log_configure(cfg.log_level, cfg.log_format, &err) < 0) {
                fprintf(stderr, "kybernate-sidecar: %s\n", kyb_error_message(err));
                rc = 2;
        } else
                rc = run(&cfg, mode);
        kyb_config_free(kyb_sidecar_options, kyb_sidecar_n_options, &cfg);
        return rc;
}
