# SPDX-License-Identifier: Apache-2.0
"""A kubelet v1.20.2 node for tests, registered against a KubeCluster with
CRI to a test Containerd (config as in shared/ENVIRONMENT.md).

Private: --root-dir, --cert-dir, volume plugin dir, the cgroup root (below
the containerd environment's cgroup parent), its API port and healthz port
(127.0.0.1 only). Not private (fixed paths in kubelet 1.20), so only one
test kubelet runs per host (a lock file enforces it) and tear-down removes
what it created there:
  /var/lib/kubelet/device-plugins/   (kubelet.sock: device-plugin registration)
  /var/log/pods/, /var/log/containers/  (container logs)
and the sysctls it rewrites (vm.overcommit_memory, kernel.panic, ...) are
saved before and restored after."""
import json
import os
import pathlib
import time

from . import cgroups
from .common import (EnvError, HostPaths, Proc, free_port, kill_and_wait, need_binary, pid_alive,
                     proc_starttime, rmtree, sockets_under, unlink_quiet, unmount_all_under,
                     wait_until)

COMPONENT = "kubernetes"
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
LOCK_FILE = "/run/lock/kybernate-testenv-kubelet.json"
HOST_PATHS = [DEVICE_PLUGIN_DIR, "/var/lib/kubelet", "/var/log/pods", "/var/log/containers",
              "/usr/libexec/kubernetes"]
PURGE = ["/var/log/pods", "/var/log/containers"]
# Written by the kubelet at start-up (setupKernelTunables).
SYSCTLS = ["vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"]
DEFAULT_NODE = "kyb-node"


def require():
    need_binary("kubelet", COMPONENT)


def _sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctls():
    out = {}
    for n in SYSCTLS:
        try:
            with open(_sysctl_path(n)) as f:
                out[n] = f.read().strip()
        except OSError:
            pass
    return out


def restore_sysctls(saved):
    """Write back SAVED values that changed; returns the names that could
    not be restored."""
    failed = []
    now = read_sysctls()
    for n, v in saved.items():
        if now.get(n) != v:
            try:
                with open(_sysctl_path(n), "w") as f:
                    f.write(v)
            except OSError:
                failed.append(n)
    return failed


def _take_lock(base):
    try:
        with open(LOCK_FILE) as f:
            held = json.load(f)
        if pid_alive(held["pid"], held.get("starttime")):
            raise EnvError(
                f"another test kubelet is running (pid {held['pid']}, state {held.get('base')}); "
                "only one per host (fixed /var/lib/kubelet/device-plugins): stop it first — "
                "'/usr/bin/python3 scripts/testenv.py down' if it is testenv's, or use it with "
                f"KYB_TESTENV=1; an orphan of a killed pytest run: kill {held['pid']} and rerun")
    except (OSError, ValueError, KeyError):
        pass
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)


def _write_lock(proc, base):
    tmp = LOCK_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": proc.pid, "starttime": proc.starttime, "base": str(base)}, f)
    os.replace(tmp, LOCK_FILE)


def _release_lock(proc):
    try:
        with open(LOCK_FILE) as f:
            held = json.load(f)
        if proc is None or held.get("pid") == proc.pid:
            os.unlink(LOCK_FILE)
    except (OSError, ValueError):
        pass


