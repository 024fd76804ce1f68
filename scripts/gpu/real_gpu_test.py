#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Real-GPU checkpoint/restore tests: a CUDA program whose device buffer must
hold the same values after each operation. Runs wherever `nvidia-smi` works
(driver >= 570); elsewhere it reports every test as skipped and exits 0.
Standard library only: GPU hosts may have no pip and no network.

  real_gpu_test.py --bin DIR --src DIR [--size 1G] [--keep]

DIR/bin holds kybernate-agent, kybernatectl and criu (see bundle.sh); the
workload is built here with nvcc from DIR/src. Prints one line per test and
a closing 'N passed, N failed, N skipped'.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def sh(*argv, check=True, timeout=600, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout,
                          **kw)


def gpu_present():
    if not shutil.which("nvidia-smi"):
        return "nvidia-smi not found"
    out = sh("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader",
             check=False)
    if out.returncode != 0:
        return f"nvidia-smi failed: {out.stderr.strip()}"
    driver = out.stdout.split(",")[-1].strip()
    if int(driver.split(".")[0]) < 570:
        return f"driver {driver} < 570 has no checkpoint API"
    return None


def vram_of(pid):
    """MiB of device memory nvidia-smi reports for pid (0 if none)."""
    out = sh("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits",
             check=False).stdout
    for line in out.splitlines():
        p, mem = [x.strip() for x in line.split(",")]
        if p.isdigit() and int(p) == pid:
            return int(mem)
    return 0


class Workload:
    def __init__(self, exe, workdir, size):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.status = self.workdir / "status"
        self.proc = subprocess.Popen(["unshare", "--pid", "--fork", "setsid", str(exe),
                                      "--status", str(self.status), "--size", size],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "stderr", "w"))
        self.line("ready", timeout=120)
        self.pid = int(sh("pgrep", "-P", str(self.proc.pid)).stdout.split()[0])

    def lines(self):
        return self.status.read_text().splitlines() if self.status.exists() else []

    def line(self, prefix, after=0, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in self.lines()[after:]:
                if ln.startswith((prefix, "fail", "error")):
                    return ln
            time.sleep(0.05)
        raise RuntimeError(f"no '{prefix}' line; status: {self.lines()[-5:]}")

    def command(self, cmd, answer, timeout=120):
        n = len(self.lines())
        tmp = self.workdir / "ctl.tmp"
        tmp.write_text(cmd + "\n")
        os.rename(tmp, self.workdir / "status.ctl")
        return self.line(answer, after=n, timeout=timeout)

    def mark(self):
        return int(self.command("mark", "mark").split()[1])

    def verify(self, mark):
        line = self.command(f"verify min={mark}", "ok")
        if not line.startswith("ok"):
            raise AssertionError(line)
        return line


class Env:
    def __init__(self, bindir, tmp):
        self.bin = pathlib.Path(bindir)
        self.tmp = pathlib.Path(tmp)
        self.sock = str(self.tmp / "agent.sock")
        self.agent = subprocess.Popen(
            [str(self.bin / "kybernate-agent"), "--config", "", "--socket-path", self.sock,
             "--store-dir", str(self.tmp / "store"), "--work-dir", str(self.tmp / "work"),
             "--metrics-address", "", "--criu-path", str(self.bin / "criu")],
            stderr=open(self.tmp / "agent.log", "w"))
        for _ in range(200):
            if self.ctl("version", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("agent did not start: " + (self.tmp / "agent.log").read_text())

    def ctl(self, *args, check=True):
        out = sh(str(self.bin / "kybernatectl"), "--socket", self.sock, "--json", *args,
                 check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"kybernatectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def stop(self):
        self.agent.send_signal(signal.SIGTERM)
        self.agent.wait(timeout=60)


def test_leave_running(env, exe, size):
    w = Workload(exe, env.tmp / "w1", size)
    mark = w.mark()
    env.ctl("checkpoint", "--pid", str(w.pid), "--id", "gpu-live", "--leave-running",
            "--gpu", "required")
    info = json.loads(env.ctl("inspect", "gpu-live").stdout)
    assert info.get("gpu", {}).get("devices"), f"no GPU facts in the checkpoint: {info}"
    w.verify(mark)
    os.kill(w.pid, signal.SIGKILL)
    return "device buffer intact after a leave-running checkpoint"


def test_stop_and_restore(env, exe, size):
    w = Workload(exe, env.tmp / "w2", size)
    mark = w.mark()
    env.ctl("checkpoint", "--pid", str(w.pid), "--id", "gpu-stop", "--gpu", "required")
    for _ in range(200):
        if not os.path.exists(f"/proc/{w.pid}"):
            break
        time.sleep(0.05)
    res = json.loads(env.ctl("restore", "gpu-stop").stdout.splitlines()[-1])
    pid = res["result"]["pid"]
    line = w.verify(mark)
    os.kill(pid, signal.SIGKILL)
    return f"restored pid {pid}: {line}"


def test_hibernate_resume(env, exe, size):
    w = Workload(exe, env.tmp / "w3", size)
    mark = w.mark()
    before = vram_of(w.pid)
    env.ctl("gpu", "hibernate", str(w.pid))
    during = vram_of(w.pid)
    assert during < before, f"VRAM not freed: {before} MiB before, {during} MiB hibernated"
    env.ctl("gpu", "resume", str(w.pid))
    line = w.verify(mark)
    os.kill(w.pid, signal.SIGKILL)
    return f"VRAM {before} -> {during} MiB while hibernated; {line}"


TESTS = [test_leave_running, test_stop_and_restore, test_hibernate_resume]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    why = gpu_present()
    if why:
        for t in TESTS:
            print(f"SKIP {t.__name__}: {why}")
        print(f"0 passed, 0 failed, {len(TESTS)} skipped")
        return 0
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kyb-gpu-"))
    exe = tmp / "cuda_counter"
    src = pathlib.Path(a.src)
    sh("nvcc", "-O2", "-o", str(exe), str(src / "cuda_counter.cu"), str(src / "wl_common.c"))
    env = Env(a.bin, tmp)
    passed = failed = 0
    try:
        for t in TESTS:
            try:
                print(f"PASS {t.__name__}: {t(env, exe, a.size)}", flush=True)
                passed += 1
            except Exception as e:  # report and go on with the next test
                print(f"FAIL {t.__name__}: {e}", flush=True)
                failed += 1
    finally:
        env.stop()
        subprocess.run(["pkill", "-KILL", "-f", str(exe)])
        if not a.keep and not failed:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed, 0 skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
