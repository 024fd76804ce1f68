# SPDX-License-Identifier: Apache-2.0
"""Checkpoint and restore of containerd containers through kybernate-agent
(python3-grpcio as the client): the agent finds the container's runc state,
dumps it with `runc checkpoint` and restores it with `runc restore -d` under
a new container ID. Real containerd + runc + CRIU from tests/env; the
workload is a busybox shell counting into a file in a bind-mounted host
directory, so that continuing (not restarting) is visible from outside."""
import json
import os
import pathlib
import shutil
import subprocess
import time
import uuid

import grpc
import pytest

from rpc_peer import Process, stream, unary

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

AGENT = "/kybernate.agent.v1.Agent/"
NS = "default"
BUNDLE_LABEL = "kybernate.io/runc-bundle"
# Counts into /data/count, replaced atomically so a reader never sees it empty.
COUNTER = ("i=0; while true; do i=$((i+1)); echo $i > /data/count.tmp; "
           "mv /data/count.tmp /data/count; sleep 0.05; done")


def runc_root(containerd, ns=NS):
    # containerd's runc shim appends the namespace to its Root option, and
    # ctr run --runc-root gives it runc_root_for(ns): <runc>/<ns>/<ns>.
    return os.path.join(containerd.runc_root_for(ns), ns)


def runc_root_template(containerd):
    # A candidate that does not exist first: the agent must try the next.
    return (f"/run/kyb-test-no-such-root/{{namespace}}:"
            f"{containerd.runc_root_for('{namespace}')}/{{namespace}}")


class Agent:
    def __init__(self, build_dir, tmp, pb2, containerd, store=None, extra=()):
        self.pb2 = pb2
        self.sock = str(tmp / "agent.sock")
        self.store = pathlib.Path(store or tmp / "store")
        argv = [str(build_dir / "cmd/kybernate-agent"), "--config", "", "--socket-path",
                self.sock, "--store-dir", str(self.store), "--work-dir", str(tmp / "work"),
                "--metrics-address", "", "--shutdown-grace", "5s",
                "--runc-root", runc_root_template(containerd), *extra]
        self.proc = Process(argv, self.sock)
        self.channel = grpc.insecure_channel(f"unix:{self.sock}")
        grpc.channel_ready_future(self.channel).result(timeout=30)

    def stop(self):
        self.channel.close()
        return self.proc.stop()

    def checkpoint(self, cid, timeout=120, **req):
        a = self.pb2.agent
        call = stream(self.channel, AGENT + "Checkpoint", a.CheckpointRequest,
                      a.CheckpointProgress)
        target = a.Target(container=a.ContainerTarget(namespace=NS, id=cid))
        msgs = list(call(a.CheckpointRequest(target=target, **req), timeout=timeout))
        assert msgs[-1].step == a.STEP_DONE and msgs[-1].HasField("result")
        return msgs

    def restore(self, checkpoint_id, new_id=None, timeout=120, **opts):
        a = self.pb2.agent
        if new_id:
            opts["container"] = a.ContainerTarget(namespace=NS, id=new_id)
        call = stream(self.channel, AGENT + "Restore", a.RestoreRequest, a.RestoreProgress)
        msgs = list(call(a.RestoreRequest(checkpoint_id=checkpoint_id,
                                          options=a.RestoreOptions(**opts)), timeout=timeout))
        assert msgs[-1].HasField("result")
        return msgs[-1].result

    def get(self, checkpoint_id):
        a = self.pb2.agent
        return unary(self.channel, AGENT + "GetCheckpoint", a.GetCheckpointRequest,
                     a.CheckpointInfo)(a.GetCheckpointRequest(checkpoint_id=checkpoint_id),
                                       timeout=30)

    def list_ids(self):
        a = self.pb2.agent
        resp = unary(self.channel, AGENT + "ListCheckpoints", a.ListCheckpointsRequest,
                     a.ListCheckpointsResponse)(a.ListCheckpointsRequest(), timeout=30)
        return [c.id for c in resp.checkpoints]


