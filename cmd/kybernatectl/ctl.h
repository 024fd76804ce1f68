/* SPDX-License-Identifier: Apache-2.0 */
/* kybernatectl internals shared by its command and output files. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "rpc/client.h"

/* Exit codes, documented in --help. */
enum {
        CTL_OK = 0,
        CTL_FAILED = 1,      /* the agent reported an error */
        CTL_USAGE = 2,       /* bad command line */
        CTL_UNREACHABLE = 3, /* no agent at the socket */
};

typedef struct ctl {
        kyb_rpc_client *client;
        int64_t timeout_ms;
        bool json;
        bool tty; /* stdout is a terminal: progress bars */
        int last_step;
        double started;
} ctl;

typedef int (*ctl_command_fn)(ctl *c, int argc, char **argv);

typedef struct ctl_command {
        const char *name;
        const char *args;
        const char *help;
        ctl_command_fn run;
} ctl_command;

extern const ctl_command ctl_commands[];

/* Reports an rpc error once on stderr and maps it to an exit code. */
int ctl_fail(const char *what, const kyb_error *err);

/* Output helpers (output.c). */
void ctl_print_message(const ctl *c, const ProtobufCMessage *msg);
void ctl_progress(ctl *c, int step, const char *step_name, const char *message, uint64_t done,
                  uint64_t total);
void ctl_progress_end(const ctl *c);
char *ctl_human_bytes(uint64_t bytes, char *buf, size_t len);
