# SPDX-License-Identifier: Apache-2.0
"""Shared helpers for tests/env: binaries, ports, processes, waiting and
leak checks. No pytest imports here (scripts/testenv.py uses it too)."""
import errno
import os
import pathlib
import random
import shutil
import signal
import socket
import stat
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE_DIR = pathlib.Path(os.environ.get("KYB_CACHE_DIR", "/var/cache/kybernate"))
# Debian's tools first; /usr/local/sbin holds CRIU 4.1.1 (scripts/setup/criu.sh).
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class EnvError(RuntimeError):
    """A test-environment service failed to start, stop or clean up."""


class MissingSetup(EnvError):
    """A binary or cached artefact is missing: the host setup was not run."""


def setup_hint(component):
    return f"run 'sudo scripts/setup.sh {component}' (see docs/setup.md, docs/testing.md)"


def need_binary(name, component):
    """Absolute path of NAME on the system PATH, or MissingSetup naming the
    setup component that installs it."""
    path = shutil.which(name, path=SYS_PATH)
    if not path:
        raise MissingSetup(f"{name} not found in {SYS_PATH}: {setup_hint(component)}")
    return path


def need_file(path, component, what=None):
    path = pathlib.Path(path)
    if not path.exists():
        raise MissingSetup(f"{what or path.name} missing ({path}): {setup_hint(component)}")
    return path


