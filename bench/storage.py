#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the streaming checkpoint upload (src/lib/storage: tar ->
zstd -> multipart S3 upload in one pass) against the sequential command-line
baseline, on the same checkpoint directory and the same local s3rver in the
same run.

  bench/storage.py --build build [--runs 3] [--size 2G] [--dir DIR]
                   [--driver-args "--part-size 8388608" ...] [--json FILE] [--keep]

Checkpoint: a store-layout directory (as tests/integration/test_storage_s3.py
make_checkpoint writes it, with a manifest.json listing every file with
SHA-256): checkpoint/pages-1.img of SIZE, 1 MiB blocks alternately zero and
random (half compressible, half not), plus 200 small images (1-64 KiB, mixed
text-like and random), config.dump and spec.dump.

  pipeline   tests/integration/storage/storage_driver --progress upload DIR
             s3://BUCKET/KEY?endpoint=...&path-style=true   (zstd level 3,
             library defaults otherwise; --driver-args adds options; given
             several times, each is one more pipeline row in the same run,
             and the targets are judged on the first)
  baseline   tar -cf X.tar -C DIR .  ;  zstd -T0 -3 X.tar -o X.tar.zst  ;
             curl --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER
                  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T X.tar.zst URL

Each baseline stage runs alone (one after the other), so its wall time is the
stage measured alone; the baseline total is their sum. Every run alternates
which side goes first; objects and temporary files are deleted (untimed)
after every run. Peak RSS: /usr/bin/time's maximum resident set size of the
uploading process (storage_driver; curl for the baseline); CPU: its user +
system time; s3rver CPU: the server's user + system time during the side.
The pipeline's wall time is split at the moment the driver reports its last
part stored (--progress): before it, the streaming pipeline itself; after
it, CompleteMultipartUpload and the HEAD check, where s3rver reads all parts
back and writes the object once more (real S3 only links the parts). Input files are in
the page cache for both sides (24 GiB RAM, 2 GiB set). Needs s3rver
(scripts/setup/s3.sh) and build/ (make build).
"""
import argparse
import hashlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests/integration"))
from env import s3 as s3env  # noqa: E402
from env.common import child_env  # noqa: E402
from sample_artifact import write_manifest  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
RSS_TARGET_MB = 64
STAGE_TARGET = 0.90
TIME = "/usr/bin/time"


def log(msg):
    print(f"[bench/storage {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    if s and s[-1] in units:
        return int(float(s[:-1]) * units[s[-1]])
    return int(s)


def make_checkpoint(path, pages_size, seed=1):
    """Store-layout checkpoint dir with a valid manifest.json (the schema of
    tests/integration/test_storage_s3.py make_checkpoint), CRIU-like content."""
    rng_state = hashlib.sha256(str(seed).encode()).digest()
    entries = []

    def put(rel, chunks):
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        h, n = hashlib.sha256(), 0
        with open(p, "wb") as f:
            for c in chunks:
                f.write(c)
                h.update(c)
                n += len(c)
        entries.append({"path": rel, "size": n, "sha256": h.hexdigest(), "mode": "0644"})

    def pages():
        zero = bytes(MIB)
        done, i = 0, 0
        while done < pages_size:
            n = min(MIB, pages_size - done)
            yield zero[:n] if i % 2 == 0 else os.urandom(n)
            done += n
            i += 1

    put("checkpoint/pages-1.img", pages())
    put("checkpoint/inventory.img", [b"inventory"])
    for i in range(200):
        rng_state = hashlib.sha256(rng_state).digest()
        n = 1024 + int.from_bytes(rng_state[:4], "little") % (63 * 1024)
        if i % 2:
            data = os.urandom(n)
        else:  # text-like: repeated records
            data = (b"fd=%d path=/usr/lib/x86_64-linux-gnu/lib%d.so flags=0x8002\n" % (i, i)
                    * (n // 48 + 1))[:n]
        kind = ("core", "mm", "fdinfo", "pagemap", "files")[i % 5]
        put(f"checkpoint/{kind}-{i + 1}.img", [data])
    put("config.dump", [b'{"id":"abcdef0123"}'])
    put("spec.dump", [b'{"ociVersion":"1.0.2"}'])
    return write_manifest(path, entries, pages_size, seed)


def cpu_seconds(pid):
    """User + system CPU time of a running process."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv, env=None, rss_file=None, server_pid=None):
    """Run ARGV under /usr/bin/time; returns a dict: wall (s), rss_kib, cpu
    (user + sys s), server_cpu (s, when server_pid), stdout, and last_stored
    (s after the start at which a 'stored N' line last arrived, or None)."""
    full = [TIME, "-f", "%M %U %S", "-o", str(rss_file), *argv]
    c0 = cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines, last_stored = [], None
    for line in p.stdout:
        lines.append(line)
        if line.startswith("stored "):
            last_stored = time.monotonic() - t0
    err = p.stderr.read()
    p.wait()
    dt = time.monotonic() - t0
    server_cpu = cpu_seconds(server_pid) - c0 if server_pid else None
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {err[-2000:]}")
    rss, user, sys_ = pathlib.Path(rss_file).read_text().strip().splitlines()[-1].split()
    return {"wall": dt, "rss_kib": int(rss), "cpu": float(user) + float(sys_),
            "server_cpu": server_cpu, "stdout": "".join(lines), "last_stored": last_stored}


