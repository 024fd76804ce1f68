# SPDX-License-Identifier: Apache-2.0
"""Smoke tests proving the test-environment fixtures are real services:
containerd runs a busybox container, the apiserver serves our CRDs with
schema validation and watch streams, the kubelet runs a pod, s3rver stores
objects, and tear-down leaves no processes, mounts, sockets or cgroups.

Run: /usr/bin/python3 -m pytest -q tests/env   (needs root and
scripts/setup.sh containerd kubernetes s3; see docs/testing.md)."""
import json
import os
import pathlib
import stat
import time
import uuid

import pytest

from env import cgroups, kubelet as kubelet_mod
from env.common import (REPO, MissingSetup, mounts_under, need_binary, pid_alive,
                        pids_matching, proc_starttime, sockets_under)
from env.stack import Stack

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test environment needs root")


def _kubelet_running():
    try:
        with open(kubelet_mod.LOCK_FILE) as f:
            held = json.load(f)
        return pid_alive(held["pid"], held.get("starttime"))
    except (OSError, ValueError, KeyError):
        return False


# Runs first, before any session fixture has started a kubelet (only one
# kubelet per host): a complete stack of its own, with a container, a pod
# and an object, torn down and checked.
def test_teardown_leaves_nothing(tmp_path):
    if _kubelet_running():
        pytest.skip("a kubelet (session fixture or scripts/testenv.py) is already running; "
                    "only one per host — the session fixtures check their own tear-down")
    for mod in ("containerd", "kube", "kubelet", "s3"):
        try:
            __import__(f"env.{mod}", fromlist=["require"]).require()
        except MissingSetup as e:
            pytest.fail(str(e), pytrace=False)
    sysctls_before = kubelet_mod.read_sysctls()
    kubelet_dir_before = os.path.exists("/var/lib/kubelet")
    stack = Stack(tmp_path / "env")
    stack.start(log=lambda *_: None)
    try:
        c, k, kl, s3 = stack.containerd, stack.kube, stack.kubelet, stack.s3
        # Something in every service: a detached container, a pod, an object.
        task_pid = c.start_container("busybox", "td-sleeper", "sleep", "600")
        k.core().create_namespaced_pod(
            "default", kl.pod_manifest("td-pod", ["sleep", "600"]))
        kl.wait_pod_phase("td-pod")
        s3.client().put_object(Bucket=s3.bucket, Key="td", Body=b"x")
        assert stat.S_ISSOCK(os.stat(kubelet_mod.DEVICE_PLUGIN_DIR + "/kubelet.sock").st_mode)

        pids = {c.proc.pid, k.etcd.pid, k.apiserver.pid, kl.proc.pid, s3.proc.pid, task_pid}
        pids.update(pids_matching(str(c.socket)))  # shims
        pids.update(pid for pid, _st in c.tasks("k8s.io").values())
        pids.update(cgroups.pids_in(c.cgroup_parent))
        tracked = {p: proc_starttime(p) for p in pids}
        assert len(pids) >= 8, pids  # 5 services, shims, container processes
        mounts = mounts_under(stack.base)
        assert mounts, "expected container rootfs mounts while running"
    finally:
        reports = stack.stop(log=lambda *_: None)

    leaks = {n: {k_: v for k_, v in r.items() if v and k_ != "pid_cmdlines"}
             for n, r in reports.items()}
    assert not any(leaks.values()), leaks
    alive = [p for p, st in tracked.items() if st is not None and pid_alive(p, st)]
    assert not alive, f"processes still alive: {alive}"
    assert not mounts_under(stack.base)
    assert not sockets_under(stack.base)
    assert not cgroups.exists(stack.containerd.cgroup_parent)
    assert not os.path.exists(f"/sys/class/net/{stack.containerd.bridge}")
    assert kubelet_mod.read_sysctls() == sysctls_before
    assert os.path.exists("/var/lib/kubelet") == kubelet_dir_before
    assert not _kubelet_running()


def test_missing_binary_names_setup_component():
    with pytest.raises(MissingSetup, match=r"scripts/setup\.sh containerd"):
        need_binary("kybernate-no-such-binary", "containerd")


# -- containerd -------------------------------------------------------------

def test_containerd_runs_busybox(containerd):
    out = containerd.run_container(
        "busybox", f"smoke-{uuid.uuid4().hex[:8]}", "sh", "-c",
        "echo hello-from-busybox; id -u; cat /proc/self/cgroup")
    lines = out.splitlines()
    assert lines[0] == "hello-from-busybox"
    assert lines[1] == "0"
    assert containerd.cgroup_parent in out  # in the environment's cgroup parent
    assert containerd.tasks() == {}  # --rm cleaned up


def test_containerd_images_imported(containerd):
    for ns in ("k8s.io", "default"):
        refs = containerd.ctr("images", "ls", "-q", namespace=ns).stdout.split()
        for ref in containerd.images.values():
            assert ref in refs, (ns, refs)


# -- kube-apiserver ---------------------------------------------------------

