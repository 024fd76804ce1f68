# SPDX-License-Identifier: Apache-2.0
"""gRPC interop over a Unix socket between our C rpc layer (src/lib/rpc) and
python3-grpcio, in both directions."""
import concurrent.futures
import errno
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

import py_echo
from rpc_peer import STATUS_OF_ERRNO, Process, stream, unary

ECHO = "/kybernate.test.v1.Echo/"


@pytest.fixture
def c_server(build_dir, tmp_path):
    sock = str(tmp_path / "echo.sock")
    server = Process([str(build_dir / "tests/integration/rpc_echo_server"), sock], sock)
    yield server
    rc, out, err = server.stop()
    # The server is an ASan build in `make test`: a leak or memory error
    # shows up as a non-zero exit here.
    assert rc == 0, f"server exited {rc}: {err}"
    assert "stopped" in out


@pytest.fixture
def channel(c_server):
    with grpc.insecure_channel(f"unix:{c_server.socket_path}") as ch:
        yield ch


# --- python client -> C server ---------------------------------------------

def test_unary_roundtrip(channel, pb2):
    call = unary(channel, ECHO + "Echo", pb2.echo.EchoRequest, pb2.echo.EchoReply)
    blob = os.urandom(100_000)
    reply = call(pb2.echo.EchoRequest(text="hello from python", blob=blob), timeout=10)
    assert reply.text == "hello from python"
    assert reply.blob == blob


def test_server_streaming(channel, pb2):
    call = stream(channel, ECHO + "Count", pb2.echo.CountRequest, pb2.echo.CountReply)
    indexes = [r.index for r in call(pb2.echo.CountRequest(count=50), timeout=10)]
    assert indexes == list(range(50))


@pytest.mark.parametrize("err", sorted(STATUS_OF_ERRNO))
def test_error_status_and_message(channel, pb2, err):
    call = unary(channel, ECHO + "Echo", pb2.echo.EchoRequest, pb2.echo.EchoReply)
    with pytest.raises(grpc.RpcError) as exc:
        call(pb2.echo.EchoRequest(fail_errno=err, fail_message="criu dump: step failed"),
             timeout=10)
    assert exc.value.code() == STATUS_OF_ERRNO[err]
    assert exc.value.details() == "criu dump: step failed"


def test_stream_error_after_messages(channel, pb2):
    call = stream(channel, ECHO + "Count", pb2.echo.CountRequest, pb2.echo.CountReply)
    got = []
    with pytest.raises(grpc.RpcError) as exc:
        for r in call(pb2.echo.CountRequest(count=10, fail_errno=errno.EBUSY, fail_after=4),
                      timeout=10):
            got.append(r.index)
    assert got == [0, 1, 2, 3]
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "failing at 4" in exc.value.details()


