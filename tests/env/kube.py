# SPDX-License-Identifier: Apache-2.0
"""A real Kubernetes control plane for tests: etcd-server (Debian) and
kube-apiserver v1.20.2 (built by scripts/setup/kubernetes.sh) on 127.0.0.1,
free ports, TLS with a private CA, token auth, Node+RBAC authorization and
service-account keys. No scheduler or controller-manager: set
spec.nodeName, and automountServiceAccountToken: false on pods."""
import importlib
import json
import os
import pathlib
import secrets
import ssl
import urllib.error
import urllib.request

from .common import (EnvError, MissingSetup, Proc, free_port, kill_and_wait, need_binary, node_ip,
                     rmtree, run, setup_hint, wait_until)

COMPONENT = "kubernetes"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"


def require():
    for b in ("etcd", "kube-apiserver", "openssl"):
        need_binary(b, COMPONENT)
    try:
        importlib.import_module("kubernetes")
    except ImportError as e:
        raise MissingSetup(f"python3-kubernetes missing ({e}): {setup_hint(COMPONENT)}") from e


class PKI:
    """A throw-away CA plus server / client certificates (openssl CLI)."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.ca_crt = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"

    def _openssl(self, *args):
        run(["openssl", *map(str, args)], timeout=60)

    def init_ca(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                      "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "3650",
                      "-subj", "/CN=kybernate-testenv-ca",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name, cn, orgs=(), sans=(), server=False):
        """Key + certificate NAME.{key,crt} signed by the CA; returns paths."""
        key, csr, crt = (self.dir / f"{name}.{x}" for x in ("key", "csr", "crt"))
        subj = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", key,
                      "-out", csr, "-subj", subj)
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=" + ("serverAuth" if server else "clientAuth")]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        self._openssl("x509", "-req", "-sha256", "-in", csr, "-CA", self.ca_crt, "-CAkey",
                      self.ca_key, "-CAcreateserial", "-out", crt, "-days", "3650",
                      "-extfile", ext)
        csr.unlink()
        ext.unlink()
        return crt, key

    def rsa_key(self, name):
        key = self.dir / f"{name}.key"
        self._openssl("genrsa", "-out", key, "2048")
        return key


class KubeCluster:
    """etcd + kube-apiserver in BASE_DIR.

    Attributes once started: server (https://127.0.0.1:PORT), kubeconfig
    (admin, bearer token), token, ca_file, pki, etcd_url, node_ip.
    api_client() / core() give python kubernetes clients."""

    def __init__(self, base_dir, state=None):
        self.base = pathlib.Path(base_dir).resolve()
        self.pki = PKI(self.base / "pki")
        self.kubeconfig = self.base / "admin.kubeconfig"
        self.token = None
        self.etcd = None
        self.apiserver = None
        self.etcd_url = None
        self.server = None
        self.node_ip = None
        self._client = None
        if state:
            self.token = state["token"]
            self.etcd = Proc.from_state(state["etcd"])
            self.apiserver = Proc.from_state(state["apiserver"])
            self.etcd_url = state["etcd_url"]
            self.server = state["server"]
            self.node_ip = state["node_ip"]

    @property
    def ca_file(self):
        return self.pki.ca_crt

    def to_state(self):
        return {"base": str(self.base), "token": self.token, "etcd": self.etcd.to_state(),
                "apiserver": self.apiserver.to_state(), "etcd_url": self.etcd_url,
                "server": self.server, "node_ip": self.node_ip}

    @classmethod
    def from_state(cls, st):
        return cls(st["base"], state=st)

    # -- start ---------------------------------------------------------
    def _start_etcd(self, timeout):
        cport, pport = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{cport}"
        peer = f"http://127.0.0.1:{pport}"
        data = self.base / "etcd"
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        self.etcd = Proc("etcd", [
            need_binary("etcd", COMPONENT), "--name", "kyb", "--data-dir", str(data),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"kyb={peer}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ], self.base / "etcd.log").start()

        def healthy():
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return json.load(r).get("health") == "true"
        wait_until(healthy, timeout, "etcd /health", interval=0.1, procs=[self.etcd])

    def _start_apiserver(self, timeout):
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        self.node_ip = node_ip()
        self.pki.init_ca()
        crt, key = self.pki.issue(
            "apiserver", "kube-apiserver", server=True,
            sans=["IP:127.0.0.1", "DNS:localhost", f"IP:{self.node_ip}", f"IP:{SERVICE_IP}",
                  "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                  "DNS:kubernetes.default.svc.cluster.local"])
        sa_key = self.pki.rsa_key("service-account")
        self.token = secrets.token_hex(16)
        tokens = self.base / "tokens.csv"
        tokens.write_text(f'{self.token},kybernate-admin,kybernate-admin,"system:masters"\n')
        os.chmod(tokens, 0o600)
        self.apiserver = Proc("kube-apiserver", [
            need_binary("kube-apiserver", COMPONENT),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--insecure-port=0",
            f"--advertise-address={self.node_ip}",
            f"--cert-dir={self.base / 'apiserver-certs'}",
            f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
            f"--client-ca-file={self.pki.ca_crt}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--logtostderr=true", "--v=1",
        ], self.base / "kube-apiserver.log").start()
        wait_until(lambda: self._get("/readyz", timeout=3)[0] == 200, timeout,
                   "kube-apiserver /readyz", interval=0.25, procs=[self.apiserver, self.etcd])

    def stop_apiserver(self):
        """Stops kube-apiserver only (etcd keeps the data), for tests of
        clients that must survive an API server restart."""
        self.apiserver.stop(timeout=15)

    def start_apiserver(self, timeout=60):
        """Starts kube-apiserver again on the same port with the same
        certificates and flags, and waits until it is ready."""
        self.apiserver = Proc("kube-apiserver", self.apiserver.argv,
                              self.apiserver.log_path).start()
        wait_until(lambda: self._get("/readyz", timeout=3)[0] == 200, timeout,
                   "kube-apiserver /readyz after restart", interval=0.1,
                   procs=[self.apiserver, self.etcd])

    def etcd_revision(self):
        """etcd's current revision (through its v3 JSON gateway)."""
        return int(self._etcd_post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])

    def compact_etcd(self):
        """Compacts etcd at its current revision: watches from older
        resourceVersions then fail with 410 Gone."""
        self._etcd_post("/v3/kv/compaction", {"revision": str(self.etcd_revision()),
                                              "physical": True})

    def _etcd_post(self, path, body):
        req = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def _ssl(self):
        return ssl.create_default_context(cafile=str(self.pki.ca_crt))

    def _get(self, path, timeout=10):
        req = urllib.request.Request(self.server + path,
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def write_kubeconfig(self, path, user, token=None, cert=None, key=None):
        """A kubeconfig for this cluster (JSON, which is YAML)."""
        u = {}
        if token:
            u["token"] = token
        if cert:
            u["client-certificate"] = str(cert)
            u["client-key"] = str(key)
        cfg = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "kybernate-testenv", "cluster": {
                "server": self.server, "certificate-authority": str(self.pki.ca_crt)}}],
            "users": [{"name": user, "user": u}],
            "contexts": [{"name": "kybernate-testenv", "context": {
                "cluster": "kybernate-testenv", "user": user, "namespace": "default"}}],
            "current-context": "kybernate-testenv",
        }
        path = pathlib.Path(path)
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        os.chmod(path, 0o600)
        return path

    def start(self, timeout=90):
        require()
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            self._start_etcd(timeout=30)
            self._start_apiserver(timeout=timeout)
            self.write_kubeconfig(self.kubeconfig, "kybernate-admin", token=self.token)
            self.ensure_namespace("default")
        except BaseException:
            self.stop(strict=False)
            raise
        return self

    # -- clients -------------------------------------------------------
    def api_client(self):
        """A kubernetes.client.ApiClient for the admin kubeconfig (cached)."""
        if self._client is None:
            from kubernetes import config
            self._client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._client

    def core(self):
        from kubernetes import client
        return client.CoreV1Api(self.api_client())

    def kubectl_argv(self, *args):
        return ["kubectl", f"--kubeconfig={self.kubeconfig}", *map(str, args)]

    def ensure_namespace(self, name):
        """Create namespace NAME (if needed) and its `default`
        ServiceAccount (there is no controller-manager to do it)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        core = self.core()
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        except ApiException as e:
            if e.status != 409:
                raise
        try:
            core.create_namespaced_service_account(
                name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default")))
        except ApiException as e:
            if e.status != 409:
                raise

    def ensure_runtime_class(self, name, handler=None):
        """RuntimeClass NAME (node.k8s.io/v1) with HANDLER (default NAME),
        e.g. `kybernate`, which the test containerd defines."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        try:
            client.NodeV1Api(self.api_client()).create_runtime_class(client.V1RuntimeClass(
                metadata=client.V1ObjectMeta(name=name), handler=handler or name))
        except ApiException as e:
            if e.status != 409:
                raise

    def issue_node_credentials(self, node_name, directory):
        """A client certificate for system:node:NODE_NAME (group
        system:nodes, authorized by the Node authorizer) and a kubeconfig
        using it; returns the kubeconfig path."""
        crt, key = self.pki.issue(f"node-{node_name}", f"system:node:{node_name}",
                                  orgs=["system:nodes"])
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return self.write_kubeconfig(directory / "kubelet.kubeconfig",
                                     f"system:node:{node_name}", cert=crt, key=key)

    def issue_service_account_credentials(self, namespace, name, directory):
        """A client certificate for ServiceAccount NAMESPACE/NAME's user
        (CN system:serviceaccount:NAMESPACE:NAME, O system:serviceaccounts
        and system:serviceaccounts:NAMESPACE, the groups a token would
        carry) and a kubeconfig using it; returns the kubeconfig path.
        There is no token controller here: RBAC binds a ServiceAccount
        subject by that user name, however it authenticated."""
        user = f"system:serviceaccount:{namespace}:{name}"
        crt, key = self.pki.issue(f"sa-{namespace}-{name}", user,
                                  orgs=["system:serviceaccounts",
                                        f"system:serviceaccounts:{namespace}"])
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return self.write_kubeconfig(directory / f"{namespace}-{name}.kubeconfig", user,
                                     cert=crt, key=key)

    def wait_for(self, pred, timeout, what, interval=0.25):
        return wait_until(pred, timeout, what, interval=interval,
                          procs=[p for p in (self.apiserver, self.etcd) if p])

    # -- stop ----------------------------------------------------------
    def stop(self, strict=True):
        """Stop kube-apiserver, then etcd; returns {"pids": [...]} of what
        survived (raises EnvError if STRICT and anything did)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
            self._client = None
        pids = {}
        for p in (self.apiserver, self.etcd):
            if p is not None and p.pid:
                pids[p.pid] = p.starttime
                p.stop(timeout=15)
        left = kill_and_wait(pids, timeout=5)
        report = {"pids": left}
        if strict and left:
            raise EnvError(f"kube tear-down left processes: {left}")
        return report

    def remove_state(self):
        rmtree(self.base)

