/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared behaviour of the command-line front ends in cmd/: the version line
 * and the honest answer of a binary whose capability is not built yet.
 */
#pragma once

#include <stdio.h>

typedef struct kyb_cli_stub {
        const char *name;    /* binary name, e.g. "kybernate-sidecar" */
        const char *summary; /* one line: what the binary is for */
        const char *usage;   /* full --help text */
        const char *pending; /* which capability/issue is still missing */
} kyb_cli_stub;

void kyb_cli_print_version(FILE *out, const char *name);

/*
 * main() of a binary that only answers --help and --version so far: exits 0
 * for those, and 2 with "not implemented" on stderr for anything else.
 */
int kyb_cli_stub_main(const kyb_cli_stub *stub, int argc, char **argv);
