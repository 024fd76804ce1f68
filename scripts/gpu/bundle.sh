#!/usr/bin/env bash
# Packs what the real-GPU tests need into one directory, for a GPU host that
# may have no package manager and no network: the project's binaries, CRIU,
# their shared libraries (except glibc and the NVIDIA driver's own, which
# the host provides), the CUDA workload's sources and the test script.
#
#   scripts/gpu/bundle.sh OUT_DIR [BUILD_DIR]
# Then on the GPU host:  OUT_DIR/run.sh   (needs nvcc and python3 there)
set -euo pipefail

out="${1:?usage: bundle.sh OUT_DIR [BUILD_DIR]}"
build="${2:-build}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
criu="${KYB_CRIU:-/usr/local/sbin/criu}"

mkdir -p "$out/bin" "$out/libexec" "$out/lib" "$out/src"
bins=("$build/cmd/kybernate-agent" "$build/cmd/kybernatectl" "$criu")
for b in "${bins[@]}"; do
	[[ -x "$b" ]] || { echo "bundle: $b missing (make build; scripts/setup.sh criu)" >&2; exit 1; }
	install -m 0755 "$b" "$out/libexec/"
done
# Every shared library, glibc and its loader included, so that the host's
# glibc version does not matter; only the NVIDIA driver's libraries (dlopened
# at run time) stay the host's.
for b in "${bins[@]}"; do
	ldd "$b" | awk '/=> \//{print $3} /^\t\/lib64\/ld-linux/{print $1}'
done | sort -u | while read -r lib; do
	case "$(basename "$lib")" in
	libcuda.so.* | libnvidia-ml.so.*) ;;
	*) cp -L "$lib" "$out/lib/" ;;
	esac
done
# Each binary runs through the bundled loader.
for b in "${bins[@]}"; do
	name="$(basename "$b")"
	cat >"$out/bin/$name" <<WRAP
#!/bin/sh
here="\$(cd "\$(dirname "\$0")/.." && pwd)"
exec "\$here/lib/ld-linux-x86-64.so.2" --library-path "\$here/lib:\${KYB_HOST_LIB_PATH:-/usr/lib/x86_64-linux-gnu:/usr/lib64:/usr/local/nvidia/lib64}" "\$here/libexec/$name" "\$@"
WRAP
	chmod 0755 "$out/bin/$name"
done
cp "$repo/tests/workloads/cuda_counter.cu" "$repo/tests/workloads/wl_common.c" \
	"$repo/tests/workloads/wl_common.h" "$repo/bench/gpu_bandwidth.cu" "$out/src/"
install -m 0755 "$repo/scripts/gpu/real_gpu_test.py" "$repo/bench/gpu.py" "$out/"
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the real-GPU checkpoint/restore tests with the bundled binaries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec python3 "$here/real_gpu_test.py" --bin "$here/bin" --src "$here/src" "$@"
RUN
chmod +x "$out/run.sh"
cat >"$out/bench.sh" <<'BENCH'
#!/usr/bin/env bash
# The GPU benchmark (bench/gpu.py) with the bundled binaries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec python3 "$here/gpu.py" --bin "$here/bin" --src "$here/src" "$@"
BENCH
chmod +x "$out/bench.sh"
echo "bundle: $(du -sh "$out" | cut -f1) in $out; on the GPU host run $out/run.sh (tests), $out/bench.sh (benchmark)"
