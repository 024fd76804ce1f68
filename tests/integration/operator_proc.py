# SPDX-License-Identifier: Apache-2.0
"""A kybernate-operator process for the cluster-side tests: started with
metrics on a free port and its log in a file, waited on by log pattern,
stopped with a signal."""
import re
import signal
import subprocess
import time
import urllib.request


class OperatorProcess:
    def __init__(self, build_dir, kubeconfig, log, *extra):
        self.log = log
        argv = [str(build_dir / "cmd/kybernate-operator"), f"--kubeconfig={kubeconfig}",
                "--metrics-address=127.0.0.1:0", *map(str, extra)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))

    def text(self):
        return self.log.read_text()

    def wait_log(self, pattern, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.text())
            if m:
                return m
            assert self.proc.poll() is None, f"operator exited:\n{self.text()}"
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {pattern!r}:\n{self.text()}")

    def metrics(self):
        port = self.wait_log(r"metrics on port (\d+)").group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        return self.proc.returncode
