# shellcheck shell=bash
# Component "containerd": container runtime for the test environment
# (tests/env/): containerd + runc + CNI plugins + iptables from Debian, and
# two local images built by hand as docker-archive tarballs (no registry is
# reachable): a static `pause` (tests/images/pause/pause.c, the CRI sandbox
# image) and a `busybox` workload image whose rootfs comes from Debian's
# busybox-static. The tarballs are cached; tests/env imports them into its
# own private containerd, never into a system one. See docs/testing.md.
#
# Environment:
#   KYB_CACHE_DIR           cache root (default /var/cache/kybernate)
#   KYB_IMAGES_REBUILD=1    rebuild the image tarballs

CONTAINERD_PKGS=(containerd runc containernetworking-plugins iptables busybox-static)
# To build the static pause binary and write the tarballs.
CONTAINERD_BUILD_PKGS=(gcc libc6-dev binutils python3)

# Bump when the image layout changes (also part of the cache key).
IMAGES_FORMAT="1"
PAUSE_IMAGE_REF="localhost/kybernate/pause:1"
BUSYBOX_IMAGE_REF="localhost/kybernate/busybox:1.35.0"

images_repo_dir() { printf '%s/../tests/images' "$SETUP_ROOT"; }

# Cache key: the inputs' content (pause.c, mkimage.py, refs, format) and the
# busybox-static / gcc package versions. Cheap and offline.
images_key() {
	local dir
	dir="$(images_repo_dir)"
	{
		printf 'format=%s pause=%s busybox=%s\n' "$IMAGES_FORMAT" "$PAUSE_IMAGE_REF" "$BUSYBOX_IMAGE_REF"
		sha256sum <"$dir/pause/pause.c"
		sha256sum <"$dir/mkimage.py"
		dpkg-query -W -f='${Package} ${Version}\n' busybox-static gcc libc6-dev 2>/dev/null
	} | sha256sum | cut -c1-16
}

images_cache() { printf '%s/images-%s' "$KYB_CACHE_DIR" "$(images_key)"; }

images_cached_ok() { # DIR
	[[ -s "$1/SHA256SUMS" && -f "$1/pause.tar" && -f "$1/busybox.tar" && -s "$1/images.env" ]] || return 1
	(cd "$1" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1)
}

images_build() { # DIR
	local out="$1" src work
	src="$(images_repo_dir)"
	work="$(mktemp -d "$KYB_CACHE_DIR/images-build.XXXXXX")"
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" RETURN

	log "building static pause from tests/images/pause/pause.c"
	mkdir -p "$work/pause-root"
	gcc -Os -Wall -Wextra -Werror -static -o "$work/pause-root/pause" "$src/pause/pause.c" ||
		die "building pause failed"
	strip "$work/pause-root/pause"
	[[ "$("$work/pause-root/pause" -v)" == kybernate-pause-* ]] || die "built pause does not run"
	if ldd "$work/pause-root/pause" >/dev/null 2>&1; then die "pause is not static"; fi

	log "assembling busybox rootfs from $(command -v busybox) ($(dpkg-query -W -f='${Version}' busybox-static))"
	local r="$work/busybox-root" applet
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var/tmp}
	chmod 1777 "$r/tmp" "$r/var/tmp"
	chmod 0700 "$r/root"
	install -m 0755 /bin/busybox "$r/bin/busybox"
	# `busybox --list-full` prints paths like usr/bin/wc.
	while IFS= read -r applet; do
		[[ -n "$applet" && "$applet" != bin/busybox ]] || continue
		[[ -e "$r/$applet" || -L "$r/$applet" ]] && continue
		ln -s /bin/busybox "$r/$applet"
	done < <(/bin/busybox --list-full)
	[[ -L "$r/bin/sh" ]] || die "busybox rootfs has no /bin/sh"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"

	/usr/bin/python3 "$src/mkimage.py" "$work/pause-root" "$work/pause.tar" "$PAUSE_IMAGE_REF" \
		--entrypoint '["/pause"]' >/dev/null || die "mkimage pause failed"
	/usr/bin/python3 "$src/mkimage.py" "$r" "$work/busybox.tar" "$BUSYBOX_IMAGE_REF" \
		--cmd '["sh"]' >/dev/null || die "mkimage busybox failed"
	printf 'PAUSE_IMAGE=%s\nBUSYBOX_IMAGE=%s\n' "$PAUSE_IMAGE_REF" "$BUSYBOX_IMAGE_REF" >"$work/images.env"
	(cd "$work" && sha256sum pause.tar busybox.tar images.env >SHA256SUMS)

	rm -rf "$out.tmp"
	mkdir -p "$out.tmp"
	mv "$work"/{pause.tar,busybox.tar,images.env,SHA256SUMS} "$out.tmp/"
	rm -rf "$out"
	mv "$out.tmp" "$out"
	log "images: $(tr '\n' ' ' <"$out/SHA256SUMS")"
}

# Like ensure_packages, but without Recommends: runc recommends bookworm's
# criu 3.17, which must not land in /usr/sbin next to our 4.1.1 (criu.sh).
containerd_ensure_packages() {
	local label="$1"
	shift
	local -a missing
	mapfile -t missing < <(pkg_missing "$@")
	if ((${#missing[@]} == 0)); then
		log "$label packages: all $# present"
		return 0
	fi
	log "$label packages: installing ${#missing[@]} missing (no Recommends): ${missing[*]}"
	apt_update_once
	apt_get install --no-install-recommends "${missing[@]}"
	mapfile -t missing < <(pkg_missing "$@")
	((${#missing[@]} == 0)) || die "$label packages still missing after apt-get install: ${missing[*]}"
}

setup_containerd() {
	containerd_ensure_packages "containerd" "${CONTAINERD_PKGS[@]}" "${CONTAINERD_BUILD_PKGS[@]}"
	local b
	for b in containerd ctr runc containerd-shim-runc-v2 iptables-restore busybox; do
		command -v "$b" >/dev/null || die "$b not on PATH after installing ${CONTAINERD_PKGS[*]}"
	done
	[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
		die "CNI plugins missing in /usr/lib/cni (containernetworking-plugins)"

	local dir
	dir="$(images_cache)"
	if [[ "${KYB_IMAGES_REBUILD:-0}" != 1 ]] && images_cached_ok "$dir"; then
		log "images cached in $dir (sha256 ok): nothing to build"
	else
		mkdir -p "$KYB_CACHE_DIR"
		images_build "$dir"
	fi
	# Stable name for tests/env: images-current -> images-<key>.
	if [[ "$(readlink "$KYB_CACHE_DIR/images-current" 2>/dev/null)" != "$(basename "$dir")" ]]; then
		ln -sfn "$(basename "$dir")" "$KYB_CACHE_DIR/images-current.tmp"
		mv -Tf "$KYB_CACHE_DIR/images-current.tmp" "$KYB_CACHE_DIR/images-current"
	fi
	log "containerd $(containerd --version | awk '{ print $3 }'), runc $(runc --version | awk 'NR == 1 { print $3 }'); images in $KYB_CACHE_DIR/images-current/"
}