class Kubelet:
    """kubelet in BASE_DIR for node NODE_NAME.

    Attributes: node_name, root_dir, kubeconfig (the node's), config_path,
    log_path, port, healthz_port, device_plugin_dir, pod_logs_dir."""

    device_plugin_dir = DEVICE_PLUGIN_DIR
    pod_logs_dir = "/var/log/pods"

    def __init__(self, base_dir, containerd, cluster, node_name=DEFAULT_NODE, state=None):
        self.base = pathlib.Path(base_dir).resolve()
        self.containerd = containerd
        self.cluster = cluster
        self.node_name = node_name
        self.root_dir = self.base / "root"
        self.config_path = self.base / "kubelet-config.yaml"
        self.log_path = self.base / "kubelet.log"
        self.cgroup_root = f"/{containerd.cgroup_parent}/kubelet"
        self.kubeconfig = None
        self.proc = None
        self.port = None
        self.healthz_port = None
        self.saved_sysctls = {}
        self.host_paths = None
        if state:
            self.proc = Proc.from_state(state["proc"])
            self.kubeconfig = pathlib.Path(state["kubeconfig"])
            self.port = state["port"]
            self.healthz_port = state["healthz_port"]
            self.saved_sysctls = state["sysctls"]
            self.host_paths = HostPaths.from_state(state["host_paths"])

    def to_state(self):
        return {"base": str(self.base), "node_name": self.node_name,
                "proc": self.proc.to_state(), "kubeconfig": str(self.kubeconfig),
                "port": self.port, "healthz_port": self.healthz_port,
                "sysctls": self.saved_sysctls, "host_paths": self.host_paths.to_state()}

    @classmethod
    def from_state(cls, st, containerd, cluster):
        return cls(st["base"], containerd, cluster, node_name=st["node_name"], state=st)

    def _config(self):
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": True,
            "cgroupRoot": self.cgroup_root,
            "enforceNodeAllocatable": ["pods"],
            "failSwapOn": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {}},
            "authorization": {"mode": "AlwaysAllow"},
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                             "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "serializeImagePulls": False,
            "volumePluginDir": str(self.base / "volume-plugins"),
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "runtimeRequestTimeout": "2m",
            "resolvConf": "/etc/resolv.conf",
        }
        # JSON is YAML.
        return json.dumps(cfg, indent=2) + "\n"

    def start(self, timeout=90):
        require()
        self.base.mkdir(parents=True, exist_ok=True)
        _take_lock(self.base)
        self.port, self.healthz_port = free_port(), free_port()
        self.config_path.write_text(self._config())
        self.kubeconfig = self.cluster.issue_node_credentials(self.node_name, self.base)
        cgroups.create(self.cgroup_root.lstrip("/"))
        self.saved_sysctls = read_sysctls()
        self.host_paths = HostPaths(HOST_PATHS)
        pause = self.containerd.images.get("pause")
        self.proc = Proc("kubelet", [
            need_binary("kubelet", COMPONENT),
            f"--config={self.config_path}",
            f"--kubeconfig={self.kubeconfig}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.containerd.socket}",
            f"--root-dir={self.root_dir}",
            f"--cert-dir={self.base / 'pki'}",
            f"--node-ip={self.cluster.node_ip}",
            f"--hostname-override={self.node_name}",
            f"--pod-infra-container-image={pause}",
            "--logtostderr=true", "--v=2",
        ], self.log_path).start()
        _write_lock(self.proc, self.base)
        try:
            self.wait_ready(timeout)
            # The containerd config defines a `kybernate` runtime handler.
            self.cluster.ensure_runtime_class("kybernate")
        except BaseException:
            self.stop(strict=False)
            raise
        return self

    def node_ready(self):
        from kubernetes.client.rest import ApiException
        try:
            node = self.cluster.core().read_node(self.node_name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return any(c.type == "Ready" and c.status == "True"
                   for c in (node.status.conditions or []))

    def wait_ready(self, timeout=90):
        self.cluster.wait_for(lambda: self.proc.check_alive() or self.node_ready(), timeout,
                              f"node {self.node_name} Ready (kubelet log {self.log_path})")

    # -- pods ----------------------------------------------------------
    def pod_manifest(self, name, command, image="busybox", namespace="default",
                     host_network=True, runtime_class=None, annotations=None):
        """A minimal pod bound to this node (no scheduler), using a local
        image (imagePullPolicy Never) and no service-account token (no
        token controller)."""
        spec = {
            "nodeName": self.node_name,
            "hostNetwork": host_network,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": "Never",
            "containers": [{
                "name": "main",
                "image": self.containerd.images.get(image, image),
                "imagePullPolicy": "Never",
                "command": list(command),
            }],
        }
        if runtime_class:
            spec["runtimeClassName"] = runtime_class
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace,
                             "annotations": dict(annotations or {})},
                "spec": spec}

    def wait_pod_phase(self, name, phases=("Running",), namespace="default", timeout=60):
        core = self.cluster.core()

        def check():
            self.proc.check_alive()
            pod = core.read_namespaced_pod(name, namespace)
            if pod.status.phase in phases:
                return pod
            if pod.status.phase == "Failed" and "Failed" not in phases:
                raise EnvError(f"pod {namespace}/{name} failed: {pod.status}")
            return None
        return wait_until(check, timeout, f"pod {namespace}/{name} in {phases}", interval=0.2)

    def delete_all_pods(self, timeout=30):
        """Delete every pod bound to this node (grace 0) and wait until the
        kubelet has stopped their containers."""
        core = self.cluster.core()
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node_name}")
        for p in pods.items:
            try:
                core.delete_namespaced_pod(p.metadata.name, p.metadata.namespace,
                                           grace_period_seconds=0)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if not pods.items or not self.proc.alive():
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [t for t, (_pid, st) in self.containerd.tasks("k8s.io").items()
                       if st == "RUNNING"]
            if not running:
                return
            time.sleep(0.2)

    # -- stop ----------------------------------------------------------
    def stop(self, strict=True):
        """Delete the node's pods, stop the kubelet, remove its containers'
        leftovers, cgroups and fixed-path files, restore sysctls and delete
        the Node object. Returns a report (empty lists when clean); raises
        EnvError if STRICT and not clean."""
        report = {"pids": [], "mounts": [], "sockets": [], "cgroups": [], "host_files": [],
                  "sysctls": []}
        tracked = {}
        if self.proc is not None and self.proc.alive():
            try:
                self.delete_all_pods()
            except Exception:  # noqa: BLE001 - apiserver may be gone already
                pass
            tracked[self.proc.pid] = self.proc.starttime
            self.proc.stop(timeout=15)
        # Containers the kubelet left (e.g. it was killed): kill their tasks
        # in containerd's k8s.io namespace, if containerd still runs.
        try:
            if self.containerd.proc is not None and self.containerd.proc.alive():
                for tid, (pid, st) in self.containerd.tasks("k8s.io").items():
                    if pid:
                        tracked[pid] = proc_starttime(pid)
                    self.containerd.ctr("tasks", "kill", "-a", "-s", "SIGKILL", tid,
                                        namespace="k8s.io", check=False)
                    self.containerd.ctr("tasks", "delete", "-f", tid, namespace="k8s.io",
                                        check=False)
        except EnvError:
            pass
        tracked.update({p: proc_starttime(p) for p in cgroups.pids_in(self.cgroup_root.lstrip("/"))})
        report["pids"] = kill_and_wait({p: s for p, s in tracked.items() if s is not None})
        report["mounts"] = unmount_all_under(self.base)
        # Its API sockets (pod-resources, plugin registry) stay behind.
        if not report["mounts"] and not self.alive():
            for sock in sockets_under(self.base):
                unlink_quiet(sock)
        report["sockets"] = sockets_under(self.base)
        report["cgroups"] = cgroups.remove(self.cgroup_root.lstrip("/"))
        if self.host_paths is not None:
            report["host_files"] = self.host_paths.cleanup(
                remove_files=("kubelet.sock", "kubelet_internal_checkpoint", "DEPRECATION"), purge=PURGE)
        report["sysctls"] = restore_sysctls(self.saved_sysctls)
        _release_lock(self.proc)
        try:
            if self.cluster.apiserver is not None and self.cluster.apiserver.alive():
                self.cluster.core().delete_node(self.node_name)
        except Exception:  # noqa: BLE001 - best effort
            pass
        if strict and any(report.values()):
            raise EnvError(f"kubelet tear-down left things behind: {report}")
        return report

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def remove_state(self):
        rmtree(self.base)
