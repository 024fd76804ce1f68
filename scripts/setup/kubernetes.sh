# shellcheck shell=bash
# Component "kubernetes": a real control plane + node for the test
# environment (tests/env/): etcd-server from Debian, kube-apiserver and
# kubelet v1.20.2 built from Debian bookworm's `kubernetes` source package
# (bookworm ships only the client binaries from it), kubectl, and
# python3-kubernetes. See docs/testing.md and shared/ENVIRONMENT.md.
#
# Environment:
#   KYB_CACHE_DIR         cache root (default /var/cache/kybernate)
#   KYB_KUBE_REBUILD=1    ignore the installed and cached binaries, rebuild
#                         (from the cached, verified sources when present)

KUBE_VERSION="1.20.2"
KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
KUBE_SRC_SUITE="bookworm"
# Pinned from bookworm's Sources index (also verified by apt against the
# signed Release file): a mismatch is a hard error.
KUBE_ORIG_NAME="kubernetes_1.20.5+really1.20.2.orig.tar.gz"
KUBE_ORIG_SHA256="b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc"
KUBE_DEBIAN_NAME="kubernetes_${KUBE_DEB_VERSION}.debian.tar.xz"
KUBE_DEBIAN_SHA256="9b6e5fd41769d2b5badf2e73b274e3bcd90f85e13d06a1a4a845ccce018127d8"
KUBE_DSC_NAME="kubernetes_${KUBE_DEB_VERSION}.dsc"
KUBE_DSC_SHA256="19fa1da5aefcef673894ac9511986bd98a14410cf8eea0b626613c30df435257"

KUBE_BINS=(kube-apiserver kubelet)
KUBE_BIN_DIR="/usr/local/bin"
KUBE_SRC_LIST="/etc/apt/sources.list.d/kybernate-bookworm-src.sources"
KUBE_DEBIAN_SOURCES="/etc/apt/sources.list.d/debian.sources"
REFLECT2_DIR="/usr/share/gocode/src/github.com/modern-go/reflect2"

# Runtime: etcd, the python client used by tests/env; build: Go 1.19, rsync
# (the tree's make), reflect2 1.0.2 (swapped into vendor/), dpkg-source, jq
# (in debian/control's Build-Depends).
KUBE_RUNTIME=(etcd-server python3-kubernetes openssl iproute2)
KUBE_BUILD_DEPS=(golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev make jq)

kube_cache() { printf '%s/kubernetes-%s' "$KYB_CACHE_DIR" "$KUBE_VERSION"; }

# "OK" when every binary installed in KUBE_BIN_DIR matches the sha256
# recorded in the cache's SHA256SUMS.
kube_installed_ok() {
	local sums b want
	sums="$(kube_cache)/SHA256SUMS"
	[[ -s "$sums" ]] || return 1
	for b in "${KUBE_BINS[@]}"; do
		want="$(awk -v f="$b" '$2 == f { print $1 }' "$sums")"
		[[ -n "$want" && -x "$KUBE_BIN_DIR/$b" ]] || return 1
		[[ "$(sha256_of "$KUBE_BIN_DIR/$b")" == "$want" ]] || return 1
	done
}

# Cached binaries present and matching SHA256SUMS.
kube_cached_ok() {
	local cache
	cache="$(kube_cache)"
	[[ -s "$cache/SHA256SUMS" ]] || return 1
	(cd "$cache" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1) || return 1
	local b
	for b in "${KUBE_BINS[@]}"; do
		grep -q " $b\$" "$cache/SHA256SUMS" || return 1
	done
}

