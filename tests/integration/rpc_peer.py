# SPDX-License-Identifier: Apache-2.0
"""Helpers for talking to our C gRPC processes with python3-grpcio, the
second, independent gRPC implementation in the tests."""
import errno
import os
import signal
import subprocess
import time

import grpc

# Our errno -> status mapping, from the peer's side (docs/errors.md).
STATUS_OF_ERRNO = {
    errno.EINVAL: grpc.StatusCode.INVALID_ARGUMENT,
    errno.ENOENT: grpc.StatusCode.NOT_FOUND,
    errno.EEXIST: grpc.StatusCode.ALREADY_EXISTS,
    errno.EACCES: grpc.StatusCode.PERMISSION_DENIED,
    errno.EBUSY: grpc.StatusCode.FAILED_PRECONDITION,
    errno.ENOSPC: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno.ETIMEDOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    errno.ENOSYS: grpc.StatusCode.UNIMPLEMENTED,
    errno.EBADMSG: grpc.StatusCode.DATA_LOSS,
    errno.EIO: grpc.StatusCode.INTERNAL,
}


def wait_for_socket(path, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not appear within {timeout}s")


class Process:
    """A started C server; stop() sends SIGTERM and returns (rc, stdout, stderr)."""

    def __init__(self, argv, socket_path, env=None):
        self.socket_path = socket_path
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        wait_for_socket(socket_path, self.proc)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def unary(channel, path, req_cls_or_none, resp_cls):
    """A unary callable; req_cls_or_none None sends raw bytes unchanged."""
    ser = (lambda b: b) if req_cls_or_none is None else req_cls_or_none.SerializeToString
    return channel.unary_unary(path, request_serializer=ser,
                               response_deserializer=resp_cls.FromString)


def stream(channel, path, req_cls, resp_cls):
    return channel.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                response_deserializer=resp_cls.FromString)
