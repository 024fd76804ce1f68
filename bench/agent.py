#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of kybernate-agent's checkpoint/restore against the raw CRIU
command line as the baseline, on the same workload in the same run.

  bench/agent.py --build build [--runs 5] [--sizes 1G,4G] [--warmup 1]
                 [--dir DIR | --tmpfs] [--no-lazy] [--json FILE]

Workload: tests/workloads/bigmem --size SIZE (SIZE of pattern pages, resident),
the init of its own PID namespace (unshare --pid --fork setsid). Every run
starts fresh workloads, one per side, and alternates which side goes first.

  raw    criu dump -t PID -D DIR -o dump.log         (wall time of the command)
         criu restore -D DIR -d -o restore.log       (under a child-subreaper keeper)
  agent  Checkpoint stream, stop mode               (call until the final message)
         Restore stream, eager                      (call until the final message)
         Restore stream, lazy_pages=True            (same checkpoint; time until the
                                                    workload runs again)

One untimed raw run per size comes first (--warmup). Both sides use CRIU's
default log level and a log file, and write their images to the same
filesystem (DIR/store and DIR/raw). After every restore the
workload is asked to `verify min=<mark>` outside the timed region, then
killed. Reported: medians (with min-max) of --runs runs, overhead =
agent/raw - 1, the agent's own step durations (CheckpointInfo, RestoreResult,
and the arrival times of the Checkpoint stream's step messages), a reference
cost of SHA-256 and fsync of the raw images, and the agent's VmRSS/VmHWM
idle after start-up and after the benchmark. Needs root, CRIU 4.x and a
non-sanitized build (make build).
"""
import argparse
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from env import criu as envcriu  # noqa: E402
from env.common import child_env  # noqa: E402

AGENT = "/kybernate.agent.v1.Agent/"
GIB = 1 << 30
OVERHEAD_TARGET = 0.05
RSS_TARGET_MB = 20
LAZY_RATIO_TARGET = 1.5  # "roughly constant": 4 GiB lazy restore within 1.5x of 1 GiB


def log(msg):
    print(f"[bench/agent {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    if s and s[-1] in units:
        return int(float(s[:-1]) * units[s[-1]])
    return int(s)


# ------------------------------------------------------------------ agent

def gen_pb2(out):
    subprocess.run(["protoc", f"-I{REPO}/proto", f"--python_out={out}",
                    f"{REPO}/proto/kybernate/agent/v1/agent.proto"], check=True)
    sys.path.insert(0, str(out))
    from kybernate.agent.v1 import agent_pb2
    return agent_pb2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid, keys=("VmRSS", "VmHWM")):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


class Agent:
    """kybernate-agent from BUILD with its store in STORE; metrics enabled on
    a free loopback port (as deployed); stderr to a log file."""

    def __init__(self, build, tmp, store, pb, criu):
        import grpc
        self.grpc, self.pb = grpc, pb
        self.sock = str(tmp / "agent.sock")
        self.log_path = tmp / "agent.log"
        argv = [str(build / "cmd/kybernate-agent"), "--config", "", "--socket-path", self.sock,
                "--store-dir", str(store), "--work-dir", str(tmp / "work"),
                "--metrics-address", f"127.0.0.1:{free_port()}", "--criu-path", criu,
                "--shutdown-grace", "10s"]
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=child_env())
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start; see {self.log_path}:\n"
                                   f"{self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        self.channel = grpc.insecure_channel(f"unix:{self.sock}")
        grpc.channel_ready_future(self.channel).result(timeout=30)

    def _stream(self, method, req_cls, resp_cls):
        return self.channel.unary_stream(AGENT + method,
                                         request_serializer=req_cls.SerializeToString,
                                         response_deserializer=resp_cls.FromString)

    def checkpoint(self, ckpt_id, pid):
        """Returns (seconds until the final message, CheckpointInfo,
        {step: arrival time relative to the call})."""
        a = self.pb
        call = self._stream("Checkpoint", a.CheckpointRequest, a.CheckpointProgress)
        req = a.CheckpointRequest(checkpoint_id=ckpt_id,
                                  target=a.Target(process=a.ProcessTarget(pid=pid)),
                                  options=a.CheckpointOptions(lazy_pages=True))
        arrivals = {}
        last = None
        t0 = time.monotonic()
        for msg in call(req, timeout=900):
            arrivals.setdefault(msg.step, time.monotonic() - t0)
            last = msg
        dt = time.monotonic() - t0
        if last is None or last.step != a.STEP_DONE or not last.HasField("result"):
            raise RuntimeError(f"checkpoint {ckpt_id}: no final result")
        return dt, last.result, arrivals

    def restore(self, ckpt_id, lazy=False):
        """Returns (seconds until the final message, RestoreResult)."""
        a = self.pb
        call = self._stream("Restore", a.RestoreRequest, a.RestoreProgress)
        req = a.RestoreRequest(checkpoint_id=ckpt_id, options=a.RestoreOptions(lazy_pages=lazy))
        last = None
        t0 = time.monotonic()
        for msg in call(req, timeout=900):
            last = msg
        dt = time.monotonic() - t0
        if last is None or not last.HasField("result"):
            raise RuntimeError(f"restore {ckpt_id}: no final result")
        return dt, last.result

    def delete(self, ckpt_id, timeout=120):
        """DeleteCheckpoint, retried while a lazy-pages daemon still holds it."""
        a = self.pb
        call = self.channel.unary_unary(
            AGENT + "DeleteCheckpoint",
            request_serializer=a.DeleteCheckpointRequest.SerializeToString,
            response_deserializer=a.DeleteCheckpointResponse.FromString)
        deadline = time.monotonic() + timeout
        while True:
            try:
                call(a.DeleteCheckpointRequest(checkpoint_id=ckpt_id), timeout=60)
                return
            except self.grpc.RpcError as e:
                if e.code() != self.grpc.StatusCode.FAILED_PRECONDITION or \
                        time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def memory(self):
        return proc_status_kib(self.proc.pid)

    def stop(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


# ------------------------------------------------------------- processes

def wait_pid_gone(pid, timeout=60):
    st = envcriu._stat(pid)
    if st is None:
        return
    if envcriu.wait_gone({pid: st[1]}, timeout):
        raise RuntimeError(f"process {pid} still there after {timeout}s")


def kill_pid(pid, timeout=60):
    """SIGKILL a restored namespace init (the kernel kills the rest) and
    wait until whoever reaps it (agent or keeper) has done so."""
    tree = envcriu.tree_pids(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    left = envcriu.wait_gone(tree, timeout)
    if left:
        raise RuntimeError(f"processes {sorted(left)} survived SIGKILL")


def dumped_tree_gone(w):
    """After a stop-mode dump: the unshare parent exits, every pid is gone."""
    w.tree.reap_parent(60)
    left = envcriu.wait_gone(w.tree.seen, 60)
    if left:
        raise RuntimeError(f"processes {sorted(left)} survived the dump")
    w.tree = None


# `criu restore -d` under a child subreaper that times the command itself
# (no interpreter start-up in the number) and then reaps the restored tree.
KEEPER = r"""
import ctypes, os, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    print("criu 125 0", flush=True)
    sys.exit(1)
