# SPDX-License-Identifier: Apache-2.0
"""The test Echo service (tests/proto/echo.proto) in python3-grpcio: the
reference peer for interop tests and the baseline for bench/rpc."""
import concurrent.futures
import threading
import time

import grpc

from rpc_peer import STATUS_OF_ERRNO


class PyEcho:
    """The Echo service in python3-grpcio."""

    def __init__(self, pb2):
        self.pb2 = pb2
        self.cancelled = threading.Event()

    def echo(self, req, ctx):
        if req.fail_errno:
            ctx.abort(STATUS_OF_ERRNO[req.fail_errno], req.fail_message)
        return self.pb2.echo.EchoReply(text=req.text, blob=req.blob)

    def count(self, req, ctx):
        finished = []
        # grpcio stops resuming the generator once the client cancels, so
        # termination without completion is observed from the callback.
        ctx.add_callback(lambda: None if finished else self.cancelled.set())
        for i in range(req.count):
            yield self.pb2.echo.CountReply(index=i)
            time.sleep(req.delay_ms / 1000)
        finished.append(True)

    def wait(self, req, ctx):
        end = time.monotonic() + req.max_ms / 1000
        while time.monotonic() < end:
            if not ctx.is_active():
                self.cancelled.set()
                return self.pb2.echo.WaitReply(cancelled=True)
            time.sleep(0.01)
        return self.pb2.echo.WaitReply()


def serve(pb2, socket_path, workers=8):
    """Starts the service on unix:socket_path; returns (server, service)."""
    e = pb2.echo
    svc = PyEcho(pb2)
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(
            svc.echo, e.EchoRequest.FromString, e.EchoReply.SerializeToString),
        "Count": grpc.unary_stream_rpc_method_handler(
            svc.count, e.CountRequest.FromString, e.CountReply.SerializeToString),
        "Wait": grpc.unary_unary_rpc_method_handler(
            svc.wait, e.WaitRequest.FromString, e.WaitReply.SerializeToString),
    }
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(workers))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("kybernate.test.v1.Echo", handlers),))
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    svc.socket = socket_path
    return server, svc
