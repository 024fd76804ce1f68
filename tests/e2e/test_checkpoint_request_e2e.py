# SPDX-License-Identifier: Apache-2.0
"""A CheckpointRequest from kubectl to an uploaded archive, with every real
component: etcd + kube-apiserver, a kubelet running the pod through CRI in
containerd + runc, kybernate-operator scheduling the request, the
kybernate-agent node controller checkpointing the container with CRIU, and
kybernate-sidecar uploading the checkpoint to a shared volume (file://).
Also: the agent killed and restarted while a request waits for its upload,
and a checkpoint that fails on the node (docs/operator.md)."""
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.parse
import uuid

import pytest

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count; sleep 0.05; done"


class Proc:
    def __init__(self, argv, log):
        self.argv, self.log = argv, log
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "a"))

    def text(self):
        return pathlib.Path(self.log).read_text()

    def wait_log(self, fragment, timeout=30):
        end = time.monotonic() + timeout
        while fragment not in self.text():
            assert self.proc.poll() is None, f"{self.argv[0]} exited:\n{self.text()}"
            assert time.monotonic() < end, f"no {fragment!r} in:\n{self.text()}"
            time.sleep(0.1)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        return self.proc.returncode


@pytest.fixture
def stack(build_dir, kube, kybernate_crds, kubelet, containerd, tmp_path):
    store, artifacts = tmp_path / "store", tmp_path / "artifacts"
    artifacts.mkdir()
    s = type("Stack", (), {})()
    s.store, s.artifacts, s.tmp = store, artifacts, tmp_path
    s.agent_argv = [
        str(build_dir / "cmd/kybernate-agent"), "--config", "",
        "--socket-path", str(tmp_path / "agent.sock"), "--store-dir", str(store),
        "--work-dir", str(tmp_path / "work"), "--metrics-address", "",
        "--node-name", kubelet.node_name, "--kubeconfig", str(kube.kubeconfig),
        # containerd's runc shim appends the namespace to the CRI Root option
        "--runc-root", containerd.runc_root_for("k8s.io") + "/{namespace}",
        "--cuda-lib", "/nonexistent/libcuda.so.1", "--nvml-lib", "/nonexistent/libnvidia-ml.so.1",
        "--shutdown-grace", "5s"]
    s.agent = Proc(s.agent_argv, tmp_path / "agent.log")
    s.agent.wait_log("node controller on for node")
    s.operator = Proc([str(build_dir / "cmd/kybernate-operator"),
                       f"--kubeconfig={kube.kubeconfig}", "--no-leader-elect",
                       "--metrics-address=", "--pod-wait", "5s"], tmp_path / "operator.log")
    s.operator.wait_log("leading now")
    s.sidecar_argv = [str(build_dir / "cmd/kybernate-sidecar"), "watch", "--watch-dir",
                      str(store), "--target", f"file://{artifacts}", "--metrics-address", "",
                      "--rescan-interval", "500ms"]
    s.sidecar = None
    yield s
    for p in (s.sidecar, s.operator, s.agent):
        if p is not None:
            assert p.stop() == 0, p.text()


def custom(kube):
    from kubernetes import client
    return client.CustomObjectsApi(kube.api_client())


def get_request(kube, name, ns="default"):
    return custom(kube).get_namespaced_custom_object("kybernate.io", "v1alpha1", ns,
                                                     "checkpointrequests", name)


def wait_phase(kube, name, phases, timeout=90):
    end = time.monotonic() + timeout
    while True:
        st = get_request(kube, name).get("status", {})
        if st.get("phase") in phases:
            return st
        assert st.get("phase") != "Failed", st
        assert time.monotonic() < end, f"{name}: {st}"
        time.sleep(0.2)


def run_pod(kube, kubelet, name):
    kube.core().create_namespaced_pod("default", kubelet.pod_manifest(
        name, ["sh", "-c", COUNTER]))
    return kubelet.wait_pod_phase(name, timeout=60)


def apply_request(kube, tmp, name, pod, leave_running=True):
    f = tmp / f"{name}.yaml"
    f.write_text(json.dumps({
        "apiVersion": "kybernate.io/v1alpha1", "kind": "CheckpointRequest",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"podName": pod, "options": {"leaveRunning": leave_running, "gpuMode": "Off"},
                 "storage": {"uri": "file:///artifacts"}}}))
    subprocess.run(kube.kubectl_argv("apply", "-f", f), check=True, capture_output=True,
                   timeout=60)


