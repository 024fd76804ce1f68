# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures: real CRIU and the zdtm-style workloads
(tests/env/criu.py, tests/workloads, docs/workloads.md).

  criu            session; an env.criu.Criu, checked: CRIU 4.x and
                  `criu check` passes (else the test fails naming
                  scripts/setup.sh criu)
  workload_bins   session; {name: path} of counter, bigmem, proctree,
                  tcpconn (built by meson, or compiled on the fly)
  workloads       function; a factory: workloads.start("counter", "--slots",
                  "1024", net=False) -> a started env.criu.Workload. At
                  tear-down every process of every tree (started or
                  restored) and every parent/keeper is killed and checked
                  gone by PID + start time; a leftover fails the test.
"""
import os
import signal

import pytest

from env import criu as _criu
from env.common import MissingSetup


@pytest.fixture(scope="session")
def criu():
    try:
        c = _criu.Criu()
        c.require()
    except MissingSetup as e:
        pytest.fail(str(e), pytrace=False)
    return c


@pytest.fixture(scope="session")
def workload_bins(tmp_path_factory):
    return _criu.workload_binaries(tmp_path_factory.mktemp("workload-bin"))


class WorkloadFactory:
    def __init__(self, criu, bins, base):
        self.criu = criu
        self.bins = bins
        self.base = base
        self.started = []

    def start(self, name, *args, net=None, timeout=60):
        """Starts workload NAME with ARGS (its options, besides --status) in
        its own PID namespace; net defaults to True for tcpconn."""
        if net is None:
            net = name == "tcpconn"
        w = _criu.Workload(name, self.bins[name], self.base / f"{name}-{len(self.started)}",
                           args, net=net, criu=self.criu)
        self.started.append(w)
        return w.start(timeout=timeout)

    def destroy_all(self):
        left = {}
        for w in self.started:
            left.update(w.destroy())
        return left


@pytest.fixture
def workloads(criu, workload_bins, tmp_path):
    f = WorkloadFactory(criu, workload_bins, tmp_path)
    yield f
    left = f.destroy_all()
    if left:
        # last resort, so one leak does not poison later tests
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _criu.wait_gone(left, 10)
        pytest.fail(f"workload tear-down left processes behind: {sorted(left)}", pytrace=False)
