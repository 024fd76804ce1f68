# SPDX-License-Identifier: Apache-2.0
"""Runs the libFuzzer targets of tests/fuzz for a bounded time, seeded with a
real artifact (and its manifest) made by our own archive writer. The
targets are built by `make fuzz-build` (clang, -Dfuzz=true) into
$KYB_FUZZ_DIR; `make test` does that."""
import os
import pathlib
import subprocess

import pytest

REGRESSIONS = pathlib.Path(__file__).resolve().parents[1] / "fuzz/regressions"

from test_storage_s3 import make_checkpoint, run

SECONDS = int(os.environ.get("KYB_FUZZ_SECONDS", "20"))


@pytest.fixture(scope="module")
def fuzz_dir():
    d = os.environ.get("KYB_FUZZ_DIR")
    if not d or not (pathlib.Path(d) / "tests/fuzz/fuzz_manifest").exists():
        pytest.skip("fuzz targets not built: run 'make fuzz-build' (needs clang) and set "
                    "KYB_FUZZ_DIR")
    return pathlib.Path(d)


@pytest.fixture(scope="module")
def seeds(build_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-seeds")
    ckpt = tmp / "ckpt"
    make_checkpoint(ckpt, 64 * 1024)
    artifact = tmp / "store"
    artifact.mkdir()
    run(build_dir, "upload", str(ckpt), f"file://{artifact}/seed.tar.zst")
    archives = tmp / "archives"
    manifests = tmp / "manifests"
    archives.mkdir()
    manifests.mkdir()
    (archives / "seed").write_bytes((artifact / "seed.tar.zst").read_bytes())
    (manifests / "seed").write_bytes((ckpt / "manifest.json").read_bytes())
    return {"fuzz_archive_extract": archives, "fuzz_manifest": manifests}


@pytest.mark.parametrize("target", ["fuzz_archive_extract", "fuzz_manifest"])
def test_fuzz(fuzz_dir, seeds, tmp_path, target):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # Inputs that once crashed a target are replayed first, every run.
    out = subprocess.run([str(fuzz_dir / "tests/fuzz" / target), str(corpus), str(seeds[target]),
                          str(REGRESSIONS / target),
                          f"-max_total_time={SECONDS}", "-rss_limit_mb=1024", "-timeout=10",
                          f"-artifact_prefix={tmp_path}/"],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("leak-*")) + \
        list(tmp_path.glob("timeout-*"))
    assert out.returncode == 0 and not crashes, out.stderr[-4000:]
    assert "Done" in out.stderr
