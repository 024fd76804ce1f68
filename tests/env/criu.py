# SPDX-License-Identifier: Apache-2.0
"""Real CRIU for tests: the `criu` CLI (4.x, scripts/setup.sh criu) and the
zdtm-style workloads of tests/workloads (protocol: docs/workloads.md).

  Criu          version/check, dump(pid, dir), restore(dir) -> ProcTree
  Workload      a workload process tree in its own PID namespace (and
                network namespace with lo up when net=True): start, mark,
                verify, checkpoint (dump, tree killed), restore, destroy
  workload_binaries()  the built programs, or compiles them

Every process tree is the init of its own PID namespace, so a restore never
collides with PIDs still in use and killing the init kills the whole tree.
A restored tree (criu restore -d) is reparented to a small keeper process
that is a child subreaper, so it is reaped (no zombies under PID 1) and its
exit status is known. No pytest imports here.
"""
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from env.common import REPO, EnvError, MissingSetup, child_env, setup_hint

WORKLOADS = ("counter", "bigmem", "proctree", "tcpconn")
WORKLOAD_SRC = REPO / "tests" / "workloads"
DEFAULT_CRIU = "/usr/local/sbin/criu"


class CriuError(EnvError):
    """A criu command failed; the message carries the tail of its log."""


class WorkloadError(EnvError):
    """A workload did not answer as the protocol says."""


# ---------------------------------------------------------------- processes

def _stat(pid):
    """(state, starttime) of PID, zombies included; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[19])


def present(pid, starttime):
    """True while PID (with that start time) exists, even as a zombie."""
    st = _stat(pid)
    return st is not None and st[1] == starttime


def tree_pids(root):
    """{pid: starttime} of ROOT and all its descendants (via
    /proc/PID/task/TID/children)."""
    out = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        st = _stat(pid)
        if st is None or pid in out:
            continue
        out[pid] = st[1]
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def wait_gone(pids, timeout):
    """Wait until none of PIDS ({pid: starttime}) exists; returns the rest."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: s for p, s in pids.items() if present(p, s)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _log_tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode(errors="replace").splitlines()
    except OSError as e:
        return f"(no log {path}: {e})"
    # CRIU's own errors first: they name the failing step.
    errors = [ln for ln in data if "Error (" in ln and "RLIMIT_NOFILE" not in ln]
    return "\n".join(errors[-10:] + ["..."] + data[-lines:])


# ------------------------------------------------------------------- criu

def find_criu():
    """Path of the criu binary ($KYB_CRIU, PATH, /usr/local/sbin/criu)."""
    env = os.environ.get("KYB_CRIU")
    if env:
        if not os.access(env, os.X_OK) or os.path.isdir(env):
            raise MissingSetup(f"KYB_CRIU={env} is not an executable: "
                               f"unset it or {setup_hint('criu')}")
        return env
    cand = shutil.which("criu", path=child_env()["PATH"])
    if not cand and os.access(DEFAULT_CRIU, os.X_OK):
        cand = DEFAULT_CRIU
    if not cand:
        raise MissingSetup(f"criu not found: {setup_hint('criu')} (CRIU 4.x is required)")
    return cand


class DumpResult:
    def __init__(self, images, seconds, log):
        self.images = pathlib.Path(images)
        self.seconds = seconds
        self.log = log

    def pages_files(self):
        return sorted(self.images.glob("pages-*.img"), key=lambda p: p.stat().st_size)


