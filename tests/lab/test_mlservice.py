"""The ML stand-in does CPU work scaled by node speed and exposes TorchServe's metric names."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.lab.procs import Proc, free_port, spawn, wait_port

SERVICE = Path(__file__).resolve().with_name("mlservice.py")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[dict[float, tuple[str, int]]]:
    started: list[Proc] = []
    out: dict[float, tuple[str, int]] = {}
    try:
        for i, speed in enumerate((1.0, 2.5)):
            addr = f"127.0.77.{i + 2}"
            port, mport = free_port(addr), free_port(addr)
            p = spawn(f"ml-{i}", [sys.executable, str(SERVICE), "--host", addr, "--port",
                                  str(port), "--metrics-port", str(mport), "--speed", str(speed)],
                      tmp_path, env={"POD_NAME": f"pod{i}", "NODE_NAME": f"node{i}",
                                     "CLUSTER": "unit"})
            started.append(p)
            wait_port(addr, port, p, timeout=15)
            wait_port(addr, mport, p, timeout=15)
            out[speed] = (addr, port)
            out[-speed] = (addr, mport)
        yield out
    finally:
        for p in started:
            p.stop()


def test_answers_with_identity_and_scales_work(services: dict[float, tuple[str, int]]) -> None:
    bodies = {}
    for speed in (1.0, 2.5):
        addr, port = services[speed]
        r = httpx.post(f"http://{addr}:{port}/predictions/resnet-18", content=b"img",
                       trust_env=False)
        r.raise_for_status()
        bodies[speed] = r.json()
    assert bodies[1.0]["pod"] == "pod0" and bodies[1.0]["node"] == "node0"
    assert bodies[1.0]["cluster"] == "unit"
    # A node 2.5x faster gets 2.5x less work for the same request.
    assert bodies[1.0]["work_rounds"] == round(2.5 * bodies[2.5]["work_rounds"])


def test_torchserve_metrics(services: dict[float, tuple[str, int]]) -> None:
    addr, port = services[1.0]
    for _ in range(3):
        httpx.get(f"http://{addr}:{port}/predictions/resnet-18", trust_env=False)
    maddr, mport = services[-1.0]
    text = httpx.get(f"http://{maddr}:{mport}/metrics", trust_env=False).text
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["ts_inference_requests_total"] == 3
    assert values["ts_inference_latency_microseconds"] > 0
    assert "ts_queue_latency_microseconds" in values
    assert httpx.get(f"http://{addr}:{port}/ping", trust_env=False).json() == {
        "status": "Healthy"}


def test_latency_includes_the_wait_for_a_worker(tmp_path: Path) -> None:
    addr = "127.0.77.9"
    port = free_port(addr)
    p = spawn("ml-queue", [sys.executable, str(SERVICE), "--host", addr, "--port", str(port),
                           "--rounds", "100000", "--workers", "1"], tmp_path)
    try:
        wait_port(addr, port, p, timeout=15)
        url = f"http://{addr}:{port}/predictions/resnet-18"
        # 4 at once, so 3 of them wait for the one worker: each client is connected before the
        # barrier (a client's set-up costs as much as a computation on a busy machine).
        clients = [httpx.Client(trust_env=False, timeout=30) for _ in range(4)]
        for c in clients:
            c.get(f"http://{addr}:{port}/ping").raise_for_status()
        barrier = threading.Barrier(4)

        def ask(c: httpx.Client) -> dict[str, float]:
            barrier.wait()
            return dict(c.get(url).json())

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, clients))
        for c in clients:
            c.close()
        text = httpx.get(f"http://{addr}:{port}/metrics", trust_env=False).text
    finally:
        p.stop()
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["ts_inference_requests_total"] == 4
    compute_us = sum(a["compute_ms"] for a in answers) * 1000
    queue_us = values["ts_queue_latency_microseconds"]
    # One worker: the others waited for it (about 1 + 2 + 3 computations if all came at once).
    assert queue_us > 0.25 * compute_us
    # TorchServe's latency counter is the whole time in the server: queueing + inference.
    assert values["ts_inference_latency_microseconds"] == pytest.approx(queue_us + compute_us,
                                                                        rel=0.01)
