# SPDX-License-Identifier: Apache-2.0
"""The agent's GPU paths with the stand-in libcuda.so.1 / libnvidia-ml.so.1
(tests/gpu/stub): a real workload process is declared a CUDA process in the
stand-ins' state file, so the agent locks and checkpoints "its device
memory" around a real CRIU dump. Every injected failure must leave the
process running and unlocked."""
import fcntl
import json
import os

import grpc
import pytest

from env import criu as criu_mod
from test_agent_checkpoint import Agent, alive, expect_error, restored_pids, target  # noqa: F401

GPU_UUID = "GPU-aaaaaaaa-0000-4000-8000-000000000001"
GIB = 1 << 30


class StubState:
    """The stand-ins' JSON state file, read and written under flock as they do."""

    def __init__(self, path):
        self.path = path

    def write(self, doc):
        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            json.dump(doc, f)

    def read(self):
        with open(self.path) as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            return json.load(f)

    def process(self, pid):
        return next(p for p in self.read()["processes"] if p["pid"] == pid)


def base_doc(processes):
    return {"driver_version": "580.65.06", "cuda_version": 13000,
            "gpus": [{"uuid": GPU_UUID, "name": "NVIDIA H100 80GB HBM3",
                      "memory_total": 80 * GIB, "memory_used": GIB,
                      "pci_bus_id": "00000000:1A:00.0", "minor": 0}],
            "processes": processes}


def cuda_process(pid, **extra):
    return {"pid": pid, "state": "running", "gpus": [{"uuid": GPU_UUID, "memory": 10 * GIB}],
            **extra}


@pytest.fixture
def stub(tmp_path, monkeypatch):
    st = StubState(str(tmp_path / "gpu-stub.json"))
    st.write(base_doc([]))
    monkeypatch.setenv("KYB_GPU_STUB_STATE", st.path)
    return st


@pytest.fixture
def gpu_agent(build_dir, tmp_path, pb2, stub):
    stubs = build_dir / "tests/gpu"
    ag = Agent(build_dir, tmp_path, pb2, extra=["--cuda-lib", str(stubs / "libcuda.so.1"),
                                                "--nvml-lib", str(stubs / "libnvidia-ml.so.1")])
    yield ag
    rc, _, err = ag.stop()
    assert rc == 0, err


@pytest.fixture
def counter(tmp_path):
    bins = criu_mod.workload_binaries(tmp_path / "wl-build")
    w = criu_mod.Workload("counter", bins["counter"], tmp_path / "wl").start()
    yield w
    if w.tree is not None:
        w.tree.kill()
    for pid in list(restored_pids):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    restored_pids.clear()


def gpu_opts(pb2, mode="GPU_MODE_REQUIRED", **kw):
    return pb2.agent.CheckpointOptions(gpu_mode=getattr(pb2.agent, mode), **kw)


def test_health_reports_gpu(gpu_agent):
    resp = gpu_agent.call("Health", "HealthRequest", "HealthResponse")
    gpu = {c.name: c for c in resp.components}["gpu"]
    assert gpu.ok, gpu.message


def test_leave_running_captures_and_resumes_cuda_state(gpu_agent, pb2, stub, counter):
    pid = counter.tree.root
    stub.write(base_doc([cuda_process(pid)]))
    mark = counter.mark()
    msgs = gpu_agent.checkpoint(checkpoint_id="g-1", target=target(pb2, pid),
                                options=gpu_opts(pb2, leave_running=True))
    steps = [m.step for m in msgs]
    assert pb2.agent.STEP_GPU_CHECKPOINT in steps and pb2.agent.STEP_GPU_RESTORE in steps
    proc = stub.process(pid)
    assert proc["state"] == "running"
    assert proc["calls"]["lock"] == 1 and proc["calls"]["checkpoint"] == 1
    assert proc["calls"]["restore"] == 1 and proc["calls"]["unlock"] == 1
    manifest = json.loads((gpu_agent.store / "g-1" / "manifest.json").read_text())
    gpu = manifest["gpu"]
    assert gpu["captured"] is True
    assert [d["uuid"] for d in gpu["devices"]] == [GPU_UUID]
    assert gpu["driverVersion"] == "580.65.06"
    assert gpu["processes"][0]["deviceMemoryBytes"] == 10 * GIB
    ok, line = counter.verify(min_progress=mark)
    assert ok, line


def test_stop_mode_with_gpu_then_restore(gpu_agent, pb2, stub, counter):
    pid = counter.tree.root
    stub.write(base_doc([cuda_process(pid)]))
    mark = counter.mark()
    gpu_agent.checkpoint(checkpoint_id="g-2", target=target(pb2, pid), options=gpu_opts(pb2))
    assert stub.process(pid)["state"] == "checkpointed"
    counter.tree.reap_parent(30)
    counter.tree = None
    # The stand-in driver knows processes by PID and the restored tree has new
    # ones, so the driver reports none of them CHECKPOINTED: the restore must
    # fail clearly and take the half-restored tree down (a real driver is
    # exercised by tests/integration/test_real_gpu.py).
    details = expect_error(lambda: gpu_agent.restore("g-2"), grpc.StatusCode.FAILED_PRECONDITION,
                           "none of the restored tree is in the CHECKPOINTED state")
    assert "gpu" in details
    # Told to leave GPU state alone, the same checkpoint restores the process.
    res = gpu_agent.restore("g-2", gpu_mode=pb2.agent.GPU_MODE_OFF)
    restored_pids.add(res.pid)
    ok, line = counter.verify(min_progress=mark)
    assert ok, line


