/* SPDX-License-Identifier: Apache-2.0 */
/* kybernate-operator: the cluster controllers (docs/operator.md). */
#define KYB_LOG_MODULE "main"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/cli.h"
#include "base/log.h"
#include "operator/operator.h"

static const char usage[] =
    "Usage: kybernate-operator [OPTIONS]\n"
    "\n"
    "Runs the controllers of CheckpointRequest, RestoreRequest and CheckpointPolicy\n"
    "(docs/operator.md) against the cluster of --kubeconfig or, inside a pod, the\n"
    "in-cluster service account. With --leader-elect (default) only the replica holding\n"
    "the Lease acts; a leader that loses the Lease exits with status 1. SIGTERM stops\n"
    "after the requests in progress and releases the Lease.\n"
    "Options are also read from $" KYB_OPERATOR_ENV_PREFIX "_<NAME> and a YAML file\n"
    "(--config FILE).\n"
    "\n";

static void *signal_thread(void *arg)
{
        sigset_t set;
        int sig;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        if (sigwait(&set, &sig) == 0) {
                kyb_log_info("received %s, stopping", strsignal(sig));
                kyb_operator_stop(arg);
        }
        return NULL;
}

static int run(const kyb_operator_config *cfg)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_operator *op = NULL;
        pthread_t th;
        int rc;

        if (kyb_operator_new(cfg, &op, &err) < 0) {
                kyb_log_error("%s", kyb_error_message(err));
                return 1;
        }
        if (kyb_operator_metrics_port(op) >= 0)
                kyb_log_info("metrics on port %d", kyb_operator_metrics_port(op));
        if (pthread_create(&th, NULL, signal_thread, op) != 0) {
                kyb_log_error("cannot start the signal thread");
                kyb_operator_free(op);
                return 1;
        }
        pthread_detach(th);
        rc = kyb_operator_run(op, &err);
        if (rc < 0)
                kyb_log_error("%s", kyb_error_message(err));
        kyb_operator_free(op);
        kyb_log_info("stopped");
        return rc < 0 ? 1 : 0;
}

static int print_help(void)
{
        _cleanup_free_ char *opts =
            kyb_config_help(kyb_operator_options, kyb_operator_n_options, KYB_OPERATOR_ENV_PREFIX);

        fputs(usage, stdout);
        fputs(opts ? opts : "", stdout);
        fputs("  --version\n      print the version and exit\n", stdout);
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_operator_config cfg = {0};
        kyb_config_status status = {0};
        kyb_config_sources src = {
            .env_prefix = KYB_OPERATOR_ENV_PREFIX, .argc = argc, .argv = argv};
        sigset_t set;
        int rc;

        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--version")) {
                        kyb_cli_print_version(stdout, "kybernate-operator");
                        return 0;
                }
        if (kyb_config_load(kyb_operator_options, kyb_operator_n_options, &cfg, &src, &status,
                            &err) < 0) {
                fprintf(stderr, "kybernate-operator: %s\n", kyb_error_message(err));
                return 2;
        }
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* Informers, workers and curl all allocate from their own threads:
         * one arena per thread would keep freed memory per thread, and the
         * API traffic, not malloc, bounds the operator. Response buffers of
         * list pages go to mmap and back to the kernel when freed. */
        mallopt(M_ARENA_MAX, 1);
        mallopt(M_MMAP_THRESHOLD, 64 << 10);
        if (status.help)
                rc = print_help();
        else if (status.next_arg < argc) {
                fprintf(stderr, "kybernate-operator: unexpected argument '%s'\n",
                        argv[status.next_arg]);
                rc = 2;
        } else if (kyb_log_configure(cfg.log_level, cfg.log_format, &err) < 0) {
                fprintf(stderr, "kybernate-operator: %s\n", kyb_error_message(err));
                rc = 2;
        } else
                rc = run(&cfg);
        kyb_config_free(kyb_operator_options, kyb_operator_n_options, &cfg);
        return rc;
}
