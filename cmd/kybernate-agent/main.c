/* SPDX-License-Identifier: Apache-2.0 */
/* kybernate-agent: parse configuration, run the agent until SIGTERM/SIGINT. */
#define KYB_LOG_MODULE "main"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/cli.h"
#include "base/log.h"

static const char usage[] =
    "Usage: kybernate-agent [OPTIONS]\n"
    "\n"
    "Node agent of Kybernate: serves the kybernate.agent.v1 gRPC API on a root-only\n"
    "Unix socket and /metrics, /healthz on a local HTTP port. Stops on SIGTERM,\n"
    "letting in-flight requests finish within --shutdown-grace.\n"
    "\n"
    "Options are read from (later wins): built-in defaults, the YAML file\n"
    "(--config FILE, $" KYB_AGENT_ENV_PREFIX "_CONFIG or " KYB_AGENT_DEFAULT_FILE "),\n"
    "environment variables, command-line flags.\n"
    "\n";

static int print_help(void)
{
        _cleanup_free_ char *opts =
            kyb_config_help(kyb_agent_options, kyb_agent_n_options, KYB_AGENT_ENV_PREFIX);

        fputs(usage, stdout);
        fputs(opts ? opts : "", stdout);
        fputs("  --version\n      print the version and exit\n", stdout);
        return 0;
}

static int run(const kyb_agent_config *cfg)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_agent *agent = NULL;
        sigset_t set;
        int sig;

        /* Block before any thread starts so that only sigwait sees them. */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (kyb_agent_start(cfg, &agent, &err) < 0) {
                kyb_log_error("%s", kyb_error_message(err));
                return 1;
        }
        kyb_log_info("serving on %s (metrics port %d, store %s)", cfg->socket_path,
                     kyb_agent_metrics_port(agent), cfg->store_dir);
        sigwait(&set, &sig);
        kyb_log_info("received %s, draining (grace %lld ms)", strsignal(sig),
                     (long long)cfg->shutdown_grace_ms);
        kyb_agent_stop(agent);
        kyb_log_info("stopped");
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_agent_config cfg = {0};
        kyb_config_status status = {0};
        kyb_config_sources src = {.env_prefix = KYB_AGENT_ENV_PREFIX,
                                  .argc = argc,
                                  .argv = argv,
                                  .default_file = KYB_AGENT_DEFAULT_FILE};
        int rc;

        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--version")) {
                        kyb_cli_print_version(stdout, "kybernate-agent");
                        return 0;
                }
        if (kyb_config_load(kyb_agent_options, kyb_agent_n_options, &cfg, &src, &status, &err) <
            0) {
                fprintf(stderr, "kybernate-agent: %s\n", kyb_error_message(err));
                return 2;
        }
        if (status.help)
                rc = print_help();
        else if (status.next_arg < argc) {
                fprintf(stderr, "kybernate-agent: unexpected argument '%s'\n",
                        argv[status.next_arg]);
                rc = 2;
        } else if (kyb_log_configure(cfg.log_level, cfg.log_format, &err) < 0) {
                fprintf(stderr, "kybernate-agent: %s\n", kyb_error_message(err));
                rc = 2;
        } else
                rc = run(&cfg);
        kyb_config_free(kyb_agent_options, kyb_agent_n_options, &cfg);
        return rc;
}
