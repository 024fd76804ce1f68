/* SPDX-License-Identifier: Apache-2.0 */
#include "base/cli.h"

static const kyb_cli_stub stub = {
    .name = "kybernate-sidecar",
    .summary = "archives checkpoints and moves them to and from S3 or a shared volume",
    .pending = "archive, upload and fetch (storage and sidecar issue)",
    .usage = "Usage: kybernate-sidecar [--help] [--version]\n\n"
             "Modes (planned): watch, fetch. Only --help and --version work in this build.\n",
};

int main(int argc, char **argv)
{
        return kyb_cli_stub_main(&stub, argc, argv);
}
