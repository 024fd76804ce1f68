#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of kybernate-operator (issue #7): N CheckpointRequests created at
once against a real kube-apiserver, the node side stubbed by no-op node
controllers, against a plain Python client doing the same writes, in the
same run.

  bench/operator.py --build build [--requests 1000] [--pods 1000] [--nodes 4]
                    [--cached-pods 10000] [--runs 1] [--threads 16]
                    [--node-workers 2] [--json FILE] [--keep]

Cluster: its own etcd + kube-apiserver 1.20.2 (tests/env/kube.py) on
127.0.0.1, deploy/crds applied. Pods are faked as in
tests/integration/test_operator.py: spec.nodeName set (NODES fake nodes,
round robin), automountServiceAccountToken false, status patched to Running
with containerStatuses (containers `app` and `kybernate-sidecar`).

  pipeline   build/cmd/kybernate-operator --no-leader-elect (metrics on
             127.0.0.1:0 and info logs, as deployed) plus one
             build/bench/nodectl_noop per node (src/lib/nodectl with a no-op
             engine that writes the sidecar's <id>.upload.json at once).
             The bench creates N requests at once (THREADS client threads) and
             watches them: "assigned" = every request reached Scheduled,
             "reported" = every request reached Succeeded.
  baseline   the same API writes from Python without controllers, one chain
             per request on THREADS threads: create, status Pending, merge
             patch of the node label + pod-spec annotation, status Scheduled,
             Checkpointing, Uploading, Succeeded (7 calls). The pipeline also
             reads (operator: GET pod; node: GET pod, GET request before each
             of its two re-read writes) and posts one Event per request, which
             the baseline does not.

Scenarios: --pods fake pods (default 1,000, one per request), then, unless
--cached-pods 0, filler pods up to --cached-pods (default 10,000) in the
operator's pod informer and the same N requests again. Each run starts a
fresh operator and fresh nodes. Reported per scenario: times, requests/s,
pipeline/baseline time, the operator's sync time, RSS after sync, CPU used
idle, peak RSS (VmHWM from /proc/PID/status), CPU time (utime+stime from
/proc/PID/stat) for the requests, the no-op nodes' CPU, and the API server +
etcd and bench-client CPU of each side. Exits non-zero if a run failed.
Needs etcd + kube-apiserver (scripts/setup.sh kubernetes) and build/.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from env import kube as envkube  # noqa: E402
from env.common import Proc, child_env  # noqa: E402
from env.fixtures_kube import apply_crds  # noqa: E402

NS = "kyb-bench"
CR_PATH = "/apis/kybernate.io/v1alpha1/namespaces/" + NS + "/checkpointrequests"
POD_PATH = "/api/v1/namespaces/" + NS + "/pods"
RSS_TARGET_MB = 20
ASSIGNED = ("Scheduled", "Checkpointing", "Uploading", "Succeeded")
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


def log(msg):
    print(f"[bench/operator {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------ /proc

def cpu_s(pid):
    """utime + stime of PID in seconds (threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def mem_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    return out


def self_cpu_s():
    t = os.times()
    return t.user + t.system


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


# ------------------------------------------------------------------ REST client

class ApiError(RuntimeError):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]!r}")
        self.status = status


class Api:
    """A minimal keep-alive HTTPS client, one connection per thread (the
    python kubernetes client's model decoding would make the baseline
    measure Python more than the API server)."""

    def __init__(self, server, token, ca_file):
        u = urllib.parse.urlparse(server)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=str(ca_file))
        self.auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.local = threading.local()

    def connect(self, timeout=60):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=timeout)

    def call(self, method, path, body=None, ctype="application/json", ok=(200, 201), raw=False):
        raw_out = raw
        data = json.dumps(body).encode() if body is not None else None
        hdr = dict(self.auth)
        if data is not None:
            hdr["Content-Type"] = ctype
        for attempt in range(5):
            c = getattr(self.local, "conn", None)
            if c is None:
                c = self.local.conn = self.connect()
            try:
                c.request(method, path, body=data, headers=hdr)
                r = c.getresponse()
                raw = r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
            if r.status == 429 or r.status >= 500:
                time.sleep(0.1 * (attempt + 1))
                continue
            if r.status == 409 and method == "POST" and attempt > 0:
                return None  # created by the attempt whose answer was lost
            if r.status not in ok:
                raise ApiError(method, path, r.status, raw)
            if raw_out:
                return raw.decode()
            return json.loads(raw) if raw else None
        raise ApiError(method, path, r.status, raw)


def api_counts(api):
    """kube-apiserver's apiserver_request_total summed by verb, resource and
    subresource (WATCH and the metrics scrape itself left out)."""
    out = {}
    for m in re.finditer(r'^apiserver_request_total\{([^}]*)\} (\S+)$',
                         api.call("GET", "/metrics", raw=True), re.M):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if lab.get("verb") in ("WATCH", "CONNECT") or lab.get("resource", "") == "":
            continue
        verb = lab["verb"]
        if verb == "LIST" and lab.get("resource") == "checkpointrequests":
            verb = "GET*"  # 1.20 counts a GET of one custom resource as LIST
        k = f"{verb} {lab['resource']}" + (f"/{lab['subresource']}"
                                                 if lab.get("subresource") else "")
        if lab.get("code", "").startswith("409"):
            k += " (409)"
        out[k] = out.get(k, 0) + float(m.group(2))
    return out


def diff_counts(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def fmt_counts(d, n):
    short = {"checkpointrequests": "cr", "pods": "pod", "events": "event", "leases": "lease"}
    items = sorted(d.items(), key=lambda kv: -kv[1])
    def name(k):
        verb, what = k.split(" ", 1)
        return f"{verb} {'/'.join(short.get(x, x) for x in what.split('/'))}"
    return ", ".join(f"{name(k)} {v / n:.2f}" for k, v in items if v / n >= 0.005)


# ------------------------------------------------------------------ fake pods

def pod_body(name, node):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "kyb-bench"}},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": c, "image": "busybox:local"}
                                    for c in ("app", "kybernate-sidecar")]}}


def running_status():
    now = now_rfc3339()
    return {"status": {"phase": "Running", "containerStatuses": [{
        "name": c, "ready": True, "restartCount": 0, "image": "busybox:local",
        "imageID": "sha256:" + "0" * 64,
        "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "state": {"running": {"startedAt": now}}} for c in ("app", "kybernate-sidecar")]}}


def make_pods(api, pool, names, nodes):
    def one(i_name):
        i, name = i_name
        api.call("POST", POD_PATH, pod_body(name, f"bench-node-{i % nodes}"))
        api.call("PATCH", f"{POD_PATH}/{name}/status", running_status(),
                 ctype="application/merge-patch+json")
    t0 = time.monotonic()
    list(pool.map(one, enumerate(names)))
    return time.monotonic() - t0


def count_pods(api):
    n, cont = 0, ""
    while True:
        q = "?limit=500" + (f"&continue={urllib.parse.quote(cont)}" if cont else "")
        r = api.call("GET", "/api/v1/pods" + q)
        n += len(r["items"])
        cont = r["metadata"].get("continue")
        if not cont:
            return n


# ------------------------------------------------------------------ requests

def request_body(name, pod):
    return {"apiVersion": "kybernate.io/v1alpha1", "kind": "CheckpointRequest",
            "metadata": {"name": name},
            "spec": {"podName": pod, "storage": {"uri": "s3://bench/prefix"}}}


def delete_requests(api, timeout=120):
    api.call("DELETE", CR_PATH, ok=(200, 202))
    end = time.monotonic() + timeout
    while api.call("GET", CR_PATH + "?limit=1")["items"]:
        if time.monotonic() > end:
            raise RuntimeError("CheckpointRequests not deleted in time")
        time.sleep(0.2)


class PhaseWatch(threading.Thread):
    """Watches the bench namespace's CheckpointRequests and records when
    each first reached an assigned phase, Succeeded and Failed."""

    def __init__(self, api, rv, want):
        super().__init__(daemon=True)
        self.api, self.rv, self.want = api, rv, want
        self.assigned, self.done, self.failed = {}, {}, {}
        self.cv = threading.Condition()
        self.stopping = False
        self.error = None
        self.events = 0
        self.conn = None

    def _note(self, obj, t):
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase")
        with self.cv:
            if phase in ASSIGNED and name not in self.assigned:
                self.assigned[name] = t
            if phase == "Succeeded" and name not in self.done:
                self.done[name] = t
            if phase == "Failed" and name not in self.failed:
                self.failed[name] = (t, obj["status"].get("message"))
            self.cv.notify_all()

    def _relist(self):
        r = self.api.call("GET", CR_PATH)
        t = time.monotonic()
        for obj in r["items"]:
            self._note(obj, t)
        self.rv = r["metadata"]["resourceVersion"]

    def run(self):
        while not self.stopping:
            try:
                self.conn = self.api.connect(timeout=None)
                self.conn.request("GET", f"{CR_PATH}?watch=1&resourceVersion={self.rv}"
                                  "&timeoutSeconds=3600", headers=self.api.auth)
                r = self.conn.getresponse()
                if r.status != 200:
                    raise ApiError("GET", "watch", r.status, r.read())
                while not self.stopping:
                    line = r.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    t = time.monotonic()
                    self.events += 1
                    if ev["type"] == "ERROR":  # 410: too old, list again
                        self._relist()
                        break
                    self.rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._note(ev["object"], t)
            except Exception as e:  # noqa: BLE001 - reconnect, unless stopping
                if self.stopping:
                    break
                self.error = e
                time.sleep(0.2)
                try:
                    self._relist()
                except Exception:  # noqa: BLE001
                    pass
            finally:
                if self.conn:
                    self.conn.close()

    def wait(self, deadline, pred):
        with self.cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 1.0))
            return True

    def stop(self):
        self.stopping = True
        try:
            if self.conn and self.conn.sock:
                self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.join(timeout=5)


# ------------------------------------------------------------------ sides

def status_chain(spec_annotation, node, pod_uid, now):
    """The status objects the operator and the node controller write, in order."""
    def cond(t, s, reason, msg):
        return {"type": t, "status": s, "reason": reason, "message": msg,
                "lastTransitionTime": now, "observedGeneration": 1}
    msg = f"assigned to the agent on node {node}"
    pending = {"phase": "Pending", "startTime": now, "message": "waiting for the pod",
               "observedGeneration": 1,
               "conditions": [cond("Scheduled", "False", "Pending", "waiting for the pod"),
                              cond("Ready", "False", "Pending", "not checkpointed yet")]}
    sched = dict(pending, phase="Scheduled", nodeName=node, podUID=pod_uid,
                 containerName="app", message=msg,
                 conditions=[cond("Scheduled", "True", "Scheduled", msg),
                             cond("Ready", "False", "Pending", "not checkpointed yet")])
    ckpt = dict(sched, phase="Checkpointing", message="checkpointing on the node",
                conditions=sched["conditions"] + [cond(
                    "Checkpointed", "Unknown", "Checkpointing",
                    "the agent is checkpointing the container")])
    upl = dict(ckpt, phase="Uploading", imageBytes=0,
               message="checkpointed; waiting for the sidecar's upload",
               conditions=sched["conditions"] + [cond(
                   "Checkpointed", "True", "Checkpointed",
                   "the checkpoint is complete on the node")])
    done = dict(upl, phase="Succeeded", message="uploaded", completionTime=now,
                artifactURI="file:///dev/null/x", archiveBytes=0,
                archiveSHA256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                stepDurationsMillis={"upload": 0},
                conditions=[cond("Scheduled", "True", "Scheduled", msg),
                            cond("Ready", "True", "Succeeded", "the archive is stored"),
                            upl["conditions"][2],
                            cond("Uploaded", "True", "Uploaded", "file:///dev/null/x")])
    return pending, sched, ckpt, upl, done


class Procs:
    """Cluster-side processes of one pipeline run, stopped in cleanup()."""

    def __init__(self):
        self.all = []

    def start(self, name, argv, logp, env=None):
        p = Proc(name, argv, logp, env=env).start()
        self.all.append(p)
        return p

    def stop(self, p, timeout=30):
        p.stop(timeout=timeout, group=False)
        if p in self.all:
            self.all.remove(p)
        return p._popen.returncode if p._popen else None

    def cleanup(self):
        for p in list(self.all):
            try:
                p.stop(timeout=10, group=False)
            except Exception as e:  # noqa: BLE001 - best effort
                log(f"stopping {p.name}: {e}")
        self.all.clear()


def count_double(nodes):
    """Requests whose engine checkpoint ran more than once (node logs)."""
    seen = {}
    for p in nodes:
        for m in re.finditer(r"checkpointrequest (\S+): checkpointing$",
                             pathlib.Path(p.log_path).read_text(errors="replace"), re.M):
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    return sum(1 for v in seen.values() if v > 1)


def wait_log(p, pattern, timeout):
    end = time.monotonic() + timeout
    while True:
        try:
            m = re.search(pattern, pathlib.Path(p.log_path).read_text(errors="replace"))
        except OSError:
            m = None
        if m:
            return m
        p.check_alive()
        if time.monotonic() > end:
            raise RuntimeError(f"{p.name}: no {pattern!r} in {p.log_path} within {timeout} s")
        time.sleep(0.02)


class Bench:
    def __init__(self, a, cluster, api, tmp):
        self.a, self.cluster, self.api, self.tmp = a, cluster, api, tmp
        self.pool = cf.ThreadPoolExecutor(max_workers=a.threads)
        self.procs = Procs()
        self.kube_pids = [cluster.apiserver.pid, cluster.etcd.pid]
        self.spec_annotation = None
        self.pod_uid = None

    def kube_cpu(self):
        return sum(cpu_s(p) for p in self.kube_pids)

    def prepare_annotation(self, pod):
        obj = self.api.call("GET", f"{POD_PATH}/{pod}")
        spec = obj["spec"]
        spec.pop("nodeName", None)
        self.spec_annotation = json.dumps(spec, separators=(",", ":"), sort_keys=True)
        self.pod_uid = obj["metadata"]["uid"]

    # -- baseline ----------------------------------------------------
    def baseline(self, tag, pods):
        n = self.a.requests
        now = now_rfc3339()

        def chain(i):
            name = f"base-{tag}-{i}"
            node = f"bench-node-{i % self.a.nodes}"
            pending, sched, ckpt, upl, done = status_chain(self.spec_annotation, node,
                                                           self.pod_uid, now)
            sched = dict(sched, checkpointID=f"{name}-00000000")
            obj = self.api.call("POST", CR_PATH, request_body(name, pods[i % len(pods)]))
            if obj is None:
                obj = self.api.call("GET", f"{CR_PATH}/{name}")
            obj["status"] = pending
            obj = self.api.call("PUT", f"{CR_PATH}/{name}/status", obj)
            obj = self.api.call("PATCH", f"{CR_PATH}/{name}", {"metadata": {
                "labels": {"kybernate.io/node": node},
                "annotations": {"kybernate.io/pod-spec": self.spec_annotation}}},
                ctype="application/merge-patch+json")
            obj["status"] = sched
            obj = self.api.call("PUT", f"{CR_PATH}/{name}/status", obj)
            t_sched = time.monotonic()
            for st in (ckpt, upl, done):
                obj["status"] = dict(st, checkpointID=sched["checkpointID"])
                obj = self.api.call("PUT", f"{CR_PATH}/{name}/status", obj)
            return t_sched, time.monotonic()

        a0 = api_counts(self.api)
        k0, c0 = self.kube_cpu(), self_cpu_s()
        t0 = time.monotonic()
        res = list(self.pool.map(chain, range(n)))
        t1 = time.monotonic()
        k1, c1 = self.kube_cpu(), self_cpu_s()
        r = {"assigned_s": max(s for s, _ in res) - t0, "reported_s": t1 - t0,
             "lat": sorted(d - t0 for _, d in res),
             "kube_cpu_s": k1 - k0, "client_cpu_s": c1 - c0,
             "api": diff_counts(api_counts(self.api), a0)}
        delete_requests(self.api)
        return r

    # -- pipeline ----------------------------------------------------
    def pipeline(self, tag, pods):
        a, build, n = self.a, self.a.build, self.a.requests
        results = self.tmp / f"results-{tag}"
        results.mkdir()
        nodes = []
        for k in range(a.nodes):
            node = f"bench-node-{k}"
            nodes.append(self.procs.start(
                f"nodectl_noop {node}",
                [str(build / "bench/nodectl_noop"), str(self.cluster.kubeconfig), node,
                 str(results), str(a.node_workers)], self.tmp / f"{tag}-{node}.log"))
        for p in nodes:
            wait_log(p, r"nodectl_noop: node \S+ running", 30)
        t_spawn = time.monotonic()
        op = self.procs.start("kybernate-operator", [
            str(build / "cmd/kybernate-operator"), f"--kubeconfig={self.cluster.kubeconfig}",
            "--no-leader-elect", "--metrics-address=127.0.0.1:0", *a.operator_args.split()],
            self.tmp / f"{tag}-operator.log",
            env=child_env(**dict(e.split("=", 1) for e in a.operator_env)))
        wait_log(op, r"caches synced", 120)
        sync_s = time.monotonic() - t_spawn
        wait_log(op, r"leading now", 30)
        port = int(wait_log(op, r"metrics on port (\d+)", 10).group(1))
        time.sleep(2.0)
        r = {"sync_s": sync_s, "after_sync": mem_kib(op.pid), "cpu_at_sync_s": cpu_s(op.pid)}
        c0 = cpu_s(op.pid)
        time.sleep(a.idle)
        r["idle_cpu_s"] = cpu_s(op.pid) - c0
        r["idle_s"] = a.idle
        log(f"{tag}: operator synced in {sync_s:.2f} s, RSS {r['after_sync']['VmRSS'] / 1024:.1f} "
            f"MiB (anon {r['after_sync']['RssAnon'] / 1024:.1f}, file "
            f"{r['after_sync']['RssFile'] / 1024:.1f}, {r['after_sync']['Threads']} threads), "
            f"CPU {r['cpu_at_sync_s']:.2f} s; idle {a.idle:.0f} s: {r['idle_cpu_s']:.2f} s CPU")

        rv = self.api.call("GET", CR_PATH + "?limit=1")["metadata"]["resourceVersion"]
        w = PhaseWatch(self.api, rv, n)
        w.start()
        time.sleep(0.2)
        names = [f"req-{tag}-{i}" for i in range(n)]
        created = {}
        a0 = api_counts(self.api)
        op0, nodes0 = cpu_s(op.pid), [cpu_s(p.pid) for p in nodes]
        k0, cl0 = self.kube_cpu(), self_cpu_s()

        def create(i):
            self.api.call("POST", CR_PATH, request_body(names[i], pods[i % len(pods)]))
            created[names[i]] = time.monotonic()

        t0 = time.monotonic()
        futs = [self.pool.submit(create, i) for i in range(n)]
        for f in futs:
            f.result()
        r["created_s"] = time.monotonic() - t0
        deadline = t0 + a.timeout
        ok = w.wait(deadline, lambda: len(w.done) + len(w.failed) >= n)
        t1 = time.monotonic()
        r["op_cpu_s"] = cpu_s(op.pid) - op0
        r["nodes_cpu_s"] = sum(cpu_s(p.pid) for p, c in zip(nodes, nodes0)) - sum(nodes0)
        r["kube_cpu_s"] = self.kube_cpu() - k0
        r["client_cpu_s"] = self_cpu_s() - cl0
        r["peak"] = mem_kib(op.pid)
        r["nodes_hwm_kib"] = [mem_kib(p.pid)["VmHWM"] for p in nodes]
        r["api"] = diff_counts(api_counts(self.api), a0)
        w.stop()
        listing = self.api.call("GET", CR_PATH, raw=True)
        r["cr_json_bytes"] = len(listing) / n
        (self.tmp / "sample-request.json").write_text(json.dumps(json.loads(listing)["items"][0]))
        (self.tmp / "sample-pod.json").write_text(self.api.call("GET", f"{POD_PATH}/{pods[0]}",
                                                                raw=True))
        r["watch_events"] = w.events
        if w.failed:
            first = next(iter(w.failed.items()))
            raise RuntimeError(f"{len(w.failed)} requests Failed, e.g. {first[0]}: {first[1][1]}")
        if not ok:
            raise RuntimeError(f"after {t1 - t0:.0f} s: {len(w.assigned)} assigned, "
                               f"{len(w.done)} succeeded of {n}; logs in {self.tmp}")
        r["assigned_s"] = max(w.assigned.values()) - t0
        r["reported_s"] = max(w.done.values()) - t0
        r["lat"] = sorted(w.done[k] - created[k] for k in names)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as m:
            r["metrics"] = {k: float(v) for k, v in re.findall(
                r"^(kybernate_operator_(?:reconciles_total|phase_transitions_total)\{[^}]*\}) "
                r"(\S+)$", m.read().decode(), re.M)}
        r["operator_rc"] = self.procs.stop(op)
        node_out = []
        for p in nodes:
            rc = self.procs.stop(p)
            lines = pathlib.Path(p.log_path).read_text(errors="replace").splitlines()
            js = [json.loads(x) for x in lines if x.startswith("{\"checkpoints\"")]
            node_out.append({"rc": rc, **(js[-1] if js else {})})
        r["nodes"] = node_out
        if r["operator_rc"] != 0:
            raise RuntimeError(f"operator exited with {r['operator_rc']}; see {op.log_path}")
        # More engine calls than requests: a request checkpointed twice
        # (reported, not a failure: every request still succeeded once).
        r["engine_calls"] = sum(x.get("checkpoints", 0) for x in node_out)
        if r["engine_calls"] < n or any(x["rc"] != 0 or x.get("errors") for x in node_out):
            raise RuntimeError(f"no-op nodes: {node_out} (want {n} checkpoints in all)")
        r["double_checkpointed"] = count_double(nodes)
        delete_requests(self.api)
        return r

    def close(self):
        self.procs.cleanup()
        self.pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------ report

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_s(xs):
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.2f} s"
    return f"{med(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def pct(lat, q):
    return lat[min(len(lat) - 1, int(q * len(lat)))]


def report(a, scen, host):
    out = []
    n = a.requests
    out.append(
        f"operator benchmark: {n:,} CheckpointRequests created at once by {a.threads} client "
        f"threads, kube-apiserver 1.20.2 + etcd on 127.0.0.1, {a.nodes} no-op nodes "
        f"(bench/nodectl_noop, {a.node_workers} workers each), kybernate-operator from "
        f"{a.build} (--no-leader-elect, default workers (12), info log, metrics on"
        f"{', ' + a.operator_args if a.operator_args else ''}); baseline = the same writes "
        f"(7 calls/request) from a Python client in the same run; "
        f"{'median (min-max) of ' + str(a.runs) + ' runs' if a.runs > 1 else '1 run'}; "
        f"{host}")
    out.append("")
    out.append("| cached pods | side | all created | all assigned (Scheduled) | all reported "
               "(Succeeded) | requests/s | per request p50 / p99 | time / baseline |")
    out.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in scen:
        b, p = s["baseline"], s["pipeline"]
        bt = med([x["reported_s"] for x in b])
        for side, rs in (("baseline (Python client, 7 calls/request)", b),
                         (f"operator + {a.nodes} no-op nodes", p)):
            if not rs:
                out.append(f"| {s['pods']:,} | {side} | failed | | | | | |")
                continue
            rep = [x["reported_s"] for x in rs]
            lat = rs[len(rs) // 2]["lat"]
            created = fmt_s([x["created_s"] for x in rs]) if "created_s" in rs[0] else ""
            out.append(
                f"| {s['pods']:,} | {side} | {created} | {fmt_s([x['assigned_s'] for x in rs])} | "
                f"{fmt_s(rep)} | {n / med(rep):,.0f} | {pct(lat, 0.5):.2f} / {pct(lat, 0.99):.2f} s"
                f" | {med(rep) / bt:.2f}x |")
    out.append("")
    out.append("| cached pods | operator sync | RSS after sync | CPU at sync | CPU idle | "
               "peak RSS (VmHWM) | operator CPU for the requests | per request | no-op nodes "
               "CPU (sum) | API server + etcd CPU: pipeline / baseline | bench client CPU: "
               "pipeline / baseline | engine calls (requests checkpointed twice) |")
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
               "| ---: |")
    for s in scen:
        p, b = s["pipeline"], s["baseline"]
        if not p:
            continue
        g = lambda k: med([x[k] for x in p])  # noqa: E731
        out.append(
            f"| {s['pods']:,} | {g('sync_s'):.2f} s | "
            f"{med([x['after_sync']['VmRSS'] for x in p]) / 1024:.1f} MiB | "
            f"{g('cpu_at_sync_s'):.2f} s | {g('idle_cpu_s'):.2f} s in {a.idle:.0f} s | "
            f"{med([x['peak']['VmHWM'] for x in p]) / 1024:.1f} MiB | {g('op_cpu_s'):.2f} s | "
            f"{g('op_cpu_s') / n * 1000:.2f} ms | {g('nodes_cpu_s'):.2f} s | "
            f"{g('kube_cpu_s'):.1f} / {med([x['kube_cpu_s'] for x in b]):.1f} s | "
            f"{g('client_cpu_s'):.1f} / {med([x['client_cpu_s'] for x in b]):.1f} s | "
            f"{g('engine_calls'):,.0f} ({g('double_checkpointed'):,.0f}) |")
    out.append("")
    out.append("| target | value | met |")
    out.append("| --- | ---: | :---: |")
    for s in scen:
        if not s["pipeline"]:
            continue
        mb = max(x["peak"]["VmHWM"] for x in s["pipeline"]) * 1024 / 1e6
        out.append(f"| operator peak RSS < {RSS_TARGET_MB} MB ({s['pods']:,} cached pods, "
                   f"{n:,} requests) | {mb:.1f} MB | {'yes' if mb < RSS_TARGET_MB else '**no**'} |")
    out.append("")
    out.append("API requests per CheckpointRequest (kube-apiserver's apiserver_request_total, "
               "first run; cr = checkpointrequests, (409) = conflicts, GET* = GETs of one "
               "request, which 1.20 counts as LIST):")
    out.append("")
    for s in scen:
        for side in ("baseline", "pipeline"):
            for x in s[side][:1]:
                tot = sum(x["api"].values()) / n
                out.append(f"- {s['pods']:,} pods, {side}: {tot:.2f} in all: "
                           f"{fmt_counts(x['api'], n)}")
    for s in scen:
        for x in s["pipeline"]:
            out.append(f"\n{s['pods']:,} pods: a CheckpointRequest at Succeeded is "
                       f"{x['cr_json_bytes'] / 1024:.1f} KiB of JSON (list, managedFields "
                       f"included; the operator caches it slimmed), "
                       f"{x['cr_json_bytes'] * n / MIB:.1f} MiB for all {n:,}; operator RSS "
                       f"after sync {x['after_sync']['RssAnon'] / 1024:.1f} MiB anon + "
                       f"{x['after_sync']['RssFile'] / 1024:.1f} MiB file, at the end "
                       f"{x['peak']['RssAnon'] / 1024:.1f} MiB anon + "
                       f"{x['peak']['RssFile'] / 1024:.1f} MiB file")
            m = ", ".join(f"{re.sub(r'kybernate_operator_|_total', '', k)} {v:.0f}"
                          for k, v in x["metrics"].items())
            out.append(f"\n{s['pods']:,} pods, operator metrics: {m}")
            break
    return "\n".join(out)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(REPO / "build"),
                    help="non-sanitized build directory (default: build)")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=1000, help="fake pods of the first scenario")
    ap.add_argument("--cached-pods", type=int, default=10000,
                    help="pods in the cluster for the second scenario (0: skip it)")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--node-workers", type=int, default=2,
                    help="workers per no-op node (agent default 2)")
    ap.add_argument("--threads", type=int, default=16, help="client threads (default 16)")
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario and side (default 3)")
    ap.add_argument("--idle", type=float, default=5.0, help="idle CPU window after sync (s)")
    ap.add_argument("--timeout", type=float, default=600, help="per pipeline run (s)")
    ap.add_argument("--operator-args", default="", help="extra kybernate-operator options")
    ap.add_argument("--operator-env", action="append", default=[], metavar="K=V",
                    help="environment for the operator (e.g. MALLOC_ARENA_MAX=2)")
    ap.add_argument("--json", type=pathlib.Path)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    a = ap.parse_args()
    a.build = pathlib.Path(a.build).resolve()
    for need in (a.build / "cmd/kybernate-operator", a.build / "bench/nodectl_noop"):
        if not os.access(need, os.X_OK):
            sys.exit(f"bench/operator.py: {need} missing: run 'make build'")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kyb-bench-operator-", dir="/var/tmp"))
    cluster = bench = None
    failures, scen = [], []
    load0 = loadavg()
    t_start = time.monotonic()
    try:
        log(f"work dir {tmp}; load average {' '.join(load0)}")
        cluster = envkube.KubeCluster(tmp / "kube").start()
        apply_crds(cluster, sorted((REPO / "deploy/crds").glob("*.yaml")))
        cluster.ensure_namespace(NS)
        api = Api(cluster.server, cluster.token, cluster.ca_file)
        bench = Bench(a, cluster, api, tmp)
        pods = [f"pod-{i}" for i in range(a.pods)]
        dt = make_pods(api, bench.pool, pods, a.nodes)
        log(f"{a.pods:,} pods created and Running in {dt:.1f} s ({a.pods / dt:,.0f}/s)")
        bench.prepare_annotation(pods[0])
        plan = [a.pods]
        if a.cached_pods > a.pods:
            plan.append(a.cached_pods)
        for total in plan:
            have = count_pods(api)
            if total > have:
                fill = [f"fill-{i}" for i in range(have - a.pods, total - a.pods)]
                dt = make_pods(api, bench.pool, fill, a.nodes)
                log(f"{len(fill):,} more pods in {dt:.1f} s ({len(fill) / dt:,.0f}/s)")
            total = count_pods(api)
            s = {"pods": total, "baseline": [], "pipeline": []}
            scen.append(s)
            for run in range(a.runs):
                order = ("baseline", "pipeline") if run % 2 == 0 else ("pipeline", "baseline")
                for side in order:
                    tag = f"{total}-{run}-{side[0]}"
                    try:
                        r = getattr(bench, side)(tag, pods)
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # noqa: BLE001 - reported, the run goes on
                        failures.append(f"{total:,} pods run {run + 1} {side}: {e}")
                        log(f"{total:,} pods run {run + 1} {side} FAILED: {e}")
                        bench.procs.cleanup()
                        try:
                            delete_requests(api)
                        except Exception as e2:  # noqa: BLE001
                            log(f"cleaning up requests: {e2}")
                        continue
                    s[side].append(r)
                    log(f"{total:,} pods run {run + 1} {side}: assigned {r['assigned_s']:.2f} s, "
                        f"reported {r['reported_s']:.2f} s"
                        + (f", operator CPU {r['op_cpu_s']:.2f} s, peak RSS "
                           f"{r['peak']['VmHWM'] / 1024:.1f} MiB (at the end: RSS "
                           f"{r['peak']['VmRSS'] / 1024:.1f} MiB, anon "
                           f"{r['peak']['RssAnon'] / 1024:.1f})" if side == "pipeline" else ""))
    finally:
        if bench:
            bench.close()
        if cluster:
            cluster.stop(strict=False)
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")

    host = (f"load average {' '.join(load0)} before, {' '.join(loadavg())} after; "
            f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    log(f"done in {time.monotonic() - t_start:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                      "host": host, "scenarios": scen,
                                      "failures": failures}, indent=1))
    print(report(a, scen, host))
    if failures:
        print("\nFAILED runs (not in the tables):\n" + "\n".join(f"- {f}" for f in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