def driver_env(s3):
    env = {k: v for k, v in child_env().items() if not k.startswith("AWS_")}
    env.update(s3.env())
    return env


def run_pipeline(args, s3, src, tmp, key, extra):
    drv = str(args.build / "tests/integration/storage/storage_driver")
    uri = f"s3://{s3.bucket}/{key}?endpoint={s3.endpoint}&path-style=true"
    r = timed([drv, *extra, "--progress", "--level", "3", "upload", str(src), uri],
              env=driver_env(s3), rss_file=tmp / "rss-pipeline", server_pid=s3.proc.pid)
    info = json.loads(r.pop("stdout").strip().splitlines()[-1])
    subprocess.run([drv, "delete", uri], env=driver_env(s3), check=True,
                   capture_output=True)
    # A single-PUT object reports its only "stored" after the PUT: no split then.
    r["parts"] = r.pop("last_stored") or r["wall"]
    r.update(compressed=info["size"], file_bytes=info["file_bytes"])
    return r


def run_baseline(s3, src, tmp, key):
    tar, zst = tmp / "ckpt.tar", tmp / "ckpt.tar.zst"
    url = f"{s3.endpoint}/{s3.bucket}/{key}"
    curl_auth = ["--aws-sigv4", f"aws:amz:{s3.region}:s3",
                 "--user", f"{s3.access_key}:{s3.secret_key}",
                 "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    r = {}
    r["tar"] = timed(["tar", "-cf", str(tar), "-C", str(src), "."],
                     rss_file=tmp / "rss-tar")["wall"]
    r["zstd"] = timed(["zstd", "-q", "-f", "-T0", "-3", str(tar), "-o", str(zst)],
                      rss_file=tmp / "rss-zstd")["wall"]
    c = timed(["curl", "-sS", "-f", "-o", "/dev/null", *curl_auth, "-T", str(zst), url],
              env=child_env(), rss_file=tmp / "rss-curl", server_pid=s3.proc.pid)
    r.update(curl=c["wall"], rss_kib=c["rss_kib"], cpu=c["cpu"], server_cpu=c["server_cpu"])
    r["wall"] = r["tar"] + r["zstd"] + r["curl"]
    r["tar_bytes"], r["compressed"] = tar.stat().st_size, zst.stat().st_size
    subprocess.run(["curl", "-sS", "-f", "-X", "DELETE", "-o", "/dev/null", *curl_auth, url],
                   env=child_env(), check=True)
    tar.unlink()
    zst.unlink()
    return r


def med(xs):
    return statistics.median(xs)


def rng(xs):
    return f"{min(xs):.2f}-{max(xs):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", type=pathlib.Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="2G", help="pages-1.img size (default 2G)")
    ap.add_argument("--dir", type=pathlib.Path, help="parent of the work dir (default /var/tmp)")
    ap.add_argument("--driver-args", action="append", default=None,
                    help="extra storage_driver options; repeat for more pipeline rows")
    ap.add_argument("--json", type=pathlib.Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.build = args.build.resolve()
    if not os.path.exists(TIME):
        sys.exit(f"{TIME} missing: apt-get install time")
    for b in ("tar", "zstd", "curl"):
        if not shutil.which(b):
            sys.exit(f"{b} missing")
    args.driver_args = args.driver_args or [""]
    variants = [a.split() for a in args.driver_args]
    size = parse_size(args.size)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kyb-bench-storage-", dir=args.dir or "/var/tmp"))
    s3 = None
    try:
        src = tmp / "ckpt"
        log(f"writing {size / GIB:.2f} GiB checkpoint to {src}")
        total = make_checkpoint(src, size)
        s3 = s3env.S3Server(tmp / "s3").start()
        log(f"s3rver on {s3.endpoint}")
        pipe, base = [[] for _ in variants], []
        for i in range(args.runs):
            order = ("pipeline", "baseline") if i % 2 == 0 else ("baseline", "pipeline")
            for side in order:
                if side == "pipeline":
                    for v, extra in enumerate(variants):
                        subprocess.run(["sync"], check=True)
                        r = run_pipeline(args, s3, src, tmp, f"bench/pipe-{i}-{v}.tar.zst", extra)
                        pipe[v].append(r)
                        log(f"run {i + 1} pipeline `{args.driver_args[v]}` {r['wall']:.2f} s "
                            f"(parts {r['parts']:.2f}), RSS {r['rss_kib'] / 1024:.1f} MiB")
                else:
                    subprocess.run(["sync"], check=True)
                    r = run_baseline(s3, src, tmp, f"bench/base-{i}.tar.zst")
                    base.append(r)
                    log(f"run {i + 1} baseline {r['wall']:.2f} s (tar {r['tar']:.2f}, "
                        f"zstd {r['zstd']:.2f}, curl {r['curl']:.2f})")
        report(args, size, total, pipe, base, tmp)
    finally:
        if s3 is not None:
            s3.stop(strict=False)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def pipeline_rows(args, pipe, bt, mbps, total):
    for v, runs in enumerate(pipe):
        wall = [r["wall"] for r in runs]
        parts = [r["parts"] for r in runs]
        rss = [r["rss_kib"] / 1024 for r in runs]
        name = f"pipeline `{args.driver_args[v] or '(defaults)'}`"
        pt = med(wall)
        print(f"| {name} | {pt:.2f} s ({rng(wall)}) | {mbps(pt):,.0f} | {bt / pt:.2f}x | "
              f"{total / med([r['compressed'] for r in runs]):.2f}x | {med(rss):.1f} MiB "
              f"({min(rss):.1f}-{max(rss):.1f}) | {med([r['cpu'] for r in runs]):.2f} s | "
              f"{med([r['server_cpu'] for r in runs]):.2f} s |")
        print(f"| &nbsp;&nbsp;of which until the last part is stored | {med(parts):.2f} s "
              f"({rng(parts)}) | {mbps(med(parts)):,.0f} | {bt / med(parts):.2f}x | | | | |")
        rest = [r["wall"] - r["parts"] for r in runs]
        print(f"| &nbsp;&nbsp;of which complete + HEAD (s3rver reassembles the object) | "
              f"{med(rest):.2f} s ({rng(rest)}) | | | | | | |")


def report(args, size, total, pipe, base, tmp):
    tar_bytes = med([r["tar_bytes"] for r in base])
    b_wall = [r["wall"] for r in base]
    stages = {s: [r[s] for r in base] for s in ("tar", "zstd", "curl")}
    slow = max(stages, key=lambda s: med(stages[s]))
    mbps = lambda sec: tar_bytes / sec / 1e6  # noqa: E731  (input = tar stream bytes)
    c_rss = [r["rss_kib"] / 1024 for r in base]
    ratio_b = tar_bytes / med([r["compressed"] for r in base])
    print(f"storage benchmark: {total / GIB:.2f} GiB checkpoint ({args.size} pages, half zero / "
          f"half random 1 MiB blocks, 204 small files, manifest.json), tar stream "
          f"{tar_bytes / GIB:.2f} GiB, local s3rver, median (min-max) of {len(base)} runs; "
          f"baseline = tar, zstd -T0 -3, curl in the same run; work dir {tmp}")
    print()
    print("| side / stage | wall time | MB/s (tar bytes) | speed-up vs baseline total | "
          "compression | peak RSS (uploader) | CPU (uploader) | s3rver CPU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    bt = med(b_wall)
    curl_cols = (f"{med(c_rss):.1f} MiB | {med([r['cpu'] for r in base]):.2f} s | "
                 f"{med([r['server_cpu'] for r in base]):.2f} s")
    for s in ("tar", "zstd", "curl"):
        print(f"| baseline: {s} alone{' (slowest)' if s == slow else ''} | {med(stages[s]):.2f} s "
              f"({rng(stages[s])}) | {mbps(med(stages[s])):,.0f} | | | "
              f"{curl_cols if s == 'curl' else ' | | '} |")
    print(f"| baseline total (sequential) | {bt:.2f} s ({rng(b_wall)}) | {mbps(bt):,.0f} | 1.00x | "
          f"{ratio_b:.2f}x | {med(c_rss):.1f} MiB | | |")
    pipeline_rows(args, pipe, bt, mbps, total)
    print()
    first = pipe[0]
    pt = med([r["wall"] for r in first])
    parts = med([r["parts"] for r in first])
    frac = med(stages[slow]) / pt
    rss_mb = med([r["rss_kib"] for r in first]) * 1024 / 1e6
    print(f"Targets, judged on `{args.driver_args[0] or '(defaults)'}`:")
    print()
    print("| target | value | met |")
    print("| --- | ---: | :---: |")
    print(f"| pipeline beats sequential baseline | {pt:.2f} s vs {bt:.2f} s | "
          f"{'yes' if pt < bt else '**no**'} |")
    print(f"| pipeline throughput >= 90 % of slowest stage alone ({slow}) | {frac * 100:.0f} % "
          f"(until the last part: {med(stages[slow]) / parts * 100:.0f} %) | "
          f"{'yes' if frac >= STAGE_TARGET else '**no**'} |")
    print(f"| uploader peak RSS < 64 MB | {rss_mb:.1f} MB | "
          f"{'yes' if rss_mb < RSS_TARGET_MB else '**no**'} |")
    if args.json:
        args.json.write_text(json.dumps({"size": size, "total": total, "tar_bytes": tar_bytes,
                                         "driver_args": args.driver_args, "pipeline": pipe,
                                         "baseline": base}, indent=2))


if __name__ == "__main__":
    main()
