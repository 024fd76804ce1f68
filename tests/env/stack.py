# SPDX-License-Identifier: Apache-2.0
"""The whole test environment at once (scripts/testenv.py): containerd,
etcd + kube-apiserver, kubelet, s3rver under one base directory, with a
JSON state file so a later process can stop it."""
import json
import os
import pathlib
import time

from .common import EnvError
from .containerd import Containerd
from .kube import KubeCluster
from .kubelet import Kubelet
from .s3 import S3Server

ALL = ("containerd", "kube", "kubelet", "s3")


class Stack:
    def __init__(self, base_dir):
        self.base = pathlib.Path(base_dir).resolve()
        self.state_file = self.base / "state.json"
        self.containerd = None
        self.kube = None
        self.kubelet = None
        self.s3 = None
        self.timings = {}

    def start(self, components=ALL, log=print):
        comps = set(components)
        if "kubelet" in comps:
            comps |= {"containerd", "kube"}
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            for name, make in (("containerd", lambda: Containerd(self.base / "containerd")),
                               ("kube", lambda: KubeCluster(self.base / "kube")),
                               ("kubelet", lambda: Kubelet(self.base / "kubelet", self.containerd,
                                                           self.kube)),
                               ("s3", lambda: S3Server(self.base / "s3"))):
                if name not in comps:
                    continue
                t0 = time.monotonic()
                obj = make()
                setattr(self, name, obj)
                obj.start()
                self.timings[name] = round(time.monotonic() - t0, 2)
                log(f"testenv: {name} up in {self.timings[name]}s")
                self.save()
        except BaseException:
            self.stop(log=log)
            raise
        return self

    def to_state(self):
        st = {"base": str(self.base), "pid": os.getpid(), "timings": self.timings}
        for name in ALL:
            obj = getattr(self, name)
            if obj is None:
                continue
            try:
                st[name] = obj.to_state()
            except AttributeError:
                pass  # not started far enough to have a state
        return st

    def save(self):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_state(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, base_dir):
        s = cls(base_dir)
        st = json.loads(s.state_file.read_text())
        s.timings = st.get("timings", {})
        if "containerd" in st:
            s.containerd = Containerd.from_state(st["containerd"])
        if "kube" in st:
            s.kube = KubeCluster.from_state(st["kube"])
        if "kubelet" in st:
            if s.containerd is None or s.kube is None:
                raise EnvError("state file has a kubelet without containerd/kube")
            s.kubelet = Kubelet.from_state(st["kubelet"], s.containerd, s.kube)
        if "s3" in st:
            s.s3 = S3Server.from_state(st["s3"])
        return s

    def info(self):
        out = {}
        if self.containerd:
            out["containerd_socket"] = str(self.containerd.socket)
            out["ctr"] = " ".join(self.containerd.ctr_argv(namespace="k8s.io")[:5])
            out["runc_root_k8s"] = self.containerd.runc_root_for("k8s.io")
        if self.kube:
            out["kubeconfig"] = str(self.kube.kubeconfig)
            out["apiserver"] = self.kube.server
            out["etcd"] = self.kube.etcd_url
        if self.kubelet:
            out["node"] = self.kubelet.node_name
            out["kubelet_log"] = str(self.kubelet.log_path)
            out["device_plugin_dir"] = self.kubelet.device_plugin_dir
        if self.s3:
            out["s3_endpoint"] = self.s3.endpoint
            out["s3_bucket"] = self.s3.bucket
            out["s3_credentials"] = f"{self.s3.access_key}/{self.s3.secret_key}"
        return out

    def status(self):
        procs = {}
        if self.containerd and self.containerd.proc:
            procs["containerd"] = self.containerd.proc
        if self.kube:
            procs["etcd"] = self.kube.etcd
            procs["kube-apiserver"] = self.kube.apiserver
        if self.kubelet:
            procs["kubelet"] = self.kubelet.proc
        if self.s3:
            procs["s3rver"] = self.s3.proc
        return {n: (p.pid, p.alive()) for n, p in procs.items() if p is not None}

    def stop(self, log=print):
        """Stop in reverse order; returns {component: report}."""
        reports = {}
        for name in ("kubelet", "s3", "kube", "containerd"):
            obj = getattr(self, name)
            if obj is None:
                continue
            try:
                reports[name] = obj.stop(strict=False)
            except Exception as e:  # noqa: BLE001 - keep tearing down the rest
                reports[name] = {"error": [repr(e)]}
            leaks = {k: v for k, v in reports[name].items() if v and k != "pid_cmdlines"}
            log(f"testenv: {name} down" + (f" — LEFT BEHIND: {leaks}" if leaks else " (clean)"))
        return reports


_live = {}


def live_stack():
    """The environment started by `scripts/testenv.py up`, when the tests
    are asked to use it (KYB_TESTENV=1 for .testenv/, or KYB_TESTENV=DIR):
    the fixtures then hand out its services instead of starting their own,
    and leave them running. None otherwise."""
    want = os.environ.get("KYB_TESTENV", "")
    if not want or want == "0":
        return None
    from .common import REPO
    base = pathlib.Path(REPO / ".testenv" if want == "1" else want).resolve()
    if base not in _live:
        if not (base / "state.json").exists():
            raise EnvError(f"KYB_TESTENV={want}: no {base / 'state.json'}; "
                           "run '/usr/bin/python3 scripts/testenv.py up' first")
        s = Stack.load(base)
        dead = [n for n, (_pid, alive) in s.status().items() if not alive]
        if dead:
            raise EnvError(f"KYB_TESTENV={want}: {dead} not running in {base}; "
                           "run 'scripts/testenv.py down' and 'up' again")
        _live[base] = s
    return _live[base]
