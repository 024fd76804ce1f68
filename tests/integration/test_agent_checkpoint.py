# SPDX-License-Identifier: Apache-2.0
"""Checkpoint and restore through kybernate-agent's gRPC API (python3-grpcio
as the client) with real CRIU, on the zdtm-style workloads of
tests/workloads, which verify their own state after a restore. Also the
failure paths: every one must leave the workload running and the store
without a half-written checkpoint."""
import os
import pathlib
import signal
import subprocess
import threading
import time

import grpc
import pytest

from env import criu as criu_mod
from rpc_peer import Process, stream, unary

AGENT = "/kybernate.agent.v1.Agent/"


class Agent:
    def __init__(self, build_dir, tmp, pb2, store=None, extra=()):
        self.build_dir, self.tmp, self.pb2 = build_dir, tmp, pb2
        self.sock = str(tmp / "agent.sock")
        self.store = pathlib.Path(store or tmp / "store")
        self.extra = list(extra)
        self.start()

    def start(self):
        argv = [str(self.build_dir / "cmd/kybernate-agent"), "--config", "", "--socket-path",
                self.sock, "--store-dir", str(self.store), "--work-dir", str(self.tmp / "work"),
                "--metrics-address", "", "--shutdown-grace", "5s", *self.extra]
        self.proc = Process(argv, self.sock)
        self.channel = grpc.insecure_channel(f"unix:{self.sock}")
        # The socket may be a stale one of a killed agent: wait for service.
        grpc.channel_ready_future(self.channel).result(timeout=30)

    def stop(self, sig=signal.SIGTERM):
        self.channel.close()
        return self.proc.stop(sig)

    def checkpoint(self, timeout=300, **req):
        a = self.pb2.agent
        call = stream(self.channel, AGENT + "Checkpoint", a.CheckpointRequest,
                      a.CheckpointProgress)
        msgs = list(call(a.CheckpointRequest(**req), timeout=timeout))
        assert msgs[-1].step == a.STEP_DONE and msgs[-1].HasField("result")
        return msgs

    def restore(self, checkpoint_id, timeout=300, **opts):
        a = self.pb2.agent
        call = stream(self.channel, AGENT + "Restore", a.RestoreRequest, a.RestoreProgress)
        msgs = list(call(a.RestoreRequest(checkpoint_id=checkpoint_id,
                                          options=a.RestoreOptions(**opts)), timeout=timeout))
        assert msgs[-1].HasField("result")
        return msgs[-1].result

    def call(self, method, req_name, resp_name, **req):
        a = self.pb2.agent
        return unary(self.channel, AGENT + method, getattr(a, req_name),
                     getattr(a, resp_name))(getattr(a, req_name)(**req), timeout=60)

    def list_ids(self):
        resp = self.call("ListCheckpoints", "ListCheckpointsRequest", "ListCheckpointsResponse")
        return [c.id for c in resp.checkpoints]


@pytest.fixture
def agent(build_dir, tmp_path, pb2):
    ag = Agent(build_dir, tmp_path, pb2)
    yield ag
    rc, _, err = ag.stop()
    assert rc == 0, err


