# SPDX-License-Identifier: Apache-2.0
"""kybernate-sidecar end to end (docs/storage.md, "The sidecar"): watch mode
against a real S3 server (s3rver, tests/env/s3.py) and a file:// volume,
restarts, kills and signals mid-upload, and fetch mode with verification."""
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from env import s3 as s3env
from env.common import free_port
from test_storage_s3 import keys, make_checkpoint, noisy_checkpoint, tree

MIB = 1 << 20


def sidecar(build_dir):
    path = build_dir / "cmd/kybernate-sidecar"
    if not path.exists():
        pytest.fail(f"{path} missing: build the project first", pytrace=False)
    return str(path)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and not k.startswith("KYBERNATE_SIDECAR")}
    env.update(extra or {})
    return env


class Watcher:
    """A `kybernate-sidecar watch` process with its stderr in a file."""

    def __init__(self, build_dir, tmp_path, watch_dir, target, env, *extra, name="watch"):
        self.log = tmp_path / f"{name}-{time.monotonic_ns()}.log"
        self.cmd = [sidecar(build_dir), "watch", "--watch-dir", str(watch_dir), "--target",
                    target, "--metrics-address", "127.0.0.1:0", "--rescan-interval", "500ms",
                    "--part-size", "5Mi", "--inflight", "1", *[str(a) for a in extra]]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env=clean_env(env))

    def text(self):
        return self.log.read_text()

    def wait_for(self, pattern, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.text())
            if m:
                return m
            assert self.proc.poll() is None, f"sidecar exited early:\n{self.text()}"
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {pattern!r}:\n{self.text()}")

    def metrics(self):
        port = int(self.wait_for(r"metrics on port (\d+)").group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()

    def term(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def publish(watch_dir, ckpt_id, builder=make_checkpoint, *args):
    """As the agent's store does: build in a dot directory, rename into place."""
    tmp = watch_dir / f".inprogress-{ckpt_id}"
    builder(tmp, *args)
    os.rename(tmp, watch_dir / ckpt_id)
    return watch_dir / ckpt_id


def s3_target(s3, prefix):
    return f"s3://{s3.bucket}/{prefix}?endpoint={s3.endpoint}&path-style=true"


def object_bytes(s3, key):
    return s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()


@pytest.fixture
def wd(tmp_path):
    d = tmp_path / "ckpts"
    d.mkdir()
    return d


def test_watch_uploads_and_writes_result(build_dir, tmp_path, s3, wd):
    target = s3_target(s3, "watch1")
    w = Watcher(build_dir, tmp_path, wd, target, s3.env())
    try:
        w.wait_for(r"watching ")
        src = publish(wd, "ckpt-a", make_checkpoint, 2 * MIB)
        w.wait_for(r"uploaded checkpoint ckpt-a")
        result = json.loads((wd / "ckpt-a.upload.json").read_text())
        body = object_bytes(s3, "watch1/ckpt-a.tar.zst")
        assert result["checkpointId"] == "ckpt-a"
        assert result["key"] == "ckpt-a.tar.zst"
        assert result["artifact"].startswith(f"s3://{s3.bucket}/watch1/ckpt-a.tar.zst?")
        assert result["size"] == len(body)
        assert result["sha256"] == hashlib.sha256(body).hexdigest()
        assert result["files"] == 6 and result["durationMs"] >= 0
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", result["uploadedAt"])
        assert src.is_dir()  # kept without --delete-after-upload
        assert not [p for p in wd.iterdir() if p.name.startswith(".")]
        # manifest.json appearing last in an existing directory is noticed too
        late = wd / "ckpt-b"
        make_checkpoint(tmp_path / "stage-b", MIB, 2)
        os.rename(tmp_path / "stage-b/checkpoint", tmp_path / "stage-b-ckpt")
        late.mkdir()
        os.rename(tmp_path / "stage-b-ckpt", late / "checkpoint")
        for f in ("config.dump", "spec.dump"):
            os.rename(tmp_path / "stage-b" / f, late / f)
        time.sleep(0.3)
        assert not (wd / "ckpt-b.upload.json").exists()
        os.rename(tmp_path / "stage-b/manifest.json", late / "manifest.json")
        w.wait_for(r"uploaded checkpoint ckpt-b")
        m = w.metrics()
        assert "kybernate_sidecar_uploads_total 2" in m
        up = float(re.search(r"^kybernate_sidecar_uploaded_bytes_total (\S+)", m, re.M).group(1))
        assert up == result["size"] + len(object_bytes(s3, "watch1/ckpt-b.tar.zst"))
        assert "S3RVER" not in w.text()  # no credential in any log line
        assert w.term() == 0
    finally:
        w.kill()
    # A restart re-scans and uploads nothing twice.
    before = s3.client().head_object(Bucket=s3.bucket, Key="watch1/ckpt-a.tar.zst")
    publish(wd, "ckpt-c", make_checkpoint, MIB, 3)  # arrived while it was down
    w2 = Watcher(build_dir, tmp_path, wd, target, s3.env())
    try:
        w2.wait_for(r"uploaded checkpoint ckpt-c")
        time.sleep(1.2)  # two re-scans
        assert w2.term() == 0
    finally:
        w2.kill()
    assert w2.text().count("uploading checkpoint") == 1, w2.text()
    after = s3.client().head_object(Bucket=s3.bucket, Key="watch1/ckpt-a.tar.zst")
    assert after["LastModified"] == before["LastModified"]
    assert sorted(keys(s3, "watch1/")) == [f"watch1/ckpt-{c}.tar.zst" for c in "abc"]


def test_killed_mid_upload_then_restarted_uploads_once(build_dir, tmp_path, s3, wd):
    target = s3_target(s3, "kill")
    publish(wd, "big", noisy_checkpoint, 12 * MIB)
    w = Watcher(build_dir, tmp_path, wd, target, s3.env(), "--max-rate", "4Mi")
    try:
        w.wait_for(r"uploading checkpoint big")
        time.sleep(1.5)  # a part or so is stored, the rest is not
        w.proc.kill()
        w.proc.wait()
    finally:
        w.kill()
    assert not (wd / "big.upload.json").exists()
    assert keys(s3, "kill/") == []  # nothing visible under the key
    w2 = Watcher(build_dir, tmp_path, wd, target, s3.env())
    try:
        w2.wait_for(r"uploaded checkpoint big", timeout=120)
        assert w2.term() == 0
    finally:
        w2.kill()
    result = json.loads((wd / "big.upload.json").read_text())
    body = object_bytes(s3, "kill/big.tar.zst")
    assert result["sha256"] == hashlib.sha256(body).hexdigest() and result["size"] == len(body)
    dest = tmp_path / "dest"
    out = subprocess.run([sidecar(build_dir), "fetch", "--source", result["artifact"], "--dest",
                          str(dest), "--metrics-address", ""], env=clean_env(s3.env()),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert tree(dest / "big") == tree(wd / "big")


def test_sigterm_mid_upload_abandons_cleanly(build_dir, tmp_path, s3, wd):
    target = s3_target(s3, "term")
    publish(wd, "slow", noisy_checkpoint, 12 * MIB)
    w = Watcher(build_dir, tmp_path, wd, target, s3.env(), "--max-rate", "2Mi", "--grace",
                "500ms")
    try:
        w.wait_for(r"uploading checkpoint slow")
        time.sleep(0.5)
        t0 = time.monotonic()
        assert w.term() == 0
        assert time.monotonic() - t0 < 15
    finally:
        w.kill()
    assert "abandoned" in w.text(), w.text()
    assert not (wd / "slow.upload.json").exists()
    assert keys(s3, "term/") == []
    assert tree(wd / "slow")  # local copy intact


def test_s3_stopped_mid_upload_fails_cleanly(build_dir, tmp_path, wd):
    s3env.require()
    server = s3env.S3Server(tmp_path / "s3", bucket="kyb-sc-stop").start()
    try:
        src = publish(wd, "ck", noisy_checkpoint, 12 * MIB)
        before = tree(src)
        target = f"s3://kyb-sc-stop/p?endpoint={server.endpoint}&path-style=true"
        w = Watcher(build_dir, tmp_path, wd, target, server.env(), "--max-rate", "4Mi",
                    "--attempts", "2", "--retry-interval", "1h")
        try:
            w.wait_for(r"uploading checkpoint ck")
            time.sleep(1.5)
            server.stop()
            w.wait_for(r"checkpoint ck \(retry in", timeout=120)
            m = w.metrics()
            assert 'kybernate_sidecar_failures_total{operation="upload"} 1' in m, m
            assert w.term() == 0
        finally:
            w.kill()
        assert not (wd / "ck.upload.json").exists()
        assert tree(src) == before
    finally:
        server.stop(strict=False)


def test_failed_uploads_back_off_exponentially(build_dir, tmp_path, wd):
    """Nothing listens at the endpoint: every try fails at once, and the waits
    between tries double from --retry-interval up to --retry-max-interval,
    each a random time between half and all of that (docs/storage.md)."""
    port = free_port()
    target = f"s3://kyb-sc-backoff/p?endpoint=http://127.0.0.1:{port}&path-style=true"
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"}
    w = Watcher(build_dir, tmp_path, wd, target, env, "--attempts", "1",
                "--retry-interval", "200ms", "--retry-max-interval", "800ms")
    try:
        publish(wd, "ck", make_checkpoint, MIB)
        end = time.monotonic() + 60
        while len(re.findall(r"checkpoint ck \(retry in (\d+) ms\)", w.text())) < 6:
            assert time.monotonic() < end, w.text()
            assert w.proc.poll() is None, w.text()
            time.sleep(0.05)
        assert w.term() == 0
    finally:
        w.kill()
    waits = [int(x) for x in re.findall(r"checkpoint ck \(retry in (\d+) ms\)", w.text())]
    for n, got in enumerate(waits[:6], start=1):
        ceiling = min(200 << (n - 1), 800)
        assert ceiling // 2 <= got <= ceiling, (n, waits)
    assert not (wd / "ck.upload.json").exists()


def test_delete_after_upload_to_file_target(build_dir, tmp_path, wd):
    shared = tmp_path / "shared"
    w = Watcher(build_dir, tmp_path, wd, f"file://{shared}/team", {}, "--delete-after-upload")
    try:
        src = publish(wd, "ck1", make_checkpoint, MIB)
        original = tree(src)
        w.wait_for(r"deleted local checkpoint ck1")
        assert w.term() == 0
    finally:
        w.kill()
    assert not (wd / "ck1").exists()
    result = json.loads((wd / "ck1.upload.json").read_text())
    art = shared / "team/ck1.tar.zst"
    assert result["artifact"] == f"file://{shared}/team/ck1.tar.zst"
    assert hashlib.sha256(art.read_bytes()).hexdigest() == result["sha256"]
    # fetch by location + id
    dest = tmp_path / "restore"
    out = subprocess.run([sidecar(build_dir), "fetch", "--source", f"file://{shared}/team",
                          "--id", "ck1", "--dest", str(dest), "--metrics-address", ""],
                         env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert tree(dest / "ck1") == original
    assert sorted(p.name for p in dest.iterdir()) == ["ck1"]


def fetch(build_dir, source, dest, env):
    return subprocess.run([sidecar(build_dir), "fetch", "--source", source, "--dest", str(dest),
                           "--metrics-address", ""], env=clean_env(env), capture_output=True,
                          text=True, timeout=120)


def test_fetch_round_trip_is_byte_identical(build_dir, tmp_path, s3, wd):
    target = s3_target(s3, "sidecar-rt")
    w = Watcher(build_dir, tmp_path, wd, target, s3.env())
    try:
        src = publish(wd, "rt-1", noisy_checkpoint, 7 * MIB)
        w.wait_for(r"uploaded checkpoint rt-1")
        assert w.term() == 0
    finally:
        w.kill()
    uri = json.loads((wd / "rt-1.upload.json").read_text())["artifact"]
    dest = tmp_path / "restore"
    out = fetch(build_dir, uri, dest, s3.env())
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stderr
    assert tree(dest / "rt-1") == tree(src)
    assert sorted(p.name for p in dest.iterdir()) == ["rt-1"]
    # Idempotent: a restarted init container finds it complete.
    again = fetch(build_dir, uri, dest, s3.env())
    assert again.returncode == 0 and "already" in again.stderr


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_fetch_of_damaged_artifact_fails_and_leaves_nothing(build_dir, tmp_path, s3, damage):
    src = make_checkpoint(tmp_path / "src", 2 * MIB)
    shared = tmp_path / "shared"
    shared.mkdir()
    wd = tmp_path / "w"
    wd.mkdir()
    os.rename(src, wd / "dmg")
    w = Watcher(build_dir, tmp_path, wd, f"file://{shared}", {})
    try:
        w.wait_for(r"uploaded checkpoint dmg")
        assert w.term() == 0
    finally:
        w.kill()
    body = bytearray((shared / "dmg.tar.zst").read_bytes())
    if damage == "flip":
        body[len(body) // 2] ^= 0x20
    else:
        body = body[: len(body) * 2 // 3]
    key = f"bad-{damage}/dmg.tar.zst"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=bytes(body))
    dest = tmp_path / "restore"
    out = fetch(build_dir, f"s3://{s3.bucket}/{key}?endpoint={s3.endpoint}&path-style=true",
                dest, s3.env())
    assert out.returncode == 1, out.stderr
    assert "fetch dmg.tar.zst: extract to" in out.stderr, out.stderr
    assert "zstd" in out.stderr or "SHA-256" in out.stderr or "tar:" in out.stderr
    assert list(dest.iterdir()) == []


def test_fetch_missing_artifact_and_bad_usage(build_dir, tmp_path, s3):
    out = fetch(build_dir, s3_target(s3, "none/x.tar.zst"), tmp_path / "d", s3.env())
    assert out.returncode == 1 and "404" in out.stderr, out.stderr
    out = subprocess.run([sidecar(build_dir), "fetch", "--dest", str(tmp_path / "d")],
                         env=clean_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "--source" in out.stderr
    out = subprocess.run([sidecar(build_dir), "upload"], env=clean_env(), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2


def test_sigterm_when_idle_exits_zero(build_dir, tmp_path, wd):
    w = Watcher(build_dir, tmp_path, wd, f"file://{tmp_path}/t", {}, "--log-format", "json")
    try:
        w.wait_for(r"watching ")
        t0 = time.monotonic()
        assert w.term() == 0
        assert time.monotonic() - t0 < 5
    finally:
        w.kill()
    first = w.text().splitlines()[0]
    assert json.loads(first)["msg"] if "msg" in first else json.loads(first)


def test_fetch_into_full_filesystem_fails_cleanly(build_dir, tmp_path):
    src = tmp_path / "src"
    make_checkpoint(src, 4 * MIB)
    remote = tmp_path / "remote"
    remote.mkdir()
    up = subprocess.run([str(build_dir / "tests/integration/storage/storage_driver"), "upload",
                         str(src), f"file://{remote}/full.tar.zst"], capture_output=True,
                        text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = subprocess.run([sidecar(build_dir), "fetch", "--source",
                              f"file://{remote}/full.tar.zst", "--dest", str(small)],
                             capture_output=True, text=True, timeout=120, env=clean_env())
        assert out.returncode != 0
        assert "No space left on device" in out.stderr, out.stderr
        assert list(small.iterdir()) == []  # no partial directory, no temporary one
    finally:
        subprocess.run(["umount", "-l", str(small)])
