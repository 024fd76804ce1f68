#!/usr/bin/env bash
# The README's main job: a local checkpoint/restore round trip with the
# agent's embedded defaults (local store under /var/lib/kybernate, socket
# /run/kybernate/agent.sock, no cluster).
#
#   scripts/demo.sh [BUILD_DIR]        (make demo runs setup + build first)
#
# 1. starts kybernate-agent (or uses one already serving the socket),
# 2. starts the `counter` workload in its own PID namespace: a counter plus a
#    64 Ki-slot memory region whose contents follow from the counter,
# 3. marks its progress, checkpoints it (CRIU dump; the workload stops),
# 4. restores it from the checkpoint,
# 5. asks the workload to verify its memory and that it continued from the
#    marked progress. Exits non-zero if any step or the self-check fails.
set -euo pipefail

build="$(cd "${1:-build}" && pwd)"
agent="$build/cmd/kybernate-agent"
ctl="$build/cmd/kybernatectl"
counter="$build/tests/workloads/counter"
sock=/run/kybernate/agent.sock
demo="$(mktemp -d /tmp/kybernate-demo.XXXXXX)"
status="$demo/status"
agent_pid=""
id="demo-$(date +%Y%m%d-%H%M%S)"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

cleanup() {
	pkill -f "^$counter --status $status" 2>/dev/null || true
	if [[ -n "$agent_pid" ]]; then
		kill -TERM "$agent_pid" 2>/dev/null || true
		wait "$agent_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

for bin in "$agent" "$ctl" "$counter"; do
	[[ -x "$bin" ]] || die "$bin is missing: run 'make build'"
done
[[ "$(id -u)" == 0 ]] || die "must run as root (CRIU needs it)"

# Appends a command for the workload and waits for its next status line
# that starts with $2.
ask() {
	local cmd="$1" want="$2" lines
	lines="$(wc -l <"$status")"
	printf '%s\n' "$cmd" >"$demo/ctl.tmp"
	mv "$demo/ctl.tmp" "$status.ctl"
	for _ in $(seq 1 200); do
		if tail -n +"$((lines + 1))" "$status" | grep -qE "^($want|fail|error)"; then
			tail -n +"$((lines + 1))" "$status" | grep -E "^($want|fail|error)" | head -1
			return 0
		fi
		sleep 0.05
	done
	die "workload did not answer '$cmd'"
}

say "starting kybernate-agent ($("$agent" --version)) on $sock"
if "$ctl" --timeout 2s version >/dev/null 2>&1; then
	echo "an agent already serves $sock: using it"
else
	"$agent" --metrics-address "" 2>"$demo/agent.log" &
	agent_pid=$!
	for _ in $(seq 1 100); do
		"$ctl" --timeout 1s version >/dev/null 2>&1 && break
		kill -0 "$agent_pid" 2>/dev/null || { cat "$demo/agent.log" >&2; die "agent exited"; }
		sleep 0.1
	done
fi
"$ctl" --json version

say "starting the counter workload in its own PID namespace"
unshare --pid --fork setsid "$counter" --status "$status" </dev/null >/dev/null 2>&1 &
for _ in $(seq 1 100); do
	grep -q '^ready' "$status" 2>/dev/null && break
	sleep 0.05
done
pid="$(pgrep -f "^$counter --status $status" | head -1)"
[[ -n "$pid" ]] || die "workload did not start"
echo "workload pid $pid: $(head -1 "$status")"
sleep 1
mark="$(ask mark mark | awk '{print $2}')"
echo "progress before the checkpoint: $mark steps"

say "checkpointing pid $pid as $id (the workload stops)"
"$ctl" checkpoint --pid "$pid" --id "$id" --label demo=true >"$demo/checkpoint.json"
for _ in $(seq 1 100); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
kill -0 "$pid" 2>/dev/null && die "workload still runs after the checkpoint"
echo "workload stopped; checkpoint stored:"
"$ctl" list --label demo=true

say "restoring $id"
"$ctl" --json restore "$id" | tail -1

say "asking the restored workload to verify itself (continued from >= $mark)"
verdict="$(ask "verify min=$mark" ok)"
echo "$verdict"
[[ "$verdict" == ok* ]] || die "self-check failed: $verdict"

say "demo passed: the workload resumed from its checkpoint with its memory intact"
"$ctl" delete "$id" >/dev/null
