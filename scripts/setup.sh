#!/usr/bin/env bash
# Kybernate host installer: the one idempotent entry point behind
# `make setup` (and so `make test` / `make demo`).
#
#   scripts/setup.sh               install every component, in order
#   scripts/setup.sh criu          only the named component(s)
#   scripts/setup.sh --list        list components
#
# Each component is scripts/setup/<name>.sh defining setup_<name>; add new
# ones there and to SETUP_DEFAULT_COMPONENTS below. Helpers: setup/lib.sh.
# A re-run on a ready host does no network I/O. See docs/setup.md.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SETUP_DEFAULT_COMPONENTS=(packages criu containerd kubernetes s3)

SETUP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SETUP_DIR="$SETUP_ROOT/setup"

# shellcheck source=setup/lib.sh
source "$SETUP_DIR/lib.sh"

setup_usage() {
	cat <<USAGE
usage: $0 [--list] [COMPONENT...]
Installs Kybernate's host dependencies (idempotent; needs root).
Components (default: all, in this order): ${SETUP_DEFAULT_COMPONENTS[*]}
Environment: KYB_CACHE_DIR (default /var/cache/kybernate), KYB_CRIU_TARBALL,
             KYB_CRIU_REBUILD=1, KYB_JOBS. See docs/setup.md.
USAGE
}

setup_main() {
	local -a components=()
	local arg
	for arg in "$@"; do
		case "$arg" in
		-h | --help) setup_usage; return 0 ;;
		--list) printf '%s\n' "${SETUP_DEFAULT_COMPONENTS[@]}"; return 0 ;;
		-*) setup_usage >&2; die "unknown option: $arg" ;;
		*) components+=("$arg") ;;
		esac
	done
	if ((${#components[@]} == 0)); then
		components=("${SETUP_DEFAULT_COMPONENTS[@]}")
	fi

	# Validate every name before doing anything.
	local c
	for c in "${components[@]}"; do
		[[ "$c" =~ ^[a-z0-9_-]+$ && -f "$SETUP_DIR/$c.sh" ]] ||
			die "unknown component '$c' (known: ${SETUP_DEFAULT_COMPONENTS[*]})"
	done

	if [[ "$(id -u)" != 0 ]]; then
		die "must run as root (try: sudo $0 $*)"
	fi

	# Serialise concurrent runs (e.g. `make test` and `make demo` at once).
	mkdir -p /run/lock
	exec 9>/run/lock/kybernate-setup.lock
	if ! flock -n 9; then
		log "another setup run holds /run/lock/kybernate-setup.lock; waiting"
		flock 9
	fi

	local t_all t0
	t_all="$(now_s)"
	for c in "${components[@]}"; do
		# shellcheck source=/dev/null
		source "$SETUP_DIR/$c.sh"
		declare -F "setup_$c" >/dev/null || die "$SETUP_DIR/$c.sh does not define setup_$c"
		SETUP_COMPONENT="$c"
		t0="$(now_s)"
		log "start"
		"setup_$c"
		log "done in $(elapsed_since "$t0")s"
		SETUP_COMPONENT=""
	done
	log "all done (${components[*]}) in $(elapsed_since "$t_all")s"
}

setup_main "$@"