class Criu:
    def __init__(self, binary=None):
        self.binary = binary or find_criu()

    def _run(self, args, timeout=120):
        return subprocess.run([self.binary, *args], capture_output=True, text=True,
                              timeout=timeout, env=child_env(), stdin=subprocess.DEVNULL)

    def version(self):
        cp = self._run(["--version"], timeout=30)
        m = re.search(r"Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", cp.stdout)
        if cp.returncode != 0 or not m:
            raise MissingSetup(f"{self.binary} --version failed ({cp.returncode}): "
                               f"{cp.stdout.strip()} {cp.stderr.strip()}: {setup_hint('criu')}")
        return tuple(int(x or 0) for x in m.groups())

    def require(self):
        """Raises MissingSetup unless this is CRIU 4.x and `criu check`
        passes (Debian bookworm's 3.17 fails on 6.x kernels)."""
        ver = self.version()
        if ver[0] != 4:
            raise MissingSetup(f"{self.binary} is CRIU {'.'.join(map(str, ver))}, 4.x is required: "
                               f"{setup_hint('criu')}")
        cp = self._run(["check"], timeout=60)
        if cp.returncode != 0 or "Looks good" not in cp.stdout + cp.stderr:
            raise MissingSetup(f"'{self.binary} check' failed ({cp.returncode}):\n"
                               f"{(cp.stdout + cp.stderr).strip()[-2000:]}\n{setup_hint('criu')}")
        return ver

    def dump(self, pid, images, *, tcp_established=False, leave_running=False, extra=(),
             timeout=300):
        """criu dump -t PID -D IMAGES -v4 -o dump.log; the tree is killed
        unless LEAVE_RUNNING. Returns a DumpResult, raises CriuError."""
        images = pathlib.Path(images)
        images.mkdir(parents=True, exist_ok=True)
        args = ["dump", "-t", str(pid), "-D", str(images), "-v4", "-o", "dump.log"]
        if tcp_established:
            args.append("--tcp-established")
        if leave_running:
            args.append("--leave-running")
        args.extend(extra)
        t0 = time.monotonic()
        cp = self._run(args, timeout=timeout)
        dt = time.monotonic() - t0
        if cp.returncode != 0:
            raise CriuError(f"criu dump -t {pid} failed ({cp.returncode}); "
                            f"{images / 'dump.log'}:\n{_log_tail(images / 'dump.log')}")
        return DumpResult(images, dt, images / "dump.log")

    def restore(self, images, *, tcp_established=False, extra=(), timeout=300):
        """criu restore -D IMAGES -d under a reaping keeper. Returns a
        running ProcTree (root = restored init), raises CriuError."""
        images = pathlib.Path(images)
        pidfile = images / "restore.pid"
        try:
            pidfile.unlink()
        except FileNotFoundError:
            pass
        args = [self.binary, "restore", "-D", str(images), "-d", "-v4", "-o", "restore.log",
                "--pidfile", str(pidfile)]
        if tcp_established:
            args.append("--tcp-established")
        args.extend(extra)
        keeper = _Keeper(args)
        t0 = time.monotonic()
        rc = keeper.criu_rc(timeout)
        dt = time.monotonic() - t0
        if rc != 0:
            keeper.wait(10)
            raise CriuError(f"criu restore -D {images} failed ({rc}); "
                            f"{images / 'restore.log'}:\n{_log_tail(images / 'restore.log')}")
        try:
            root = int(pidfile.read_text().strip())
        except (OSError, ValueError) as e:
            keeper.kill()
            raise CriuError(f"criu restore wrote no pidfile {pidfile}: {e}") from e
        tree = ProcTree(root, keeper)
        tree.restore_seconds = dt
        return tree


# The keeper: a child subreaper that runs `criu restore -d`, so the restored
# root is reparented to it (not to PID 1, which may never reap it), and
# reports "criu RC" and then "exit PID STATUS" for everything it reaps.
_KEEPER_SRC = r"""
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    print("criu 125", flush=True)
    sys.exit(1)
rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode
print(f"criu {rc}", flush=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    print(f"exit {pid} {status}", flush=True)
"""