def _wait_cr_served(custom, group, version, plural, namespace, timeout=15):
    from kubernetes.client.rest import ApiException
    deadline = time.monotonic() + timeout
    while True:
        try:
            return custom.list_namespaced_custom_object(group, version, namespace, plural)
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_apiserver_serves_kybernate_crds(kube, kybernate_crds):
    from kubernetes import client, watch
    from kubernetes.client.rest import ApiException
    assert "checkpointrequests.kybernate.io" in kybernate_crds
    custom = client.CustomObjectsApi(kube.api_client())
    g, v, plural, ns = "kybernate.io", "v1alpha1", "checkpointrequests", "default"
    listed = _wait_cr_served(custom, g, v, plural, ns)
    rv = listed["metadata"]["resourceVersion"]

    # A valid resource is accepted (the minimal example, if present).
    example = REPO / "deploy" / "examples" / "checkpointrequest-minimal.yaml"
    if example.exists():
        import yaml
        good = yaml.safe_load(example.read_text())
    else:
        good = {"apiVersion": f"{g}/{v}", "kind": "CheckpointRequest",
                "spec": {"podName": "smoke-pod", "storage": {"uri": "file:///tmp/x"}}}
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    good["metadata"] = {"name": name, "namespace": ns}
    custom.create_namespaced_custom_object(g, v, ns, plural, good)

    # ...and streamed to a watcher.
    w = watch.Watch()
    seen = None
    for ev in w.stream(custom.list_namespaced_custom_object, g, v, ns, plural,
                       resource_version=rv, timeout_seconds=10):
        if ev["object"]["metadata"]["name"] == name:
            seen = ev["type"]
            w.stop()
    assert seen == "ADDED"

    # An invalid one is rejected by the OpenAPI schema.
    bad = {"apiVersion": f"{g}/{v}", "kind": "CheckpointRequest",
           "metadata": {"name": f"bad-{name}", "namespace": ns},
           "spec": {"podName": 12345}}
    with pytest.raises(ApiException) as ei:
        custom.create_namespaced_custom_object(g, v, ns, plural, bad)
    assert ei.value.status == 422, ei.value.body
    body = json.loads(ei.value.body)
    assert body["reason"] == "Invalid"
    assert "spec.podName" in body["message"], body["message"]
    custom.delete_namespaced_custom_object(g, v, ns, plural, name)


def test_apiserver_streams_watch_events(kube):
    from kubernetes import client, watch
    core = kube.core()
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name), data={"k": "v"}))
    core.delete_namespaced_config_map(name, "default")
    w = watch.Watch()
    types = []
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                       timeout_seconds=10):
        if ev["object"].metadata.name == name:
            types.append(ev["type"])
            if ev["type"] == "DELETED":
                w.stop()
    assert types == ["ADDED", "DELETED"]


def test_apiserver_auth(kube):
    # TLS with our CA, bearer-token auth, and anonymous requests forbidden.
    import ssl
    import urllib.error
    import urllib.request
    status, _ = kube._get("/api/v1/namespaces")
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(kube.ca_file))
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(kube.server + "/api/v1/namespaces", context=ctx, timeout=5)
    assert ei.value.code in (401, 403)
    assert kube.server.startswith("https://127.0.0.1:")


# -- kubelet ----------------------------------------------------------------

def test_kubelet_node_ready_and_pod_runs(kube, kubelet, containerd):
    core = kube.core()
    node = core.read_node(kubelet.node_name)
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert node.status.node_info.kubelet_version == "v1.20.2"
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert stat.S_ISSOCK(os.stat(os.path.join(kubelet.device_plugin_dir, "kubelet.sock")).st_mode)

    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_pod("default", kubelet.pod_manifest(
        name, ["sh", "-c", "echo hello-from-pod; exec sleep 600"],
        annotations={"kybernate.io/test": "1"}))
    t0 = time.monotonic()
    pod = kubelet.wait_pod_phase(name, timeout=60)
    assert pod.spec.host_network
    assert pod.status.container_statuses[0].ready or time.monotonic() - t0 < 60
    # The container really runs in the test containerd, and wrote its log.
    cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    assert cid in containerd.tasks("k8s.io")
    logdir = pathlib.Path(kubelet.pod_logs_dir) / f"default_{name}_{pod.metadata.uid}" / "main"
    kube.wait_for(lambda: any("hello-from-pod" in p.read_text() for p in logdir.glob("*.log")),
                  10, f"container log in {logdir}")
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    kube.wait_for(lambda: cid not in containerd.tasks("k8s.io") or
                  containerd.tasks("k8s.io")[cid][1] == "STOPPED", 30,
                  "pod container to stop")


def test_kybernate_runtime_class_passes_only_kybernate_annotations(kube, kubelet, containerd):
    core = kube.core()
    name = f"smoke-rc-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_pod("default", kubelet.pod_manifest(
        name, ["sleep", "600"], runtime_class="kybernate",
        annotations={"kybernate.io/smoke": "yes", "example.com/other": "no"}))
    pod = kubelet.wait_pod_phase(name, timeout=60)
    cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    tasks_dir = containerd.state_dir / "io.containerd.runtime.v2.task" / "k8s.io"
    spec = json.loads((tasks_dir / cid / "config.json").read_text())
    ann = spec.get("annotations", {})
    sandbox = ann["io.kubernetes.cri.sandbox-id"]
    sandbox_ann = json.loads((tasks_dir / sandbox / "config.json").read_text())["annotations"]
    for a in (ann, sandbox_ann):
        assert a.get("kybernate.io/smoke") == "yes", a
        assert "example.com/other" not in a, a
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


# -- s3 ---------------------------------------------------------------------

def test_s3_stores_and_returns_object(s3):
    c = s3.client()
    key = f"smoke/{uuid.uuid4().hex}.bin"
    body = os.urandom(256 * 1024)
    c.put_object(Bucket=s3.bucket, Key=key, Body=body)
    got = c.get_object(Bucket=s3.bucket, Key=key)
    assert got["Body"].read() == body
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=s3.bucket, Prefix="smoke/")["Contents"]]
    assert key in keys
    c.delete_object(Bucket=s3.bucket, Key=key)
    assert s3.endpoint.startswith("http://127.0.0.1:")
