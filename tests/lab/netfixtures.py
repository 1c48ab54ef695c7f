"""Small real servers and helpers shared by the lab's networking tests.

`python -m tests.lab.netfixtures --address 127.0.0.5 --port P --cluster edge --node n1 --pod p1`
serves JSON `{"cluster", "node", "pod"}` on every path (like the lab's ML stand-in) and a tiny
Prometheus exposition on /metrics (request count, last Host header). Tests start it as a
separate process (`start_backend`) and stop it by PID; `running_bind9` and `running` are
context managers for pytest fixtures that must stop what they started.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.lab.dns import Bind9Info, start_bind9
from tests.lab.procs import Proc, free_port, spawn, wait_port


def start_backend(log_dir: Path, address: str, cluster: str, node: str, pod: str,
                  port: int | None = None) -> tuple[Proc, int]:
    """Start a backend process on address:port (free port if None); return (proc, port)."""
    port = port or free_port(address)
    cmd = [sys.executable, "-m", "tests.lab.netfixtures", "--address", address,
           "--port", str(port), "--cluster", cluster, "--node", node, "--pod", pod]
    proc = spawn(f"backend-{pod}-{port}", cmd, log_dir, cwd=Path(__file__).resolve().parents[2])
    try:
        wait_port(address, port, proc, timeout=15)
    except BaseException:
        proc.stop()
        raise
    return proc, port


@contextmanager
def running_bind9(work_dir: Path) -> Iterator[Bind9Info]:
    """A named for the test's duration, stopped by PID afterwards."""
    proc, info = start_bind9(work_dir)
    try:
        yield info
    finally:
        proc.stop()


@contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Stop every Proc appended to `procs` on exit, last started first."""
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()


class _Handler(BaseHTTPRequestHandler):
    identity: ClassVar[dict[str, str]] = {}
    requests: ClassVar[int] = 0
    last_host: ClassVar[str] = ""
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        cls = type(self)
        if self.path.startswith("/metrics"):
            body = (
                "# TYPE lab_backend_requests_total counter\n"
                f"lab_backend_requests_total {cls.requests}\n"
                "# TYPE lab_backend_up gauge\n"
                f'lab_backend_up{{pod="{cls.identity["pod"]}"}} 1\n'
                "# TYPE lab_backend_last_host gauge\n"
                f'lab_backend_last_host{{host="{cls.last_host}"}} 1\n'
            ).encode()
            ctype = "text/plain; version=0.0.4"
        else:
            with cls.lock:  # handler threads run concurrently; keep the count exact
                cls.requests += 1
                cls.last_host = self.headers.get("Host", "")
            body = json.dumps({**cls.identity, "path": self.path}).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cluster", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--pod", required=True)
    a = p.parse_args(argv)
    if not a.address.startswith("127."):
        raise SystemExit("backend binds to 127.0.0.0/8 only")
    _Handler.identity = {"cluster": a.cluster, "node": a.node, "pod": a.pod}
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    ThreadingHTTPServer((a.address, a.port), _Handler).serve_forever()


if __name__ == "__main__":
    main()
