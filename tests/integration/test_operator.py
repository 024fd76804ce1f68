# SPDX-License-Identifier: Apache-2.0
"""kybernate-operator against the real etcd + kube-apiserver (docs/operator.md):
the CheckpointRequest life cycle through kubectl and the Python client,
failures with reasons, recovery after an API server restart, and leader
election with failover.

Pods are created with spec.nodeName set and their status written through
the status subresource, which is what a kubelet does; the node side of the
life cycle (Checkpointing -> Succeeded) is written by the test the way the
node agent writes it."""
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest
from operator_proc import OperatorProcess

NS = "operator-test"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Operator(OperatorProcess):
    def __init__(self, build_dir, kube, tmp_path, *extra, name="op"):
        super().__init__(build_dir, kube.kubeconfig,
                         tmp_path / f"{name}-{time.monotonic_ns()}.log",
                         "--lease-namespace", NS, "--pod-wait", "3s", "--log-level", "trace",
                         *extra)


@pytest.fixture(scope="module")
def k8s(kube, kybernate_crds):
    from kubernetes import client
    kube.ensure_namespace(NS)
    kube.ensure_runtime_class("kybernate")
    return client.CoreV1Api(kube.api_client()), client.CustomObjectsApi(kube.api_client())


@pytest.fixture(scope="module")
def operator(build_dir, kube, k8s, tmp_path_factory):
    op = Operator(build_dir, kube, tmp_path_factory.mktemp("operator"),
                  "--request-timeout", "8s", "--lease-name", "op-main", "--watch-namespace", NS,
                  # outlives an API server restart (a leader that cannot renew
                  # within the deadline exits, as it should)
                  "--lease-duration", "60s", "--renew-deadline", "45s")
    op.wait_log("leading now")
    yield op
    assert op.stop() == 0, op.text()
    assert "stopped" in op.text()