def test_checkpoint_request_end_to_end(stack, kube, kubelet, containerd):
    pod_name, req = f"e2e-{uuid.uuid4().hex[:6]}", f"ckpt-{uuid.uuid4().hex[:6]}"
    pod = run_pod(kube, kubelet, pod_name)
    apply_request(kube, stack.tmp, req, pod_name)

    st = wait_phase(kube, req, ("Uploading", "Succeeded"))
    assert st["nodeName"] == kubelet.node_name and st["containerName"] == "main"
    ckpt_id = st["checkpointID"]
    manifest = json.loads((stack.store / ckpt_id / "manifest.json").read_text())
    assert manifest["workload"]["podName"] == pod_name
    assert st["imageBytes"] > 0 and st["stepDurationsMillis"]["criuDump"] >= 0
    # leaveRunning: the container still runs under its kubelet
    cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    assert containerd.tasks("k8s.io")[cid][1] == "RUNNING"

    # the agent dies and comes back while the request waits for its upload
    assert stack.agent.stop(signal.SIGKILL) == -signal.SIGKILL
    stack.agent = Proc(stack.agent_argv, stack.tmp / "agent.log")
    stack.agent.wait_log("node controller on for node", timeout=60)
    stack.sidecar = Proc(stack.sidecar_argv, stack.tmp / "sidecar.log")

    st = wait_phase(kube, req, ("Succeeded",), timeout=120)
    uri = urllib.parse.urlparse(st["artifactURI"])
    archive = pathlib.Path(uri.path)
    assert archive.parent == stack.artifacts and archive.exists()
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == st["archiveSHA256"]
    assert st["archiveBytes"] == archive.stat().st_size
    # the pod spec travels beside the archive (restores by artifact URI)
    spec = json.loads((stack.artifacts / f"{ckpt_id}.pod.json").read_text())
    assert [c["name"] for c in spec["containers"]] == ["main"] and "nodeName" not in spec
    obj = get_request(kube, req)
    conds = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conds == {"Scheduled": "True", "Checkpointed": "True", "Uploaded": "True",
                     "Ready": "True"}, conds
    out = subprocess.run(kube.kubectl_argv("get", "ckpt", req, "-o", "wide"),
                         capture_output=True, text=True, check=True).stdout
    assert "Succeeded" in out and str(st["archiveBytes"]) in out


def test_checkpoint_failing_on_the_node_fails_the_request(stack, kube, kubelet, containerd):
    pod_name, req = f"e2e-{uuid.uuid4().hex[:6]}", f"ckpt-{uuid.uuid4().hex[:6]}"
    run_pod(kube, kubelet, pod_name)
    # an ID that already exists in the node's store is refused by the engine
    (stack.store / "taken").mkdir(parents=True, exist_ok=True)
    f = stack.tmp / "req.yaml"
    f.write_text(json.dumps({
        "apiVersion": "kybernate.io/v1alpha1", "kind": "CheckpointRequest",
        "metadata": {"name": req, "namespace": "default"},
        "spec": {"podName": pod_name, "checkpointID": "taken",
                 "options": {"leaveRunning": True, "gpuMode": "Off"},
                 "storage": {"uri": "file:///artifacts"}}}))
    subprocess.run(kube.kubectl_argv("apply", "-f", f), check=True, capture_output=True)
    end = time.monotonic() + 60
    while (st := get_request(kube, req).get("status", {})).get("phase") != "Failed":
        assert time.monotonic() < end, st
        time.sleep(0.2)
    assert st["message"].startswith("checkpoint: "), st
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds["Checkpointed"] == ("False", "CheckpointFailed")
    assert os.path.isdir(stack.store / "taken")
    assert not (stack.store / "taken.pod.json").exists()  # removed with the failed run


def test_upload_never_reported_times_out(stack, kube, kubelet):
    """No sidecar uploads the checkpoint: the agent fails the request after
    --upload-timeout, with the reason, and leaves the checkpoint on the node."""
    assert stack.agent.stop() == 0
    stack.agent = Proc(stack.agent_argv + ["--upload-timeout", "3s"], stack.tmp / "agent.log")
    stack.agent.wait_log("node controller on for node", timeout=60)
    pod_name, req = f"e2e-{uuid.uuid4().hex[:6]}", f"ckpt-{uuid.uuid4().hex[:6]}"
    run_pod(kube, kubelet, pod_name)
    apply_request(kube, stack.tmp, req, pod_name)
    end = time.monotonic() + 90
    while (st := get_request(kube, req).get("status", {})).get("phase") != "Failed":
        assert time.monotonic() < end, st
        time.sleep(0.2)
    assert st["message"] == "the sidecar did not report an upload in time"
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds["Checkpointed"][0] == "True" and conds["Uploaded"] == ("False", "UploadTimeout")
    assert (stack.store / st["checkpointID"] / "manifest.json").exists()
