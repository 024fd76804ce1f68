# SPDX-License-Identifier: Apache-2.0
"""A private cgroup parent in every mounted cgroup hierarchy (v1 and v2),
so containers and kubelet pods of one test environment live below one
directory that is removed on tear-down."""
import os
import time

CGROUP_ROOT = "/sys/fs/cgroup"


def hierarchies():
    """Mount points of all cgroup (v1) and cgroup2 hierarchies."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype in ("cgroup", "cgroup2"):
                out.append(left.split()[4])
    return sorted(set(out))


def _copy_cpuset(path):
    # A new cpuset cgroup (v1) starts empty and nothing can join it.
    parent = os.path.dirname(path)
    for name in ("cpuset.cpus", "cpuset.mems"):
        p = os.path.join(path, name)
        if os.path.exists(p):
            with open(p) as f:
                if f.read().strip():
                    continue
            with open(os.path.join(parent, name)) as f:
                val = f.read().strip()
            with open(p, "w") as f:
                f.write(val)


def create(name):
    """Create /<name> in every hierarchy; returns the list of paths."""
    paths = []
    for h in hierarchies():
        p = os.path.join(h, name)
        os.makedirs(p, exist_ok=True)
        if os.path.exists(os.path.join(p, "cpuset.cpus")):
            _copy_cpuset(p)
        paths.append(p)
    return paths


def pids_in(name):
    pids = set()
    for h in hierarchies():
        top = os.path.join(h, name)
        for root, _dirs, _files in os.walk(top):
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
            except OSError:
                pass
    return sorted(pids)


def remove(name, timeout=10):
    """rmdir /<name> and everything below it, deepest first, in every
    hierarchy; returns the directories that could not be removed."""
    left = []
    deadline = time.monotonic() + timeout
    for h in hierarchies():
        top = os.path.join(h, name)
        if not os.path.isdir(top):
            continue
        dirs = [root for root, _d, _f in os.walk(top)]
        for d in sorted(dirs, key=lambda x: -x.count("/")):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # EBUSY while a dying task is still being released.
                    if time.monotonic() > deadline:
                        left.append(d)
                        break
                    time.sleep(0.05)
    return left


def exists(name):
    return [os.path.join(h, name) for h in hierarchies() if os.path.isdir(os.path.join(h, name))]
