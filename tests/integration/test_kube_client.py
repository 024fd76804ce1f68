# SPDX-License-Identifier: Apache-2.0
"""src/lib/kube against the real etcd + kube-apiserver of tests/env:
CRUD with typed errors, paging, conflicts, patches, preconditions, watches
(410 included), the informer across an API server restart, Events and
leader election (docs/operator.md)."""
import json
import signal
import subprocess
import threading
import time
import uuid

import pytest

NS = "kube-client"


@pytest.fixture(scope="module")
def driver(build_dir, kube, kybernate_crds):
    path = build_dir / "tests/integration/kube/kube_driver"
    if not path.exists():
        pytest.fail(f"{path} missing: build the project first", pytrace=False)
    kube.ensure_namespace(NS)

    def run(*args, ok=True, timeout=60):
        p = subprocess.run([str(path), str(kube.kubeconfig), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout)
        if ok:
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout) if p.stdout.strip() else None
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        errno_part, _, msg = p.stderr.strip().partition(" ")
        return int(errno_part.split("=")[1]), msg
    run.path = str(path)
    return run


def ckpt(name, pod="p1", **extra):
    spec = {"podName": pod, "storage": {"uri": "s3://bucket/x"}}
    spec.update(extra)
    return json.dumps({"apiVersion": "kybernate.io/v1alpha1", "kind": "CheckpointRequest",
                       "metadata": {"name": name, "labels": {"t": "kube-client"}},
                       "spec": spec})


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_crud_and_typed_errors(driver):
    name = unique("crud")
    obj = driver("create", "checkpointrequests", NS, ckpt(name))
    assert obj["metadata"]["name"] == name
    # the API server applied the schema defaults
    assert obj["spec"]["options"]["gpuMode"] == "Auto"
    got = driver("get", "checkpointrequests", NS, name)
    assert got["metadata"]["uid"] == obj["metadata"]["uid"]

    assert driver("create", "checkpointrequests", NS, ckpt(name), ok=False)[0] == 17  # EEXIST
    errno_, msg = driver("get", "checkpointrequests", NS, "missing-x", ok=False)
    assert errno_ == 2 and "HTTP 404 NotFound" in msg and "missing-x" in msg  # ENOENT

    # an invalid object: the schema's message reaches the caller (EINVAL)
    errno_, msg = driver("create", "checkpointrequests", NS,
                         ckpt(unique("bad"), options={"gpuMode": "Sometimes"}), ok=False)
    assert errno_ == 22 and "HTTP 422 Invalid" in msg and "gpuMode" in msg

    # update with a stale resourceVersion: ESTALE (409 Conflict)
    stale = dict(got)
    upd = dict(got, spec=dict(got["spec"], containerName="c2"))
    new = driver("update", "checkpointrequests", json.dumps(upd))
    assert new["spec"]["containerName"] == "c2"
    stale["spec"] = dict(stale["spec"], containerName="c3")
    errno_, msg = driver("update", "checkpointrequests", json.dumps(stale), ok=False)
    assert errno_ == 116 and "409 Conflict" in msg  # ESTALE

    # status subresource: written only through /status
    new["status"] = {"phase": "Pending", "message": "from the test"}
    st = driver("status", "checkpointrequests", json.dumps(new))
    assert st["status"]["phase"] == "Pending"
    assert st["spec"]["containerName"] == "c2"

    # merge and JSON patches, on the object and on its status
    p = driver("patch", "checkpointrequests", NS, name, "merge",
               json.dumps({"metadata": {"labels": {"patched": "yes"}}}))
    assert p["metadata"]["labels"]["patched"] == "yes"
    p = driver("patch", "checkpointrequests", NS, name, "json",
               json.dumps([{"op": "replace", "path": "/status/phase", "value": "Scheduled"}]),
               "status")
    assert p["status"]["phase"] == "Scheduled"

    # delete with preconditions: a wrong uid is a conflict, the right one deletes
    errno_, msg = driver("delete", "checkpointrequests", NS, name, str(uuid.uuid4()), ok=False)
    assert errno_ == 116 and "match the UID in record" in msg
    driver("delete", "checkpointrequests", NS, name, obj["metadata"]["uid"])
    assert driver("delete", "checkpointrequests", NS, name, ok=False)[0] == 2