class _Keeper:
    def __init__(self, argv):
        self.popen = subprocess.Popen([sys.executable, "-c", _KEEPER_SRC, *argv],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, env=child_env(),
                                      start_new_session=True, close_fds=True)
        self.pid = self.popen.pid
        st = _stat(self.pid)
        self.starttime = st[1] if st else None
        self.lines = queue.Queue()
        self.exits = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _next(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""
        if line is None:
            self.lines.put(None)  # keep EOF visible
            return None
        if line.startswith("exit "):
            _, pid, status = line.split()
            self.exits[int(pid)] = int(status)
        return line

    def criu_rc(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._next(0.5)
            if line is None:
                return -1
            if line.startswith("criu "):
                return int(line.split()[1])
        self.kill()
        raise CriuError(f"criu restore did not finish within {timeout}s")

    def exit_status(self, pid, timeout):
        """Raw wait status of PID once the keeper reaped it, else None."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits and time.monotonic() < deadline:
            if self._next(0.1) is None:
                break
        return self.exits.get(pid)

    def wait(self, timeout):
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._reader.join(5)
        while self._next(0) not in (None, ""):
            pass
        return True

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


class ProcTree:
    """A running tree whose ROOT is a PID-namespace init, and the process
    that reaps it: a subprocess.Popen (unshare) or a _Keeper."""

    def __init__(self, root, parent):
        self.root = root
        self.parent = parent
        st = _stat(root)
        self.root_starttime = st[1] if st else None
        pst = _stat(parent.pid)
        self.parent_starttime = pst[1] if pst else None
        self.seen = {}  # every pid of the tree ever observed: starttime
        self.restore_seconds = None
        self.refresh()

    def refresh(self):
        """{pid: starttime} of the tree now (also remembered in .seen)."""
        now = {}
        if self.root_starttime is not None and present(self.root, self.root_starttime):
            now = tree_pids(self.root)
            self.seen.update(now)
        return now

    def alive(self):
        st = _stat(self.root)
        return st is not None and st[1] == self.root_starttime and st[0] not in ("Z", "X")

    def parent_pids(self):
        if self.parent_starttime is None:
            return {}
        return {self.parent.pid: self.parent_starttime}

    def wait_exit(self, timeout):
        """Exit code of the root once it exited (None on timeout)."""
        if isinstance(self.parent, _Keeper):
            status = self.parent.exit_status(self.root, timeout)
            if status is None:
                return None
            self.parent.wait(10)
            return os.waitstatus_to_exitcode(status)
        try:
            rc = self.parent.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return rc

    def reap_parent(self, timeout):
        """After the root died (killed by criu dump or by us): wait for the
        parent to reap it and exit."""
        if isinstance(self.parent, _Keeper):
            ok = self.parent.wait(timeout)
        else:
            try:
                self.parent.wait(timeout)
                ok = True
            except subprocess.TimeoutExpired:
                ok = False
        if not ok:
            self.parent.kill()
            if not isinstance(self.parent, _Keeper):
                self.parent.wait()

    def kill(self, timeout=20):
        """SIGKILL the namespace init (the kernel kills the rest), reap, and
        return the pids (of the tree and its parent) that are still there."""
        self.refresh()
        if present(self.root, self.root_starttime):
            try:
                os.kill(self.root, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reap_parent(timeout)
        left = wait_gone({**self.seen, **self.parent_pids()}, timeout)
        return left


# --------------------------------------------------------------- workloads

def _newest_source_mtime():
    return max(p.stat().st_mtime for p in WORKLOAD_SRC.iterdir() if p.suffix in (".c", ".h"))


def _built_dir():
    cands = []
    if os.environ.get("KYB_WORKLOADS_DIR"):
        return pathlib.Path(os.environ["KYB_WORKLOADS_DIR"])
    if os.environ.get("KYB_BUILD_DIR"):
        cands.append(pathlib.Path(os.environ["KYB_BUILD_DIR"]))
    cands += [REPO / "build", REPO / "build-asan"]
    newest = _newest_source_mtime()
    for c in cands:
        d = c / "tests" / "workloads"
        if all((d / n).is_file() and (d / n).stat().st_mtime >= newest for n in WORKLOADS):
            return d
    return None


def workload_binaries(scratch):
    """{name: path} of the workload programs: $KYB_WORKLOADS_DIR, else an
    up-to-date meson build (KYB_BUILD_DIR, build, build-asan), else compiled
    here into SCRATCH with the project's warning flags."""
    d = _built_dir()
    if d is not None:
        missing = [n for n in WORKLOADS if not (d / n).is_file()]
        if missing:
            raise EnvError(f"workloads {missing} not found in {d}")
        return {n: d / n for n in WORKLOADS}
    cc = os.environ.get("CC", "cc")
    scratch = pathlib.Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in WORKLOADS:
        exe = scratch / n
        cmd = [cc, "-std=gnu17", "-O2", "-g", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
               "-Wno-unused-parameter", "-Wshadow", "-Wformat=2", "-Wstrict-prototypes",
               "-Wmissing-prototypes", "-Wvla", "-pthread", "-o", str(exe),
               str(WORKLOAD_SRC / f"{n}.c"), str(WORKLOAD_SRC / "wl_common.c")]
        cp = subprocess.run(cmd, capture_output=True, text=True)
        if cp.returncode != 0:
            raise EnvError(f"compiling workload {n} failed:\n{' '.join(cmd)}\n{cp.stderr}")
        out[n] = exe
    return out


class Workload:
    """One workload under test, in WORKDIR (its cwd; status file
    WORKDIR/status, control file WORKDIR/status.ctl; both must stay for a
    restore). net=True: own network namespace with lo up; checkpoints then
    use --tcp-established."""

    def __init__(self, name, binary, workdir, args=(), net=False, criu=None):
        self.name = name
        self.binary = pathlib.Path(binary)
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.status = self.workdir / "status"
        self.ctl = self.workdir / "status.ctl"
        self.stderr = self.workdir / "stderr.log"
        self.args = list(args)
        self.net = net
        self.criu = criu
        self.tree = None
        self.trees = []  # every tree (started and restored), for leak checks
        self.ready_line = None
        self.ndumps = 0

    # -- status / control

    def lines(self):
        try:
            return self.status.read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait_line(self, prefixes, after=0, timeout=30):
        """First status line after line AFTER starting with one of PREFIXES."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines()[after:]:
                if line.startswith(tuple(prefixes)):
                    return line
            if time.monotonic() > deadline:
                break
            if self.tree is not None and not self.tree.alive():
                # one more look: the answer may have been written just before exit
                for line in self.lines()[after:]:
                    if line.startswith(tuple(prefixes)):
                        return line
                raise WorkloadError(f"{self.name}: exited while waiting for {prefixes}:\n"
                                    f"{self.describe()}")
            time.sleep(0.01)
        raise WorkloadError(f"{self.name}: no {prefixes} line within {timeout}s:\n"
                            f"{self.describe()}")

    def describe(self):
        err = ""
        try:
            err = self.stderr.read_text()[-2000:]
        except OSError:
            pass
        return "status:\n  " + "\n  ".join(self.lines()[-20:]) + f"\nstderr: {err}"

    def command(self, cmd, answers, timeout=30):
        """Writes CMD into the control file (atomically) and returns the
        answer line (one starting with one of ANSWERS)."""
        n = len(self.lines())
        tmp = self.workdir / ".status.ctl.tmp"
        tmp.write_text(cmd + "\n")
        os.rename(tmp, self.ctl)
        return self.wait_line(answers, after=n, timeout=timeout)

    def mark(self, timeout=30):
        line = self.command("mark", ("mark ",), timeout)
        return int(line.split()[1])

    def verify(self, min_progress=None, exit_after=False, timeout=60):
        """Sends verify / verify-exit; returns (ok, line)."""
        cmd = "verify-exit" if exit_after else "verify"
        if min_progress is not None:
            cmd += f" min={min_progress}"
        line = self.command(cmd, ("ok ", "fail "), timeout)
        return line.startswith("ok "), line

    # -- lifecycle

    def start(self, timeout=60):
        if self.net:
            argv = ["unshare", "--pid", "--fork", "--net", "sh", "-c",
                    'ip link set lo up && exec setsid "$@"', "sh"]
        else:
            argv = ["unshare", "--pid", "--fork", "setsid"]
        argv += [str(self.binary), "--status", str(self.status), *self.args]
        with open(self.stderr, "ab") as err:
            popen = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, env=child_env(),
                                     start_new_session=True, close_fds=True)
        # the namespace init is unshare's only child
        deadline = time.monotonic() + timeout
        root = None
        while root is None:
            direct = _children(popen.pid)
            if direct:
                root = direct[0]
            elif popen.poll() is not None or time.monotonic() > deadline:
                popen.kill()
                popen.wait()
                raise WorkloadError(f"{self.name}: unshare exited ({popen.returncode}):\n"
                                    f"{self.describe()}")
            else:
                time.sleep(0.005)
        self.tree = ProcTree(root, popen)
        self.trees.append(self.tree)
        self.ready_line = self.wait_line(("ready ",), timeout=timeout)
        self.tree.refresh()
        return self

    def checkpoint(self, images=None, leave_running=False, timeout=300):
        """criu dump of the tree. Unless LEAVE_RUNNING the tree is gone
        afterwards (all its pids checked) and self.tree is None."""
        if self.tree is None:
            raise WorkloadError(f"{self.name}: nothing running to checkpoint")
        self.ndumps += 1
        images = pathlib.Path(images or self.workdir / f"img-{self.ndumps}")
        self.tree.refresh()
        res = self.criu.dump(self.tree.root, images, tcp_established=self.net,
                             leave_running=leave_running, timeout=timeout)
        if not leave_running:
            self.tree.reap_parent(30)
            left = wait_gone(self.tree.seen, 30)
            if left:
                raise WorkloadError(f"{self.name}: processes {sorted(left)} survived criu dump")
            self.tree = None
        return res

    def restore(self, images, timeout=300):
        if self.tree is not None:
            raise WorkloadError(f"{self.name}: still running; kill or checkpoint it first")
        self.tree = self.criu.restore(images, tcp_established=self.net, timeout=timeout)
        self.trees.append(self.tree)
        return self.tree

    def kill_tree(self):
        """SIGKILL the current tree (returns pids that are still there)."""
        if self.tree is None:
            return {}
        left = self.tree.kill()
        self.tree = None
        return left

    def destroy(self):
        """Kills whatever runs; returns {pid: starttime} of every process
        (of any tree this workload had, and their parents) still present."""
        self.kill_tree()
        left = {}
        for t in self.trees:
            left.update({p: s for p, s in {**t.seen, **t.parent_pids()}.items()
                         if present(p, s)})
        return left


def _children(pid):
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out
