# shellcheck shell=bash
# Component "criu": CRIU 4.1.1 built from Debian trixie's upstream tarball
# (bookworm's 3.17 fails on 6.x kernels; trixie's binary package would pull
# trixie's libc). See docs/setup.md and shared/ENVIRONMENT.md.
#
# Environment:
#   KYB_CACHE_DIR      cache root (default /var/cache/kybernate)
#   KYB_CRIU_TARBALL   local criu_4.1.1.orig.tar.xz to use instead of
#                      `apt-get source` (still sha256-verified)
#   KYB_CRIU_REBUILD=1 ignore the installed and cached binaries, rebuild
#   KYB_JOBS           make parallelism (default 2)

CRIU_VERSION="4.1.1"
CRIU_TARBALL_NAME="criu_${CRIU_VERSION}.orig.tar.xz"
CRIU_TARBALL_SHA256="f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe"
CRIU_BIN="/usr/local/sbin/criu"
CRIU_SRC_LIST="/etc/apt/sources.list.d/kybernate-trixie-src.sources"
CRIU_DEBIAN_SOURCES="/etc/apt/sources.list.d/debian.sources"

# Build dependencies, exactly as verified in shared/ENVIRONMENT.md.
CRIU_BUILD_DEPS=(
	libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
	python3-protobuf libnl-3-dev libnet1-dev libcap-dev libbsd-dev
	libnftables-dev pkg-config libgnutls28-dev libaio-dev uuid-dev
)
# Tools this script itself uses to fetch, unpack and build.
CRIU_TOOLS=(gcc make xz-utils patch)
# Runtime: iptables (network locking during dump) and the shared libraries
# the binary links against.
CRIU_RUNTIME=(
	iptables libprotobuf-c1 libnl-3-200 libnet1 libcap2 libbsd0
	libnftables1 libgnutls30 libaio1 libuuid1
)

criu_cache() { printf '%s/criu-%s' "$KYB_CACHE_DIR" "$CRIU_VERSION"; }

