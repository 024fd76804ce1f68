# SPDX-License-Identifier: Apache-2.0
"""A local S3-compatible server for tests: s3rver 3.7.1 (installed by
scripts/setup/s3.sh) on 127.0.0.1, a free port, data in its own directory,
one bucket created at start-up. Credentials are s3rver's fixed
S3RVER/S3RVER; requests need the x-amz-content-sha256 header (botocore and
libcurl's CURLOPT_AWS_SIGV4 send it)."""
import pathlib
import re
import urllib.request

from .common import (CACHE_DIR, EnvError, MissingSetup, Proc, free_port, need_binary, rmtree,
                     setup_hint, wait_until)

COMPONENT = "s3"
S3RVER_VERSION = "3.7.1"
S3RVER_DIR = CACHE_DIR / f"s3rver-{S3RVER_VERSION}"
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
REGION = "us-east-1"


def s3rver_script():
    js = S3RVER_DIR / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if not js.exists():
        raise MissingSetup(f"s3rver {S3RVER_VERSION} not installed ({js}): {setup_hint(COMPONENT)}")
    return js


def require():
    need_binary("node", COMPONENT)
    s3rver_script()


class S3Server:
    """s3rver in BASE_DIR with BUCKET. Attributes: endpoint
    (http://127.0.0.1:PORT), bucket, access_key, secret_key, region,
    data_dir, log_path."""

    access_key = ACCESS_KEY
    secret_key = SECRET_KEY
    region = REGION

    def __init__(self, base_dir, bucket="kybernate-test", state=None):
        self.base = pathlib.Path(base_dir).resolve()
        self.bucket = bucket
        self.data_dir = self.base / "data"
        self.log_path = self.base / "s3rver.log"
        self.port = None
        self.endpoint = None
        self.proc = None
        if state:
            self.port = state["port"]
            self.endpoint = state["endpoint"]
            self.proc = Proc.from_state(state["proc"])

    def to_state(self):
        return {"base": str(self.base), "bucket": self.bucket, "port": self.port,
                "endpoint": self.endpoint, "proc": self.proc.to_state()}

    @classmethod
    def from_state(cls, st):
        return cls(st["base"], bucket=st["bucket"], state=st)

    def _buckets(self):
        # ListBuckets; s3rver does not insist on a signature for it.
        with urllib.request.urlopen(self.endpoint + "/", timeout=2) as r:
            body = r.read().decode()
        return re.findall(r"<Name>([^<]+)</Name>", body)

    def start(self, timeout=30):
        require()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = Proc("s3rver", [
            need_binary("node", COMPONENT), str(s3rver_script()),
            "--directory", str(self.data_dir), "--address", "127.0.0.1",
            "--port", str(self.port), "--configure-bucket", self.bucket,
        ], self.log_path).start()
        try:
            wait_until(lambda: self.bucket in self._buckets(), timeout,
                       f"s3rver on {self.endpoint} with bucket {self.bucket}", interval=0.1,
                       procs=[self.proc])
        except BaseException:
            self.stop(strict=False)
            raise
        return self

    def client(self):
        """A botocore S3 client for this server (path-style addressing)."""
        try:
            import botocore.config
            import botocore.session
        except ImportError as e:
            raise MissingSetup(f"python3-botocore missing ({e}): {setup_hint(COMPONENT)}") from e
        session = botocore.session.get_session()
        return session.create_client(
            "s3", region_name=self.region, endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    def env(self):
        """Environment variables for programs under test (AWS_* names)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint,
                "KYB_S3_BUCKET": self.bucket}

    def stop(self, strict=True):
        left = []
        if self.proc is not None and self.proc.pid:
            self.proc.stop(timeout=10)
            if self.proc.alive():
                left.append(self.proc.pid)
        report = {"pids": left}
        if strict and left:
            raise EnvError(f"s3rver tear-down left processes: {left}")
        return report

    def remove_state(self):
        rmtree(self.base)
