# SPDX-License-Identifier: Apache-2.0
"""deploy/install/ (operator Deployment, agent DaemonSet): accepted by a real
kube-apiserver (server-side dry run, after deploy/rbac/), and every flag and
environment variable they set exists in the binary's --help, so a renamed
option cannot silently break a deployment."""
import re
import subprocess

import pytest
import yaml

from env.common import REPO

INSTALL = REPO / "deploy" / "install"
BINARIES = {"kybernate-operator": ("cmd/kybernate-operator", "KYBERNATE_OPERATOR_"),
            "kybernate-agent": ("cmd/kybernate-agent", "KYBERNATE_AGENT_")}


def containers():
    for path in sorted(INSTALL.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("Deployment", "DaemonSet"):
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    yield path.name, c


def binary_of(image):
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    assert name in BINARIES, f"unknown image {image}"
    return BINARIES[name]


@pytest.mark.parametrize("where,container", list(containers()),
                         ids=lambda v: v if isinstance(v, str) else v["name"])
def test_flags_and_env_exist(build_dir, where, container):
    path, prefix = binary_of(container["image"])
    help_text = subprocess.run([str(build_dir / path), "--help"], capture_output=True,
                               text=True, timeout=30, check=True).stdout
    flags = set(re.findall(r"--(?:\[no-\])?([a-z][a-z0-9-]*)", help_text))
    envs = set(re.findall(r"env: (" + prefix + r"[A-Z0-9_]+)", help_text))
    for arg in container.get("args", []):
        name = arg[2:].split("=", 1)[0]
        assert name in flags, f"{where}: {arg}: no such option in {path} --help"
    for env in container.get("env", []):
        assert env["name"] in envs, f"{where}: env {env['name']} unknown to {path}"


def test_server_side_dry_run(kube, kybernate_crds):
    def kubectl(*args):
        p = subprocess.run(kube.kubectl_argv(*args), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout
    kubectl("apply", "-f", REPO / "deploy" / "rbac")
    out = kubectl("apply", "--dry-run=server", "-f", INSTALL)
    assert "deployment.apps/kybernate-operator created (server dry run)" in out, out
    assert "daemonset.apps/kybernate-agent created (server dry run)" in out, out
