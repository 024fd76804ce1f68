/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "base/cli.h"
#include "kyb-version.h"

void kyb_cli_print_version(FILE *out, const char *name)
{
        fprintf(out, "%s %s\n", name, KYB_VERSION);
}

int kyb_cli_stub_main(const kyb_cli_stub *stub, int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        fprintf(stdout, "%s — %s\n\n%s", stub->name, stub->summary, stub->usage);
                        return 0;
                }
                if (!strcmp(argv[i], "--version")) {
                        kyb_cli_print_version(stdout, stub->name);
                        return 0;
                }
        }
        fprintf(stderr, "%s: not implemented yet: %s\n", stub->name, stub->pending);
        return 2;
}
