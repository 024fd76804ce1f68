# SPDX-License-Identifier: Apache-2.0
"""src/lib/storage end to end: tests/integration/storage/storage_driver (the
library behind a command line) archives checkpoint directories into objects
and back, through a real S3 server (s3rver, tests/env/s3.py) and through a
file:// location."""
import hashlib
import json
import os
import subprocess
import time

import pytest

from env import s3 as s3env
from sample_artifact import write_manifest

MIB = 1 << 20
PART = 5 * MIB


def driver(build_dir):
    path = build_dir / "tests/integration/storage/storage_driver"
    if not path.exists():
        pytest.fail(f"{path} missing: build the project first", pytrace=False)
    return str(path)


def run(build_dir, *args, env=None, timeout=120, check=True):
    cmd = [driver(build_dir), *[str(a) for a in args]]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full_env.update(env or {})
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stderr}")
    return out


def make_checkpoint(path, pages_size, seed=1):
    """A checkpoint directory as the store writes it: CRIU images, config.dump,
    spec.dump and a manifest.json (docs/store.md) listing them with SHA-256."""
    rnd = hashlib.sha256(str(seed).encode()).digest()
    pages = bytearray()
    while len(pages) < pages_size:
        rnd = hashlib.sha256(rnd).digest()
        pages += rnd * 64  # 2 KiB blocks: compressible but not trivially
    files = {
        "checkpoint/inventory.img": b"inventory",
        "checkpoint/pages-1.img": bytes(pages[:pages_size]),
        "checkpoint/core-1.img": os.urandom(4096),
        "config.dump": b'{"id":"abcdef0123"}',
        "spec.dump": b'{"ociVersion":"1.0.2"}',
    }
    for rel, data in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    entries = [{"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "mode": "0644"} for rel, data in sorted(files.items())]
    write_manifest(path, entries, pages_size, seed)
    return path


def noisy_checkpoint(path, size):
    """A checkpoint whose pages are random: its archive is about `size` bytes."""
    make_checkpoint(path, 1024)
    (path / "checkpoint/pages-1.img").write_bytes(os.urandom(size))
    manifest = json.loads((path / "manifest.json").read_text())
    for e in manifest["files"]:
        data = (path / e["path"]).read_bytes()
        e["size"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    manifest["totals"]["bytes"] = sum(e["size"] for e in manifest["files"])
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def tree(path):
    """{relative path: bytes} of every regular file below path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def s3_uri(s3, key):
    return f"s3://{s3.bucket}/{key}?path-style=true"


def keys(s3, prefix=""):
    resp = s3.client().list_objects(Bucket=s3.bucket, Prefix=prefix)
    return [o["Key"] for o in resp.get("Contents", [])]


@pytest.fixture
def s3env_vars(s3):
    return s3.env()


def round_trip(build_dir, tmp_path, uri, location, env, *extra):
    src = make_checkpoint(tmp_path / "src", 3 * MIB)
    up = run(build_dir, *extra, "upload", src, uri, env=env)
    info = json.loads(up.stdout)
    assert info["files"] == 6 and info["size"] > 0
    listed = [json.loads(line) for line in
              run(build_dir, "list", location, env=env).stdout.splitlines()]
    assert [o["key"] for o in listed] == [uri.split("?")[0].rsplit("/", 1)[1]]
    assert listed[0]["size"] == info["size"]
    dest = tmp_path / "dest"
    run(build_dir, "download", uri, dest, env=env)
    assert tree(dest) == tree(src)
    run(build_dir, "delete", uri, env=env)
    assert run(build_dir, "list", location, env=env).stdout == ""
    gone = run(build_dir, "stat", uri, env=env, check=False)
    assert gone.returncode == 1
    return info


def test_round_trip_s3(build_dir, tmp_path, s3, s3env_vars):
    uri = s3_uri(s3, "rt/ckpt-1.tar.zst")
    info = round_trip(build_dir, tmp_path, uri, f"s3://{s3.bucket}/rt?path-style=true",
                      s3env_vars)
    assert info["key"] == "ckpt-1.tar.zst"
    assert keys(s3, "rt/") == []


def test_round_trip_file(build_dir, tmp_path):
    shared = tmp_path / "shared"
    round_trip(build_dir, tmp_path, f"file://{shared}/team/ckpt-1.tar.zst",
               f"file://{shared}/team", {})
    assert [p.name for p in (shared / "team").iterdir()] == []  # no temporary file left


def test_object_is_tar_zstd_with_kubernetes_layout(build_dir, tmp_path, s3, s3env_vars):
    src = make_checkpoint(tmp_path / "src", MIB)
    run(build_dir, "upload", src, s3_uri(s3, "layout/c.tar.zst"), env=s3env_vars)
    body = s3.client().get_object(Bucket=s3.bucket, Key="layout/c.tar.zst")["Body"].read()
    (tmp_path / "c.tar.zst").write_bytes(body)
    names = subprocess.run(["tar", "--zstd", "-tf", str(tmp_path / "c.tar.zst")],
                           capture_output=True, text=True, check=True).stdout.split()
    assert names == ["checkpoint/", "checkpoint/core-1.img", "checkpoint/inventory.img",
                     "checkpoint/pages-1.img", "config.dump", "spec.dump", "manifest.json"]


def test_multipart_with_several_parts(build_dir, tmp_path, s3, s3env_vars):
    src = noisy_checkpoint(tmp_path / "src", 18 * MIB)
    uri = s3_uri(s3, "mp/big.tar.zst")
    up = run(build_dir, "--part-size", PART, "--inflight", 2, "--progress", "upload", src, uri,
             env=s3env_vars)
    stored = [int(line.split()[1]) for line in up.stdout.splitlines()
              if line.startswith("stored ")]
    info = json.loads(up.stdout.splitlines()[-1])
    assert len(stored) == 4  # 18 MiB of noise: three full parts and a last one
    assert max(stored) == info["size"]
    head = s3.client().head_object(Bucket=s3.bucket, Key="mp/big.tar.zst")
    assert head["ContentLength"] == info["size"]
    dest = tmp_path / "dest"
    run(build_dir, "download", uri, dest, env=s3env_vars)
    assert tree(dest) == tree(src)


def test_corrupted_download_is_refused(build_dir, tmp_path, s3, s3env_vars):
    src = make_checkpoint(tmp_path / "src", 2 * MIB)
    uri = s3_uri(s3, "bad/c.tar.zst")
    run(build_dir, "upload", src, uri, env=s3env_vars)
    client = s3.client()
    body = bytearray(client.get_object(Bucket=s3.bucket, Key="bad/c.tar.zst")["Body"].read())
    body[len(body) // 2] ^= 0x20
    client.put_object(Bucket=s3.bucket, Key="bad/c.tar.zst", Body=bytes(body))
    dest = tmp_path / "dest"
    out = run(build_dir, "download", uri, dest, env=s3env_vars, check=False)
    assert out.returncode == 1
    assert "extract to" in out.stderr
    assert any(w in out.stderr for w in ("zstd", "SHA-256 mismatch", "tar:")), out.stderr
    assert not dest.exists()


def test_missing_object_and_bad_credentials(build_dir, tmp_path, s3, s3env_vars):
    out = run(build_dir, "download", s3_uri(s3, "nope/c.tar.zst"), tmp_path / "d",
              env=s3env_vars, check=False)
    assert out.returncode == 1 and "HTTP 404" in out.stderr
    wrong = dict(s3env_vars, AWS_ACCESS_KEY_ID="NOT-A-KEY", AWS_SECRET_ACCESS_KEY="not-secret")
    out = run(build_dir, "list", f"s3://{s3.bucket}?path-style=true", env=wrong, check=False)
    assert out.returncode == 1 and "InvalidAccessKeyId" in out.stderr, out.stderr
    assert "not-secret" not in out.stderr
    creds = tmp_path / "secret"
    creds.mkdir()
    (creds / "access-key-id").write_text(s3.access_key + "\n")
    (creds / "secret-access-key").write_text(s3.secret_key + "\n")
    env = {k: v for k, v in s3env_vars.items() if not k.startswith("AWS_ACCESS")
           and not k.startswith("AWS_SECRET")}
    run(build_dir, "--credentials-dir", creds, "list", f"s3://{s3.bucket}?path-style=true",
        env=env)


def read_until(proc, want, timeout=60):
    """Lines of proc's stdout until every line in want was seen."""
    seen, missing, end = [], set(want), time.monotonic() + timeout
    while missing:
        assert time.monotonic() < end, f"timed out waiting for {missing}; got {seen}"
        line = proc.stdout.readline()
        assert line, f"driver ended early; got {seen}; stderr: {proc.stderr.read()}"
        seen.append(line.strip())
        missing -= {w for w in missing if line.startswith(w)}
    return seen


def test_server_stopped_mid_upload(build_dir, tmp_path):
    """The server goes away after the first part: the driver retries, then
    fails cleanly, and no object appears under the key."""
    s3env.require()
    server = s3env.S3Server(tmp_path / "s3", bucket="kyb-stop").start()
    restarted = None
    try:
        src = noisy_checkpoint(tmp_path / "src", 16 * MIB)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(server.env())
        cmd = [driver(build_dir), "--part-size", str(PART), "--inflight", "1", "--attempts", "4",
               "--retry-base-ms", "50", "--retry-max-ms", "200", "--pause-after",
               str(PART + MIB), "--progress", "upload", str(src),
               "s3://kyb-stop/run/c.tar.zst?path-style=true"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            # The first part is stored and the producer waits: now the server goes.
            read_until(proc, ["paused", f"stored {PART}"])
            server.stop()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            rc = proc.wait(timeout=120)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert rc == 1, err
        assert "gave up after 4 attempts" in err, err
        assert "part 2" in err, err
        # The abort could not reach the server either, and the message says so.
        assert "multipart upload was not aborted either" in err, err
        restarted = s3env.S3Server(tmp_path / "s3", bucket="kyb-stop").start()
        assert keys(restarted) == []
    finally:
        for s in (server, restarted):
            if s is not None:
                s.stop(strict=False)
