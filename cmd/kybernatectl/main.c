/* SPDX-License-Identifier: Apache-2.0 */
#include "base/cli.h"

static const kyb_cli_stub stub = {
    .name = "kybernatectl",
    .summary = "command-line client of the Kybernate agent",
    .pending = "the agent client (node agent issue)",
    .usage = "Usage: kybernatectl [--help] [--version]\n\n"
             "Commands (planned): checkpoint, restore, list, inspect, delete, gpu. Only --help and "
             "--version work in this build.\n",
};

int main(int argc, char **argv)
{
        return kyb_cli_stub_main(&stub, argc, argv);
}
