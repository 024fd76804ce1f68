#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a single-layer docker-archive image tarball from a root directory,
deterministically (sorted entries, mtime 0, uid/gid 0), so that
`ctr images import` accepts it without a registry.

usage: mkimage.py ROOTFS OUT.tar REPO:TAG [--entrypoint JSON] [--cmd JSON]
                  [--env K=V ...] [--user USER]
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def layer_bytes(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                entries.append(os.path.join(dirpath, name))
        for path in sorted(entries, key=lambda p: os.path.relpath(p, root)):
            rel = os.path.relpath(path, root)
            info = tar.gettarinfo(path, arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("out")
    ap.add_argument("ref")
    ap.add_argument("--entrypoint", default=None)
    ap.add_argument("--cmd", default=None)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--user", default="")
    a = ap.parse_args()

    layer = layer_bytes(a.rootfs)
    diffid = hashlib.sha256(layer).hexdigest()
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diffid]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kybernate tests/images/mkimage.py"}],
    }
    if a.entrypoint:
        cfg["config"]["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        cfg["config"]["Cmd"] = json.loads(a.cmd)
    if a.user:
        cfg["config"]["User"] = a.user
    cfg_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": [a.ref], "Layers": [diffid + "/layer.tar"]}]
    man_bytes = json.dumps(manifest, separators=(",", ":")).encode()

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as out:
        def add(name, data, mode=0o644, is_dir=False):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = 0o755 if is_dir else mode
            if is_dir:
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            else:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
        add(diffid, b"", is_dir=True)
        add(diffid + "/layer.tar", layer)
        add(cfg_name, cfg_bytes)
        add("manifest.json", man_bytes)
    os.replace(tmp, a.out)
    print(f"{a.out}: {a.ref} config sha256:{cfg_name[:-5]} layer sha256:{diffid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
