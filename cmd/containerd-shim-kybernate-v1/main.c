/* SPDX-License-Identifier: Apache-2.0 */
#include "base/cli.h"

static const kyb_cli_stub stub = {
    .name = "containerd-shim-kybernate-v1",
    .summary = "containerd shim v2 that checkpoints before kill and restores on create",
    .pending = "the shim v2 proxy (runtime shim issue)",
    .usage = "Usage: containerd-shim-kybernate-v1 [--help] [--version]\n\n"
             "Only --help and --version work in this build.\n",
};

int main(int argc, char **argv)
{
        return kyb_cli_stub_main(&stub, argc, argv);
}