# Our fixes on top of upstream (scripts/setup/patches/criu-<version>/*.patch,
# applied in name order). The build ID names tarball + patches, so changing a
# patch rebuilds CRIU on the next setup run.
criu_patch_dir() { printf '%s/patches/criu-%s' "$SETUP_DIR" "$CRIU_VERSION"; }
criu_build_id() {
	{
		printf '%s\n' "$CRIU_TARBALL_SHA256"
		cat "$(criu_patch_dir)"/*.patch 2>/dev/null || true
	} | sha256sum | cut -c1-16
}
criu_apply_patches() { # SRC
	local p
	for p in "$(criu_patch_dir)"/*.patch; do
		[[ -f "$p" ]] || continue
		log "applying $(basename "$p")"
		patch -d "$1" -p1 --forward --quiet <"$p" || die "patch $(basename "$p") does not apply"
	done
}

# Version reported by a criu binary ("" when it does not run).
criu_version_of() {
	[[ -x "$1" ]] || return 0
	"$1" --version 2>/dev/null | awk '/^Version:/ { print $2; exit }' || true
}

# Print the URIs: and Signed-By: fields (with any continuation lines,
# verbatim) of the stanza in debian.sources that serves this release's main
# suite, so the trixie deb-src entry uses the same mirror and keyring.
criu_mirror_fields() {
	local codename
	codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
	[[ -n "$codename" ]] || die "cannot read VERSION_CODENAME from /etc/os-release"
	if [[ -r "$CRIU_DEBIAN_SOURCES" ]]; then
		awk -v want="$codename" '
			function flush() {
				if (!done && types ~ /(^| )deb( |$)/ && suites ~ ("(^| )" want "( |$)") && tolower(enabled) != "no" && uris != "") {
					printf "%s", uris_raw
					if (signed_raw != "") printf "%s", signed_raw
					done = 1
				}
				types = suites = uris = uris_raw = signed_raw = ""; enabled = "yes"; key = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			/^[ \t]/ {
				if (key == "uris") { uris_raw = uris_raw $0 "\n"; uris = uris " " $0 }
				else if (key == "signed-by") signed_raw = signed_raw $0 "\n"
				next
			}
			{
				i = index($0, ":"); if (i == 0) next
				key = tolower(substr($0, 1, i - 1)); val = substr($0, i + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", val)
				if (key == "types") types = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = val
				else if (key == "uris") { uris = val; uris_raw = "URIs: " val "\n" }
				else if (key == "signed-by") signed_raw = "Signed-By: " val "\n"
			}
			END { flush(); if (!done) exit 1 }
		' "$CRIU_DEBIAN_SOURCES" && return 0
	fi
	# One-line format fallback: "deb [signed-by=KEY] URI CODENAME main".
	if [[ -r /etc/apt/sources.list ]]; then
		awk -v want="$codename" '
			$1 == "deb" {
				signed = ""; n = 2
				if ($2 ~ /^\[/) {
					for (n = 2; n <= NF; n++) {
						if ($n ~ /^\[?signed-by=/) { s = $n; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
						if ($n ~ /\]$/) { n++; break }
					}
				}
				if ($(n + 1) == want) {
					print "URIs: " $n
					if (signed != "") print "Signed-By: " signed
					found = 1; exit
				}
			}
			END { if (!found) exit 1 }
		' /etc/apt/sources.list && return 0
	fi
	die "no 'deb' entry for suite $codename in $CRIU_DEBIAN_SOURCES or /etc/apt/sources.list; cannot derive the mirror for trixie sources (set KYB_CRIU_TARBALL to a local $CRIU_TARBALL_NAME instead)"
}

# Write the trixie deb-src entry (only if its content changed).
criu_write_src_list() {
	local fields content
	fields="$(criu_mirror_fields)" || exit 1
	content="# Managed by Kybernate scripts/setup/criu.sh: trixie *source* packages only,
# used to fetch CRIU ${CRIU_VERSION}'s upstream tarball (no trixie binaries).
# Mirror and keyring copied from ${CRIU_DEBIAN_SOURCES}.
Types: deb-src
${fields}
Suites: trixie
Components: main"
	if [[ -f "$CRIU_SRC_LIST" ]] && [[ "$(cat "$CRIU_SRC_LIST")" == "$content" ]]; then
		return 0
	fi
	log "writing $CRIU_SRC_LIST"
	printf '%s\n' "$content" >"$CRIU_SRC_LIST.tmp"
	chmod 0644 "$CRIU_SRC_LIST.tmp"
	mv -f "$CRIU_SRC_LIST.tmp" "$CRIU_SRC_LIST"
}

criu_verify_tarball() { # FILE — die on mismatch
	local got
	got="$(sha256_of "$1")"
	if [[ "$got" != "$CRIU_TARBALL_SHA256" ]]; then
		die "checksum mismatch for $1: sha256 $got, expected $CRIU_TARBALL_SHA256 — refusing to build it"
	fi
}

# Ensure $(criu_cache)/$CRIU_TARBALL_NAME exists and is verified.
criu_fetch_tarball() {
	local cache tarball
	cache="$(criu_cache)"
	tarball="$cache/$CRIU_TARBALL_NAME"
	if [[ -f "$tarball" ]]; then
		if [[ "$(sha256_of "$tarball")" == "$CRIU_TARBALL_SHA256" ]]; then
			log "using cached tarball $tarball"
			return 0
		fi
		warn "cached $tarball has a wrong checksum; discarding it"
		rm -f "$tarball"
	fi

	if [[ -n "${KYB_CRIU_TARBALL:-}" ]]; then
		[[ -f "$KYB_CRIU_TARBALL" ]] || die "KYB_CRIU_TARBALL=$KYB_CRIU_TARBALL: no such file"
		log "using KYB_CRIU_TARBALL=$KYB_CRIU_TARBALL"
		criu_verify_tarball "$KYB_CRIU_TARBALL"
		cp -f "$KYB_CRIU_TARBALL" "$tarball.tmp"
		mv -f "$tarball.tmp" "$tarball"
		return 0
	fi

	criu_write_src_list
	# Refresh only the trixie source index, not every configured source.
	log "apt-get update (trixie deb-src only)"
	apt_get update -o Dir::Etc::SourceList="$CRIU_SRC_LIST" \
		-o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0 ||
		die "apt-get update of $CRIU_SRC_LIST failed (set KYB_CRIU_TARBALL to a local $CRIU_TARBALL_NAME to build offline)"

	local dl rc=0
	dl="$(mktemp -d "$cache/download.XXXXXX")"
	# Let apt's unprivileged _apt sandbox user write there (avoids a warning).
	if id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
	log "apt-get source --download-only criu/trixie (in $dl)"
	(cd "$dl" && apt_get source --download-only criu/trixie) || rc=$?
	if [[ ! -f "$dl/$CRIU_TARBALL_NAME" ]]; then
		rm -rf "$dl"
		die "apt-get source (exit $rc) did not fetch $CRIU_TARBALL_NAME (set KYB_CRIU_TARBALL to a local copy to build offline)"
	fi
	# The .dsc/.debian.tar.xz are known to 404: apt's exit code is not the
	# verdict, the tarball's checksum is.
	((rc == 0)) || log "apt-get source exited $rc, but the tarball arrived (the .dsc/.debian.tar.xz 404s are expected)"
	criu_verify_tarball "$dl/$CRIU_TARBALL_NAME"
	mv -f "$dl/$CRIU_TARBALL_NAME" "$tarball"
	rm -rf "$dl"
	log "fetched $tarball (sha256 ok)"
}

# Build criu from the cached tarball into $(criu_cache)/criu, and copy
# images/rpc.proto to $(criu_cache)/rpc.proto.
criu_build() {
	local cache src blog t0
	cache="$(criu_cache)"
	src="$cache/build"
	blog="$cache/build.log"
	rm -rf "$src"
	mkdir -p "$src"
	tar -xJf "$cache/$CRIU_TARBALL_NAME" -C "$src" --strip-components=1
	[[ -f "$src/images/rpc.proto" ]] || die "$CRIU_TARBALL_NAME has no images/rpc.proto"
	criu_apply_patches "$src"
	log "make -j${KYB_JOBS:-2} criu (log: $blog)"
	t0="$(now_s)"
	if ! make -C "$src" -j"${KYB_JOBS:-2}" PYTHON=/usr/bin/python3 criu >"$blog" 2>&1; then
		tail -n 40 "$blog" >&2 || true
		die "CRIU build failed; full log in $blog"
	fi
	log "built in $(elapsed_since "$t0")s"
	[[ "$(criu_version_of "$src/criu/criu")" == "$CRIU_VERSION" ]] ||
		die "built $src/criu/criu does not report version $CRIU_VERSION"
	install -m 0755 "$src/criu/criu" "$cache/criu.tmp"
	mv -f "$cache/criu.tmp" "$cache/criu"
	install -m 0644 "$src/images/rpc.proto" "$cache/rpc.proto.tmp"
	mv -f "$cache/rpc.proto.tmp" "$cache/rpc.proto"
	criu_build_id >"$cache/criu.build-id"
	rm -rf "$src"
}

criu_check_report() {
	local out rc=0
	out="$("$CRIU_BIN" check 2>&1)" || rc=$?
	while IFS= read -r line; do log "criu check: $line"; done <<<"$out"
	if ((rc == 0)) && grep -q 'Looks good' <<<"$out"; then
		log "criu check verdict: OK (Looks good.)"
	else
		warn "criu check did not pass (exit $rc); checkpoint/restore may not work on this kernel"
	fi
}

setup_criu() {
	local cache
	cache="$(criu_cache)"

	ensure_packages "criu runtime+build" "${CRIU_RUNTIME[@]}" "${CRIU_BUILD_DEPS[@]}" "${CRIU_TOOLS[@]}"

	local want
	want="$(criu_build_id)"
	if [[ "${KYB_CRIU_REBUILD:-0}" != 1 ]] &&
		[[ "$(criu_version_of "$CRIU_BIN")" == "$CRIU_VERSION" ]] && [[ -s "$cache/rpc.proto" ]] &&
		[[ "$(cat "$cache/installed.build-id" 2>/dev/null)" == "$want" ]]; then
		log "$CRIU_BIN is $CRIU_VERSION (build $want) and $cache/rpc.proto exists: nothing to do"
		return 0
	fi

	mkdir -p "$cache"
	if [[ "${KYB_CRIU_REBUILD:-0}" == 1 ]]; then
		log "KYB_CRIU_REBUILD=1: discarding cached binary"
		rm -f "$cache/criu"
	fi
	if [[ "$(criu_version_of "$cache/criu")" == "$CRIU_VERSION" ]] && [[ -s "$cache/rpc.proto" ]] &&
		[[ "$(cat "$cache/criu.build-id" 2>/dev/null)" == "$want" ]]; then
		log "using cached build $cache/criu"
	else
		criu_fetch_tarball
		criu_build
	fi

	install -m 0755 "$cache/criu" "$CRIU_BIN.tmp"
	mv -f "$CRIU_BIN.tmp" "$CRIU_BIN"
	printf '%s\n' "$want" >"$cache/installed.build-id"
	log "installed $CRIU_BIN ($("$CRIU_BIN" --version 2>&1 | tr '\n' ' '))"
	criu_check_report
}