def test_list_pages_and_selectors(driver):
    label = unique("page")
    names = []
    for i in range(7):
        o = json.loads(ckpt(f"{label}-{i}"))
        o["metadata"]["labels"] = {"batch": label}
        driver("create", "checkpointrequests", NS, json.dumps(o))
        names.append(f"{label}-{i}")
    out = driver("list", "checkpointrequests", NS, f"batch={label}", 2)  # 4 pages
    assert sorted(i["metadata"]["name"] for i in out["items"]) == names
    assert int(out["resourceVersion"]) > 0
    assert driver("list", "checkpointrequests", "-", f"batch={label},x=y")["items"] == []


def test_unauthenticated_is_eperm(driver, kube, tmp_path):
    cfg = kube.write_kubeconfig(tmp_path / "bad.kubeconfig", "nobody", token="wrong-token")
    p = subprocess.run([driver.path, str(cfg), "get", "pods", NS, "x"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and p.stderr.startswith("errno=1 ") and "401" in p.stderr
    # a watch reports the server's Status too, not its body as a bad event
    p = subprocess.run([driver.path, str(cfg), "watch", "pods", NS, "0", "5"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and p.stderr.startswith("errno=1 "), p.stderr
    assert "401" in p.stderr and "Unauthorized" in p.stderr, p.stderr
    assert "malformed" not in p.stderr, p.stderr


def test_kubeconfig_errors_are_clear(driver, tmp_path):
    cfg = tmp_path / "exec.kubeconfig"
    cfg.write_text("""
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user:
    exec: {command: aws}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
""")
    p = subprocess.run([driver.path, str(cfg), "get", "pods", NS, "x"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "exec and auth-provider credentials are not supported" in p.stderr
    assert str(cfg) in p.stderr


def test_watch_events_in_order_and_expired_version(driver, kube):
    name = unique("watch")
    created = driver("create", "checkpointrequests", NS, ckpt(name))
    rv = created["metadata"]["resourceVersion"]
    driver("patch", "checkpointrequests", NS, name, "merge",
           json.dumps({"metadata": {"labels": {"n": "1"}}}))
    driver("delete", "checkpointrequests", NS, name)
    # watch from just before the create: ADDED is not replayed (it is at rv),
    # MODIFIED and DELETED are; the server ends the stream after 2 s
    p = subprocess.run([driver.path, str(kube.kubeconfig), "watch", "checkpointrequests", NS,
                        str(int(rv) - 1), "2"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    events = [json.loads(x) for x in p.stdout.splitlines()]
    mine = [e["event"] for e in events if e["key"] == f"{NS}/{name}"]
    assert mine == ["ADDED", "MODIFIED", "DELETED"]

    # a version etcd has compacted away: 410 Gone -> ETIME (62)
    compact_etcd(kube)
    p = subprocess.run([driver.path, str(kube.kubeconfig), "watch", "checkpointrequests", NS,
                        "1", "2"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and p.stderr.startswith("errno=62 "), p.stderr
    assert "410" in p.stderr or "too old" in p.stderr


def compact_etcd(kube):
    kube.compact_etcd()


class Lines:
    """A long-running driver command whose JSON lines are collected."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            with self.cv:
                self.lines.append(json.loads(raw))
                self.cv.notify_all()

    def wait(self, pred, timeout=30, what="line"):
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                hit = [x for x in self.lines if pred(x)]
                if hit:
                    return hit
                left = end - time.monotonic()
                assert left > 0 and self.proc.poll() is None, \
                    f"timed out waiting for {what}: {self.lines[-20:]} {self.proc.poll()}"
                self.cv.wait(min(left, 0.5))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        stderr = self.proc.stderr.read()
        assert self.proc.returncode == 0, stderr
        time.sleep(0.1)
        return self.lines


@pytest.mark.parametrize("mode", ["objects", "compact"])
def test_informer_survives_apiserver_restart_and_misses_nothing(driver, kube, mode):
    label = unique("inf")
    inf = Lines([driver.path, str(kube.kubeconfig), "informer", "checkpointrequests", NS,
                 *(["compact"] if mode == "compact" else [])])
    try:
        inf.wait(lambda x: x.get("synced"), what="synced")
        a, b = f"{label}-a", f"{label}-b"
        driver("create", "checkpointrequests", NS, ckpt(a))
        driver("create", "checkpointrequests", NS, ckpt(b))
        inf.wait(lambda x: x.get("key") == f"{NS}/{b}" and x["event"] == "add", what="add b")

        kube.stop_apiserver()
        try:
            time.sleep(1.5)  # the watch fails, relists fail, backoff runs
        finally:
            kube.start_apiserver()
        # changes made while the informer reconnects: a delete and a create
        driver("delete", "checkpointrequests", NS, a)
        c = f"{label}-c"
        driver("create", "checkpointrequests", NS, ckpt(c))
        inf.wait(lambda x: x.get("key") == f"{NS}/{a}" and x["event"] == "delete",
                 what="delete a")
        inf.wait(lambda x: x.get("key") == f"{NS}/{c}" and x["event"] == "add", what="add c")
    finally:
        lines = inf.stop()
    stats = lines[-1]
    assert stats["failures"] >= 1 and stats["watches"] >= 2, stats
    adds = [x["key"] for x in lines if x.get("event") == "add"]
    assert adds.count(f"{NS}/{b}") == 1  # the relist did not re-add an unchanged object


def test_informer_relists_after_compaction(driver, kube):
    inf = Lines([driver.path, str(kube.kubeconfig), "informer", "checkpointrequests", NS])
    try:
        inf.wait(lambda x: x.get("synced"), what="synced")
        # Expire the informer's version: stop the API server, write, compact.
        kube.stop_apiserver()
        try:
            time.sleep(0.5)
        finally:
            kube.start_apiserver()
        name = unique("relist")
        driver("create", "checkpointrequests", NS, ckpt(name))
        compact_etcd(kube)
        inf.wait(lambda x: x.get("key") == f"{NS}/{name}", what="add after compaction")
    finally:
        lines = inf.stop()
    assert lines[-1]["lists"] >= 2, lines[-1]


def test_events(driver):
    name = unique("ev")
    driver("create", "checkpointrequests", NS, ckpt(name))
    driver("event", "checkpointrequests", NS, name, "Warning", "TestReason", "hello from C")
    evs = driver("list", "events", NS)["items"]
    mine = [e for e in evs if e["involvedObject"]["name"] == name]
    assert len(mine) == 1
    e = mine[0]
    assert (e["type"], e["reason"], e["message"]) == ("Warning", "TestReason", "hello from C")
    assert e["involvedObject"]["kind"] == "CheckpointRequest"
    assert e["source"]["component"] == "kube-driver"


def test_leader_election_failover(driver, kube):
    lease = unique("lease")
    argv = lambda ident: [driver.path, str(kube.kubeconfig), "leader", NS, lease, ident,  # noqa
                          "3000", "2000", "300"]
    a = Lines(argv("a"))
    try:
        a.wait(lambda x: x.get("leader") == "started", what="a leads")
        b = Lines(argv("b"))
        try:
            time.sleep(4)  # longer than the lease: a renews, so b must not lead
            assert not [x for x in b.lines if x.get("leader") == "started"]
            lease_obj = driver("get", "leases", NS, lease)
            assert lease_obj["spec"]["holderIdentity"] == "a"
            # a dies without releasing: b takes over after the lease duration
            a.proc.kill()
            a.proc.wait()
            killed = time.monotonic()
            b.wait(lambda x: x.get("leader") == "started", timeout=15, what="b leads")
            took = time.monotonic() - killed
            assert took < 3.0 + 1.5, took
            lease_obj = driver("get", "leases", NS, lease)
            assert lease_obj["spec"]["holderIdentity"] == "b"
            assert lease_obj["spec"]["leaseTransitions"] >= 1
        finally:
            lines = b.stop()
        # a graceful stop releases the lease at once
        assert lines[-1] == {"leader": "stopped"}
        assert "holderIdentity" not in driver("get", "leases", NS, lease)["spec"]
    finally:
        if a.proc.poll() is None:
            a.proc.kill()
