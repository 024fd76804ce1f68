# SPDX-License-Identifier: Apache-2.0
"""Shared pytest fixtures: where the built binaries are and generated
Python protobuf modules (generated at test time, never committed)."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# The real test environment (tests/env): each fixture starts its service only
# when a test asks for it.
pytest_plugins = [
    "env.fixtures_containerd",
    "env.fixtures_kube",
    "env.fixtures_kubelet",
    "env.fixtures_s3",
]


def _build_dir():
    env = os.environ.get("KYB_BUILD_DIR")
    candidates = [pathlib.Path(env)] if env else [REPO / "build-asan", REPO / "build"]
    for c in candidates:
        if (c / "build.ninja").exists():
            return c.resolve()
    pytest.exit("no build directory found: run 'make build-asan' or set KYB_BUILD_DIR", 2)


@pytest.fixture(scope="session")
def build_dir():
    return _build_dir()


@pytest.fixture(scope="session")
def pb2(tmp_path_factory):
    """Compiles the agent and test protos with protoc --python_out and makes
    them importable; returns a namespace with the modules."""
    out = tmp_path_factory.mktemp("pb2")
    protos = [
        (REPO / "tests/proto", "echo.proto"),
        (REPO / "proto", "kybernate/agent/v1/agent.proto"),
    ]
    for include, rel in protos:
        subprocess.run(["protoc", f"-I{include}", f"--python_out={out}", str(include / rel)],
                       check=True)
    sys.path.insert(0, str(out))
    import echo_pb2  # noqa: E402
    from kybernate.agent.v1 import agent_pb2  # noqa: E402

    class Modules:
        echo = echo_pb2
        agent = agent_pb2

    return Modules
