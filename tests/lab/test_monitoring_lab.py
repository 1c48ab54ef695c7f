"""`observe` on the lab: the lab's exporters (the fake kubelet's Kepler, node_exporter and cAdvisor
names, the ML stand-in's TorchServe names, the load generator's users) reach the global
Prometheus, and a deployed ML service under load is observed validly, where it runs, with the
load the load generator puts on it; moved to another cluster, the observation follows it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import ContinuumConfig, HostProfile
from orchestrator.model import Location
from orchestrator.monitoring import Readings, ServiceReading, observe
from tests.lab import loadgen
from tests.lab.kubelet import BASE_PROCESSES
from tests.lab.lab import Lab
from tests.lab.workloads import wait_for
from tests.test_migrate import Deployed, cli, deploy, serves, teardown

pytestmark = pytest.mark.lab
USERS = 4
ROUNDS = 20_000  # SHA-256 rounds per request: about 10 ms of one core at speed 1


def host(cfg: ContinuumConfig, where: Location) -> HostProfile:
    return next(h for h in cfg.cluster(where.cluster).hosts if h.name == where.node)


def observed_at(d: Deployed, where: Location, timeout: float = 120) -> tuple[Readings, float]:
    """The first valid observation of the service on `where` (data, not readiness: scrapes
    and federation take seconds), with the wall-clock time it was made."""
    cfg = d.cfg()
    last: list[ServiceReading] = []

    def check() -> tuple[Readings, float] | None:
        at = time.time()
        r = observe(cfg.prometheus.url, cfg)
        s = r.service(d.key)
        last[:] = [s]
        return (r, at) if s.valid and s.location == where else None

    try:
        return wait_for(f"a valid observation of {d.key} on {where}", check, timeout=timeout,
                        every=1)
    except TimeoutError:
        s = last[0] if last else None
        pytest.fail(f"no valid observation of {d.key} on {where} in {timeout} s; last: "
                    f"{s and (s.location, s.reason)}")


def check_service(d: Deployed, handle: loadgen.LoadHandle, r: Readings, at: float,
                  where: Location) -> dict[str, Any]:
    """What the service's observation must show on `where`; returns the figures compared."""
    cfg = d.cfg()
    h = host(cfg, where)
    s = r.service(d.key)
    assert s.power_w and s.cpu and s.latency_ms and s.users and s.throughput_rps
    # Its host: idle power at least, some CPU (the service's at least).
    [hr] = [x for x in r.hosts if Location(x.cluster, x.name) == where]
    assert hr.power_w and hr.cpu and not hr.problems
    assert h.idle_watts <= hr.power_w.value <= h.max_watts
    assert 0 < s.cpu.value <= hr.cpu.value + 0.02
    # The service's power: its idle share (the lab's kubelet shares a host's idle power by
    # process count, each container one, against BASE_PROCESSES) plus its CPU's dynamic share.
    idle_share = h.idle_watts / (BASE_PROCESSES + 1)
    assert idle_share < s.power_w.value < hr.power_w.value
    assert s.power_w.value - idle_share > 0.2 * (h.max_watts - h.idle_watts) * s.cpu.value
    # Users: the load generator's virtual users, exactly.
    assert s.users.value == USERS == handle.progress()["users"]
    assert r.observation(d.key).service.users == USERS
    # Latency: TorchServe's mean (queueing included) plus the host's network latency, against
    # what the load generator measured for the requests of the same seconds. It measures
    # more (Traefik, HTTP and its own event loop on top), never less than the backend.
    backend_ms = s.latency_ms.value - h.network_latency_ms
    newest = at - s.latency_ms.age_s - handle.started_at  # s since the load started
    client_ms = loadgen.mean_latency_ms(handle.samples(), newest - 8.0, newest)
    figures = {"where": str(where), "backend_ms": round(backend_ms, 1),
               "client_ms": round(client_ms, 1), "power_w": round(s.power_w.value, 2),
               "cpu": round(s.cpu.value, 4), "rps": round(s.throughput_rps.value, 1),
               "host_w": round(hr.power_w.value, 1), "host_cpu": round(hr.cpu.value, 4)}
    assert client_ms > 0, figures
    assert backend_ms < client_ms + 2, figures
    # Traefik, HTTP and the client add 5-15 ms here (2 shared cores); the backend's ~10-20 ms
    # of queueing and work is the rest.
    assert client_ms - backend_ms < max(20.0, 0.6 * client_ms), figures
    # Throughput: about what the users send (a closed loop: think 0.1-0.5 s + latency).
    assert 0.3 * USERS / 0.5 < s.throughput_rps.value < 2 * USERS / 0.1, figures
    return figures


def test_observe_a_loaded_service_and_follow_its_move(lab: Lab, tmp_path: Path) -> None:
    # Each request costs enough CPU that the backend's latency dominates what the client
    # measures. Set at deploy time: a later rollout would leave the first pod's last rates
    # current in Prometheus for a while, mixed into the observation.
    d = deploy(lab, tmp_path, node="edge0", settings={"WORK_ROUNDS": str(ROUNDS)})
    try:
        answer = serves(d)
        assert answer and answer["work_rounds"] == ROUNDS, answer
        cfg = d.cfg()
        handle = loadgen.start(d.hostname, cfg.clusters[0].ingress, cfg.dns.server,
                               cfg.dns.port, rate=100, duration=400, users=USERS,
                               register=lab.loadgen_targets, seed=5)
        try:
            assert handle.target_file is not None and handle.target_file.exists()
            r, at = observed_at(d, Location("edge", "edge0"))
            before = check_service(d, handle, r, at, Location("edge", "edge0"))

            moved = cli("migrate", d.key, "--to", "fog/fog0", "--config", str(d.config),
                        "-o", "yaml")
            assert moved.returncode == 0, moved.stderr
            assert yaml.safe_load(moved.stdout)["state"] == "done"
            r, at = observed_at(d, Location("fog", "fog0"))
            after = check_service(d, handle, r, at, Location("fog", "fog0"))
        finally:
            report = handle.stop()
        print({"before": before, "after": after})
        assert report.failed == 0, report.failures
        assert set(report.by_cluster) == {"edge", "fog"}
        # The run is over: its target file is gone, and with it the users.
        assert not handle.target_file.exists()
        wait_for("the users to end with the load generator", lambda: "no users for service"
                 in observe(cfg.prometheus.url, cfg).service(d.key).reason, timeout=30,
                 every=1)
    finally:
        teardown(d)