t0 = time.monotonic()
rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode
print(f"criu {rc} {time.monotonic() - t0}", flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def raw_restore(criu, images):
    pidfile = images / "restore.pid"
    keeper = subprocess.Popen([sys.executable, "-c", KEEPER, criu, "restore", "-D", str(images),
                               "-d", "-o", "restore.log", "--pidfile", str(pidfile)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=child_env(),
                              start_new_session=True)
    line = keeper.stdout.readline().split()
    if len(line) != 3 or line[1] != "0":
        keeper.kill()
        keeper.wait()
        rlog = images / "restore.log"
        raise RuntimeError(f"criu restore -D {images} failed ({line}); see {rlog}:\n"
                           f"{envcriu._log_tail(rlog)}")
    return float(line[2]), int(pidfile.read_text()), keeper


def hash_and_fsync(images):
    """Reference cost of what the agent's publish adds: SHA-256 of every
    image file (OpenSSL via hashlib, 4 MiB reads like the agent), then fsync
    of every file and the directory. Returns (hash_s, fsync_s)."""
    files = sorted(p for p in images.rglob("*") if p.is_file())
    t0 = time.monotonic()
    for p in files:
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(4 << 20):
                h.update(chunk)
    t1 = time.monotonic()
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(images, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
    return t1 - t0, time.monotonic() - t1


# ---------------------------------------------------------------- one run

class Bench:
    def __init__(self, a, build, base, pb):
        self.a, self.build, self.base, self.pb = a, build, base, pb
        self.bigmem = build / "tests/workloads/bigmem"
        self.store = base / "store"
        self.raw = base / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.wl_dir = base / "wl"
        self.workloads = []
        self.restored = {}  # pid -> keeper Popen (raw) or None (reaped by the agent)
        self.checkpoints = set()
        self.n = 0
        self.agent = None

    def kill_restored(self, pid):
        keeper = self.restored.pop(pid, None)
        kill_pid(pid)
        if keeper is not None:
            keeper.wait(timeout=60)

    def start_workload(self, size):
        self.n += 1
        w = envcriu.Workload("bigmem", self.bigmem, self.wl_dir / f"w{self.n}",
                             ["--size", size])
        self.workloads.append(w)
        w.start(timeout=300)
        return w

    def verify(self, w, mark):
        t0 = time.monotonic()
        ok, line = w.verify(min_progress=mark, timeout=300)
        if not ok:
            raise RuntimeError(f"verify after restore failed: {line}")
        return time.monotonic() - t0

    def agent_run(self, size, r):
        ckpt = f"bench-{size}-{r}"
        w = self.start_workload(size)
        mark = w.mark()
        os.sync()
        self.checkpoints.add(ckpt)
        t_ckpt, info, arrivals = self.agent.checkpoint(ckpt, w.tree.root)
        dumped_tree_gone(w)
        res = {"checkpoint_s": t_ckpt, "size_bytes": info.size_bytes}
        a = self.pb
        steps = {a.Step.Name(d.step): d.duration_ns / 1e9 for d in info.durations}
        res["info_steps"] = steps
        # Phases of the Checkpoint stream, from the arrival of each step's message.
        t_dump = arrivals.get(a.STEP_CRIU_DUMP, 0.0)
        t_man = arrivals.get(a.STEP_MANIFEST, t_dump)
        t_pub = arrivals.get(a.STEP_PUBLISH, t_man)
        t_done = arrivals.get(a.STEP_DONE, t_ckpt)
        res["stream"] = {"before_dump": t_dump, "criu_dump": t_man - t_dump,
                         "manifest": t_pub - t_man, "publish_to_done": t_done - t_pub,
                         "after_done": t_ckpt - t_done}

        os.sync()
        t, rr = self.agent.restore(ckpt)
        self.restored[rr.pid] = None
        res["restore_s"] = t
        res["restore_steps"] = {a.Step.Name(d.step): d.duration_ns / 1e9 for d in rr.durations}
        res["verify_eager_s"] = self.verify(w, mark)
        self.kill_restored(rr.pid)

        if not self.a.no_lazy:
            t, rr = self.agent.restore(ckpt, lazy=True)
            self.restored[rr.pid] = None
            res["lazy_s"] = t
            res["lazy_steps"] = {a.Step.Name(d.step): d.duration_ns / 1e9 for d in rr.durations}
            res["verify_lazy_s"] = self.verify(w, mark)
            self.kill_restored(rr.pid)
        self.agent.delete(ckpt)
        self.checkpoints.discard(ckpt)
        return res

    def raw_run(self, size, r):
        images = self.raw / f"{size}-{r}"
        images.mkdir(parents=True)
        w = self.start_workload(size)
        mark = w.mark()
        os.sync()
        t0 = time.monotonic()
        cp = subprocess.run([self.a.criu, "dump", "-t", str(w.tree.root), "-D", str(images),
                             "-o", "dump.log"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=child_env(), timeout=900)
        t_dump = time.monotonic() - t0
        if cp.returncode != 0:
            raise RuntimeError(f"criu dump failed ({cp.returncode}): {cp.stderr[-1000:]}\n"
                               f"{envcriu._log_tail(images / 'dump.log')}")
        dumped_tree_gone(w)
        size_bytes = sum(p.stat().st_size for p in images.rglob("*") if p.is_file())
        # Untimed: what the agent's publish does on top, measured on these images.
        hash_s, fsync_s = hash_and_fsync(images)
        os.sync()
        t_rst, root, keeper = raw_restore(self.a.criu, images)
        self.restored[root] = keeper
        verify_s = self.verify(w, mark)
        self.kill_restored(root)
        shutil.rmtree(images)
        return {"dump_s": t_dump, "restore_s": t_rst, "size_bytes": size_bytes,
                "hash_s": hash_s, "fsync_s": fsync_s, "verify_s": verify_s}

    def cleanup(self):
        """After a failed run (and at the end): nothing of ours keeps running
        or occupies the image filesystem. Best effort."""
        for w in self.workloads:
            if w.tree is not None:
                try:
                    w.tree.kill()
                except Exception:  # noqa: BLE001
                    pass
                w.tree = None
        self.workloads = []
        for pid in list(self.restored):
            try:
                self.kill_restored(pid)
            except Exception:  # noqa: BLE001
                self.restored.pop(pid, None)
        for ckpt in list(self.checkpoints):
            try:
                if self.agent:
                    self.agent.delete(ckpt, timeout=30)
            except Exception:  # noqa: BLE001
                pass
            self.checkpoints.discard(ckpt)
        for d in self.raw.iterdir():
            shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- report

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def div(x, y):
    return x / y if y else float("nan")


RUNS = 0  # set by main(): a column with fewer values says how many


def fmt_s(xs):
    """median (min-max) in seconds"""
    if not xs:
        return "n/a"
    n = f", n={len(xs)}" if len(xs) != RUNS else ""
    if len(xs) == 1:
        return f"{xs[0]:.2f} s{n}"
    return f"{med(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f}{n})"


def yes_no(ok):
    return "yes" if ok else "**no**"


def report(a, results, rss, where):
    sizes = list(results)
    out = []
    p = out.append
    p(f"agent benchmark: bigmem workload, stop-mode checkpoint and restore, median "
      f"(min-max) of {a.runs} runs after {a.warmup} untimed warm-up; images on {where}; "
      f"baseline = criu CLI in the same run")
    p("")
    p("| size | operation | raw criu | agent | agent/raw | overhead | <= 5 % |")
    p("| --- | --- | ---: | ---: | ---: | ---: | :---: |")
    for s in sizes:
        ag, rw = results[s]["agent"], results[s]["raw"]
        for name, ak, rk in (("checkpoint (dump)", "checkpoint_s", "dump_s"),
                             ("restore (eager)", "restore_s", "restore_s")):
            av, rv = [x[ak] for x in ag], [x[rk] for x in rw]
            ratio = div(med(av), med(rv))
            p(f"| {s} | {name} | {fmt_s(rv)} | {fmt_s(av)} | {ratio:.2f}x | "
              f"{(ratio - 1) * 100:+.0f} % | {yes_no(ratio - 1 <= OVERHEAD_TARGET)} |")
    p("")
    p("Where the agent's time goes (medians; ms/GiB = per GiB of image; the stream "
      "phases are the arrival times of the Checkpoint stream's step messages):")
    p("")
    p("| size | image | raw criu dump | agent criu_dump step | manifest | publish -> done "
      "| publish ms/GiB | ref. SHA-256 | ref. fsync | restore: verify | verify ms/GiB "
      "| restore: criu_restore | raw criu restore |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in sizes:
        ag, rw = results[s]["agent"], results[s]["raw"]
        gib = med([x["size_bytes"] for x in ag]) / GIB
        ms = lambda xs: med(xs) * 1000  # noqa: E731
        crit = ms([x["info_steps"].get("STEP_CRIU_DUMP", float("nan")) for x in ag])
        stream_dump = ms([x["stream"]["criu_dump"] for x in ag])
        man = ms([x["stream"]["manifest"] for x in ag])
        pub = ms([x["stream"]["publish_to_done"] for x in ag])
        ver = ms([x["restore_steps"].get("STEP_VERIFY", float("nan")) for x in ag])
        crr = ms([x["restore_steps"].get("STEP_CRIU_RESTORE", float("nan")) for x in ag])
        p(f"| {s} | {gib:.2f} GiB | {ms([x['dump_s'] for x in rw]):.0f} ms "
          f"| {crit:.0f} ms (stream {stream_dump:.0f}) | {man:.0f} ms | {pub:.0f} ms "
          f"| {div(pub, gib):.0f} | {ms([x['hash_s'] for x in rw]):.0f} ms "
          f"| {ms([x['fsync_s'] for x in rw]):.0f} ms | {ver:.0f} ms | {div(ver, gib):.0f} "
          f"| {crr:.0f} ms | {ms([x['restore_s'] for x in rw]):.0f} ms |")
    if not a.no_lazy:
        p("")
        p("Lazy-pages restore (Restore with lazy_pages=True, until the final message = the "
          "workload runs again; same checkpoint as the eager restore):")
        p("")
        p("| size | lazy restore | of which verify | of which criu_restore | eager restore "
          "| lazy/eager | first `verify` after lazy | after eager |")
        p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in sizes:
            ag = results[s]["agent"]
            lz = [x["lazy_s"] for x in ag]
            eg = [x["restore_s"] for x in ag]
            p(f"| {s} | {fmt_s(lz)} "
              f"| {med([x['lazy_steps'].get('STEP_VERIFY', 0) for x in ag]) * 1000:.0f} ms "
              f"| {med([x['lazy_steps'].get('STEP_CRIU_RESTORE', 0) for x in ag]) * 1000:.0f} ms "
              f"| {fmt_s(eg)} | {div(med(lz), med(eg)):.2f}x "
              f"| {med([x['verify_lazy_s'] for x in ag]):.2f} s "
              f"| {med([x['verify_eager_s'] for x in ag]):.2f} s |")
        if len(sizes) >= 2:
            lo, hi = sizes[0], sizes[-1]
            la = results[lo]["agent"]
            ha = results[hi]["agent"]
            r_total = div(med([x["lazy_s"] for x in ha]), med([x["lazy_s"] for x in la]))
            r_criu = div(med([x["lazy_steps"].get("STEP_CRIU_RESTORE", 0) for x in ha]),
                         med([x["lazy_steps"].get("STEP_CRIU_RESTORE", 0) for x in la]))
            r_eager = div(med([x["restore_s"] for x in ha]), med([x["restore_s"] for x in la]))
            p("")
            p(f"Ratio {hi} / {lo}: lazy restore {r_total:.2f}x "
              f"(roughly constant: {yes_no(r_total <= LAZY_RATIO_TARGET)}), its criu_restore "
              f"step alone {r_criu:.2f}x, eager restore {r_eager:.2f}x.")
    p("")
    p("| agent memory (build/, non-sanitized) | VmRSS | VmHWM | VmRSS < 20 MB |")
    p("| --- | ---: | ---: | :---: |")
    for when, m in rss:
        p(f"| {when} | {m['VmRSS'] / 1024:.1f} MiB | {m['VmHWM'] / 1024:.1f} MiB "
          f"| {yes_no(m['VmRSS'] / 1024 < RSS_TARGET_MB)} |")
    return "\n".join(out)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(REPO / "build"),
                    help="non-sanitized build directory (default: build)")
    ap.add_argument("--runs", type=int, default=5, help="runs per size (default 5)")
    ap.add_argument("--sizes", default="1G,4G", help="bigmem sizes (default 1G,4G)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed raw dump+restore runs per size first (default 1): the "
                    "first large dump after a size change is much slower for either side")
    ap.add_argument("--criu", default=envcriu.DEFAULT_CRIU)
    ap.add_argument("--dir", help="parent of the store and raw image directories "
                    "(default: a new directory under /var/tmp)")
    ap.add_argument("--tmpfs", action="store_true",
                    help="mount a tmpfs on the parent directory (images in memory)")
    ap.add_argument("--no-lazy", action="store_true", help="skip the lazy-pages restores")
    ap.add_argument("--json", help="also write the raw measurements to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args()
    global RUNS
    RUNS = a.runs

    if os.geteuid() != 0:
        sys.exit("bench/agent.py: needs root (CRIU)")
    build = pathlib.Path(a.build).resolve()
    for need in (build / "cmd/kybernate-agent", build / "tests/workloads/bigmem",
                 pathlib.Path(a.criu)):
        if not os.access(need, os.X_OK):
            sys.exit(f"bench/agent.py: {need} missing: run 'make setup build'")
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    sizes.sort(key=parse_size)

    if a.dir:
        base = pathlib.Path(a.dir).resolve()
        base.mkdir(parents=True, exist_ok=True)
        base = pathlib.Path(tempfile.mkdtemp(prefix="kyb-bench-agent-", dir=base))
    else:
        base = pathlib.Path(tempfile.mkdtemp(prefix="kyb-bench-agent-", dir="/var/tmp"))
    mounted = False
    if a.tmpfs:
        # A limit, not a reservation: the store or the raw directory holds
        # one image at a time; the slack covers logs and a slow unlink.
        mb = (3 * parse_size(sizes[-1]) + 2 * GIB) >> 20
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0700", "tmpfs",
                        str(base)], check=True)
        mounted = True
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", str(base)],
                            capture_output=True, text=True).stdout.strip() or "?"
    where = f"{fstype} ({base})"
    pb_dir = pathlib.Path(tempfile.mkdtemp(prefix="kyb-bench-agent-pb2-"))
    pb = gen_pb2(pb_dir)

    bench = Bench(a, build, base, pb)
    results = {}
    rss = []
    failures = []
    t_start = time.monotonic()
    try:
        log(f"images on {where}; sizes {sizes}, {a.runs} runs each")
        bench.agent = Agent(build, base, bench.store, pb, a.criu)
        time.sleep(1.0)
        rss.append(("idle after start-up", bench.agent.memory()))
        for s in sizes:
            results[s] = {"agent": [], "raw": []}
            for r in range(a.warmup):
                try:
                    res = bench.raw_run(s, f"warmup{r}")
                except Exception as e:  # noqa: BLE001 - reported, the run goes on
                    failures.append(f"{s} warm-up {r + 1}: {e}")
                    log(f"{s} warm-up {r + 1} FAILED: {e}")
                    bench.cleanup()
                    continue
                log(f"{s} warm-up {r + 1} (not counted): raw dump {res['dump_s']:.2f} s, "
                    f"restore {res['restore_s']:.2f} s")
            for r in range(a.runs):
                order = ("agent", "raw") if r % 2 == 0 else ("raw", "agent")
                for side in order:
                    fn = bench.agent_run if side == "agent" else bench.raw_run
                    try:
                        res = fn(s, r)
                    except Exception as e:  # noqa: BLE001 - reported, the run goes on
                        failures.append(f"{s} run {r + 1} {side}: {e}")
                        log(f"{s} run {r + 1} {side} FAILED: {e}")
                        bench.cleanup()
                        continue
                    results[s][side].append(res)
                    if side == "agent":
                        log(f"{s} run {r + 1}: agent checkpoint {res['checkpoint_s']:.2f} s, "
                            f"restore {res['restore_s']:.2f} s, lazy "
                            f"{res.get('lazy_s', float('nan')):.2f} s")
                    else:
                        log(f"{s} run {r + 1}: raw dump {res['dump_s']:.2f} s, "
                            f"restore {res['restore_s']:.2f} s")
        time.sleep(1.0)
        rss.append(("idle after the benchmark", bench.agent.memory()))
    finally:
        bench.cleanup()
        if bench.agent:
            bench.agent.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(base)])
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(pb_dir, ignore_errors=True)

    log(f"done in {time.monotonic() - t_start:.0f} s")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"where": where, "runs": a.runs,
                                                    "results": results, "rss_kib": rss},
                                                   indent=1))
    print(report(a, results, rss, where))
    if failures:
        print("\nFAILED runs (not in the medians):\n" + "\n".join(f"- {f}" for f in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
