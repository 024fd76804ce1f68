# SPDX-License-Identifier: Apache-2.0
"""Real test environment for Kybernate: private containerd + runc, etcd +
kube-apiserver, kubelet, and an S3 server (s3rver), each on loopback, on
free ports, in its own state directory; torn down without leaking
processes, mounts or sockets.

Modules (plain Python, usable outside pytest, e.g. by scripts/testenv.py):
  common      processes, ports, waiting, leak checks, MissingSetup
  containerd  Containerd (+ ctr helper, local images)
  kube        Etcd, KubeAPIServer, KubeCluster (kubeconfig + python client)
  kubelet     Kubelet (node registered against KubeCluster, CRI to Containerd)
  s3          S3Server (s3rver with a bucket)
  stack       start/stop of everything (scripts/testenv.py)

pytest fixtures live in fixtures_*.py (registered through pytest_plugins in
tests/conftest.py). See docs/testing.md.
"""
