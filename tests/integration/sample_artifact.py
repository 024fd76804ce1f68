# SPDX-License-Identifier: Apache-2.0
"""manifest.json for synthetic checkpoint directories (tests and benches):
the fields the store writes (docs/store.md), with fixed sample values."""
import json


def write_manifest(path, entries, pages_size, seed=1):
    """Writes path/manifest.json listing entries ({path, size, sha256, mode})
    and returns the total bytes of the listed files."""
    entries = sorted(entries, key=lambda e: e["path"])
    manifest = {
        "formatVersion": 1,
        "checkpointId": f"ckpt-{seed}",
        "createdAt": "2024-05-01T12:00:00.5Z",
        "node": "node-a",
        "workload": {"podNamespace": "ml", "podName": "llm-0", "podUid": "uid-1",
                     "containerName": "server", "image": "registry.example/llm:1.2"},
        "target": {"container": {"namespace": "k8s.io", "id": "abcdef0123"}},
        "gpu": {"mode": "off", "captured": False, "lockTimeoutMs": 5000, "driverVersion": "",
                "cudaDriverVersion": 0, "devices": [], "processes": []},
        "criu": {"version": "4.1.1",
                 "options": {"leaveRunning": False, "tcpEstablished": False, "fileLocks": False,
                             "shellJob": False, "externalUnixSockets": False, "preDump": False,
                             "lazyPages": False, "parentId": ""}},
        "steps": [{"name": "criu_dump", "durationMs": 10, "bytes": pages_size}],
        "labels": {"app": "llm"},
        "totals": {"files": len(entries), "bytes": sum(e["size"] for e in entries)},
        "files": entries,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest["totals"]["bytes"]
