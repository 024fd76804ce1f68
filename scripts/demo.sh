#!/usr/bin/env bash
# The README's main job: a local checkpoint/restore demo with the agent's
# embedded defaults. Usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
build="${1:-build}"
[ -x "$build/cmd/kybernate-agent" ] || { echo "demo: $build/cmd/kybernate-agent missing; run 'make build'" >&2; exit 1; }
echo "demo: built $("$build/cmd/kybernate-agent" --version)"
echo "demo: not implemented yet: the checkpoint/restore engine and the agent service" \
     "come with the node agent issue; nothing was checkpointed." >&2
exit 2
