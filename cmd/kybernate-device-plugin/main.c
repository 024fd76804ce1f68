/* SPDX-License-Identifier: Apache-2.0 */
#include "base/cli.h"

static const kyb_cli_stub stub = {
    .name = "kybernate-device-plugin",
    .summary = "kubelet device plugin advertising GPU seats (kybernate.io/gpu)",
    .pending = "NVML discovery and seat advertisement (device plugin issue)",
    .usage = "Usage: kybernate-device-plugin [--help] [--version]\n\n"
             "Only --help and --version work in this build.\n",
};

int main(int argc, char **argv)
{
        return kyb_cli_stub_main(&stub, argc, argv);
}