class Containers:
    """Busybox counters started through ctr, plus the containers the agent
    restores under runc alone; everything is removed afterwards."""

    def __init__(self, containerd, tmp):
        self.c, self.tmp = containerd, tmp
        self.started, self.restored = [], []

    def start(self, script=COUNTER, name="ctr"):
        cid = f"kyb-{name}-{uuid.uuid4().hex[:8]}"
        data = self.tmp / f"data-{cid}"
        data.mkdir()
        pid = self.c.start_container("busybox", cid, "sh", "-c", script, extra=(
            "--null-io", "--mount", f"type=bind,src={data},dst=/data,options=rbind:rw"))
        self.started.append(cid)
        return cid, pid, data / "count"

    def runc(self, *args, check=True):
        return subprocess.run(["runc", "--root", runc_root(self.c), *args], capture_output=True,
                              text=True, timeout=60, check=check)

    def state(self, cid):
        return json.loads(self.runc("state", cid).stdout)

    def cleanup(self):
        for cid in self.restored:
            pid = self.runc("state", cid, check=False)
            self.runc("kill", cid, "KILL", check=False)
            if pid.returncode == 0:
                wait_dead(json.loads(pid.stdout)["pid"])
            self.runc("delete", "--force", cid, check=False)
        for cid in self.started:
            self.c.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False, timeout=15)
            deadline = time.monotonic() + 10
            while self.c.tasks().get(cid, (0, "STOPPED"))[1] != "STOPPED":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.c.ctr("tasks", "delete", "-f", cid, check=False, timeout=15)
            self.c.ctr("containers", "rm", cid, check=False, timeout=15)


@pytest.fixture
def agent(build_dir, tmp_path, pb2, containerd):
    ag = Agent(build_dir, tmp_path, pb2, containerd)
    yield ag
    rc, _, err = ag.stop()
    assert rc == 0, err


