/* SPDX-License-Identifier: Apache-2.0 */
#include "base/cli.h"

static const kyb_cli_stub stub = {
    .name = "kybernate-agent",
    .summary = "node agent: CUDA + CRIU checkpoint/restore over gRPC",
    .pending = "the agent service (node agent issue)",
    .usage = "Usage: kybernate-agent [--help] [--version]\n\n"
             "Only --help and --version work in this build.\n",
};

int main(int argc, char **argv)
{
        return kyb_cli_stub_main(&stub, argc, argv);
}