def test_unknown_method_unimplemented(channel, pb2):
    call = unary(channel, ECHO + "DoesNotExist", pb2.echo.EchoRequest, pb2.echo.EchoReply)
    with pytest.raises(grpc.RpcError) as exc:
        call(pb2.echo.EchoRequest(text="x"), timeout=10)
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "DoesNotExist" in exc.value.details()


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x80", b"\x12\x05ab"])
def test_malformed_payload_invalid_argument(channel, pb2, payload):
    call = unary(channel, ECHO + "Echo", None, pb2.echo.EchoReply)
    with pytest.raises(grpc.RpcError) as exc:
        call(payload, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed kybernate.test.v1.EchoRequest" in exc.value.details()
    # The server is still healthy afterwards.
    ok = unary(channel, ECHO + "Echo", pb2.echo.EchoRequest, pb2.echo.EchoReply)
    assert ok(pb2.echo.EchoRequest(text="alive"), timeout=10).text == "alive"


def _stats(channel, pb2):
    call = unary(channel, ECHO + "Echo", pb2.echo.EchoRequest, pb2.echo.EchoReply)
    text = call(pb2.echo.EchoRequest(text="__stats__"), timeout=10).text
    return dict(kv.split("=") for kv in text.split())


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_client_cancel_reaches_handler(channel, pb2):
    call = unary(channel, ECHO + "Wait", pb2.echo.WaitRequest, pb2.echo.WaitReply)
    fut = call.future(pb2.echo.WaitRequest(max_ms=30_000))
    # Cancel only once the handler runs, or there is nothing to observe.
    assert _wait_for(lambda: _stats(channel, pb2)["waits_active"] == "1")
    fut.cancel()
    assert fut.cancelled()
    assert _wait_for(lambda: _stats(channel, pb2)["waits_cancelled"] == "1")


def test_cancel_stream_midway(channel, pb2):
    call = stream(channel, ECHO + "Count", pb2.echo.CountRequest, pb2.echo.CountReply)
    it = call(pb2.echo.CountRequest(count=1000, delay_ms=10))
    assert next(it).index == 0
    it.cancel()
    with pytest.raises(grpc.RpcError) as exc:
        for _ in it:
            pass
    assert exc.value.code() == grpc.StatusCode.CANCELLED


def test_deadline_exceeded(channel, pb2):
    call = unary(channel, ECHO + "Wait", pb2.echo.WaitRequest, pb2.echo.WaitReply)
    _stats(channel, pb2)  # connect first: the deadline should hit the handler
    with pytest.raises(grpc.RpcError) as exc:
        call(pb2.echo.WaitRequest(max_ms=30_000), timeout=0.5)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _wait_for(lambda: _stats(channel, pb2)["waits_cancelled"] == "1")


def test_concurrent_calls(channel, pb2):
    call = unary(channel, ECHO + "Echo", pb2.echo.EchoRequest, pb2.echo.EchoReply)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = [f"t{i}" for i in range(200)]
        replies = list(pool.map(lambda t: call(pb2.echo.EchoRequest(text=t), timeout=10).text,
                                texts))
    assert replies == texts


def test_socket_is_private(c_server):
    st = os.stat(c_server.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == 0


NOBODY = 65534
NOBODY_CLIENT = """
import grpc, sys
ch = grpc.insecure_channel("unix:" + sys.argv[1])
try:
    ch.unary_unary("/kybernate.test.v1.Echo/Echo")(b"", timeout=5)
    print("OK")
except grpc.RpcError as e:
    print(e.code().name)
"""


def _run_as_nobody(sock):
    def drop():
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    out = subprocess.run(["/usr/bin/python3", "-c", NOBODY_CLIENT, sock], preexec_fn=drop,
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_non_root_client_refused_by_mode(c_server):
    # The socket's 0600 mode alone keeps an ordinary user out.
    assert _run_as_nobody(c_server.socket_path) == "UNAVAILABLE"


def test_non_root_client_refused_by_peer_credentials(build_dir):
    # Even with the mode opened up, SO_PEERCRED stops a non-root peer. The
    # socket lives in a directory that nobody may traverse.
    sockdir = tempfile.mkdtemp(prefix="kyb-peercred-")
    os.chmod(sockdir, 0o755)
    sock = os.path.join(sockdir, "echo.sock")
    server = Process([str(build_dir / "tests/integration/rpc_echo_server"), sock], sock)
    try:
        os.chmod(sock, 0o666)
        assert _run_as_nobody(sock) == "UNAVAILABLE"
    finally:
        rc, _, err = server.stop()
        shutil.rmtree(sockdir)
    assert rc == 0
    assert "refusing peer pid" in err and f"uid {NOBODY}" in err


def test_second_instance_refused(build_dir, c_server):
    out = subprocess.run([str(build_dir / "tests/integration/rpc_echo_server"),
                          c_server.socket_path], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "another instance" in out.stderr
    assert os.path.exists(c_server.socket_path)


def test_sigterm_drains_in_flight_stream(c_server, pb2):
    with grpc.insecure_channel(f"unix:{c_server.socket_path}") as ch:
        call = stream(ch, ECHO + "Count", pb2.echo.CountRequest, pb2.echo.CountReply)
        it = call(pb2.echo.CountRequest(count=10, delay_ms=50), timeout=20)
        assert next(it).index == 0
        stopper = threading.Thread(target=c_server.stop)
        stopper.start()
        rest = [r.index for r in it]
        stopper.join()
    assert rest == list(range(1, 10))
    assert not os.path.exists(c_server.socket_path)


# --- C client -> python server ---------------------------------------------

ERRNO_OF_STATUS = {v: k for k, v in STATUS_OF_ERRNO.items()}


@pytest.fixture
def py_server(pb2, tmp_path):
    server, svc = py_echo.serve(pb2, str(tmp_path / "py.sock"))
    yield svc
    server.stop(grace=None)


def c_client(build_dir, sock, *args):
    out = subprocess.run([str(build_dir / "tests/integration/rpc_echo_client"), sock,
                          *map(str, args)], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines()]


def test_c_client_unary(build_dir, py_server):
    rc, lines = c_client(build_dir, py_server.socket, "echo", "hello from C")
    assert rc == 0 and lines == [{"text": "hello from C"}]


def test_c_client_error_status(build_dir, py_server):
    rc, lines = c_client(build_dir, py_server.socket, "fail", errno.EEXIST, "already there")
    assert rc == 1
    assert lines[0]["status"] == "ALREADY_EXISTS"
    assert lines[0]["errno"] == errno.EEXIST
    assert lines[0]["error"] == \
        "/kybernate.test.v1.Echo/Echo: ALREADY_EXISTS: already there"


def test_c_client_streaming(build_dir, py_server):
    rc, lines = c_client(build_dir, py_server.socket, "count", 25)
    assert rc == 0
    assert [l["index"] for l in lines[:-1]] == list(range(25))
    assert lines[-1] == {"done": True}


def test_c_client_cancel(build_dir, py_server):
    rc, lines = c_client(build_dir, py_server.socket, "count", 1000, 20, 3)
    assert rc == 1
    assert [l.get("index") for l in lines[:3]] == [0, 1, 2]
    assert lines[-1]["status"] == "CANCELLED"
    assert py_server.cancelled.wait(5)


def test_c_client_deadline(build_dir, py_server):
    rc, lines = c_client(build_dir, py_server.socket, "wait", 30_000, 200)
    assert rc == 1 and lines[0]["status"] == "DEADLINE_EXCEEDED"
    assert py_server.cancelled.wait(5)


def test_c_client_unknown_method(build_dir, py_server):
    rc, lines = c_client(build_dir, py_server.socket, "unknown")
    assert rc == 1 and lines[0]["status"] == "UNIMPLEMENTED"


def test_c_client_no_server(build_dir, tmp_path):
    rc, lines = c_client(build_dir, str(tmp_path / "absent.sock"), "echo", "x")
    assert rc == 1 and lines[0]["status"] == "UNAVAILABLE"
