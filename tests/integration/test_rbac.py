# SPDX-License-Identifier: Apache-2.0
"""deploy/rbac/ against the real kube-apiserver (Node,RBAC authorization;
docs/rbac.md).

The manifests are applied with kubectl; the operator then runs as its
ServiceAccount's user (a client certificate for
system:serviceaccount:kybernate-system:kybernate-operator, group
system:serviceaccounts: the test apiserver has no token controller, and
RBAC binds a ServiceAccount subject by that user name however it
authenticated) and takes a CheckpointRequest to Scheduled with an Event.
Least privilege is shown with `kubectl auth can-i --as=...` (the admin
impersonates; the apiserver's RBAC authorizer answers) and with real
requests that must come back 403."""
import re
import signal
import subprocess
import time
import uuid

import pytest
from operator_proc import OperatorProcess
import yaml

from env.common import REPO

RBAC_DIR = REPO / "deploy" / "rbac"
SYSTEM_NS = "kybernate-system"
OPERATOR = f"system:serviceaccount:{SYSTEM_NS}:kybernate-operator"
AGENT = f"system:serviceaccount:{SYSTEM_NS}:kybernate-agent"
NS = "rbac-test"
GROUP, VERSION = "kybernate.io", "v1alpha1"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def kubectl(kube, *args):
    p = subprocess.run(kube.kubectl_argv(*args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"kubectl {' '.join(map(str, args))}: {p.stderr}"
    return p.stdout


def can_i(kube, user, verb, resource, ns=None, sub=None):
    """`kubectl auth can-i` as USER (impersonated by the admin): True/False."""
    args = ["auth", "can-i", verb, resource, f"--as={user}"]
    args += ["--all-namespaces"] if ns is None else ["-n", ns]
    if sub:
        args.append(f"--subresource={sub}")
    p = subprocess.run(kube.kubectl_argv(*args), capture_output=True, text=True, timeout=60)
    answer = p.stdout.strip().splitlines()[-1:] if p.stdout.strip() else []
    if p.returncode == 0 and answer == ["yes"]:
        return True
    if p.returncode == 1 and answer == ["no"]:
        return False
    raise AssertionError(f"kubectl {' '.join(args)}: rc {p.returncode}: {p.stdout}{p.stderr}")


def check_access(kube, user, table):
    """TABLE: (expected, verb, resource, ns, subresource); returns the rows
    whose answer differs, with the answer."""
    wrong = []
    for want, verb, res, ns, sub in table:
        got = can_i(kube, user, verb, res, ns, sub)
        if got != want:
            wrong.append((verb, res, ns or "<all>", sub, "got", got))
    return wrong


@pytest.fixture(scope="module")
def rbac(kube, kybernate_crds):
    out = kubectl(kube, "apply", "-f", RBAC_DIR)
    kube.ensure_namespace(NS)
    return out


@pytest.fixture(scope="module")
def creds(kube, rbac, tmp_path_factory):
    d = tmp_path_factory.mktemp("rbac-creds")
    return {"operator": kube.issue_service_account_credentials(SYSTEM_NS, "kybernate-operator", d),
            "agent": kube.issue_service_account_credentials(SYSTEM_NS, "kybernate-agent", d)}


def api_as(kubeconfig):
    from kubernetes import client, config
    c = config.new_client_from_config(config_file=str(kubeconfig))
    return client.CoreV1Api(c), client.CustomObjectsApi(c), c


@pytest.fixture(scope="module")
def admin(kube, rbac):
    from kubernetes import client
    return client.CoreV1Api(kube.api_client()), client.CustomObjectsApi(kube.api_client())


class Operator(OperatorProcess):
    def __init__(self, build_dir, kubeconfig, log, *extra):
        super().__init__(build_dir, kubeconfig, log, "--lease-namespace", SYSTEM_NS,
                         "--pod-wait", "5s", "--log-level", "debug", *extra)


def make_running_pod(core, name, node="node-rbac"):
    containers = ("app", "kybernate-sidecar")
    core.create_namespaced_pod(NS, {
        "metadata": {"name": name},
        "spec": {"nodeName": node, "automountServiceAccountToken": False,
                 "containers": [{"name": c, "image": "busybox:local"} for c in containers]}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(name, NS, {"status": {
        "phase": "Running",
        "containerStatuses": [{
            "name": c, "ready": True, "restartCount": 0, "image": "busybox:local",
            "imageID": "sha256:" + "0" * 64,
            "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "state": {"running": {"startedAt": now}}} for c in containers]}})


def make_request(custom, name, pod):
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, "checkpointrequests", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CheckpointRequest",
        "metadata": {"name": name},
        "spec": {"podName": pod, "storage": {"uri": "s3://bucket/prefix"}}})


def get_request(custom, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, NS, "checkpointrequests", name)


def wait_phase(custom, name, phase, timeout=30):
    end = time.monotonic() + timeout
    while True:
        obj = get_request(custom, name)
        got = obj.get("status", {}).get("phase")
        if got == phase:
            return obj
        assert time.monotonic() < end, f"{name}: phase {got}, want {phase}: {obj.get('status')}"
        time.sleep(0.1)


def forbidden(fn, *args, **kwargs):
    from kubernetes.client.rest import ApiException
    with pytest.raises(ApiException) as e:
        fn(*args, **kwargs)
    assert e.value.status == 403, e.value
    return e.value


# ---- the manifests ------------------------------------------------------------------------


def docs():
    out = []
    for p in sorted(RBAC_DIR.glob("*.yaml")):
        out += [(p.name, d) for d in yaml.safe_load_all(p.read_text()) if d]
    return out


def test_manifests_are_small_and_commented():
    kinds = sorted((d["kind"], d["metadata"]["name"]) for _, d in docs())
    assert kinds == sorted([
        ("Namespace", SYSTEM_NS),
        ("ServiceAccount", "kybernate-operator"), ("ServiceAccount", "kybernate-agent"),
        ("ClusterRole", "kybernate-operator"), ("ClusterRoleBinding", "kybernate-operator"),
        ("Role", "kybernate-operator-leader-election"),
        ("RoleBinding", "kybernate-operator-leader-election"),
        ("ClusterRole", "kybernate-agent"), ("ClusterRoleBinding", "kybernate-agent")])
    for _, d in docs():
        for rule in d.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (d["metadata"]["name"], rule)
            # the only exceptions: the operator's retention reads a policy's
            # storage Secret by name and deletes the policy's old requests
            if rule["resources"] == ["secrets"] and d["metadata"]["name"] == "kybernate-operator":
                assert rule["verbs"] == ["get"], rule
            elif rule["resources"] == ["nodes"] and d["metadata"]["name"] == "kybernate-operator":
                assert rule["verbs"] == ["get", "list", "watch"], rule  # drain trigger
            else:
                assert not {"secrets", "configmaps", "serviceaccounts/token", "pods/exec",
                            "nodes"} & set(rule["resources"]), (d["metadata"]["name"], rule)
            verbs = set(rule["verbs"])
            if rule["resources"] == ["checkpointrequests"] and \
                    d["metadata"]["name"] == "kybernate-operator":
                verbs -= {"delete"}
            assert not {"delete", "deletecollection", "escalate", "bind",
                        "impersonate"} & verbs, (d["metadata"]["name"], rule)
    # every rule is preceded by a one-line comment saying why
    for p in sorted(RBAC_DIR.glob("*.yaml")):
        lines = p.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*- apiGroups:", line):
                assert lines[i - 1].strip().startswith("# "), f"{p.name}:{i + 1}: {line}"
    sidecar = (RBAC_DIR / "sidecar.yaml").read_text()
    assert not [d for d in yaml.safe_load_all(sidecar) if d]
    assert "automountServiceAccountToken: false" in sidecar


def test_apply_creates_the_objects_and_is_idempotent(kube, rbac):
    assert "clusterrole.rbac.authorization.k8s.io/kybernate-operator" in rbac
    again = kubectl(kube, "apply", "-f", RBAC_DIR)
    assert "created" not in again and "configured" not in again, again
    out = kubectl(kube, "get", "-n", SYSTEM_NS, "serviceaccounts,roles,rolebindings", "-o", "name")
    for obj in ("serviceaccount/kybernate-operator", "serviceaccount/kybernate-agent",
                "role.rbac.authorization.k8s.io/kybernate-operator-leader-election",
                "rolebinding.rbac.authorization.k8s.io/kybernate-operator-leader-election"):
        assert obj in out, out


# ---- the operator under RBAC ------------------------------------------------------------


def test_operator_schedules_a_request_under_rbac(build_dir, kube, creds, admin, tmp_path):
    core, custom = admin
    op = Operator(build_dir, creds["operator"], tmp_path / "operator.log",
                  "--identity", "rbac-op")
    try:
        op.wait_log("caches synced")  # list+watch of requests and pods in all namespaces
        op.wait_log("leading now")  # Lease get/create/update in kybernate-system
        lease = kubectl(kube, "get", "lease", "-n", SYSTEM_NS, "kybernate-operator",
                        "-o", "jsonpath={.spec.holderIdentity}")
        assert lease == "rbac-op"

        pod, req = unique("web"), unique("ckpt")
        make_running_pod(core, pod)
        make_request(custom, req, pod)
        obj = wait_phase(custom, req, "Scheduled")  # get pods, patch request, update /status
        assert obj["status"]["nodeName"] == "node-rbac"
        assert obj["metadata"]["labels"]["kybernate.io/node"] == "node-rbac"
        assert "kybernate.io/pod-spec" in obj["metadata"]["annotations"]

        def scheduled_event():
            return [e for e in core.list_namespaced_event(NS).items
                    if e.involved_object.name == req and e.reason == "Scheduled"]
        kube.wait_for(scheduled_event, 10, "Scheduled event")  # create events
        ev = scheduled_event()[0]
        assert ev.source.component == "kybernate-operator" and ev.type == "Normal"

        # a request whose pod never appears fails (status write + Warning event)
        lost = unique("nopod")
        make_request(custom, lost, "no-such-pod")
        obj = wait_phase(custom, lost, "Failed", timeout=20)
        assert obj["status"]["message"] == "pod no-such-pod not found"
        kube.wait_for(lambda: [e for e in core.list_namespaced_event(NS).items
                               if e.involved_object.name == lost and e.reason == "PodNotFound"],
                      10, "PodNotFound event")

        assert op.proc.poll() is None
        assert not re.search(r"forbidden|\b403\b", op.text(), re.I), op.text()
    finally:
        rc = op.stop()
    assert rc == 0, op.text()
    # the lease release on shutdown is an update, allowed by resourceNames
    holder = kubectl(kube, "get", "lease", "-n", SYSTEM_NS, "kybernate-operator",
                     "-o", "jsonpath={.spec.holderIdentity}")
    assert holder == "", holder


def test_operator_cannot_elect_outside_its_namespace(build_dir, kube, creds, tmp_path):
    """The Role binds Lease access to kybernate-system only: an operator
    pointed at another namespace stays a follower (the apiserver answers 403
    to its Lease get and create) and writes nothing there."""
    lease = unique("lease")
    log = tmp_path / "elsewhere.log"
    argv = [str(build_dir / "cmd/kybernate-operator"), f"--kubeconfig={creds['operator']}",
            "--metrics-address=", "--lease-namespace", NS, "--lease-name", lease,
            "--retry-period", "200ms", "--log-level", "debug"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        end = time.monotonic() + 30
        while "campaigning" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()
            time.sleep(0.05)
        time.sleep(2)  # ~10 election rounds
        assert proc.poll() is None, log.read_text()
        assert "leading now" not in log.read_text()
        out = subprocess.run(kube.kubectl_argv("get", "lease", "-n", NS, lease),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "NotFound" in out.stderr, out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_operator_least_privilege(kube, rbac):
    sys_ns, other = SYSTEM_NS, NS
    table = [
        # what it needs
        (True, "list", "checkpointrequests.kybernate.io", None, None),
        (True, "watch", "checkpointrequests.kybernate.io", None, None),
        (True, "patch", "checkpointrequests.kybernate.io", other, None),
        (True, "update", "checkpointrequests.kybernate.io", other, "status"),
        (True, "watch", "restorerequests.kybernate.io", None, None),
        (True, "update", "restorerequests.kybernate.io", other, "status"),
        (True, "watch", "checkpointpolicies.kybernate.io", None, None),
        (True, "update", "checkpointpolicies.kybernate.io", other, "status"),
        (True, "list", "pods", None, None),
        (True, "watch", "pods", None, None),
        (True, "get", "pods", other, None),
        (True, "create", "pods", other, None),
        (True, "create", "events", other, None),
        (True, "patch", "events", other, None),
        (True, "get", "leases.coordination.k8s.io/kybernate-operator", sys_ns, None),
        (True, "update", "leases.coordination.k8s.io/kybernate-operator", sys_ns, None),
        (True, "create", "leases.coordination.k8s.io", sys_ns, None),
        # what it must not do
        (True, "get", "secrets", other, None),  # a policy's storage Secret, by name
        (False, "list", "secrets", None, None),
        (False, "watch", "secrets", None, None),
        (False, "get", "configmaps", other, None),
        (False, "delete", "pods", other, None),
        (False, "deletecollection", "pods", other, None),
        (False, "update", "pods", other, None),
        (True, "patch", "pods", other, None),  # the beforeTermination mark
        (True, "watch", "nodes", None, None),  # the drain trigger
        (False, "update", "nodes", None, None),
        (False, "create", "pods", other, "exec"),
        (False, "create", "serviceaccounts", other, "token"),
        # the policy controller creates requests and its retention deletes them
        (True, "create", "checkpointrequests.kybernate.io", other, None),
        (True, "delete", "checkpointrequests.kybernate.io", other, None),
        (False, "update", "checkpointrequests.kybernate.io", other, None),
        (False, "patch", "checkpointrequests.kybernate.io", other, "status"),
        (False, "update", "restorerequests.kybernate.io", other, None),
        (False, "delete", "checkpointpolicies.kybernate.io", other, None),
        (False, "get", "leases.coordination.k8s.io/kybernate-operator", "default", None),
        (False, "update", "leases.coordination.k8s.io/kybernate-operator", "default", None),
        (False, "create", "leases.coordination.k8s.io", "default", None),
        (False, "create", "leases.coordination.k8s.io", "kube-system", None),
        (False, "update", "leases.coordination.k8s.io/kube-scheduler", "kube-system", None),
        (False, "update", "leases.coordination.k8s.io/node-a", "kube-node-lease", None),
        (False, "update", "leases.coordination.k8s.io/someone-else", sys_ns, None),
        (False, "delete", "leases.coordination.k8s.io/kybernate-operator", sys_ns, None),
        (False, "list", "leases.coordination.k8s.io", sys_ns, None),
        (False, "update", "clusterroles.rbac.authorization.k8s.io", None, None),
        (False, "create", "rolebindings.rbac.authorization.k8s.io", sys_ns, None),
        (False, "*", "*", None, None),
    ]
    assert check_access(kube, OPERATOR, table) == []


def test_agent_least_privilege(kube, rbac):
    other = NS
    table = [
        (True, "list", "checkpointrequests.kybernate.io", None, None),
        (True, "watch", "checkpointrequests.kybernate.io", None, None),
        (True, "get", "checkpointrequests.kybernate.io", other, None),
        (True, "update", "checkpointrequests.kybernate.io", other, "status"),
        (True, "patch", "checkpointrequests.kybernate.io", other, "status"),
        (True, "watch", "restorerequests.kybernate.io", None, None),
        (True, "update", "restorerequests.kybernate.io", other, "status"),
        (True, "get", "pods", other, None),
        (True, "create", "events", other, None),
        (False, "create", "pods", other, None),
        (False, "delete", "pods", other, None),
        (False, "list", "pods", None, None),
        (False, "create", "pods", other, "exec"),
        (False, "get", "secrets", other, None),
        (False, "get", "secrets", SYSTEM_NS, None),
        (False, "list", "secrets", None, None),
        (False, "get", "configmaps", other, None),
        # the spec and labels are the operator's: an agent cannot relabel a
        # request to another node or change what is checkpointed
        (False, "update", "checkpointrequests.kybernate.io", other, None),
        (False, "patch", "checkpointrequests.kybernate.io", other, None),
        (False, "create", "checkpointrequests.kybernate.io", other, None),
        (False, "delete", "checkpointrequests.kybernate.io", other, None),
        (False, "list", "checkpointpolicies.kybernate.io", None, None),
        (False, "create", "leases.coordination.k8s.io", SYSTEM_NS, None),
        (False, "update", "leases.coordination.k8s.io/kybernate-operator", SYSTEM_NS, None),
        (False, "create", "serviceaccounts", other, "token"),
        (False, "*", "*", None, None),
    ]
    assert check_access(kube, AGENT, table) == []


def test_sidecar_needs_no_access(kube, rbac):
    """Nothing is bound for the sidecar: a workload ServiceAccount gets only
    what every authenticated user has (no Kybernate objects, no pods)."""
    sa = f"system:serviceaccount:{NS}:default"
    table = [(False, "get", "checkpointrequests.kybernate.io", NS, None),
             (False, "update", "checkpointrequests.kybernate.io", NS, "status"),
             (False, "get", "pods", NS, None),
             (False, "get", "secrets", NS, None),
             (False, "create", "events", NS, None)]
    assert check_access(kube, sa, table) == []


def test_agent_identity_real_requests(kube, creds, admin):
    """The agent's identity does its job for real (list by node label, get
    the pod, write /status, record an Event) and gets 403 for the rest."""
    core, custom = admin
    pod, req = unique("agent"), unique("ckpt")
    make_running_pod(core, pod, node="node-agent")
    make_request(custom, req, pod)
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "checkpointrequests", req,
                                          {"metadata": {"labels": {
                                              "kybernate.io/node": "node-agent"}}})
    acore, acustom, api = api_as(creds["agent"])
    try:
        mine = acustom.list_cluster_custom_object(GROUP, VERSION, "checkpointrequests",
                                                  label_selector="kybernate.io/node=node-agent")
        assert [o["metadata"]["name"] for o in mine["items"]] == [req]
        assert acore.read_namespaced_pod(pod, NS).spec.node_name == "node-agent"
        obj = acustom.get_namespaced_custom_object(GROUP, VERSION, NS, "checkpointrequests", req)
        obj["status"] = {"phase": "Checkpointing", "nodeName": "node-agent"}
        acustom.replace_namespaced_custom_object_status(GROUP, VERSION, NS,
                                                        "checkpointrequests", req, obj)
        assert get_request(custom, req)["status"]["phase"] == "Checkpointing"
        acore.create_namespaced_event(NS, {
            "metadata": {"generateName": f"{req}."},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CheckpointRequest",
                               "name": req, "namespace": NS},
            "type": "Warning", "reason": "Test", "message": "from the agent",
            "source": {"component": "kybernate-agent"}})

        forbidden(acore.create_namespaced_pod, NS, {
            "metadata": {"name": unique("evil")},
            "spec": {"nodeName": "node-agent", "containers": [{"name": "x", "image": "x"}]}})
        forbidden(acore.list_namespaced_secret, NS)
        forbidden(acore.list_pod_for_all_namespaces)
        forbidden(acore.delete_namespaced_pod, pod, NS)
        # relabelling a request (to steal or hide it) is the operator's job only
        forbidden(acustom.patch_namespaced_custom_object, GROUP, VERSION, NS,
                  "checkpointrequests", req,
                  {"metadata": {"labels": {"kybernate.io/node": "elsewhere"}}})
    finally:
        api.close()


def test_operator_identity_real_forbidden(kube, creds, admin):
    core, _ = admin
    ocore, ocustom, api = api_as(creds["operator"])
    pod = unique("keep")
    make_running_pod(core, pod)
    try:
        assert ocore.read_namespaced_pod(pod, NS).metadata.name == pod
        forbidden(ocore.list_namespaced_secret, SYSTEM_NS)
        forbidden(ocore.delete_namespaced_pod, pod, NS)
        forbidden(ocore.list_namespaced_config_map, NS)
        from kubernetes import client
        leases = client.CoordinationV1Api(api)
        forbidden(leases.create_namespaced_lease, "default", {
            "metadata": {"name": "kybernate-operator"}, "spec": {"holderIdentity": "x"}})
        forbidden(leases.read_namespaced_lease, "kybernate-operator", "default")
        assert core.read_namespaced_pod(pod, NS).metadata.deletion_timestamp is None
    finally:
        api.close()
