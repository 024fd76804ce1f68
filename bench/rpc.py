#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the C rpc layer (src/lib/rpc) against python3-grpcio as the
baseline, measured in the same run on the same Unix sockets.

  bench/rpc.py --build build [--calls 5000] [--messages 20000] [--repeat 5]

Scenarios (every client and server is its own process):
  grpcio -> grpcio   baseline
  C      -> C        our client and server
  grpcio -> C        our server under the reference client
  C      -> grpcio   our client against the reference server
Prints calls/s and messages/s (median of --repeat runs) with the ratio to the
baseline, and the peak RSS of each server.
"""
import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
PY = "/usr/bin/python3"


def gen_pb2(out):
    subprocess.run(["protoc", f"-I{REPO}/tests/proto", f"--python_out={out}",
                    f"{REPO}/tests/proto/echo.proto"], check=True)


def import_echo(pb2_dir):
    sys.path[:0] = [str(pb2_dir), str(REPO / "tests/integration")]
    import echo_pb2

    class Modules:
        echo = echo_pb2
    return Modules


def py_server(pb2_dir, sock):
    pb2 = import_echo(pb2_dir)
    import py_echo
    server, _ = py_echo.serve(pb2, sock, workers=4)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop(grace=None)


def py_client(pb2_dir, sock, mode, n):
    import grpc
    pb2 = import_echo(pb2_dir)
    with grpc.insecure_channel(f"unix:{sock}") as ch:
        if mode == "unary":
            call = ch.unary_unary("/kybernate.test.v1.Echo/Echo",
                                  request_serializer=pb2.echo.EchoRequest.SerializeToString,
                                  response_deserializer=pb2.echo.EchoReply.FromString)
            req = pb2.echo.EchoRequest(text="bench")
            start = time.monotonic()
            for _ in range(n):
                call(req)
        else:
            call = ch.unary_stream("/kybernate.test.v1.Echo/Count",
                                   request_serializer=pb2.echo.CountRequest.SerializeToString,
                                   response_deserializer=pb2.echo.CountReply.FromString)
            start = time.monotonic()
            seen = sum(1 for _ in call(pb2.echo.CountRequest(count=n)))
            assert seen == n, f"stream ended after {seen} of {n}"
        print(json.dumps({"ops": n, "seconds": time.monotonic() - start}))


class Server:
    def __init__(self, argv, sock):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server {argv} did not start")
            time.sleep(0.02)
        time.sleep(0.2)

    def peak_rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def run_client(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {out.stderr}")
    r = json.loads(out.stdout)
    return r["ops"] / r["seconds"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--_mode", help=argparse.SUPPRESS)
    ap.add_argument("--_args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._mode == "py-server":
        return py_server(*a._args)
    if a._mode == "py-client":
        return py_client(a._args[0], a._args[1], a._args[2], int(a._args[3]))

    build = pathlib.Path(a.build).resolve()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kyb-bench-rpc-"))
    gen_pb2(tmp)
    me = [PY, str(pathlib.Path(__file__).resolve())]
    servers = {
        "C": lambda s: [str(build / "tests/integration/rpc_echo_server"), s],
        "grpcio": lambda s: me + ["--_mode", "py-server", "--_args", str(tmp), s],
    }
    clients = {
        "C": lambda s, m, n: [str(build / "bench/rpc_bench"), s, m, str(n)],
        "grpcio": lambda s, m, n: me + ["--_mode", "py-client", "--_args", str(tmp), s, m, str(n)],
    }
    scenarios = [("grpcio", "grpcio"), ("C", "C"), ("grpcio", "C"), ("C", "grpcio")]
    results = {}
    for client, server in scenarios:
        sock = str(tmp / f"{client}-{server}.sock")
        srv = Server(servers[server](sock), sock)
        try:
            unary = [run_client(clients[client](sock, "unary", a.calls)) for _ in range(a.repeat)]
            strm = [run_client(clients[client](sock, "stream", a.messages))
                    for _ in range(a.repeat)]
            rss = srv.peak_rss_kib()
        finally:
            srv.stop()
        results[(client, server)] = (statistics.median(unary), statistics.median(strm), rss)

    base_u, base_s, _ = results[("grpcio", "grpcio")]
    print(f"rpc benchmark: {a.calls} sequential unary calls, {a.messages}-message stream, "
          f"median of {a.repeat}; baseline = grpcio client -> grpcio server")
    print("| client -> server | unary calls/s | ratio | stream msgs/s | ratio | server peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (client, server), (u, s, rss) in results.items():
        print(f"| {client} -> {server} | {u:,.0f} | {u / base_u:.2f}x | {s:,.0f} | "
              f"{s / base_s:.2f}x | {rss / 1024:.1f} MiB |")


if __name__ == "__main__":
    sys.exit(main())