def test_required_without_cuda_process(gpu_agent, pb2, counter):
    expect_error(lambda: gpu_agent.checkpoint(checkpoint_id="g-3",
                                              target=target(pb2, counter.tree.root),
                                              options=gpu_opts(pb2, leave_running=True)),
                 grpc.StatusCode.FAILED_PRECONDITION, "no CUDA process")
    assert gpu_agent.list_ids() == []


def test_auto_without_cuda_process_is_a_plain_checkpoint(gpu_agent, pb2, counter):
    gpu_agent.checkpoint(checkpoint_id="g-4", target=target(pb2, counter.tree.root),
                         options=gpu_opts(pb2, "GPU_MODE_AUTO", leave_running=True))
    manifest = json.loads((gpu_agent.store / "g-4" / "manifest.json").read_text())
    assert manifest["gpu"]["captured"] is False


@pytest.mark.parametrize("fail", [
    {"lock": "CUDA_ERROR_TIMEOUT"},
    {"checkpoint": "CUDA_ERROR_UNKNOWN"},
])
def test_injected_gpu_failure_leaves_process_running(gpu_agent, pb2, stub, counter, fail):
    pid = counter.tree.root
    stub.write(base_doc([cuda_process(pid, fail=fail)]))
    details = expect_error(lambda: gpu_agent.checkpoint(checkpoint_id="g-5",
                                                        target=target(pb2, pid),
                                                        options=gpu_opts(pb2)),
                           None)
    assert "cuda" in details.lower(), details
    assert stub.process(pid)["state"] == "running"
    assert alive(pid)
    assert gpu_agent.list_ids() == []
    ok, line = counter.verify()
    assert ok, line


def test_criu_failure_after_gpu_checkpoint_rolls_gpu_back(gpu_agent, pb2, stub, counter):
    # A full disk is simulated by an existing checkpoint ID collision after
    # the GPU step: the dump itself is refused by a bad parent instead.
    pid = counter.tree.root
    stub.write(base_doc([cuda_process(pid)]))
    gpu_agent.checkpoint(checkpoint_id="g-6a", target=target(pb2, pid),
                         options=gpu_opts(pb2, leave_running=True))
    expect_error(lambda: gpu_agent.checkpoint(checkpoint_id="g-6a", target=target(pb2, pid),
                                              options=gpu_opts(pb2)),
                 grpc.StatusCode.ALREADY_EXISTS)
    assert stub.process(pid)["state"] == "running"
    assert alive(pid)


def test_hibernate_and_resume_in_place(gpu_agent, pb2, stub, counter):
    pid = counter.tree.root
    stub.write(base_doc([cuda_process(pid)]))
    a = pb2.agent
    status = gpu_agent.call("GpuStatus", "GpuStatusRequest", "GpuStatusResponse")
    used_before = status.gpu.devices[0].memory_used_bytes
    hib = gpu_agent.call("GpuHibernate", "GpuHibernateRequest", "GpuProcess", pid=pid)
    assert hib.state == a.CUDA_PROCESS_STATE_CHECKPOINTED
    status = gpu_agent.call("GpuStatus", "GpuStatusRequest", "GpuStatusResponse")
    assert status.gpu.devices[0].memory_used_bytes == used_before - 10 * GIB
    res = gpu_agent.call("GpuResume", "GpuResumeRequest", "GpuProcess", pid=pid)
    assert res.state == a.CUDA_PROCESS_STATE_RUNNING
    status = gpu_agent.call("GpuStatus", "GpuStatusRequest", "GpuStatusResponse")
    assert status.gpu.devices[0].memory_used_bytes == used_before


def test_resume_to_unknown_gpu_refused(gpu_agent, pb2, stub, counter):
    pid = counter.tree.root
    stub.write(base_doc([cuda_process(pid)]))
    gpu_agent.call("GpuHibernate", "GpuHibernateRequest", "GpuProcess", pid=pid)
    a = pb2.agent
    pair = a.GpuUuidPair(old_uuid=GPU_UUID, new_uuid="GPU-ffffffff-0000-4000-8000-00000000dead")
    with pytest.raises(grpc.RpcError) as exc:
        gpu_agent.call("GpuResume", "GpuResumeRequest", "GpuProcess", pid=pid,
                       gpu_uuid_map=[pair])
    assert "GPU-ffffffff" in exc.value.details()
    # still hibernated, memory safe; a plain resume brings it back
    res = gpu_agent.call("GpuResume", "GpuResumeRequest", "GpuProcess", pid=pid)
    assert res.state == a.CUDA_PROCESS_STATE_RUNNING


def test_gpu_methods_without_gpu(agent_no_gpu):
    with pytest.raises(grpc.RpcError) as exc:
        agent_no_gpu.call("GpuStatus", "GpuStatusRequest", "GpuStatusResponse")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
def agent_no_gpu(build_dir, tmp_path, pb2, monkeypatch):
    monkeypatch.delenv("KYB_GPU_STUB_STATE", raising=False)
    ag = Agent(build_dir, tmp_path, pb2, extra=["--cuda-lib", "/nonexistent/libcuda.so.1",
                                                "--nvml-lib", "/nonexistent/libnvidia-ml.so.1"])
    yield ag
    ag.stop()