@pytest.fixture
def workloads(build_dir, tmp_path):
    started = []
    bins = criu_mod.workload_binaries(tmp_path / "wl-build")

    def start(name, *args, net=False):
        w = criu_mod.Workload(name, bins[name], tmp_path / f"wl-{name}-{len(started)}", args,
                              net=net)
        started.append(w)
        return w.start()

    yield start
    for w in started:
        if w.tree is not None:
            w.tree.kill()
    for pid in list(restored_pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    restored_pids.clear()


restored_pids = set()


def target(pb2, pid):
    a = pb2.agent
    return a.Target(process=a.ProcessTarget(pid=pid))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def wait_dead(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def stop_and_restore(agent, pb2, w, ckpt_id, net=False):
    """Marks progress, checkpoints (the tree stops), restores; returns the
    marked progress and the restored root pid."""
    mark = w.mark()
    root = w.tree.root
    msgs = agent.checkpoint(checkpoint_id=ckpt_id, target=target(pb2, root),
                            options=pb2.agent.CheckpointOptions(tcp_established=net))
    steps = [m.step for m in msgs]
    a = pb2.agent
    assert steps[:3] == [a.STEP_VALIDATE, a.STEP_RESOLVE, a.STEP_CRIU_DUMP]
    assert a.STEP_PUBLISH in steps
    w.tree.reap_parent(30)
    assert wait_dead(root), "dumped tree still running"
    w.tree = None
    res = agent.restore(ckpt_id)
    restored_pids.add(res.pid)
    assert alive(res.pid)
    return mark, res.pid


@pytest.mark.parametrize("name,args,net", [
    ("counter", (), False),
    ("proctree", ("--children", "3"), False),
    ("tcpconn", (), True),
    ("bigmem", ("--size", "64M"), False),
])
def test_stop_and_restore_workload(agent, pb2, workloads, name, args, net):
    w = workloads(name, *args, net=net)
    mark, _ = stop_and_restore(agent, pb2, w, f"{name}-1", net=net)
    ok, line = w.verify(min_progress=mark)
    assert ok, line
    info = agent.call("GetCheckpoint", "GetCheckpointRequest", "CheckpointInfo",
                      checkpoint_id=f"{name}-1")
    assert info.size_bytes > 0 and info.criu_version.startswith("4.")
    assert info.target.process.pid > 0


def test_leave_running_then_restore_copy(agent, pb2, workloads):
    w = workloads("counter")
    mark = w.mark()
    root = w.tree.root
    agent.checkpoint(checkpoint_id="live-1", target=target(pb2, root),
                     options=pb2.agent.CheckpointOptions(leave_running=True))
    # Still the same process, still consistent and progressing.
    assert alive(root)
    ok, line = w.verify(min_progress=mark)
    assert ok, line
    # The image restores too, once the original is gone (its PIDs are taken).
    w.tree.kill()
    w.tree = None
    res = agent.restore("live-1")
    restored_pids.add(res.pid)
    ok, line = w.verify(min_progress=mark)
    assert ok, line


def test_restored_workload_checkpoints_again(agent, pb2, workloads):
    w = workloads("counter")
    mark1, pid1 = stop_and_restore(agent, pb2, w, "gen-1")
    ok, line = w.verify(min_progress=mark1)
    assert ok, line
    # The restored process is the workload now (the agent reaps it): a
    # second generation checkpoints and restores it again.
    w.tree = criu_mod.ProcTree(pid1, _Parentless())
    mark2, _ = stop_and_restore(agent, pb2, w, "gen-2")
    assert mark2 > mark1
    ok, line = w.verify(min_progress=mark2)
    assert ok, line
    assert sorted(agent.list_ids()) == ["gen-1", "gen-2"]


class _Parentless:
    """ProcTree parent stand-in for a tree the agent reaps."""
    pid = 0

    def wait(self, timeout=None):
        return 0

    def kill(self):
        pass


def test_lazy_pages_restore(agent, pb2, workloads):
    w = workloads("bigmem", "--size", "64M")
    mark = w.mark()
    root = w.tree.root
    agent.checkpoint(checkpoint_id="lazy-1", target=target(pb2, root),
                     options=pb2.agent.CheckpointOptions(lazy_pages=True))
    w.tree.reap_parent(30)
    assert wait_dead(root)
    w.tree = None
    res = agent.restore("lazy-1", lazy_pages=True)
    restored_pids.add(res.pid)
    ok, line = w.verify(min_progress=mark)
    assert ok, line


# --- bad input ---------------------------------------------------------------

def expect_error(fn, code, *fragments):
    with pytest.raises(grpc.RpcError) as exc:
        fn()
    if code is not None:
        assert exc.value.code() == code, exc.value.details()
    for f in fragments:
        assert f in exc.value.details()
    return exc.value.details()


def test_unknown_pid(agent, pb2):
    expect_error(lambda: agent.checkpoint(target=target(pb2, -5)),
                 grpc.StatusCode.INVALID_ARGUMENT, "pid")
    expect_error(lambda: agent.checkpoint(target=target(pb2, 4_000_000)),
                 grpc.StatusCode.NOT_FOUND, "process 4000000")
    pid = subprocess.Popen(["true"])
    pid.wait()
    expect_error(lambda: agent.checkpoint(target=target(pb2, pid.pid)),
                 grpc.StatusCode.NOT_FOUND, f"process {pid.pid}")


def test_no_target(agent, pb2):
    expect_error(lambda: agent.checkpoint(), grpc.StatusCode.INVALID_ARGUMENT, "no target")


@pytest.mark.parametrize("bad", ["../etc", "a/b", ".hidden", "", "x" * 200, "sp ace"])
def test_path_like_ids_rejected(agent, pb2, bad):
    if bad:
        expect_error(lambda: agent.checkpoint(checkpoint_id=bad, target=target(pb2, os.getpid())),
                     grpc.StatusCode.INVALID_ARGUMENT, "checkpoint id")
    expect_error(lambda: agent.restore(bad), grpc.StatusCode.INVALID_ARGUMENT, "checkpoint id")
    expect_error(lambda: agent.call("DeleteCheckpoint", "DeleteCheckpointRequest",
                                    "DeleteCheckpointResponse", checkpoint_id=bad),
                 grpc.StatusCode.INVALID_ARGUMENT)


def test_restore_missing_checkpoint(agent):
    expect_error(lambda: agent.restore("no-such-checkpoint"), grpc.StatusCode.NOT_FOUND,
                 "no-such-checkpoint")


def test_restore_tampered_checkpoint_refused(agent, pb2, workloads):
    w = workloads("counter")
    root = w.tree.root
    agent.checkpoint(checkpoint_id="tamper-1", target=target(pb2, root),
                     options=pb2.agent.CheckpointOptions(leave_running=True))
    pages = sorted((agent.store / "tamper-1" / "checkpoint").glob("pages-*.img"))[0]
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pages.write_bytes(bytes(data))
    expect_error(lambda: agent.restore("tamper-1"), grpc.StatusCode.DATA_LOSS, pages.name)
    assert alive(root)


def test_duplicate_id_rejected(agent, pb2, workloads):
    w = workloads("counter")
    opts = pb2.agent.CheckpointOptions(leave_running=True)
    agent.checkpoint(checkpoint_id="dup", target=target(pb2, w.tree.root), options=opts)
    expect_error(lambda: agent.checkpoint(checkpoint_id="dup", target=target(pb2, w.tree.root),
                                          options=opts),
                 grpc.StatusCode.ALREADY_EXISTS, "dup")
    assert alive(w.tree.root)


def test_criu_failure_mid_dump_leaves_workload_running(agent, pb2, tmp_path, build_dir):
    # A tree in its own mount namespace cannot be dumped as a plain process
    # tree: CRIU fails after it froze the tree, in the middle of the dump.
    bins = criu_mod.workload_binaries(tmp_path / "wl-build")
    status = tmp_path / "status"
    proc = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "setsid",
                             str(bins["counter"]), "--status", str(status)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (status.exists() and status.read_text().startswith("ready")):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        root = int(subprocess.check_output(["pgrep", "-P", str(proc.pid)]).split()[0])
        details = expect_error(lambda: agent.checkpoint(checkpoint_id="midway",
                                                        target=target(pb2, root)),
                               grpc.StatusCode.INTERNAL, "criu dump", "Error (")
        assert "midway" not in agent.list_ids()
        assert not (agent.store / "midway").exists()
        assert alive(root), details
        before = status.read_text()
        time.sleep(0.3)
        # still running: it answers a command (written atomically, as the
        # workload protocol requires)
        (tmp_path / "ctl.tmp").write_text("mark\n")
        os.rename(tmp_path / "ctl.tmp", tmp_path / "status.ctl")
        deadline = time.monotonic() + 10
        while status.read_text() == before:
            state = open(f"/proc/{root}/status").read()
            assert time.monotonic() < deadline, f"workload stopped answering:\n{state}"
            time.sleep(0.02)
    finally:
        proc.kill()
        subprocess.run(["pkill", "-KILL", "-f", f"counter --status {status}"])
        proc.wait()


def test_full_store_fails_cleanly(build_dir, tmp_path, pb2, workloads):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    ag = None
    try:
        ag = Agent(build_dir, tmp_path, pb2, store=small / "store")
        w = workloads("bigmem", "--size", "64M")
        root = w.tree.root
        details = expect_error(lambda: ag.checkpoint(checkpoint_id="big", target=target(pb2, root)),
                               grpc.StatusCode.INTERNAL)
        assert alive(root), details
        assert ag.list_ids() == []
        assert [p.name for p in (small / "store").iterdir() if p.name != ".lock"] == []
        ok, line = w.verify()
        assert ok, line
    finally:
        if ag:
            ag.stop()
        subprocess.run(["umount", "-l", str(small)])


def test_concurrent_requests_on_one_target(agent, pb2, workloads):
    w = workloads("bigmem", "--size", "512M")
    root = w.tree.root
    opts = pb2.agent.CheckpointOptions(leave_running=True)
    first = {}

    def run_first():
        try:
            agent.checkpoint(checkpoint_id="c-1", target=target(pb2, root), options=opts)
            first["ok"] = True
        except grpc.RpcError as e:
            first["err"] = e

    t = threading.Thread(target=run_first)
    t.start()
    time.sleep(0.1)
    details = expect_error(lambda: agent.checkpoint(checkpoint_id="c-2",
                                                    target=target(pb2, root), options=opts),
                           grpc.StatusCode.FAILED_PRECONDITION, "busy")
    t.join()
    assert first.get("ok"), first
    assert "c-1" in details
    assert agent.list_ids() == ["c-1"]
    assert alive(root)


def test_agent_sigkill_mid_dump(build_dir, tmp_path, pb2, workloads):
    ag = Agent(build_dir, tmp_path, pb2)
    w = workloads("bigmem", "--size", "1G")
    root = w.tree.root

    def doomed():
        try:
            ag.checkpoint(checkpoint_id="doomed", target=target(pb2, root))
        except grpc.RpcError:
            pass

    t = threading.Thread(target=doomed)
    t.start()
    # Kill the agent while CRIU is dumping (the dump of 1 GiB takes seconds).
    deadline = time.monotonic() + 20
    while not list((tmp_path / "store").glob(".inprogress-*")):
        assert time.monotonic() < deadline, "dump did not start"
        time.sleep(0.01)
    time.sleep(0.2)
    ag.stop(signal.SIGKILL)
    t.join()
    # The workload survives; give CRIU time to notice and resume it.
    deadline = time.monotonic() + 30
    ok = False
    while time.monotonic() < deadline and not ok:
        ok = alive(root)
        time.sleep(0.1)
    assert alive(root)
    ok, line = w.verify(timeout=120)
    assert ok, line
    # A restarted agent lists no half image and has removed the leftovers.
    ag2 = Agent(build_dir, tmp_path, pb2)
    try:
        assert ag2.list_ids() == []
        assert not list((tmp_path / "store").glob(".inprogress-*"))
    finally:
        ag2.stop()


def test_non_root_client_refused(agent):
    script = ("import grpc,sys\n"
              "ch=grpc.insecure_channel('unix:'+sys.argv[1])\n"
              "try:\n ch.unary_unary('/kybernate.agent.v1.Agent/Version')(b'',timeout=5)\n"
              " print('OK')\n"
              "except grpc.RpcError as e:\n print(e.code().name)\n")

    def drop():
        os.setgid(65534)
        os.setuid(65534)
    out = subprocess.run(["/usr/bin/python3", "-c", script, agent.sock], preexec_fn=drop,
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "UNAVAILABLE"


def test_delete_and_list_with_labels(agent, pb2, workloads):
    w = workloads("counter")
    opts = pb2.agent.CheckpointOptions(leave_running=True)
    agent.checkpoint(checkpoint_id="l-1", target=target(pb2, w.tree.root), options=opts,
                     labels={"app": "a"})
    agent.checkpoint(checkpoint_id="l-2", target=target(pb2, w.tree.root), options=opts,
                     labels={"app": "b"})
    resp = agent.call("ListCheckpoints", "ListCheckpointsRequest", "ListCheckpointsResponse",
                      label_selector={"app": "b"})
    assert [c.id for c in resp.checkpoints] == ["l-2"]
    assert dict(resp.checkpoints[0].labels) == {"app": "b"}
    freed = agent.call("DeleteCheckpoint", "DeleteCheckpointRequest",
                       "DeleteCheckpointResponse", checkpoint_id="l-1").freed_bytes
    assert freed > 0
    assert agent.list_ids() == ["l-2"]
    expect_error(lambda: agent.call("DeleteCheckpoint", "DeleteCheckpointRequest",
                                    "DeleteCheckpointResponse", checkpoint_id="l-1"),
                 grpc.StatusCode.NOT_FOUND)


def test_sigterm_drains_in_flight_checkpoint(build_dir, tmp_path, pb2, workloads):
    ag = Agent(build_dir, tmp_path, pb2)
    w = workloads("bigmem", "--size", "512M")
    root = w.tree.root
    result = {}

    def run():
        try:
            result["msgs"] = ag.checkpoint(checkpoint_id="drain", target=target(pb2, root),
                                           options=pb2.agent.CheckpointOptions(leave_running=True))
        except grpc.RpcError as e:
            result["err"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 20
    while not list((tmp_path / "store").glob(".inprogress-*")):
        assert time.monotonic() < deadline, "dump did not start"
        time.sleep(0.01)
    ag.proc.proc.send_signal(signal.SIGTERM)
    t.join()
    rc, _, err = ag.proc.stop()
    assert rc == 0, err
    assert "msgs" in result, result
    assert (tmp_path / "store" / "drain" / "manifest.json").exists()
    assert alive(root)


def test_store_limit_deletes_oldest(build_dir, tmp_path, pb2, workloads):
    ag = Agent(build_dir, tmp_path, pb2, extra=["--store-max-bytes", "1500Ki"])
    try:
        w = workloads("counter")
        opts = pb2.agent.CheckpointOptions(leave_running=True)
        for i in range(4):
            ag.checkpoint(checkpoint_id=f"r-{i}", target=target(pb2, w.tree.root), options=opts)
        # each is ~0.6 MiB: only the newest two fit under 1500 KiB
        assert ag.list_ids() == ["r-2", "r-3"]
    finally:
        ag.stop()


def test_missing_parent_refused(agent, pb2, workloads):
    w = workloads("counter")
    opts = pb2.agent.CheckpointOptions(leave_running=True, parent_checkpoint_id="nope")
    expect_error(lambda: agent.checkpoint(checkpoint_id="child", target=target(pb2, w.tree.root),
                                          options=opts),
                 grpc.StatusCode.NOT_FOUND, "parent checkpoint", "nope")
    assert alive(w.tree.root)


def test_pre_dump_refused_clearly_without_memory_tracking(agent, pb2, workloads):
    w = workloads("counter")
    opts = pb2.agent.CheckpointOptions(pre_dump=True)
    try:
        agent.checkpoint(checkpoint_id="pre", target=target(pb2, w.tree.root), options=opts)
    except grpc.RpcError as e:
        # Kernels without soft-dirty tracking (our CI hosts) cannot pre-dump.
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e.details()
        assert "pre-dump" in e.details() or "track" in e.details()
        assert alive(w.tree.root)
        pytest.skip(f"no memory tracking on this kernel: {e.details()}")
    # Where the kernel tracks memory: the pre-dump leaves the tree running and
    # a final dump on top of it restores.
    assert alive(w.tree.root)
    mark = w.mark()
    agent.checkpoint(checkpoint_id="final", target=target(pb2, w.tree.root),
                     options=pb2.agent.CheckpointOptions(parent_checkpoint_id="pre"))
    w.tree.reap_parent(30)
    w.tree = None
    res = agent.restore("final")
    restored_pids.add(res.pid)
    ok, line = w.verify(min_progress=mark)
    assert ok, line
