# shellcheck shell=bash
# Component "s3": a local S3-compatible server for the test environment
# (tests/env/): s3rver 3.7.1 from the npm registry, installed with Debian's
# nodejs/npm into ${KYB_CACHE_DIR}/s3rver-3.7.1/ (pinned; package-lock.json
# and its sha256 kept there), plus python3-botocore for the tests' client.
# See docs/testing.md.
#
# Environment:
#   KYB_CACHE_DIR        cache root (default /var/cache/kybernate)
#   KYB_S3_REINSTALL=1   reinstall from the cached lock file (or afresh)

S3RVER_VERSION="3.7.1"
S3_PKGS=(python3-botocore)

s3_cache() { printf '%s/s3rver-%s' "$KYB_CACHE_DIR" "$S3RVER_VERSION"; }

# Installed s3rver reports the pinned version and the lock matches its
# recorded sha256.
s3_installed_ok() {
	local dir="$1" v
	[[ -x "$dir/node_modules/.bin/s3rver" && -s "$dir/package-lock.json" && -s "$dir/SHA256SUMS" ]] || return 1
	v="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
		"$dir/node_modules/s3rver/package.json" 2>/dev/null)" || return 1
	[[ "$v" == "$S3RVER_VERSION" ]] || return 1
	(cd "$dir" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1)
}

# Node and npm: Debian's nodejs/npm; a working node+npm already on the host
# (e.g. a newer nodejs that bundles npm, which conflicts with Debian's npm
# package) is kept.
s3_ensure_node() {
	if command -v node >/dev/null && command -v npm >/dev/null &&
		node --version >/dev/null 2>&1 && npm --version >/dev/null 2>&1; then
		log "node $(node --version), npm $(npm --version) present"
		return 0
	fi
	ensure_packages "nodejs" nodejs npm
}

setup_s3() {
	local dir
	dir="$(s3_cache)"
	ensure_packages "s3 client" "${S3_PKGS[@]}"
	s3_ensure_node

	if [[ "${KYB_S3_REINSTALL:-0}" != 1 ]] && s3_installed_ok "$dir"; then
		log "s3rver $S3RVER_VERSION installed in $dir (lock sha256 ok): nothing to do"
		return 0
	fi

	mkdir -p "$KYB_CACHE_DIR"
	local work
	work="$(mktemp -d "$KYB_CACHE_DIR/s3rver-install.XXXXXX")"
	# Reuse the recorded lock file so a reinstall gets the same tree.
	if [[ -s "$dir/package-lock.json" && -s "$dir/package.json" ]]; then
		cp "$dir/package.json" "$dir/package-lock.json" "$work/"
		log "npm ci (from the cached package-lock.json) in $work"
		(cd "$work" && npm ci --no-audit --no-fund --loglevel=error) >"$work.log" 2>&1 ||
			{ tail -n 30 "$work.log" >&2; rm -rf "$work"; die "npm ci failed (log $work.log)"; }
	else
		printf '{\n  "name": "kybernate-s3rver",\n  "private": true,\n  "description": "s3rver for Kybernate tests (scripts/setup/s3.sh)"\n}\n' >"$work/package.json"
		log "npm install --save-exact s3rver@$S3RVER_VERSION in $work"
		(cd "$work" && npm install --save-exact --no-audit --no-fund --loglevel=error "s3rver@$S3RVER_VERSION") >"$work.log" 2>&1 ||
			{ tail -n 30 "$work.log" >&2; rm -rf "$work"; die "npm install s3rver@$S3RVER_VERSION failed (log $work.log)"; }
	fi
	rm -f "$work.log"
	[[ -s "$work/package-lock.json" ]] || die "npm wrote no package-lock.json"
	(cd "$work" && sha256sum package.json package-lock.json >SHA256SUMS)
	rm -rf "$dir.old"
	[[ -e "$dir" ]] && mv "$dir" "$dir.old"
	mv "$work" "$dir"
	rm -rf "$dir.old"
	s3_installed_ok "$dir" || die "s3rver install in $dir does not verify"
	log "installed s3rver $S3RVER_VERSION in $dir (package-lock.json sha256 $(sha256_of "$dir/package-lock.json"))"
}
