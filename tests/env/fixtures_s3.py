# SPDX-License-Identifier: Apache-2.0
"""pytest fixture: an S3 server (tests/env/s3.py).

  s3   session; a started env.s3.S3Server: .endpoint, .bucket, .access_key,
       .secret_key, .region, .client() (botocore), .env() (AWS_* variables)

With KYB_TESTENV=1 (or =DIR) the fixtures hand out the services of a
running `scripts/testenv.py up` instead of starting their own.
"""
import pytest

from env import s3 as _s3
from env.common import MissingSetup
from env.stack import live_stack


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """s3rver 3.7.1 on 127.0.0.1 with bucket `kybernate-test`
    (credentials S3RVER/S3RVER, region us-east-1)."""
    live = live_stack()
    if live is not None and live.s3 is not None:
        yield live.s3  # scripts/testenv.py's: left running
        return
    try:
        _s3.require()
    except MissingSetup as e:
        pytest.fail(str(e), pytrace=False)
    s = _s3.S3Server(tmp_path_factory.mktemp("s3"))
    s.start()
    yield s
    s.stop(strict=True)