def make_pod(core, name, node="node-a", containers=("app", "kybernate-sidecar"), running=True,
             ns=NS):
    body = {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": c, "image": "busybox:local"} for c in containers]}}
    pod = core.create_namespaced_pod(ns, body)
    if running:
        set_running(core, name, containers, ns=ns)
    return pod


def set_running(core, name, containers=("app", "kybernate-sidecar"), ns=NS):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(name, ns, {"status": {
        "phase": "Running",
        "containerStatuses": [{
            "name": c, "ready": True, "restartCount": 0, "image": "busybox:local",
            "imageID": "sha256:" + "0" * 64,
            "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "state": {"running": {"startedAt": now}}} for c in containers]}})


def make_request(custom, name, pod, ns=NS, **spec):
    body = {"apiVersion": "kybernate.io/v1alpha1", "kind": "CheckpointRequest",
            "metadata": {"name": name},
            "spec": {"podName": pod, "storage": {"uri": "s3://bucket/prefix"}, **spec}}
    return custom.create_namespaced_custom_object("kybernate.io", "v1alpha1", ns,
                                                  "checkpointrequests", body)


def get_request(custom, name, ns=NS):
    return custom.get_namespaced_custom_object("kybernate.io", "v1alpha1", ns,
                                               "checkpointrequests", name)


def wait_phase(custom, name, phase, timeout=20, ns=NS):
    end = time.monotonic() + timeout
    while True:
        obj = get_request(custom, name, ns)
        got = obj.get("status", {}).get("phase")
        if got == phase:
            return obj
        assert time.monotonic() < end, f"{name}: phase {got}, want {phase}: {obj.get('status')}"
        time.sleep(0.1)


def condition(obj, type_):
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def events_for(core, name, ns=NS, reason=None, timeout=10):
    """The Events about NAME; with REASON, waits until one with it exists
    (Events are written just after the status they report)."""
    end = time.monotonic() + timeout
    while True:
        evs = [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == name]
        if reason is None or any(e.reason == reason for e in evs) or time.monotonic() > end:
            return evs
        time.sleep(0.1)


def kubectl(kube, *args):
    p = subprocess.run(kube.kubectl_argv(*args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_lifecycle_through_kubectl(operator, kube, k8s, tmp_path):
    core, custom = k8s
    pod, req = unique("web"), unique("ckpt")
    make_pod(core, pod)
    manifest = tmp_path / "req.yaml"
    manifest.write_text(f"""apiVersion: kybernate.io/v1alpha1
kind: CheckpointRequest
metadata:
  name: {req}
  namespace: {NS}
spec:
  podName: {pod}
  storage:
    uri: s3://bucket/prefix
""")
    kubectl(kube, "apply", "-f", manifest)
    obj = wait_phase(custom, req, "Scheduled")
    st = obj["status"]
    assert st["nodeName"] == "node-a"
    assert st["containerName"] == "app"  # the sidecar is never the default
    assert st["podUID"] == core.read_namespaced_pod(pod, NS).metadata.uid
    assert st["checkpointID"].startswith(req + "-")
    assert st["startTime"] and st["observedGeneration"] == 1
    assert condition(obj, "Scheduled")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["metadata"]["labels"]["kybernate.io/node"] == "node-a"
    spec = json.loads(obj["metadata"]["annotations"]["kybernate.io/pod-spec"])
    assert [c["name"] for c in spec["containers"]] == ["app", "kybernate-sidecar"]
    assert "nodeName" not in spec
    out = kubectl(kube, "get", "ckpt", "-n", NS, req)
    assert re.search(rf"{req}\s+{pod}\s+Scheduled\s+node-a\s+{st['checkpointID']}", out), out

    # the node agent's part, as the agent writes it; the operator leaves it alone
    for phase in ("Checkpointing", "Uploading", "Succeeded"):
        obj = get_request(custom, req)
        obj["status"]["phase"] = phase
        custom.replace_namespaced_custom_object_status("kybernate.io", "v1alpha1", NS,
                                                       "checkpointrequests", req, obj)
    time.sleep(1)
    assert get_request(custom, req)["status"]["phase"] == "Succeeded"
    reasons = [e.reason for e in events_for(core, req, reason="Scheduled")]
    assert reasons.count("Scheduled") == 1, reasons


def test_named_container_and_explicit_id(operator, k8s):
    core, custom = k8s
    pod, req = unique("two"), unique("ckpt")
    make_pod(core, pod, containers=("kybernate-sidecar", "a", "b"))
    make_request(custom, req, pod, containerName="b", checkpointID="my-id.1")
    st = wait_phase(custom, req, "Scheduled")["status"]
    assert (st["containerName"], st["checkpointID"]) == ("b", "my-id.1")


def test_unknown_pod_fails_with_reason(operator, k8s):
    core, custom = k8s
    req = unique("nopod")
    t0 = time.monotonic()
    make_request(custom, req, "no-such-pod")
    assert wait_phase(custom, req, "Pending", timeout=10)
    obj = wait_phase(custom, req, "Failed", timeout=15)
    assert time.monotonic() - t0 >= 2.5  # --pod-wait 3s
    assert obj["status"]["message"] == "pod no-such-pod not found"
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodNotFound")
    assert obj["status"]["completionTime"]
    ev = [e for e in events_for(core, req, reason="PodNotFound") if e.reason == "PodNotFound"]
    assert len(ev) == 1 and ev[0].type == "Warning"


def test_pod_appearing_late_is_scheduled(operator, k8s):
    core, custom = k8s
    pod, req = unique("late"), unique("ckpt")
    make_request(custom, req, pod)
    wait_phase(custom, req, "Pending")
    time.sleep(1)
    make_pod(core, pod, running=False)
    time.sleep(0.5)
    assert get_request(custom, req)["status"]["phase"] == "Pending"  # not Running yet
    set_running(core, pod)
    wait_phase(custom, req, "Scheduled", timeout=10)


def test_missing_container_fails(operator, k8s):
    core, custom = k8s
    pod, req = unique("noc"), unique("ckpt")
    make_pod(core, pod)
    make_request(custom, req, pod, containerName="nope")
    obj = wait_phase(custom, req, "Failed")
    assert condition(obj, "Ready")["reason"] == "ContainerNotFound"
    assert "no container nope" in obj["status"]["message"]


def test_pod_deleted_while_scheduled_fails(operator, k8s):
    core, custom = k8s
    pod, req = unique("gone"), unique("ckpt")
    make_pod(core, pod)
    make_request(custom, req, pod)
    wait_phase(custom, req, "Scheduled")
    core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)
    obj = wait_phase(custom, req, "Failed")
    assert condition(obj, "Ready")["reason"] == "PodDeleted"


def test_stuck_request_times_out(operator, k8s):
    core, custom = k8s
    pod, req = unique("stuck"), unique("ckpt")
    make_pod(core, pod)
    make_request(custom, req, pod)
    obj = wait_phase(custom, req, "Scheduled")
    obj["status"]["phase"] = "Checkpointing"  # an agent that then goes silent
    custom.replace_namespaced_custom_object_status("kybernate.io", "v1alpha1", NS,
                                                   "checkpointrequests", req, obj)
    obj = wait_phase(custom, req, "Failed", timeout=20)  # --request-timeout 8s
    assert condition(obj, "Ready")["reason"] == "Timeout"
    assert "phase Checkpointing" in obj["status"]["message"]


def test_pod_never_running_times_out(operator, k8s):
    core, custom = k8s
    pod, req = unique("pending"), unique("ckpt")
    make_pod(core, pod, running=False)  # scheduled, never started (an image pull that hangs)
    make_request(custom, req, pod)
    assert wait_phase(custom, req, "Pending")["status"]["phase"] == "Pending"
    obj = wait_phase(custom, req, "Failed", timeout=20)  # --request-timeout 8s
    assert condition(obj, "Ready")["reason"] == "Timeout"
    assert re.search(r"container app of pod \S+ not running within 8 s",
                     obj["status"]["message"]), obj["status"]["message"]


def conflicts(operator):
    m = re.search(r'kybernate_operator_reconciles_total\{result="conflict"\} (\d+)',
                  operator.metrics())
    return int(m.group(1)) if m else 0


def test_conflicts_are_retried(operator, k8s):
    """A user editing a request while the operator assigns it: the
    operator's conditional writes get 409 Conflict, it retries from the
    fresh object, and the request is still assigned exactly once."""
    core, custom = k8s
    before, done = conflicts(operator), []
    for _ in range(15):  # until the edits have caused a conflict
        pod, req = unique("busy"), unique("ckpt")
        make_pod(core, pod)
        make_request(custom, req, pod)
        done.append(req)
        edits, end = 0, time.monotonic() + 10
        while time.monotonic() < end:
            custom.patch_namespaced_custom_object(
                "kybernate.io", "v1alpha1", NS, "checkpointrequests", req,
                {"metadata": {"labels": {"edited": str(edits)}}})
            edits += 1
            if get_request(custom, req).get("status", {}).get("phase") == "Scheduled":
                break
        if conflicts(operator) > before:
            break
    assert conflicts(operator) > before, "no conflict in 15 edited requests"
    for req in done:
        obj = wait_phase(custom, req, "Scheduled")
        assert obj["metadata"]["labels"]["kybernate.io/node"] == "node-a"
        assert "edited" in obj["metadata"]["labels"]  # the user's edits are kept
        reasons = [e.reason for e in events_for(core, req, reason="Scheduled")]
        assert reasons.count("Scheduled") == 1, (req, reasons)


def test_recovers_after_apiserver_restart(operator, kube, k8s):
    core, custom = k8s
    kube.stop_apiserver()
    try:
        time.sleep(1.5)
    finally:
        kube.start_apiserver()
    pod, req = unique("after"), unique("ckpt")
    make_pod(core, pod)
    make_request(custom, req, pod)
    wait_phase(custom, req, "Scheduled", timeout=30)
    assert operator.proc.poll() is None
    metrics = operator.metrics()
    assert re.search(r'kybernate_operator_reconciles_total\{result="ok"\} [1-9]', metrics)
    assert re.search(r"kybernate_operator_leader 1", metrics)


def test_leader_failover_processes_each_request_once(build_dir, kube, k8s, tmp_path):
    core, custom = k8s
    ns = "operator-failover"  # away from the module's operator
    kube.ensure_namespace(ns)
    lease = unique("lease")
    common = ("--watch-namespace", ns, "--lease-name", lease, "--lease-duration", "3s", "--renew-deadline", "2s",
              "--retry-period", "300ms", "--pod-wait", "60s")
    a = Operator(build_dir, kube, tmp_path, *common, "--identity", "op-a", name="a")
    b = None
    try:
        a.wait_log("leading now")
        b = Operator(build_dir, kube, tmp_path, *common, "--identity", "op-b", name="b")
        b.wait_log("campaigning")
        pods = [unique("fo") for _ in range(3)]
        reqs = [unique("ckpt") for _ in pods]
        for p in pods:
            make_pod(core, p, ns=ns)
        for r, p in zip(reqs[:2], pods[:2]):
            make_request(custom, r, p, ns=ns)
        for r in reqs[:2]:
            wait_phase(custom, r, "Scheduled", ns=ns)
        time.sleep(1)
        assert "leading now" not in b.text()

        a.stop(signal.SIGKILL)  # no lease release: b waits out the lease
        killed = time.monotonic()
        make_request(custom, reqs[2], pods[2], ns=ns)
        b.wait_log("leading now", timeout=15)
        assert time.monotonic() - killed < 3 + 1.5
        wait_phase(custom, reqs[2], "Scheduled", timeout=10, ns=ns)
        time.sleep(1)
        for r in reqs:
            reasons = [e.reason for e in events_for(core, r, ns, reason="Scheduled")]
            assert reasons.count("Scheduled") == 1, (r, reasons)
        assert b.stop() == 0, b.text()
    finally:
        a.stop(signal.SIGKILL)
        if b:
            b.stop(signal.SIGKILL)


def test_bad_kubeconfig_is_a_clear_error(build_dir, tmp_path):
    p = subprocess.run([str(build_dir / "cmd/kybernate-operator"),
                        f"--kubeconfig={tmp_path}/missing", "--metrics-address="],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert f"kubeconfig {tmp_path}/missing" in p.stderr and "No such file" in p.stderr


def test_node_records_its_checkpoint_after_an_apiserver_outage(build_dir, kube, k8s, tmp_path):
    """The API server goes away while the node runs a checkpoint: the node's
    status write after it fails, and the retry records that same run once
    the server is back instead of dropping it or checkpointing again."""
    core, custom = k8s
    ns = unique("outage")  # its own operator, with a request timeout the outage fits in
    kube.ensure_namespace(ns)
    op = Operator(build_dir, kube, tmp_path, "--watch-namespace", ns, "--lease-name", ns,
                  "--request-timeout", "120s", "--lease-duration", "60s",
                  "--renew-deadline", "45s", name="outage")
    op.wait_log("leading now")
    node, pod, req = unique("outage-node"), unique("outage"), unique("ckpt")
    results = tmp_path / "results"
    results.mkdir()
    log = tmp_path / "node.log"
    env = {**os.environ, "NODECTL_NOOP_DELAY_MS": "3000", "NODECTL_NOOP_LOG_LEVEL": "debug"}
    node_proc = subprocess.Popen([str(build_dir / "bench/nodectl_noop"), str(kube.kubeconfig),
                                  node, str(results), "1"], env=env, stdout=subprocess.PIPE,
                                 stderr=open(log, "w"), text=True)
    try:
        wait_for(lambda: "running" in log.read_text(), what="node controller up")
        make_pod(core, pod, node=node, ns=ns)
        make_request(custom, req, pod, ns=ns)
        wait_phase(custom, req, "Checkpointing", timeout=30, ns=ns)
        kube.stop_apiserver()  # the 3 s checkpoint ends while it is down
        try:
            time.sleep(4.5)
        finally:
            kube.start_apiserver()
        obj = wait_phase(custom, req, "Succeeded", timeout=60, ns=ns)
        assert obj["status"]["artifactURI"].endswith(obj["status"]["checkpointID"])
        assert "recording the checkpoint again" in log.read_text()
    finally:
        node_proc.send_signal(signal.SIGTERM)
        out, _ = node_proc.communicate(timeout=30)
        assert op.stop() == 0, op.text()
    assert node_proc.returncode == 0, log.read_text()
    assert json.loads(out.strip().splitlines()[-1]) == {"checkpoints": 1, "errors": 0}


def test_election_timing_is_checked(build_dir, kube, k8s):
    p = subprocess.run([str(build_dir / "cmd/kybernate-operator"),
                        f"--kubeconfig={kube.kubeconfig}", "--metrics-address=",
                        "--lease-namespace", NS, "--lease-name", unique("lease"),
                        "--lease-duration", "5s", "--renew-deadline", "10s"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert "renew deadline (10000 ms) < lease duration (5000 ms)" in p.stderr, p.stderr


# ---- RestoreRequest -------------------------------------------------------------


def succeed_checkpoint(custom, name, uri):
    """Moves a Scheduled request to Succeeded the way agent and sidecar do."""
    obj = wait_phase(custom, name, "Scheduled")
    obj["status"].update({"phase": "Succeeded", "artifactURI": uri,
                          "archiveSHA256": "0" * 64, "archiveBytes": 123})
    custom.replace_namespaced_custom_object_status("kybernate.io", "v1alpha1", NS,
                                                   "checkpointrequests", name, obj)


def make_restore(custom, name, **spec):
    spec.setdefault("timeoutSeconds", 60)  # the module's operator defaults to 8 s
    body = {"apiVersion": "kybernate.io/v1alpha1", "kind": "RestoreRequest",
            "metadata": {"name": name}, "spec": spec}
    return custom.create_namespaced_custom_object("kybernate.io", "v1alpha1", NS,
                                                  "restorerequests", body)


def get_restore(custom, name):
    return custom.get_namespaced_custom_object("kybernate.io", "v1alpha1", NS,
                                               "restorerequests", name)


def wait_restore(custom, name, phase, timeout=20):
    end = time.monotonic() + timeout
    while True:
        obj = get_restore(custom, name)
        got = obj.get("status", {}).get("phase")
        if got == phase:
            return obj
        assert time.monotonic() < end, f"{name}: phase {got}, want {phase}: {obj.get('status')}"
        time.sleep(0.1)


def pod_status(core, name, init_state, main_state=None, phase="Pending"):
    st = {"phase": phase,
          "initContainerStatuses": [{"name": "kybernate-fetch", "ready": False, "restartCount": 0,
                                     "image": "x", "imageID": "", "state": init_state}]}
    if main_state:
        st["containerStatuses"] = [
            {"name": c, "ready": True, "restartCount": 0, "image": "x", "imageID": "",
             "containerID": f"containerd://{uuid.uuid4().hex}", "state": main_state}
            for c in ("app", "kybernate-sidecar")]
    core.patch_namespaced_pod_status(name, NS, {"status": st})


def test_restore_lifecycle(operator, k8s):
    core, custom = k8s
    pod, req, rst = unique("src"), unique("ckpt"), unique("rst")
    body = {"metadata": {"name": pod},
            "spec": {"nodeName": "node-a", "automountServiceAccountToken": False,
                     "containers": [
                         {"name": "app", "image": "busybox:local"},
                         {"name": "kybernate-sidecar", "image": "sidecar:local",
                          "volumeMounts": [{"name": "artifacts", "mountPath": "/artifacts"}]}],
                     "volumes": [{"name": "artifacts", "hostPath": {"path": "/srv/artifacts"}}]}}
    core.create_namespaced_pod(NS, body)
    set_running(core, pod)
    make_request(custom, req, pod)
    make_restore(custom, rst, source={"checkpointRequestName": req},
                 gpuMapping={"policy": "SameUUID"},
                 podTemplate={"labels": {"team": "a"}, "annotations": {"note": "x"}})
    time.sleep(1.5)
    assert get_restore(custom, rst)["status"]["phase"] == "Pending"  # source not done

    uri = f"file:///artifacts/{req}.tar.zst"
    succeed_checkpoint(custom, req, uri)
    st = wait_restore(custom, rst, "Scheduled")["status"]
    new = core.read_namespaced_pod(st["restoredPodName"], NS)
    assert st["restoredPodName"].startswith(f"{pod}-restored-")
    assert st["artifactURI"] == uri and st["checkpointID"].startswith(req)
    assert new.spec.runtime_class_name == "kybernate"
    assert new.spec.node_name == "node-a"  # SameUUID: the checkpoint's node
    assert new.metadata.annotations["kybernate.io/restore-from"] == uri
    assert new.metadata.annotations["kybernate.io/gpu-mapping"] == "SameUUID"
    assert new.metadata.annotations["note"] == "x"
    assert new.metadata.labels == {"team": "a", "kybernate.io/restore-request": rst}
    fetch = new.spec.init_containers[0]
    assert fetch.name == "kybernate-fetch" and fetch.args[:2] == ["fetch", f"--source={uri}"]
    assert {m.mount_path for m in fetch.volume_mounts} == {"/var/lib/kybernate/restore",
                                                          "/artifacts"}
    assert [c.name for c in new.spec.containers] == ["app", "kybernate-sidecar"]
    assert {v.name for v in new.spec.volumes} >= {"artifacts", "kybernate-restore"}

    name = st["restoredPodName"]
    pod_status(core, name, {"running": {}})
    wait_restore(custom, rst, "Fetching")
    pod_status(core, name, {"terminated": {"exitCode": 0, "reason": "Completed"}},
               {"waiting": {"reason": "ContainerCreating"}})
    wait_restore(custom, rst, "Restoring")
    pod_status(core, name, {"terminated": {"exitCode": 0, "reason": "Completed"}},
               {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, phase="Running")
    obj = wait_restore(custom, rst, "Succeeded")
    conds = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conds == {"Scheduled": "True", "Fetched": "True", "Restored": "True", "Ready": "True"}
    assert obj["status"]["nodeName"] == "node-a" and obj["status"]["completionTime"]
    reasons = [e.reason for e in events_for(core, rst, reason="PodCreated")]
    assert reasons.count("PodCreated") == 1, reasons


def test_restore_fetch_failure(operator, k8s):
    core, custom = k8s
    pod, req, rst = unique("src"), unique("ckpt"), unique("rst")
    make_pod(core, pod)
    make_request(custom, req, pod)
    succeed_checkpoint(custom, req, "s3://bucket/prefix/x.tar.zst")
    make_restore(custom, rst, source={"checkpointRequestName": req},
                 podTemplate={"name": unique("named")}, targetNodeName="node-b")
    st = wait_restore(custom, rst, "Scheduled")["status"]
    assert core.read_namespaced_pod(st["restoredPodName"], NS).spec.node_name == "node-b"
    pod_status(core, st["restoredPodName"],
               {"terminated": {"exitCode": 1, "reason": "Error",
                               "message": "verify: checkpoint/pages-1.img: SHA-256 mismatch"}})
    obj = wait_restore(custom, rst, "Failed")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "FetchFailed"
    assert "fetch exited with 1: verify: checkpoint/pages-1.img: SHA-256 mismatch" in \
        obj["status"]["message"]


def test_restore_pod_rejected_by_admission(operator, kube, k8s):
    core, custom = k8s
    pod, req, rst = unique("src"), unique("ckpt"), unique("rst")
    make_pod(core, pod)
    make_request(custom, req, pod)
    succeed_checkpoint(custom, req, "s3://bucket/prefix/z.tar.zst")
    # without the RuntimeClass, admission rejects the restore pod
    from kubernetes import client
    node_api = client.NodeV1Api(kube.api_client())
    node_api.delete_runtime_class("kybernate")
    try:
        make_restore(custom, rst, source={"checkpointRequestName": req})
        obj = wait_restore(custom, rst, "Failed")
    finally:
        kube.ensure_runtime_class("kybernate")
    assert obj["status"]["message"].startswith("creating pod ")
    assert 'RuntimeClass "kybernate" not found' in obj["status"]["message"]
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodRejected"


def test_restore_from_artifact_uri(operator, k8s, tmp_path):
    """A RestoreRequest naming only an archive (a deleted request's, another
    cluster's): the pod spec comes from <id>.pod.json beside the archive."""
    core, custom = k8s
    rst = unique("rst")
    spec = {"containers": [{"name": "app", "image": "busybox:local"},
                           {"name": "kybernate-sidecar", "image": "sidecar:local"}],
            "automountServiceAccountToken": False}
    (tmp_path / "Ck_7.tar.zst").write_bytes(b"archive")
    (tmp_path / "Ck_7.pod.json").write_text(json.dumps(spec))
    uri = f"file://{tmp_path}/Ck_7.tar.zst"
    make_restore(custom, rst, source={"artifactURI": uri})
    st = wait_restore(custom, rst, "Scheduled")["status"]
    assert st["checkpointID"] == "Ck_7" and st["artifactURI"] == uri
    assert st["restoredPodName"].startswith("ck-7-restored-")
    pod = core.read_namespaced_pod(st["restoredPodName"], NS)
    assert [c.name for c in pod.spec.init_containers] == ["kybernate-fetch"]
    assert pod.spec.init_containers[0].args[1] == f"--source={uri}"
    assert [c.name for c in pod.spec.containers] == ["app", "kybernate-sidecar"]
    assert pod.metadata.annotations["kybernate.io/checkpoint-id"] == "Ck_7"


def test_restore_bad_sources(operator, k8s):
    core, custom = k8s
    a, b, c = unique("rst"), unique("rst"), unique("rst")
    make_restore(custom, a, source={"checkpointRequestName": "no-such-request"})
    # an archive without the pod spec the node agent leaves beside it
    make_restore(custom, b, source={"artifactURI": "file:///nonexistent-dir/ck-1.tar.zst"})
    oa, ob = wait_restore(custom, a, "Failed"), wait_restore(custom, b, "Failed")
    assert oa["status"]["message"] == "CheckpointRequest no-such-request not found"
    assert ob["status"]["message"].startswith(
        "reading the pod spec file:///nonexistent-dir/ck-1.pod.json: "), ob["status"]
    ready = next(c for c in ob["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SourceIncomplete"

    # a pod of the requested name that is not ours
    pod, req, taken = unique("src"), unique("ckpt"), unique("taken")
    make_pod(core, pod)
    make_pod(core, taken)
    make_request(custom, req, pod)
    succeed_checkpoint(custom, req, "s3://bucket/prefix/y.tar.zst")
    make_restore(custom, c, source={"checkpointRequestName": req}, podTemplate={"name": taken})
    oc = wait_restore(custom, c, "Failed")
    assert oc["status"]["message"] == f"pod {taken} already exists"


# ---- CheckpointPolicy -------------------------------------------------------------


def make_policy(custom, name, app, artifacts, **extra):
    spec = {"selector": {"matchLabels": {"app": app}},
            "triggers": {"schedule": {"intervalSeconds": 60}},
            "retention": {"maxCount": 1},
            "storage": {"uri": f"file://{artifacts}"},
            "defaultOptions": {"leaveRunning": True}}
    spec.update(extra)
    return custom.create_namespaced_custom_object(
        "kybernate.io", "v1alpha1", NS, "checkpointpolicies",
        {"apiVersion": "kybernate.io/v1alpha1", "kind": "CheckpointPolicy",
         "metadata": {"name": name}, "spec": spec})


def get_policy(custom, name):
    return custom.get_namespaced_custom_object("kybernate.io", "v1alpha1", NS,
                                               "checkpointpolicies", name)


def policy_requests(custom, name):
    items = custom.list_namespaced_custom_object(
        "kybernate.io", "v1alpha1", NS, "checkpointrequests",
        label_selector=f"kybernate.io/policy={name}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["creationTimestamp"])


def wait_for(pred, timeout=20, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < end, \
            f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.2)


def on_conflict_retry(fn, attempts=20):
    """Writes racing the operator's status writes: read again and retry."""
    from kubernetes.client.rest import ApiException
    for i in range(attempts):
        try:
            return fn()
        except ApiException as e:
            if e.status != 409 or i == attempts - 1:
                raise
            time.sleep(0.1)


def finish(custom, req, artifacts, size=100):
    """The node side of a policy's request: Scheduled -> Succeeded with an
    archive on the shared volume."""
    name = req["metadata"]["name"]
    wait_phase(custom, name, "Scheduled")

    def write():
        obj = get_request(custom, name)
        path = artifacts / f"{obj['status']['checkpointID']}.tar.zst"
        path.write_bytes(b"z" * size)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        obj["status"].update({"phase": "Succeeded", "artifactURI": f"file://{path}",
                              "archiveSHA256": "0" * 64, "archiveBytes": size,
                              "completionTime": now})
        custom.replace_namespaced_custom_object_status("kybernate.io", "v1alpha1", NS,
                                                       "checkpointrequests", name, obj)
        return path
    path = on_conflict_retry(write)
    return path


def fast_forward(custom, name, seconds=59):
    """Simulated time: pretend the last run was SECONDS ago."""
    def write():
        pol = get_policy(custom, name)
        past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))
        pol["status"]["lastRunTime"] = past
        custom.replace_namespaced_custom_object_status("kybernate.io", "v1alpha1", NS,
                                                       "checkpointpolicies", name, pol)
    on_conflict_retry(write)


def test_policy_schedule_retention_suspend_delete(operator, k8s, tmp_path):
    core, custom = k8s
    app, pol = unique("app"), unique("pol")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    pods = [unique("p"), unique("p")]
    for p in pods:
        make_pod(core, p)
        core.patch_namespaced_pod(p, NS, {"metadata": {"labels": {"app": app}}})
    make_pod(core, unique("other"))  # not selected
    make_policy(custom, pol, app, artifacts)

    # first run at once: one request per matching pod
    first = wait_for(lambda: len(policy_requests(custom, pol)) == 2 and
                     policy_requests(custom, pol),
                     what=lambda: f"first run: {get_policy(custom, pol).get('status')}")
    assert sorted(r["spec"]["podName"] for r in first) == sorted(pods)
    r0 = first[0]
    assert r0["spec"]["policyRef"] == {"name": pol}
    assert r0["spec"]["options"]["leaveRunning"] is True
    assert r0["spec"]["storage"]["uri"] == f"file://{artifacts}"
    st = wait_for(lambda: get_policy(custom, pol).get("status", {}).get("matchedPods") == 2 and
                  get_policy(custom, pol)["status"], what="policy status")
    assert st["lastRunTime"] and st["nextRunTime"] > st["lastRunTime"]
    assert st["lastRequestName"] in [r["metadata"]["name"] for r in first]
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"Ready": "True", "Suspended": "False", "TriggersSupported": "True"}

    old_paths = [finish(custom, r, artifacts) for r in first]
    fast_forward(custom, pol)
    second = wait_for(lambda: len(policy_requests(custom, pol)) == 4 and
                      policy_requests(custom, pol), what="second run")
    new = [r for r in second if r["metadata"]["name"] not in
           {x["metadata"]["name"] for x in first}]
    assert sorted(r["spec"]["podName"] for r in new) == sorted(pods)
    assert all(p.exists() for p in old_paths)  # the newest of each pod stays

    # a due run skips pods whose request is still running
    fast_forward(custom, pol)
    time.sleep(3)
    assert len(policy_requests(custom, pol)) == 4

    # suspend: due runs create nothing
    on_conflict_retry(lambda: custom.patch_namespaced_custom_object(
        "kybernate.io", "v1alpha1", NS, "checkpointpolicies", pol, {"spec": {"suspend": True}}))
    st = wait_for(lambda: any(c["type"] == "Suspended" and c["status"] == "True"
                              for c in get_policy(custom, pol)["status"]["conditions"]) and
                  get_policy(custom, pol)["status"], what="suspended")
    assert "nextRunTime" not in st

    # retention (maxCount 1) still applies: the first run's requests and archives go
    new_paths = [finish(custom, r, artifacts) for r in new]
    wait_for(lambda: {r["metadata"]["name"] for r in policy_requests(custom, pol)} ==
             {r["metadata"]["name"] for r in new}, what="retention")
    assert not any(p.exists() for p in old_paths) and all(p.exists() for p in new_paths)
    st = wait_for(lambda: get_policy(custom, pol)["status"].get("liveCheckpoints") == 2 and
                  get_policy(custom, pol)["status"], what="live count")
    assert st["totalBytes"] == 200 and st["lastSuccessTime"]
    wait_for(lambda: [e.reason for e in events_for(core, pol)].count("RetentionDeleted") == 2,
             what="two RetentionDeleted events")
    fast_forward(custom, pol, seconds=120)
    time.sleep(3)
    assert len(policy_requests(custom, pol)) == 2

    # deleting the policy stops its schedule: due in 3 s, resumed, deleted at once
    fast_forward(custom, pol, seconds=57)
    on_conflict_retry(lambda: custom.patch_namespaced_custom_object(
        "kybernate.io", "v1alpha1", NS, "checkpointpolicies", pol, {"spec": {"suspend": False}}))
    custom.delete_namespaced_custom_object("kybernate.io", "v1alpha1", NS,
                                           "checkpointpolicies", pol)
    time.sleep(5)
    assert len(policy_requests(custom, pol)) == 2


def test_policy_node_drain_and_before_termination(operator, k8s, tmp_path):
    core, custom = k8s
    app, pol = unique("app"), unique("pol")
    node = unique("drain-node")
    core.create_node({"metadata": {"name": node}})
    try:
        on_node, elsewhere = unique("p"), unique("p")
        make_pod(core, on_node, node=node)
        make_pod(core, elsewhere, node="node-a")
        for p in (on_node, elsewhere):
            core.patch_namespaced_pod(p, NS, {"metadata": {"labels": {"app": app}}})
        make_policy(custom, pol, app, tmp_path, triggers={"onNodeDrain": True,
                                                          "beforeTermination": True})
        # beforeTermination: every matched pod is marked for the shim
        wait_for(lambda: all((core.read_namespaced_pod(p, NS).metadata.annotations or {}).get(
            "kybernate.io/checkpoint-before-termination") == pol for p in (on_node, elsewhere)),
            what="before-termination marks")
        time.sleep(1)
        assert policy_requests(custom, pol) == []  # no schedule, nothing cordoned

        # cordon the node: its pod (only) is checkpointed, once
        core.patch_node(node, {"spec": {"unschedulable": True}})
        reqs = wait_for(lambda: policy_requests(custom, pol), what="drain request")
        assert [r["spec"]["podName"] for r in reqs] == [on_node]
        uid = core.read_namespaced_pod(on_node, NS).metadata.uid
        assert reqs[0]["metadata"]["name"] == f"{pol}-{on_node}-drain-{uid[:8]}"
        finish(custom, reqs[0], tmp_path)
        core.patch_node(node, {"spec": {"unschedulable": False}})
        core.patch_node(node, {"spec": {"unschedulable": True}})
        time.sleep(2)
        assert len(policy_requests(custom, pol)) == 1
    finally:
        core.delete_node(node)


def test_policy_on_preemption_is_reported_unsupported(operator, k8s, tmp_path):
    core, custom = k8s
    pol, ok = unique("pol"), unique("pol")
    make_policy(custom, pol, unique("app"), tmp_path, triggers={"onPreemption": True})
    make_policy(custom, ok, unique("app"), tmp_path, triggers={"onNodeDrain": True})

    def cond(name):
        st = get_policy(custom, name).get("status", {})
        return next((c for c in st.get("conditions", []) if c["type"] == "TriggersSupported"),
                    None)
    c = wait_for(lambda: cond(pol), what="TriggersSupported on the preemption policy")
    assert (c["status"], c["reason"]) == ("False", "OnPreemptionNotSupported")
    assert "no signal before a pod is preempted" in c["message"]
    evs = events_for(core, pol, reason="OnPreemptionNotSupported")
    assert [e.type for e in evs if e.reason == "OnPreemptionNotSupported"] == ["Warning"]
    c = wait_for(lambda: cond(ok), what="TriggersSupported on the drain policy")
    assert (c["status"], c["reason"]) == ("True", "Supported")
    # switching the trigger off clears the condition
    on_conflict_retry(lambda: custom.patch_namespaced_custom_object(
        "kybernate.io", "v1alpha1", NS, "checkpointpolicies", pol,
        {"spec": {"triggers": {"onPreemption": False, "onNodeDrain": True}}}))
    wait_for(lambda: cond(pol)["status"] == "True", what="condition cleared")
