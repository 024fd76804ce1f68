# SPDX-License-Identifier: Apache-2.0
"""The real-GPU tests (scripts/gpu/real_gpu_test.py) against this build:
they run wherever nvidia-smi works and skip with the reason elsewhere. On a
GPU host without this repository's tooling, use scripts/gpu/bundle.sh."""
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_real_gpu(build_dir, tmp_path):
    if not shutil.which("nvidia-smi") or subprocess.run(["nvidia-smi"], capture_output=True
                                                        ).returncode != 0:
        pytest.skip("no NVIDIA GPU here (nvidia-smi missing or failing): real-GPU tests skipped")
    if not shutil.which("nvcc"):
        pytest.skip("nvcc not found: cannot build tests/workloads/cuda_counter.cu")
    bundle = tmp_path / "bundle"
    subprocess.run([str(REPO / "scripts/gpu/bundle.sh"), str(bundle), str(build_dir)],
                   check=True)
    out = subprocess.run([str(bundle / "run.sh")], capture_output=True, text=True, timeout=1800)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
