# SPDX-License-Identifier: Apache-2.0
"""kybernatectl against a real kybernate-agent: output, exit codes, usage."""
import json
import subprocess

import pytest

from rpc_peer import Process


@pytest.fixture
def agent_sock(build_dir, tmp_path):
    sock = str(tmp_path / "agent.sock")
    proc = Process([str(build_dir / "cmd/kybernate-agent"), "--config", "", "--socket-path",
                    sock, "--store-dir", str(tmp_path / "store"), "--work-dir",
                    str(tmp_path / "work"), "--metrics-address", "", "--cuda-lib",
                    "/nonexistent/libcuda.so.1", "--nvml-lib", "/nonexistent/libnvidia-ml.so.1"],
                   sock)
    yield sock
    rc, _, err = proc.stop()
    assert rc == 0, err


def ctl(build_dir, *args, sock=None):
    argv = [str(build_dir / "cmd/kybernatectl")]
    if sock:
        argv += ["--socket", sock]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=60)


def test_version_json(build_dir, agent_sock):
    out = ctl(build_dir, "--json", "version", sock=agent_sock)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["api"] == "kybernate.agent.v1"


def test_health_pretty(build_dir, agent_sock):
    out = ctl(build_dir, "health", sock=agent_sock)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {c["name"] for c in doc["components"]} >= {"store", "criu"}


def test_agent_error_is_exit_1_with_message(build_dir, agent_sock):
    out = ctl(build_dir, "gpu", "status", sock=agent_sock)
    assert out.returncode == 1
    assert out.stderr.startswith("kybernatectl: gpu status: ")
    assert "FAILED_PRECONDITION" in out.stderr and "no NVIDIA driver" in out.stderr


def test_unreachable_agent_is_exit_3(build_dir, tmp_path):
    out = ctl(build_dir, "--timeout", "2s", "version", sock=str(tmp_path / "none.sock"))
    assert out.returncode == 3
    assert "UNAVAILABLE" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["checkpoint"], "give exactly one of --pid and --container"),
    (["checkpoint", "--pid", "12x"], "--pid '12x' is not a process ID"),
    (["checkpoint", "--pid", "1", "--container", "c"], "exactly one of --pid"),
    (["checkpoint", "--pid", "1", "--gpu", "maybe"], "--gpu must be auto, off or required"),
    (["checkpoint", "--pid", "1", "--label", "novalue"], "is not KEY=VALUE"),
    (["restore"], "needs exactly one checkpoint ID"),
    (["restore", "x", "--gpu-map", "abc"], "is not OLD_UUID=NEW_UUID"),
    (["inspect"], "needs exactly one checkpoint ID"),
    (["gpu", "hibernate"], "hibernate needs a PID"),
    (["gpu", "wake", "1"], "unknown gpu command 'wake'"),
    (["--timeout", "soon", "version"], "'soon' is not a duration"),
])
def test_usage_errors_are_exit_2(build_dir, args, message):
    out = ctl(build_dir, *args, sock="/nonexistent/agent.sock")
    assert out.returncode == 2, out
    assert message in out.stderr


def test_help(build_dir):
    out = ctl(build_dir, "--help")
    assert out.returncode == 0
    for word in ["checkpoint", "restore", "list", "inspect", "delete", "gpu", "Exit status",
                 "KYBERNATECTL_SOCKET"]:
        assert word in out.stdout


def test_checkpoint_restore_roundtrip(build_dir, agent_sock, tmp_path):
    from env import criu as criu_mod
    bins = criu_mod.workload_binaries(tmp_path / "wl-build")
    w = criu_mod.Workload("counter", bins["counter"], tmp_path / "wl").start()
    restored = None
    try:
        mark = w.mark()
        root = w.tree.root
        out = ctl(build_dir, "checkpoint", "--pid", str(root), "--id", "cli-1", "--label",
                  "via=cli", sock=agent_sock)
        assert out.returncode == 0, out.stderr
        # not a TTY: one plain line per step, then the checkpoint as JSON
        assert "CRIU_DUMP: criu dump" in out.stdout
        assert '"id": "cli-1"' in out.stdout
        w.tree.reap_parent(30)
        w.tree = None
        out = ctl(build_dir, "--json", "list", "--label", "via=cli", sock=agent_sock)
        assert [c["id"] for c in json.loads(out.stdout)["checkpoints"]] == ["cli-1"]
        out = ctl(build_dir, "--json", "restore", "cli-1", sock=agent_sock)
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert lines[-1]["step"] == "STEP_DONE"
        restored = lines[-1]["result"]["pid"]
        ok, line = w.verify(min_progress=mark)
        assert ok, line
        out = ctl(build_dir, "inspect", "cli-1", sock=agent_sock)
        assert json.loads(out.stdout)["labels"] == {"via": "cli"}
        assert ctl(build_dir, "delete", "cli-1", sock=agent_sock).returncode == 0
        out = ctl(build_dir, "inspect", "cli-1", sock=agent_sock)
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr
    finally:
        if w.tree is not None:
            w.tree.kill()
        if restored:
            subprocess.run(["kill", "-KILL", str(restored)])
