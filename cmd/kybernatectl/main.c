/* SPDX-License-Identifier: Apache-2.0 */
/* kybernatectl: global options, then one command against the local agent. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/config.h"
#include "ctl.h"

typedef struct ctl_config {
        char *socket;
        int64_t timeout_ms;
        bool json;
} ctl_config;

#define ENV_PREFIX "KYBERNATECTL"

static const kyb_config_option options[] = {
    {"socket", KYB_CONFIG_STRING, offsetof(ctl_config, socket), "/run/kybernate/agent.sock", 0, 0,
     "the agent's Unix socket"},
    {"timeout", KYB_CONFIG_DURATION, offsetof(ctl_config, timeout_ms), "10m", 0, 86400000,
     "deadline of one command; 0 means none"},
    {"json", KYB_CONFIG_BOOL, offsetof(ctl_config, json), "false", 0, 0,
     "print JSON (one object per line for streams) instead of tables and progress bars"},
};

static void print_help(void)
{
        _cleanup_free_ char *opts = kyb_config_help(options, KYB_ARRAY_SIZE(options), ENV_PREFIX);

        printf("Usage: kybernatectl [GLOBAL OPTIONS] COMMAND [ARGS]\n\n"
               "Drives the local kybernate-agent over its Unix socket (root only).\n\n"
               "Commands:\n");
        for (const ctl_command *c = ctl_commands; c->name; c++)
                printf("  %s %s\n      %s\n", c->name, c->args, c->help);
        printf("\nGlobal options:\n%s  --version\n      print the version and exit\n\n",
               opts ? opts : "");
        printf("Exit status: 0 success, 1 the agent reported a failure, 2 usage error,\n"
               "3 the agent is unreachable.\n");
}

static const ctl_command *find_command(const char *name)
{
        for (const ctl_command *c = ctl_commands; c->name; c++)
                if (!strcmp(c->name, name))
                        return c;
        return NULL;
}

static int run(const ctl_config *cfg, const ctl_command *cmd, int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        ctl c = {.timeout_ms = cfg->timeout_ms,
                 .json = cfg->json,
                 .tty = isatty(STDOUT_FILENO),
                 .last_step = -1};
        int rc;

        if (kyb_rpc_client_open(cfg->socket, &c.client, &err) < 0)
                return ctl_fail("connecting", err);
        rc = cmd->run(&c, argc, argv);
        kyb_rpc_client_free(c.client);
        return rc;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_config_status status = {0};
        ctl_config cfg = {0};
        kyb_config_sources src = {.env_prefix = ENV_PREFIX, .argc = argc, .argv = argv};
        const ctl_command *cmd;
        int rc;

        if (argc > 1 && !strcmp(argv[1], "--version")) {
                kyb_cli_print_version(stdout, "kybernatectl");
                return CTL_OK;
        }
        if (kyb_config_load(options, KYB_ARRAY_SIZE(options), &cfg, &src, &status, &err) < 0) {
                fprintf(stderr, "kybernatectl: %s\n", kyb_error_message(err));
                return CTL_USAGE;
        }
        if (status.help || status.next_arg >= argc) {
                print_help();
                rc = status.help ? CTL_OK : CTL_USAGE;
        } else if (!(cmd = find_command(argv[status.next_arg]))) {
                fprintf(stderr, "kybernatectl: unknown command '%s'; see --help\n",
                        argv[status.next_arg]);
                rc = CTL_USAGE;
        } else {
                rc = run(&cfg, cmd, argc - status.next_arg, argv + status.next_arg);
        }
        kyb_config_free(options, KYB_ARRAY_SIZE(options), &cfg);
        return rc;
}
