# SPDX-License-Identifier: Apache-2.0
"""The CRDs' schemas as the real kube-apiserver enforces them, through
kubectl as a user meets them: every example under deploy/examples/ is
accepted, every object under tests/unit/crds/invalid/ is refused with a
message that contains each of its `# expect:` lines (the offline suite,
tests/unit/crds, checks the same expectations without a server).

Objects are sent with `--dry-run=server`: validated and defaulted by the
API server, never stored. kubectl checks some objects itself first (missing
required fields, wrong types, from the OpenAPI the server publishes); the
server's own message is checked with `--validate=false`."""
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "tests" / "unit" / "crds" / "invalid").glob("*.yaml"))


def expectations(path):
    return re.findall(r"^#\s*expect:\s*(.+?)\s*$", path.read_text(encoding="utf-8"), re.M)


def create_dry_run(kube, path, *flags):
    import subprocess
    import yaml
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        ns = ((doc or {}).get("metadata") or {}).get("namespace")
        if isinstance(ns, str) and ns:
            kube.ensure_namespace(ns)
    return subprocess.run(kube.kubectl_argv("create", "--dry-run=server", "-o", "name",
                                            *flags, "-f", path),
                          capture_output=True, text=True, timeout=60)


def test_inputs_present():
    assert EXAMPLES and INVALID
    assert all(expectations(p) for p in INVALID), [p.name for p in INVALID if not expectations(p)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_accepted(kube, kybernate_crds, path):
    p = create_dry_run(kube, path)
    assert p.returncode == 0, f"{path.name}: {p.stderr}"
    assert re.search(r"\.kybernate\.io/\S+", p.stdout), p.stdout


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_refused_with_readable_message(kube, kybernate_crds, path):
    # What the API server says (kubectl's own check, from the published
    # OpenAPI, is switched off so that the server is the one to refuse).
    p = create_dry_run(kube, path, "--validate=false")
    assert p.returncode != 0, f"{path.name} was accepted: {p.stdout}"
    # kubectl prints the server's Status: 'The CheckpointRequest "x" is invalid: ...'
    assert re.search(r'The \w+ "[^"]+" is invalid', p.stderr), p.stderr
    for want in expectations(path):
        assert want in p.stderr, f"{path.name}: {want!r} not in {p.stderr!r}"
    # A user with kubectl's defaults is refused too, by one or the other.
    p = create_dry_run(kube, path)
    assert p.returncode != 0 and ("is invalid" in p.stderr or "ValidationError" in p.stderr), \
        p.stderr
