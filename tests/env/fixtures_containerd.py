# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures: a private containerd (tests/env/containerd.py).

  containerd_options  session; override to point the `kybernate` runtime
                      at the built shim (runtime_type / runtime_path)
  containerd          session; a started env.containerd.Containerd

With KYB_TESTENV=1 (or =DIR) the fixtures hand out the services of a
running `scripts/testenv.py up` instead of starting their own.
"""
import pytest

from env import containerd as _containerd
from env.common import MissingSetup
from env.stack import live_stack


@pytest.fixture(scope="session")
def containerd_options():
    """Keyword arguments for env.containerd.Containerd (override in a
    conftest, e.g. {"kybernate_runtime_type": "io.containerd.kybernate.v1"})."""
    return {}


@pytest.fixture(scope="session")
def containerd(tmp_path_factory, containerd_options):
    """containerd + runc with its own root/state/socket/config, the local
    pause and busybox images imported (namespaces k8s.io and default).
    Use .socket, .ctr(...), .run_container(...), .images, .runc_root_for(ns)."""
    live = live_stack()
    if live is not None and live.containerd is not None:
        yield live.containerd  # scripts/testenv.py's: left running
        return
    try:
        _containerd.require()
    except MissingSetup as e:
        pytest.fail(str(e), pytrace=False)
    c = _containerd.Containerd(tmp_path_factory.mktemp("containerd"), **containerd_options)
    try:
        c.start()
    except BaseException:
        c.stop(strict=False)
        raise
    yield c
    c.stop(strict=True)
