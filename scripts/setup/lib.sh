# shellcheck shell=bash disable=SC2034
# Shared helpers for scripts/setup.sh and its components (sourced, not run).
# Every component may rely on: log, warn, die, run_timed, pkg_missing,
# ensure_packages, apt_update_once, KYB_CACHE_DIR.

: "${KYB_CACHE_DIR:=/var/cache/kybernate}"
export KYB_CACHE_DIR
export DEBIAN_FRONTEND=noninteractive
# The pyenv shim on PATH is not the system Python: tools and builds started
# from here must find Debian's /usr/bin/python3 first.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

# Current component, used in log prefixes ("setup: criu: ...").
SETUP_COMPONENT=""

log() {
	if [[ -n "$SETUP_COMPONENT" ]]; then
		printf 'setup: %s: %s\n' "$SETUP_COMPONENT" "$*"
	else
		printf 'setup: %s\n' "$*"
	fi
}

warn() { log "WARNING: $*" >&2; }

die() {
	log "ERROR: $*" >&2
	exit 1
}

# Monotonic-ish seconds with millisecond resolution, for step timings.
now_s() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# apt-get with a lock wait so parallel `make test` / `make demo` do not fail
# on the dpkg lock, and no prompts.
apt_get() {
	apt-get -q -y -o DPkg::Lock::Timeout=600 \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

APT_UPDATED=0
apt_update_once() {
	if [[ "$APT_UPDATED" == 1 ]]; then
		return 0
	fi
	log "apt-get update"
	apt_get update
	APT_UPDATED=1
}

# Print the packages among "$@" that are not fully installed. One dpkg-query
# call for the whole list (unknown packages print nothing on stdout and are
# therefore reported missing too).
pkg_missing() {
	local installed
	installed="$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null |
		awk '$2 == "install" && $3 == "ok" && $4 == "installed" { sub(/:.*/, "", $1); print $1 }' || true)"
	local p
	for p in "$@"; do
		if ! grep -qxF -- "$p" <<<"$installed"; then
			printf '%s\n' "$p"
		fi
	done
}

# ensure_packages LABEL PKG... — install the missing ones; on a ready host
# this does no network I/O at all (no apt-get update).
ensure_packages() {
	local label="$1"
	shift
	local -a missing
	mapfile -t missing < <(pkg_missing "$@")
	if ((${#missing[@]} == 0)); then
		log "$label packages: all $# present"
		return 0
	fi
	log "$label packages: installing ${#missing[@]} missing: ${missing[*]}"
	apt_update_once
	apt_get install "${missing[@]}"
	mapfile -t missing < <(pkg_missing "$@")
	if ((${#missing[@]} > 0)); then
		die "$label packages still missing after apt-get install: ${missing[*]}"
	fi
}

# sha256_of FILE — print the hex digest.
sha256_of() { sha256sum -- "$1" | awk '{ print $1 }'; }