def child_env(**extra):
    """Environment for services: system PATH, no proxies, C locale."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["PATH"] = SYS_PATH
    env.setdefault("LANG", "C.UTF-8")
    env.update({k: str(v) for k, v in extra.items()})
    return env


_handed_out = set()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host="127.0.0.1"):
    """A TCP port that is free on HOST right now, below the kernel's
    ephemeral range where possible (so no outgoing connection takes it
    before the service binds it), never the same one twice in this
    process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lo, _hi = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        if lo > 12000:
            port = rng.randint(10000, lo - 1)
        else:  # unusual range: let the kernel pick
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        if port in _handed_out:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise EnvError("no free port found")


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode(errors="replace").splitlines()
        return "\n".join(data[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def wait_until(pred, timeout, what, interval=0.1, procs=()):
    """Poll PRED until it returns a truthy value (returned). Raises EnvError
    after TIMEOUT seconds, or at once if one of PROCS died (with its log)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        for p in procs:
            p.check_alive()
        try:
            val = pred()
            if val:
                return val
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            for p in procs:
                msg += f"\n--- {p.name} log ({p.log_path}) ---\n{tail(p.log_path)}"
            raise EnvError(msg)
        time.sleep(interval)


def proc_starttime(pid):
    """Start time (clock ticks since boot) of PID, or None if it is gone or
    a zombie. Used with the PID to guard against PID reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def pid_alive(pid, starttime=None):
    st = proc_starttime(pid)
    if st is None:
        return False
    return starttime is None or st == starttime


def pids_matching(*needles):
    """PIDs of live processes whose command line contains any NEEDLE."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles) and proc_starttime(int(d)) is not None:
            out.append(int(d))
    return sorted(out)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def kill_and_wait(pids, sig=signal.SIGKILL, timeout=10):
    """Send SIG to every live pid in PIDS ({pid: starttime} or a list) and
    wait until they are gone; returns those still alive."""
    if not isinstance(pids, dict):
        pids = {p: proc_starttime(p) for p in pids}
    for pid, st in pids.items():
        if st is not None and pid_alive(pid, st):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p, st in pids.items() if st is not None and pid_alive(p, st)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def mounts_under(prefix):
    """Mount points at or below PREFIX (deepest first)."""
    prefix = os.path.realpath(str(prefix))
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == prefix or mp.startswith(prefix + "/"):
                    found.append(mp)
    except OSError:
        pass
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def unmount_all_under(prefix):
    """Unmount everything below PREFIX (lazily as a last resort); returns
    what is still mounted."""
    for _ in range(3):
        mps = mounts_under(prefix)
        if not mps:
            return []
        for mp in mps:
            if subprocess.run(["umount", mp], stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
    return mounts_under(prefix)


def sockets_under(prefix):
    """Unix sockets that exist as files below PREFIX."""
    out = []
    for root, _dirs, files in os.walk(str(prefix)):
        for name in files:
            p = os.path.join(root, name)
            try:
                if stat.S_ISSOCK(os.lstat(p).st_mode):
                    out.append(p)
            except OSError:
                pass
    return out


def rmtree(path):
    """rm -rf that first refuses to cross mounts (unmounts them)."""
    path = str(path)
    if not os.path.lexists(path):
        return
    left = unmount_all_under(path)
    if left:
        raise EnvError(f"cannot remove {path}: still mounted: {left}")
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


class Proc:
    """A service process in its own session (so it survives the starter,
    e.g. scripts/testenv.py, and can be signalled as a group), with stdout
    and stderr in LOG_PATH. Rebuild from to_state() to stop it later."""

    def __init__(self, name, argv=None, log_path=None, env=None, cwd=None, pid=None, starttime=None):
        self.name = name
        self.argv = list(argv or [])
        self.log_path = str(log_path) if log_path else None
        self.env = env
        self.cwd = cwd
        self.pid = pid
        self.starttime = starttime
        self._popen = None

    def start(self):
        if self.log_path:
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            logf = open(self.log_path, "ab")
        else:
            logf = subprocess.DEVNULL
        try:
            self._popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=self.env if self.env is not None else child_env(), cwd=self.cwd,
                start_new_session=True, close_fds=True)
        finally:
            if logf is not subprocess.DEVNULL:
                logf.close()
        self.pid = self._popen.pid
        self.starttime = proc_starttime(self.pid)
        return self

    def to_state(self):
        return {"name": self.name, "pid": self.pid, "starttime": self.starttime,
                "log": self.log_path, "argv": self.argv}

    @classmethod
    def from_state(cls, st):
        return cls(st["name"], st.get("argv"), st.get("log"), pid=st["pid"], starttime=st["starttime"])

    def alive(self):
        if self._popen is not None:
            if self._popen.poll() is not None:
                return False
        return self.pid is not None and pid_alive(self.pid, self.starttime)

    def check_alive(self):
        if not self.alive():
            rc = self._popen.returncode if self._popen is not None else "?"
            raise EnvError(f"{self.name} (pid {self.pid}) exited (status {rc}):\n"
                           f"--- {self.log_path} ---\n{tail(self.log_path) if self.log_path else ''}")

    def _signal(self, sig, group):
        try:
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise EnvError(f"cannot signal {self.name} pid {self.pid}: {e}") from e

    def _wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                if self._popen is not None:
                    self._popen.wait()
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout=15, sig=signal.SIGTERM, group=True):
        """SIG to the process (and its process group), SIGKILL after
        TIMEOUT; returns once the PID is gone (raises EnvError if not)."""
        if self.pid is None:
            return
        if self.alive():
            # The group only when it is still ours (setsid made pid == pgid).
            grp = group
            try:
                grp = group and os.getpgid(self.pid) == self.pid
            except ProcessLookupError:
                grp = False
            self._signal(sig, grp)
            if not self._wait(timeout):
                self._signal(signal.SIGKILL, grp)
                if not self._wait(10):
                    raise EnvError(f"{self.name} pid {self.pid} survived SIGKILL")
        elif self._popen is not None:
            self._popen.wait()
        # Members of its process group that outlived the leader.
        if group:
            stragglers = [p for p in _pgroup_members(self.pid)]
            if stragglers:
                kill_and_wait(stragglers)


def _pgroup_members(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = data[data.rfind(")") + 2:].split()
        if rest[0] not in ("Z", "X") and int(rest[2]) == pgid:
            out.append(int(d))
    return out


def unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def run(argv, timeout=60, check=True, env=None, input=None):
    """subprocess.run with text output; on failure raises EnvError with the
    command's stderr."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            env=env if env is not None else child_env(), input=input)
    except subprocess.TimeoutExpired as e:
        raise EnvError(f"{' '.join(map(str, argv))}: timed out after {timeout}s") from e
    if check and cp.returncode != 0:
        raise EnvError(f"{' '.join(map(str, argv))}: exit {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}")
    return cp


def node_ip():
    """First global-scope IPv4 address of this host (kubelet --node-ip and
    the apiserver's --advertise-address need a non-loopback one; nothing
    listens on it)."""
    override = os.environ.get("KYB_TEST_NODE_IP")
    if override:
        return override
    cp = run(["ip", "-4", "-o", "addr", "show", "scope", "global"], check=False)
    for line in cp.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise EnvError("no global IPv4 address on this host; set KYB_TEST_NODE_IP to a non-loopback address")


class HostPaths:
    """Fixed host paths a service may create outside its state directory
    (e.g. /run/containerd/s for shim sockets, /var/lib/kubelet/device-plugins):
    remembers which existed before, and afterwards removes the empty
    directories that did not, reporting any files left in them."""

    def __init__(self, paths, existed=None):
        self.paths = [str(p) for p in paths]
        if existed is None:
            existed = {p: sorted(os.listdir(p)) if os.path.isdir(p) else None for p in self.paths}
        self.existed = existed

    def to_state(self):
        return {"paths": self.paths, "existed": self.existed}

    @classmethod
    def from_state(cls, st):
        return cls(st["paths"], st["existed"])

    def new_entries(self):
        """{path: [entries not there before]} for the watched paths."""
        out = {}
        for p in self.paths:
            if not os.path.isdir(p):
                continue
            before = set(self.existed.get(p) or [])
            new = sorted(set(os.listdir(p)) - before)
            if new:
                out[p] = new
        return out

    def cleanup(self, remove_files=(), purge=()):
        """Remove new empty directories (and new files whose name is in
        REMOVE_FILES, e.g. a kubelet.sock); new entries of the watched paths
        listed in PURGE are removed with everything in them (e.g. pod log
        directories). Returns the files left."""
        left = []
        purge = {str(p) for p in purge}
        for p, new in self.new_entries().items():
            for name in new:
                full = os.path.join(p, name)
                if p in purge:
                    if os.path.isdir(full) and not os.path.islink(full):
                        shutil.rmtree(full, ignore_errors=True)
                    else:
                        unlink_quiet(full)
                    if os.path.lexists(full):
                        left.append(full)
                    continue
                left.extend(_remove_empty_tree(full, remove_files))
        for p in self.paths:
            if self.existed.get(p) is None and os.path.isdir(p):
                left.extend(_remove_empty_tree(p, remove_files))
        return sorted(set(left))


def _remove_empty_tree(path, remove_files=()):
    """rmdir PATH bottom-up if only empty dirs (and REMOVE_FILES names)
    remain; returns what stays (files)."""
    left = []
    if os.path.islink(path) or not os.path.isdir(path):
        if os.path.basename(path) in remove_files:
            unlink_quiet(path)
            return []
        return [path] if os.path.lexists(path) else []
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            full = os.path.join(root, f)
            if f in remove_files:
                unlink_quiet(full)
            else:
                left.append(full)
        try:
            os.rmdir(root)
        except OSError:
            pass
    return left
