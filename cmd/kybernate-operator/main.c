/* SPDX-License-Identifier: Apache-2.0 */
#include "base/cli.h"

static const kyb_cli_stub stub = {
    .name = "kybernate-operator",
    .summary = "cluster controller for CheckpointRequest, RestoreRequest and CheckpointPolicy",
    .pending = "CRD controllers (operator issue)",
    .usage = "Usage: kybernate-operator [--help] [--version]\n\n"
             "Only --help and --version work in this build; the CRDs are in deploy/crds/.\n",
};

int main(int argc, char **argv)
{
        return kyb_cli_stub_main(&stub, argc, argv);
}
