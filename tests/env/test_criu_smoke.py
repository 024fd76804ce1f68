# SPDX-License-Identifier: Apache-2.0
"""Real CRIU against the zdtm-style workloads (docs/workloads.md): each is
dumped (killed), restored and then verifies that its state is consistent
and kept advancing from where it was; and the verification must catch a
rollback to an older image, a corrupted page in pages-*.img and a dead
member of the tree. Tear-down leaves no process behind (checked by PID).

Run: /usr/bin/python3 -m pytest -q tests/env/test_criu_smoke.py (root;
scripts/setup.sh criu)."""
import os
import re
import signal
import struct
import time

import pytest

from env import criu as criu_mod
from env.fixtures_criu import criu, workload_bins, workloads  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="CRIU needs root")

# name -> (options, processes in the tree)
CASES = {
    "counter": ((), 1),
    "bigmem": (("--size", "128M", "--rate", "32"), 1),
    "proctree": (("--children", "3"), 5),
    "tcpconn": ((), 2),
}


def _checkpoint(w, **kw):
    # CRIU 4.1.1 needs our patch (scripts/setup/patches/criu-4.1.1/) to dump
    # AF_INET sockets on Linux >= 6.16; setup applies it, so no allowance here.
    return w.checkpoint(**kw)


def _progress(line):
    m = re.search(r"progress=(\d+)", line)
    assert m, line
    return int(m.group(1))


def _comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


@pytest.mark.parametrize("name", list(CASES))
def test_dump_restore_verify(workloads, name):
    args, nproc = CASES[name]
    w = workloads.start(name, *args)
    assert len(w.tree.refresh()) == nproc, w.tree.seen

    ok, line = w.verify()
    assert ok, line
    before = w.mark()
    old = dict(w.tree.seen)

    dump = _checkpoint(w)
    assert not criu_mod.wait_gone(old, 0), "dumped tree still running"
    assert dump.pages_files(), "no pages-*.img written"

    tree = w.restore(dump.images)
    assert tree.alive()
    assert len(tree.refresh()) == nproc, f"restored tree has {tree.seen}"
    assert not set(tree.seen) & set(old), "restore reused a live PID of the old tree"

    ok, line = w.verify(min_progress=before)
    assert ok, f"{name} after restore: {line}\n{w.describe()}"
    assert _progress(line) > before
    assert f"mark={before} " in line, line  # the pre-dump mark came back with the memory

    # verify-exit ends the restored tree with exit code 0
    ok, line = w.verify(min_progress=before, exit_after=True)
    assert ok, line
    assert tree.wait_exit(20) == 0
    print(f"{name}: dump {dump.seconds:.3f}s restore {tree.restore_seconds:.3f}s")


def test_verify_catches_rollback(workloads):
    """Restoring an image older than a recorded mark must fail: the counter
    went backwards."""
    w = workloads.start("counter")
    old_image = w.checkpoint(leave_running=True)
    after_dump = w.mark()  # >= the counter in the image
    later = after_dump
    deadline = time.monotonic() + 30
    while later < after_dump + 200:  # far beyond what verify's 2 steps cover
        assert time.monotonic() < deadline, "counter does not advance"
        time.sleep(0.05)
        later = w.mark()
    w.kill_tree()

    w.restore(old_image.images)
    ok, line = w.verify(min_progress=later)
    assert not ok, line
    assert "went backwards" in line, line

    # and the exit code of verify-exit says so too
    ok, line = w.verify(min_progress=later, exit_after=True)
    assert not ok
    assert w.tree.wait_exit(20) == 1


def test_verify_catches_wrong_expectation(workloads):
    w = workloads.start("counter")
    ok, line = w.verify(min_progress=10**15)
    assert not ok and "went backwards" in line, line
    ok, line = w.verify()
    assert ok, line  # a failed verify does not break the workload


WORD_STEP = 0xD6E8FEB86659FD93  # tests/workloads/bigmem.c


def _is_bigmem_page(page):
    words = struct.unpack("<512Q", page)
    return all((words[j + 1] - words[j]) % 2**64 == WORD_STEP for j in range(511))


def _corrupt_one_pattern_page(pages_img):
    """Flips one byte in the first bigmem pattern page found in the middle
    of PAGES_IMG; returns its file offset."""
    size = pages_img.stat().st_size
    with open(pages_img, "r+b") as f:
        start = (size // 2) // 4096 * 4096
        for off in range(start, size - 4096, 4096):
            f.seek(off)
            page = f.read(4096)
            if _is_bigmem_page(page):
                f.seek(off + 800)
                f.write(bytes([page[800] ^ 0xFF]))
                return off
    raise AssertionError(f"no bigmem pattern page in {pages_img}")


def test_verify_catches_corrupted_pages_image(workloads):
    w = workloads.start("bigmem", "--size", "64M", "--rate", "16")
    dump = _checkpoint(w)
    largest = dump.pages_files()[-1]
    _corrupt_one_pattern_page(largest)

    w.restore(dump.images)
    ok, line = w.verify()
    assert not ok, f"corruption in {largest.name} went unnoticed: {line}"
    assert "page" in line, line


@pytest.mark.parametrize("name,victim", [("proctree", "pt-grandchild"),
                                         ("tcpconn", "tcpconn-client")])
def test_verify_catches_dead_member(workloads, name, victim):
    """After a restore, a tree member dies: verification must notice."""
    args, nproc = CASES[name]
    w = workloads.start(name, *args)
    dump = _checkpoint(w)
    tree = w.restore(dump.images)
    pids = [p for p in tree.refresh() if _comm(p) == victim]
    assert len(pids) == 1, {p: _comm(p) for p in tree.seen}
    os.kill(pids[0], signal.SIGKILL)

    ok, line = w.verify()
    assert not ok, line


def test_teardown_leaves_nothing(workloads):
    """kill of a restored tree: every process of it and its keeper are gone
    (PID + start time), nothing is left as a zombie."""
    w = workloads.start("proctree", "--children", "2")
    dump = _checkpoint(w)
    tree = w.restore(dump.images)
    pids = {**tree.refresh(), **tree.parent_pids()}
    assert len(pids) == 5, pids  # 4 processes + keeper
    assert not w.destroy()
    assert not criu_mod.wait_gone(pids, 0)
