# SPDX-License-Identifier: Apache-2.0
"""pytest fixture: a kubelet node (tests/env/kubelet.py).

  kubelet   session; a started env.kubelet.Kubelet registered against the
            `kube` cluster with CRI to the `containerd` fixture; its node is
            Ready. .pod_manifest(...), .wait_pod_phase(...), .node_name.

With KYB_TESTENV=1 (or =DIR) the fixtures hand out the services of a
running `scripts/testenv.py up` instead of starting their own.
"""
import pytest

from env import kubelet as _kubelet
from env.common import MissingSetup
from env.stack import live_stack


@pytest.fixture(scope="session")
def kubelet(tmp_path_factory, containerd, kube):
    """kubelet v1.20.2 (node `kyb-node`) with CRI to `containerd`, registered
    against `kube` and Ready; RuntimeClass `kybernate` exists. Only one per
    host (fixed /var/lib/kubelet/device-plugins); tear-down deletes its
    pods and checks for leftovers."""
    live = live_stack()
    if live is not None and live.kubelet is not None:
        yield live.kubelet  # scripts/testenv.py's: left running
        return
    try:
        _kubelet.require()
    except MissingSetup as e:
        pytest.fail(str(e), pytrace=False)
    k = _kubelet.Kubelet(tmp_path_factory.mktemp("kubelet"), containerd, kube)
    k.start()
    yield k
    k.stop(strict=True)
