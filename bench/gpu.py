#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""GPU benchmark (GPU hosts only): device-memory checkpoint and restore
throughput of kybernate-agent's GpuHibernate/GpuResume (CUDA checkpoint API:
device memory to host memory and back) for 1, 8 and 32 GiB of device memory,
against the pinned cudaMemcpy bandwidth measured in the same run. Target:
>= 80 % of that bandwidth. Also reports hibernate and resume latencies.

  bench/gpu.py --bin DIR --src DIR [--sizes 1G,8G,32G] [--runs 3]

DIR/bin: kybernate-agent, kybernatectl, criu (scripts/gpu/bundle.sh packs
them, with this script); DIR/src: cuda_counter.cu, wl_common.[ch],
gpu_bandwidth.cu (built here with nvcc). Without a GPU it says so and exits 0.
Standard library only.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from real_gpu_test import Env, Workload, gpu_present, sh  # noqa: E402

UNITS = {"G": 1 << 30, "M": 1 << 20}


def parse_size(s):
    return int(s[:-1]) * UNITS[s[-1]] if s[-1] in UNITS else int(s)


def timed_ctl(env, *args):
    start = time.monotonic()
    env.ctl(*args)
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--sizes", default="1G,8G,32G")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    why = gpu_present()
    if why:
        print(f"gpu benchmark skipped: {why}")
        return 0
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kyb-gpu-bench-"))
    src = pathlib.Path(a.src)
    sh("nvcc", "-O2", "-o", str(tmp / "cuda_counter"), str(src / "cuda_counter.cu"),
       str(src / "wl_common.c"))
    sh("nvcc", "-O2", "-o", str(tmp / "gpu_bandwidth"), str(src / "gpu_bandwidth.cu"))
    env = Env(a.bin, tmp)
    rows = []
    try:
        for size in a.sizes.split(","):
            nbytes = parse_size(size)
            bw = json.loads(sh(str(tmp / "gpu_bandwidth"), str(nbytes)).stdout)
            hib, res = [], []
            for run in range(a.runs):
                w = Workload(tmp / "cuda_counter", tmp / f"w-{size}-{run}", size)
                mark = w.mark()
                hib.append(timed_ctl(env, "gpu", "hibernate", str(w.pid)))
                res.append(timed_ctl(env, "gpu", "resume", str(w.pid)))
                w.verify(mark)
                os.kill(w.pid, signal.SIGKILL)
            rows.append((size, nbytes, bw, statistics.median(hib), statistics.median(res)))
    finally:
        env.stop()
        subprocess.run(["pkill", "-KILL", "-f", str(tmp / "cuda_counter")])
    gpu = sh("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader").stdout
    print(f"GPU benchmark on {gpu.strip()}; median of {a.runs}; baseline = pinned cudaMemcpy")
    print("| size | hibernate | resume | checkpoint GB/s | D2H GB/s | ratio | restore GB/s | "
          "H2D GB/s | ratio | >= 80 % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    for size, nbytes, bw, h, r in rows:
        ck, rs = nbytes / h / 1e9, nbytes / r / 1e9
        ok = ck >= 0.8 * bw["d2h_gbps"] and rs >= 0.8 * bw["h2d_gbps"]
        print(f"| {size} | {h:.3f} s | {r:.3f} s | {ck:.1f} | {bw['d2h_gbps']:.1f} | "
              f"{ck / bw['d2h_gbps']:.2f}x | {rs:.1f} | {bw['h2d_gbps']:.1f} | "
              f"{rs / bw['h2d_gbps']:.2f}x | {'yes' if ok else 'no'} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
