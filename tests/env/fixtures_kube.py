# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures: etcd + kube-apiserver (tests/env/kube.py).

  kube             session; a started env.kube.KubeCluster (.kubeconfig,
                   .server, .token, .ca_file, .api_client(), .core())
  kube_client      session; kubernetes.client.ApiClient (admin)
  kybernate_crds   session; deploy/crds/*.yaml applied and Established
                   (skips when deploy/crds/ does not exist)

With KYB_TESTENV=1 (or =DIR) the fixtures hand out the services of a
running `scripts/testenv.py up` instead of starting their own.
"""
import time

import pytest

from env import kube as _kube
from env.common import REPO, MissingSetup
from env.stack import live_stack

CRD_DIR = REPO / "deploy" / "crds"


@pytest.fixture(scope="session")
def kube(tmp_path_factory):
    """etcd + kube-apiserver v1.20.2 on 127.0.0.1 (TLS, token auth,
    Node+RBAC, service-account keys); namespace `default` has its
    `default` ServiceAccount. No scheduler/controller-manager."""
    live = live_stack()
    if live is not None and live.kube is not None:
        yield live.kube  # scripts/testenv.py's: left running
        return
    try:
        _kube.require()
    except MissingSetup as e:
        pytest.fail(str(e), pytrace=False)
    k = _kube.KubeCluster(tmp_path_factory.mktemp("kube"))
    k.start()
    yield k
    k.stop(strict=True)


@pytest.fixture(scope="session")
def kube_client(kube):
    """kubernetes.client.ApiClient with the admin token."""
    return kube.api_client()


def apply_crds(kube, paths, timeout=30):
    """Create (or replace) the CRDs in PATHS and wait until Established
    and served; returns their names."""
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    ext = client.ApiextensionsV1Api(kube.api_client())
    names = []
    for p in paths:
        for doc in yaml.safe_load_all(p.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as e:
                if e.status != 409:
                    raise
                cur = ext.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = cur.metadata.resource_version
                ext.replace_custom_resource_definition(name, doc)
            names.append(name)

    def established(name):
        crd = ext.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True"
                   for c in (crd.status.conditions or []))
    for name in names:
        kube.wait_for(lambda: established(name), timeout, f"CRD {name} Established")
    # Discovery catches up a moment after Established.
    time.sleep(0.2)
    return names


@pytest.fixture(scope="session")
def kybernate_crds(kube):
    """The Kybernate CRDs from deploy/crds/ installed in the test cluster."""
    paths = sorted(CRD_DIR.glob("*.yaml")) if CRD_DIR.is_dir() else []
    if not paths:
        pytest.skip(f"{CRD_DIR} has no CRDs yet (written by the CRD work); nothing to apply")
    return apply_crds(kube, paths)
