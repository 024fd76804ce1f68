# SPDX-License-Identifier: Apache-2.0
"""A real CRIU checkpoint leaves the node and comes back: agent A checkpoints
a workload, the sidecar (watch) archives and uploads it to the real S3
server, the sidecar (fetch) downloads and verifies it on "another node",
agent B imports it with PrepareRestore and restores it, and the workload
verifies that it continued with its memory intact."""
import json
import shutil
import subprocess

from env import criu as criu_mod
from rpc_peer import unary
from test_agent_checkpoint import Agent, AGENT, alive, restored_pids, target, wait_dead
from test_sidecar import Watcher, clean_env, s3_target, sidecar


def test_checkpoint_upload_fetch_import_restore(build_dir, tmp_path, pb2, s3):
    bins = criu_mod.workload_binaries(tmp_path / "wl-build")
    w = criu_mod.Workload("counter", bins["counter"], tmp_path / "wl").start()
    node_a = tmp_path / "node-a"
    node_b = tmp_path / "node-b"
    node_a.mkdir()
    node_b.mkdir()
    agent_a = Agent(build_dir, node_a, pb2)
    watcher = None
    agent_b = None
    try:
        mark = w.mark()
        root = w.tree.root
        agent_a.checkpoint(checkpoint_id="art-1", target=target(pb2, root))
        w.tree.reap_parent(30)
        assert wait_dead(root)
        w.tree = None
        # The node's shared checkpoint volume: the store's directory handed
        # over as the agent publishes it (complete, manifest.json inside).
        shared = tmp_path / "shared"
        shared.mkdir()
        shutil.copytree(agent_a.store / "art-1", shared / ".inprogress-art-1")
        watcher = Watcher(build_dir, tmp_path, shared, s3_target(s3, "e2e"), s3.env())
        watcher.wait_for(r"watching ")
        (shared / ".inprogress-art-1").rename(shared / "art-1")
        watcher.wait_for(r"uploaded checkpoint art-1", timeout=120)
        artifact = json.loads((shared / "art-1.upload.json").read_text())["artifact"]
        assert watcher.term() == 0

        fetched = tmp_path / "fetched"
        fetched.mkdir()
        out = subprocess.run([sidecar(build_dir), "fetch", "--source", artifact, "--dest",
                              str(fetched)], capture_output=True, text=True, timeout=300,
                             env=clean_env(s3.env()))
        assert out.returncode == 0, out.stderr

        agent_b = Agent(build_dir, node_b, pb2)
        a = pb2.agent
        prep = unary(agent_b.channel, AGENT + "PrepareRestore", a.PrepareRestoreRequest,
                     a.PrepareRestoreResponse)(
            a.PrepareRestoreRequest(artifact_path=str(fetched / "art-1")), timeout=120)
        assert prep.checkpoint.id == "art-1"
        res = agent_b.restore("art-1")
        restored_pids.add(res.pid)
        assert alive(res.pid)
        ok, line = w.verify(min_progress=mark)
        assert ok, line
    finally:
        if watcher:
            watcher.kill()
        for pid in list(restored_pids):
            subprocess.run(["kill", "-KILL", str(pid)])
        restored_pids.clear()
        if w.tree is not None:
            w.tree.kill()
        agent_a.stop()
        if agent_b:
            agent_b.stop()
