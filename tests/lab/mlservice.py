"""The lab's stand-in for the paper's TorchServe ResNet-18 service.

A small threaded HTTP server that does real CPU work per inference request (SHA-256 rounds,
divided by the node's speed so a faster node answers sooner) and answers with the pod, node and
cluster that served it. It speaks a subset of TorchServe's API and metric names:

- inference port: `POST|GET /predictions/<model>` -> JSON {"model", "class", "pod", "node",
  "cluster", ...}; `GET /ping` -> {"status": "Healthy"}; `GET /metrics` as below;
- metrics port (optional, TorchServe's 8082): Prometheus text with the TorchServe counters
  `ts_inference_requests_total`, `ts_inference_latency_microseconds`,
  `ts_queue_latency_microseconds` (labels uuid, model_name, model_version).

Requests wait for one of `--workers` workers (WORKERS, default 1: one Python process computes
on one core anyway), as TorchServe's requests wait in its job queue for a backend worker. As in
TorchServe, the latency counter covers a request from its arrival (headers read) to the end of
its inference, queueing included; the queue counter covers the wait for a worker alone.

The fake kubelet runs it for containers whose image starts with `greenwise/ml-service` and fills
POD_NAME, NODE_NAME, CLUSTER, NODE_SPEED from the pod and its node. SIGTERM stops accepting
connections and finishes in-flight requests; for `CLOSE_GRACE_S` it still answers on open
keep-alive connections, with `Connection: close`, so that their clients close them between two
requests (a client that reached it through a ClusterIP keeps its connection to this pod).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Rounds of SHA-256 per request at speed 1.0: about 2 ms of one core here, so 100 req/s costs
# a fifth of a core; WORK_ROUNDS overrides it.
DEFAULT_ROUNDS = 4000
CLASSES = ("tabby", "tiger_cat", "Egyptian_cat", "golden_retriever", "space_shuttle")


class Model:
    """Counters shared by request threads (guarded by a lock) and the work itself."""

    def __init__(self, name: str, rounds: int, speed: float, identity: dict[str, str],
                 workers: int = 1) -> None:
        self.name = name
        self.rounds = max(1, int(rounds / max(speed, 0.01)))
        self.identity = identity
        self.uuid = str(uuid.uuid4())
        self.lock = threading.Lock()
        self.workers = threading.BoundedSemaphore(max(1, workers))
        self.requests = 0
        self.latency_us = 0.0
        self.queue_us = 0.0
        self.in_flight = 0

    def infer(self, payload: bytes, arrived: float | None = None) -> dict[str, Any]:
        """Wait for a worker, compute; `arrived` (perf_counter) is when the request came in."""
        arrived = time.perf_counter() if arrived is None else arrived
        with self.lock:
            self.in_flight += 1
        with self.workers:
            start = time.perf_counter()
            digest = hashlib.sha256(payload or b"image").digest()
            for _ in range(self.rounds):
                digest = hashlib.sha256(digest).digest()
            done = time.perf_counter()
        with self.lock:
            self.in_flight -= 1
            self.requests += 1
            self.latency_us += (done - arrived) * 1e6  # queueing included, as TorchServe's
            self.queue_us += (start - arrived) * 1e6
        return {"model": self.name, "class": CLASSES[digest[0] % len(CLASSES)],
                "probability": round(digest[1] / 255, 3), "work_rounds": self.rounds,
                "compute_ms": round((done - start) * 1e3, 3), **self.identity}

    def metrics(self) -> bytes:
        labels = f'uuid="{self.uuid}",model_name="{self.name}",model_version="default"'
        with self.lock:
            lines = [
                "# HELP ts_inference_requests_total Total number of inference requests.",
                "# TYPE ts_inference_requests_total counter",
                f"ts_inference_requests_total{{{labels}}} {self.requests}",
                "# HELP ts_inference_latency_microseconds Cumulative inference duration in us",
                "# TYPE ts_inference_latency_microseconds counter",
                f"ts_inference_latency_microseconds{{{labels}}} {self.latency_us:.1f}",
                "# HELP ts_queue_latency_microseconds Cumulative queue duration in us",
                "# TYPE ts_queue_latency_microseconds counter",
                f"ts_queue_latency_microseconds{{{labels}}} {self.queue_us:.1f}",
                "# TYPE greenwise_lab_in_flight_requests gauge",
                f"greenwise_lab_in_flight_requests{{{labels}}} {self.in_flight}",
            ]
        return ("\n".join(lines) + "\n").encode()


CLOSE_GRACE_S = 1.0


def make_handler(model: Model, stopping: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffer the answer so headers and body leave in one segment (else Nagle + delayed
        # ACK add 40 ms to every keep-alive request); handle_one_request flushes it.
        wbufsize = 1 << 16

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if stopping.is_set():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def _route(self, payload: bytes, arrived: float) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/ping":
                self._send(200, b'{"status": "Healthy"}')
            elif path == "/metrics":
                self._send(200, model.metrics(), "text/plain; version=0.0.4")
            elif path.startswith("/predictions/") or path == "/":
                self._send(200, json.dumps(model.infer(payload, arrived)).encode())
            else:
                self._send(404, json.dumps({"error": f"no route {path}"}).encode())

        def do_GET(self) -> None:
            self._route(b"", time.perf_counter())

        def do_POST(self) -> None:
            arrived = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            self._route(self.rfile.read(min(length, 10 << 20)), arrived)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would swamp the log at 100 req/s

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=env.get("POD_IP", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env.get("PORT", "8080")))
    p.add_argument("--metrics-port", type=int, default=int(env.get("METRICS_PORT", "0")),
                   help="also serve /metrics here (0: only on the inference port)")
    p.add_argument("--model", default=env.get("MODEL_NAME", "resnet-18"))
    p.add_argument("--rounds", type=int, default=int(env.get("WORK_ROUNDS", DEFAULT_ROUNDS)))
    p.add_argument("--speed", type=float, default=float(env.get("NODE_SPEED", "1.0")))
    p.add_argument("--workers", type=int, default=int(env.get("WORKERS", "1")),
                   help="requests computed at once; the others queue (TorchServe's workers)")
    a = p.parse_args(argv)
    if not a.host.startswith("127."):
        raise SystemExit(f"mlservice binds to 127.0.0.0/8 only, not {a.host}")
    identity = {"pod": env.get("POD_NAME", "local"), "node": env.get("NODE_NAME", "local"),
                "cluster": env.get("CLUSTER", "local")}
    model = Model(a.model, a.rounds, a.speed, identity, a.workers)
    stop = threading.Event()
    servers = [Server((a.host, a.port), make_handler(model, stop))]
    if a.metrics_port:
        servers.append(Server((a.host, a.metrics_port), make_handler(model, stop)))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    stop.wait()
    for s in servers:
        s.shutdown()  # stop accepting; daemon request threads finish what they hold
        s.server_close()
    time.sleep(CLOSE_GRACE_S)


if __name__ == "__main__":
    main()