# Depends on the agent so that it goes first: the agent reaps what it restored.
@pytest.fixture
def containers(agent, containerd, tmp_path):
    cs = Containers(containerd, tmp_path)
    yield cs
    cs.cleanup()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def wait_dead(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def count(path):
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def wait_count(path, above, timeout=20):
    deadline = time.monotonic() + timeout
    while (n := count(path)) <= above:
        assert time.monotonic() < deadline, f"counter stuck at {n} (waiting for > {above})"
        time.sleep(0.02)
    return n


def assert_counting(path, timeout=20):
    n = count(path)
    wait_count(path, n + 3, timeout)


def expect_error(fn, code, *fragments):
    with pytest.raises(grpc.RpcError) as exc:
        fn()
    assert exc.value.code() == code, exc.value.details()
    for f in fragments:
        assert f in exc.value.details(), exc.value.details()
    return exc.value.details()


def test_stop_then_restore_under_new_id_continues(agent, containers, pb2):
    a = pb2.agent
    cid, pid, counter = containers.start()
    before = wait_count(counter, 5)
    bundle = containers.state(cid)["bundle"]

    msgs = agent.checkpoint(cid, checkpoint_id="ctr-stop")
    steps = [m.step for m in msgs]
    assert steps[:3] == [a.STEP_VALIDATE, a.STEP_RESOLVE, a.STEP_CRIU_DUMP]
    assert a.STEP_PUBLISH in steps and steps[-1] == a.STEP_DONE
    # The agent returned only once the init was gone.
    assert not alive(pid)
    assert containers.state(cid)["status"] == "stopped"
    stopped_at = count(counter)
    time.sleep(0.3)
    assert count(counter) == stopped_at, "the container kept counting after its checkpoint"

    info = agent.get("ctr-stop")
    assert info.target.container.namespace == NS and info.target.container.id == cid
    assert info.labels[BUNDLE_LABEL] == bundle
    ckpt_dir = agent.store / "ctr-stop"
    spec = json.loads((ckpt_dir / "spec.dump").read_text())
    assert spec == json.loads((pathlib.Path(bundle) / "config.json").read_text())
    manifest = json.loads((ckpt_dir / "manifest.json").read_text())
    assert "spec.dump" in [f["path"] for f in manifest["files"]]
    assert any(f["path"] == "checkpoint/inventory.img" for f in manifest["files"])

    # The original ID is still taken (containerd keeps its stopped task).
    expect_error(lambda: agent.restore("ctr-stop"), grpc.StatusCode.ALREADY_EXISTS,
                 f"container {NS}/{cid} already exists")

    new_id = cid + "-r"
    containers.restored.append(new_id)
    res = agent.restore("ctr-stop", new_id=new_id)
    assert res.container.namespace == NS and res.container.id == new_id
    assert alive(res.pid)
    st = containers.state(new_id)
    assert st["status"] == "running" and st["pid"] == res.pid and st["bundle"] == bundle
    # It goes on from where it was: never below the count at checkpoint time.
    seen = []
    deadline = time.monotonic() + 20
    while not seen or seen[-1] <= stopped_at + 5:
        assert time.monotonic() < deadline, f"restored counter not counting: {seen[-5:]}"
        seen.append(count(counter))
        time.sleep(0.01)
    assert min(seen) >= before, f"counter restarted: {seen[:10]}"
    # The checkpoint is untouched by the restore and can be read again.
    assert agent.get("ctr-stop").manifest_sha256 == info.manifest_sha256


def test_leave_running_keeps_container(agent, containers, pb2):
    cid, pid, counter = containers.start()
    wait_count(counter, 3)
    agent.checkpoint(cid, checkpoint_id="ctr-live",
                     options=pb2.agent.CheckpointOptions(leave_running=True))
    assert alive(pid)
    st = containers.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    assert_counting(counter)
    assert agent.list_ids() == ["ctr-live"]


def test_unknown_and_stopped_containers(agent, containers, pb2):
    expect_error(lambda: agent.checkpoint("no-such-container"), grpc.StatusCode.NOT_FOUND,
                 f"container {NS}/no-such-container not found under",
                 "/run/kyb-test-no-such-root/default")
    cid, _pid, _ = containers.start(script="true", name="done")
    deadline = time.monotonic() + 10
    while containers.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    expect_error(lambda: agent.checkpoint(cid), grpc.StatusCode.FAILED_PRECONDITION,
                 "is stopped, not running")
    expect_error(lambda: agent.checkpoint(cid, options=pb2.agent.CheckpointOptions(
        pre_dump=True)), grpc.StatusCode.UNIMPLEMENTED, "pre_dump")
    assert agent.list_ids() == []


def _assert_failed_cleanly(agent, containers, cid, pid, counter, store):
    assert alive(pid)
    assert containers.state(cid)["status"] == "running"
    assert_counting(counter)
    assert agent.list_ids() == []
    assert [p.name for p in store.iterdir() if p.name != ".lock"] == []


def test_criu_failure_mid_dump_leaves_container_running(build_dir, tmp_path, pb2, containerd):
    # 30 MB of shell memory do not fit an 8 MB store: CRIU fails while the
    # container is frozen, in the middle of writing its pages.
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    ag = cs = None
    try:
        ag = Agent(build_dir, tmp_path, pb2, containerd, store=small / "store")
        cs = Containers(containerd, tmp_path)
        cid, pid, counter = cs.start(
            script='x=$(head -c 30000000 /dev/zero | tr "\\0" a); ' + COUNTER, name="big")
        wait_count(counter, 3)
        details = expect_error(lambda: ag.checkpoint(cid, checkpoint_id="too-big"),
                               grpc.StatusCode.INTERNAL, f"runc checkpoint {NS}/{cid}",
                               "criu: Error (", "No space left on device")
        assert "dump.log" in details
        _assert_failed_cleanly(ag, cs, cid, pid, counter, small / "store")
    finally:
        if cs:
            cs.cleanup()
        if ag:
            ag.stop()
        subprocess.run(["umount", "-l", str(small)])


def test_runc_failure_leaves_container_running(build_dir, tmp_path, pb2, containerd):
    fake = tmp_path / "runc-failing-checkpoint"
    fake.write_text("#!/bin/sh\n"
                    "for a in \"$@\"; do\n"
                    "  if [ \"$a\" = checkpoint ]; then\n"
                    "    echo '{\"level\":\"error\",\"msg\":\"injected failure\"}' >&2; exit 1\n"
                    "  fi\n"
                    "done\n"
                    f"exec {shutil.which('runc')} \"$@\"\n")
    fake.chmod(0o755)
    ag = cs = None
    try:
        ag = Agent(build_dir, tmp_path, pb2, containerd, extra=("--runc-path", str(fake)))
        cs = Containers(containerd, tmp_path)
        cid, pid, counter = cs.start()
        wait_count(counter, 3)
        expect_error(lambda: ag.checkpoint(cid, checkpoint_id="no-runc"),
                     grpc.StatusCode.INTERNAL,
                     f"runc checkpoint {NS}/{cid}: runc exited with code 1: injected failure")
        _assert_failed_cleanly(ag, cs, cid, pid, counter, ag.store)
    finally:
        if cs:
            cs.cleanup()
        if ag:
            ag.stop()