# The URIs:/Signed-By: of the stanza serving bookworm, for the deb-src entry.
kube_mirror_fields() {
	if [[ -r "$KUBE_DEBIAN_SOURCES" ]]; then
		awk -v want="$KUBE_SRC_SUITE" '
			function flush() {
				if (!done && types ~ /(^| )deb( |$)/ && suites ~ ("(^| )" want "( |$)") && uris != "") {
					printf "URIs: %s\n", uris
					if (signed != "") printf "Signed-By: %s\n", signed
					done = 1
				}
				types = suites = uris = signed = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ || /^[ \t]/ { next }
			{
				i = index($0, ":"); if (i == 0) next
				key = tolower(substr($0, 1, i - 1)); val = substr($0, i + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", val)
				if (key == "types") types = val
				else if (key == "suites") suites = val
				else if (key == "uris") uris = val
				else if (key == "signed-by") signed = val
			}
			END { flush(); if (!done) exit 1 }
		' "$KUBE_DEBIAN_SOURCES" && return 0
	fi
	if [[ -r /etc/apt/sources.list ]]; then
		awk -v want="$KUBE_SRC_SUITE" '
			$1 == "deb" {
				n = 2
				if ($2 ~ /^\[/) { for (n = 2; n <= NF; n++) if ($n ~ /\]$/) { n++; break } }
				if ($(n + 1) == want) { print "URIs: " $n; found = 1; exit }
			}
			END { if (!found) exit 1 }
		' /etc/apt/sources.list && return 0
	fi
	die "no 'deb' entry for $KUBE_SRC_SUITE in $KUBE_DEBIAN_SOURCES or /etc/apt/sources.list"
}

kube_write_src_list() {
	local fields content
	fields="$(kube_mirror_fields)" || exit 1
	content="# Managed by Kybernate scripts/setup/kubernetes.sh: bookworm *source*
# packages only, to fetch the kubernetes ${KUBE_VERSION} source package.
Types: deb-src
${fields}
Suites: ${KUBE_SRC_SUITE}
Components: main"
	if [[ -f "$KUBE_SRC_LIST" ]] && [[ "$(cat "$KUBE_SRC_LIST")" == "$content" ]]; then
		return 0
	fi
	log "writing $KUBE_SRC_LIST"
	printf '%s\n' "$content" >"$KUBE_SRC_LIST.tmp"
	chmod 0644 "$KUBE_SRC_LIST.tmp"
	mv -f "$KUBE_SRC_LIST.tmp" "$KUBE_SRC_LIST"
}

kube_sources_ok() { # DIR
	[[ -f "$1/$KUBE_ORIG_NAME" && -f "$1/$KUBE_DEBIAN_NAME" && -f "$1/$KUBE_DSC_NAME" ]] || return 1
	[[ "$(sha256_of "$1/$KUBE_ORIG_NAME")" == "$KUBE_ORIG_SHA256" ]] || return 1
	[[ "$(sha256_of "$1/$KUBE_DEBIAN_NAME")" == "$KUBE_DEBIAN_SHA256" ]] || return 1
	[[ "$(sha256_of "$1/$KUBE_DSC_NAME")" == "$KUBE_DSC_SHA256" ]] || return 1
}

# Ensure the verified source package is in $(kube_cache)/source/.
kube_fetch_sources() {
	local src
	src="$(kube_cache)/source"
	if kube_sources_ok "$src"; then
		log "using cached source package in $src"
		return 0
	fi
	kube_write_src_list
	log "apt-get update ($KUBE_SRC_SUITE deb-src only)"
	apt_get update -o Dir::Etc::SourceList="$KUBE_SRC_LIST" \
		-o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0 ||
		die "apt-get update of $KUBE_SRC_LIST failed"
	local dl
	dl="$(mktemp -d "$(kube_cache)/download.XXXXXX")"
	if id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
	log "apt-get source --download-only kubernetes/$KUBE_SRC_SUITE (in $dl)"
	(cd "$dl" && apt_get source --download-only "kubernetes/$KUBE_SRC_SUITE") ||
		die "apt-get source kubernetes/$KUBE_SRC_SUITE failed"
	if ! kube_sources_ok "$dl"; then
		ls -l "$dl" >&2 || true
		rm -rf "$dl"
		die "kubernetes source package $KUBE_DEB_VERSION missing or checksum mismatch (expected $KUBE_ORIG_NAME sha256 $KUBE_ORIG_SHA256)"
	fi
	rm -rf "$src"
	chown -R root:root "$dl"
	mv "$dl" "$src"
	log "fetched source package into $src (sha256 ok)"
}

# Unpack, swap reflect2, make WHAT=..., copy binaries + SHA256SUMS to cache.
kube_build() {
	local cache tree blog t0
	cache="$(kube_cache)"
	tree="$cache/build"
	blog="$cache/build.log"
	rm -rf "$tree"
	log "dpkg-source -x $KUBE_DSC_NAME"
	dpkg-source --no-check -x "$cache/source/$KUBE_DSC_NAME" "$tree" >"$blog" 2>&1 ||
		{ tail -n 20 "$blog" >&2; die "dpkg-source -x failed; log in $blog"; }
	# dpkg-source copies the orig tarball next to the target directory.
	rm -f "$cache/$KUBE_ORIG_NAME"
	[[ -d "$REFLECT2_DIR" ]] || die "$REFLECT2_DIR missing (golang-github-modern-go-reflect2-dev)"
	log "vendor/github.com/modern-go/reflect2 <- $REFLECT2_DIR (Debian's 1.0.2)"
	rm -rf "$tree/vendor/github.com/modern-go/reflect2"
	cp -a "$REFLECT2_DIR" "$tree/vendor/github.com/modern-go/reflect2"
	# GOPATH layout as in debian/rules (the tree's scripts use GOPATH mode).
	mkdir -p "$tree/.go/src/k8s.io"
	ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
	local what="" b
	for b in "${KUBE_BINS[@]}"; do what+="cmd/$b "; done
	log "make WHAT=\"${what% }\" (~5 min on 2 cores; log: $blog)"
	t0="$(now_s)"
	if ! (cd "$tree" && env -u GOFLAGS -u GOROOT HOME="$tree/.home" GOPATH="$tree/.go" \
		GOCACHE="$tree/.gocache" GOPROXY=off GO111MODULE= CGO_ENABLED=0 \
		PATH="/usr/lib/go/bin:$PATH" make WHAT="${what% }") >>"$blog" 2>&1; then
		tail -n 40 "$blog" >&2 || true
		die "kubernetes build failed; full log in $blog"
	fi
	log "built in $(elapsed_since "$t0")s"
	for b in "${KUBE_BINS[@]}"; do
		[[ -x "$tree/_output/bin/$b" ]] || die "build produced no _output/bin/$b"
		"$tree/_output/bin/$b" --version 2>/dev/null | grep -q "v$KUBE_VERSION" ||
			die "$tree/_output/bin/$b does not report v$KUBE_VERSION"
		install -m 0755 "$tree/_output/bin/$b" "$cache/$b.tmp"
		mv -f "$cache/$b.tmp" "$cache/$b"
	done
	(cd "$cache" && sha256sum "${KUBE_BINS[@]}" >SHA256SUMS.tmp && mv -f SHA256SUMS.tmp SHA256SUMS)
	rm -rf "$tree"
}

# kubectl: Debian's kubernetes-client (1.20.2, same source). A kubectl that
# is already on PATH (e.g. a newer client from another package, which would
# conflict with kubernetes-client over /usr/bin/kubectl) is kept as is.
kube_ensure_kubectl() {
	if [[ -z "$(pkg_missing kubernetes-client)" ]]; then
		log "kubectl: kubernetes-client installed"
		return 0
	fi
	local existing
	existing="$(command -v kubectl || true)"
	if [[ -n "$existing" ]] && "$existing" version --client >/dev/null 2>&1; then
		log "kubectl: keeping $existing ($("$existing" version --client 2>/dev/null | head -n1)); not installing kubernetes-client over it"
		return 0
	fi
	ensure_packages "kubectl" kubernetes-client
}

setup_kubernetes() {
	local cache b
	cache="$(kube_cache)"
	ensure_packages "kubernetes runtime+build" "${KUBE_RUNTIME[@]}" "${KUBE_BUILD_DEPS[@]}"
	kube_ensure_kubectl

	if [[ "${KYB_KUBE_REBUILD:-0}" != 1 ]] && kube_installed_ok; then
		log "${KUBE_BINS[*]} in $KUBE_BIN_DIR match $cache/SHA256SUMS (v$KUBE_VERSION): nothing to do"
		return 0
	fi
	mkdir -p "$cache"
	if [[ "${KYB_KUBE_REBUILD:-0}" == 1 ]]; then
		log "KYB_KUBE_REBUILD=1: discarding cached binaries"
		rm -f "$cache/SHA256SUMS"
	fi
	if kube_cached_ok; then
		log "using cached build in $cache"
	else
		kube_fetch_sources
		kube_build
	fi
	for b in "${KUBE_BINS[@]}"; do
		install -m 0755 "$cache/$b" "$KUBE_BIN_DIR/$b.tmp"
		mv -f "$KUBE_BIN_DIR/$b.tmp" "$KUBE_BIN_DIR/$b"
	done
	kube_installed_ok || die "installed binaries do not match $cache/SHA256SUMS"
	log "installed ${KUBE_BINS[*]} into $KUBE_BIN_DIR ($("$KUBE_BIN_DIR/kube-apiserver" --version 2>&1))"
	command -v etcd >/dev/null || die "etcd not on PATH after installing etcd-server"
}
