# SPDX-License-Identifier: Apache-2.0
"""kybernate-agent's gRPC surface (agent.proto) driven by python3-grpcio:
what works in this build and the honest UNIMPLEMENTED of what does not."""
import re
import subprocess
import urllib.request

import grpc
import pytest

from rpc_peer import Process, unary

AGENT = "/kybernate.agent.v1.Agent/"


@pytest.fixture
def agent(build_dir, tmp_path):
    sock = str(tmp_path / "agent.sock")
    argv = [str(build_dir / "cmd/kybernate-agent"), "--socket-path", sock,
            "--store-dir", str(tmp_path / "store"), "--work-dir", str(tmp_path / "work"),
            "--metrics-address", "127.0.0.1:0",
            # no GPU, whatever the host has: the GPU paths are tested in
            # test_agent_gpu.py with the stand-in driver
            "--cuda-lib", "/nonexistent/libcuda.so.1", "--nvml-lib", "/nonexistent/libnvidia-ml.so.1",
            "--shutdown-grace", "2s", "--config", ""]
    proc = Process(argv, sock)
    proc.tmp = tmp_path
    yield proc
    rc, _, err = proc.stop()
    assert rc == 0, err
    assert "stopped" in err


@pytest.fixture
def channel(agent):
    with grpc.insecure_channel(f"unix:{agent.socket_path}") as ch:
        yield ch


def metrics_port(agent):
    # The agent logs the bound port once at start-up.
    while True:
        line = agent.proc.stderr.readline()
        m = re.search(r"metrics port (\d+)", line)
        if m:
            return int(m.group(1))
        assert line, "agent exited before logging its metrics port"


def test_version(channel, pb2):
    a = pb2.agent
    resp = unary(channel, AGENT + "Version", a.VersionRequest, a.VersionResponse)(
        a.VersionRequest(), timeout=10)
    assert resp.api == "kybernate.agent.v1"
    assert re.fullmatch(r"\d+\.\d+\.\d+", resp.version)
    assert resp.criu_version.startswith("4.")


def test_health_reports_components(channel, pb2):
    a = pb2.agent
    resp = unary(channel, AGENT + "Health", a.HealthRequest, a.HealthResponse)(
        a.HealthRequest(), timeout=10)
    comps = {c.name: c for c in resp.components}
    assert comps["store"].ok
    assert comps["criu"].ok and comps["criu"].message.startswith("4.")
    assert resp.status == a.SERVING_STATUS_SERVING


NO_GPU_UNARY = [
    ("GpuHibernate", "GpuHibernateRequest", "GpuProcess"),
    ("GpuResume", "GpuResumeRequest", "GpuProcess"),
    ("GpuStatus", "GpuStatusRequest", "GpuStatusResponse"),
]


@pytest.mark.parametrize("method,req,resp", NO_GPU_UNARY)
def test_gpu_methods_without_gpu_say_why(channel, pb2, method, req, resp):
    a = pb2.agent
    call = unary(channel, AGENT + method, getattr(a, req), getattr(a, resp))
    with pytest.raises(grpc.RpcError) as exc:
        call(getattr(a, req)(), timeout=10)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "libcuda.so.1" in exc.value.details() and "no NVIDIA driver" in exc.value.details()


def test_malformed_request_rejected(channel, pb2):
    call = unary(channel, AGENT + "Version", None, pb2.agent.VersionResponse)
    with pytest.raises(grpc.RpcError) as exc:
        call(b"\x0a\xff\xff\xff\xff\xff", timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kybernate.agent.v1.VersionRequest" in exc.value.details()


def test_metrics_and_healthz(agent, channel, pb2):
    port = metrics_port(agent)
    a = pb2.agent
    unary(channel, AGENT + "Version", a.VersionRequest, a.VersionResponse)(a.VersionRequest(),
                                                                        timeout=10)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "# TYPE kybernate_agent_requests_total counter" in body
    assert 'kybernate_agent_requests_total{method="/kybernate.agent.v1.Agent/Version"} 1' in body
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert health.status == 200


def test_healthz_unhealthy_when_store_vanishes(agent):
    port = metrics_port(agent)
    (agent.tmp / "store").rename(agent.tmp / "store.away")
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert exc.value.code == 503
        assert "store" in exc.value.read().decode()
    finally:
        (agent.tmp / "store.away").rename(agent.tmp / "store")
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).status == 200


def run_agent(build_dir, *args, env=None):
    return subprocess.run([str(build_dir / "cmd/kybernate-agent"), *args], capture_output=True,
                          text=True, timeout=30, env=env)


def test_bad_option_value_rejected(build_dir):
    out = run_agent(build_dir, "--config", "", "--shutdown-grace", "10x")
    assert out.returncode == 2
    assert "option shutdown-grace: '10x' is not a duration" in out.stderr


def test_bad_config_file_rejected(build_dir, tmp_path):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("socket-path: /tmp/x.sock\nmax-concurrent: 0\n")
    out = run_agent(build_dir, "--config", str(cfg))
    assert out.returncode == 2
    assert f"{cfg}:2" in out.stderr and "max-concurrent" in out.stderr


def test_config_file_and_env_are_used(build_dir, tmp_path):
    sock = tmp_path / "from-env.sock"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"socket-path: {tmp_path}/from-file.sock\nstore-dir: {tmp_path}/s\n"
                   f"work-dir: {tmp_path}/w\nmetrics-address: ''\n")
    env = {"KYBERNATE_AGENT_SOCKET_PATH": str(sock), "PATH": "/usr/bin:/bin"}
    proc = Process([str(build_dir / "cmd/kybernate-agent"), "--config", str(cfg)], str(sock),
                   env=env)
    rc, _, err = proc.stop()
    assert rc == 0, err
    assert "metrics port -1" in err
    assert not (tmp_path / "from-file.sock").exists()


def test_help_lists_every_option(build_dir):
    out = run_agent(build_dir, "--help")
    assert out.returncode == 0
    for opt in ["--socket-path", "--store-dir", "--metrics-address", "--shutdown-grace",
                "--log-format", "KYBERNATE_AGENT_SOCKET_PATH"]:
        assert opt in out.stdout
