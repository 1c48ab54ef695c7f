"""`observe` against a real Prometheus (2.42) federating two small in-test "clusters".

Each cluster is an HTTP server on 127.0.0.1 that answers the global Prometheus's /federate
scrape the way a cluster Prometheus would: series labelled with cluster, node, namespace and
pod, stamped with their (1 s old) scrape time, under Kepler's names of one generation
(parametrized), node_exporter's, cAdvisor's and TorchServe's, plus the load generator's users
(without a timestamp, as if scraped directly). Counters grow linearly, so the values observed
must be the ones served.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from orchestrator.config import ContinuumConfig
from orchestrator.model import Location
from orchestrator.monitoring import PrometheusUnavailable, Readings, observe
from tests.lab.metrics_http import serve_metrics
from tests.lab.procs import free_port
from tests.lab.prom import start_global_prometheus

LAG_S = 1.0  # federated samples are this much older than the scrape that fetches them
WINDOW = "5s"  # irate() window with 1 s scrapes


@dataclass
class Host:
    cluster: str
    node: str
    cores: int
    watts: float
    busy_cores: float
    network_ms: float


@dataclass
class Pod:
    cluster: str
    node: str
    name: str
    watts: float
    cores: float
    rps: float
    mean_ms: float


HOSTS = [Host("edge", "edge0", 4, 40.0, 1.0, 14.0), Host("edge", "edge1", 4, 50.0, 2.0, 5.0),
         Host("fog", "fog0", 8, 80.0, 2.0, 10.0)]
PODS = [
    Pod("edge", "edge1", "resnet-7f9c6d5b4-x2k8q", 7.5, 0.8, 20.0, 45.0),
    # Another Deployment whose name starts like the managed one: not part of it.
    Pod("edge", "edge0", "resnet-canary-5c4b3a2d1-abcde", 2.0, 0.3, 5.0, 30.0),
    Pod("fog", "fog0", "bert-6d5c4b3a2-aaaaa", 3.0, 0.5, 10.0, 100.0),
    Pod("fog", "fog0", "bert-6d5c4b3a2-bbbbb", 4.0, 0.7, 30.0, 60.0),
]
USERS = {"edge": ("resnet.continuum.test", 12), "fog": ("bert.continuum.test", 30)}


@dataclass
class FederatedCluster:
    """What one cluster Prometheus's /federate serves; `down` makes scrapes fail."""

    cluster: str
    kepler: str
    down: bool = False
    t0: float = field(default_factory=time.time)
    gauges: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    counters: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for h in (h for h in HOSTS if h.cluster == self.cluster):
            at = {"cluster": h.cluster, "node": h.node}
            self.host_power(at, h.watts)
            for mode, share in (("user", 0.7), ("system", 0.3)):
                self.counters.append(("node_cpu_seconds_total", {**at, "cpu": "0", "mode": mode},
                                      h.busy_cores * share))
            self.counters.append(("node_cpu_seconds_total", {**at, "cpu": "0", "mode": "iowait"},
                                  0.1))
            self.counters.append(("node_cpu_seconds_total", {**at, "cpu": "0", "mode": "idle"},
                                  h.cores - h.busy_cores - 0.1))
        for p in (p for p in PODS if p.cluster == self.cluster):
            at = {"cluster": p.cluster, "node": p.node, "namespace": "ml", "pod": p.name}
            self.pod_power(p, p.watts)
            for container, cores in (("torchserve", p.cores), ("", p.cores), ("POD", 0.01)):
                self.counters.append(("container_cpu_usage_seconds_total",
                                      {**at, "container": container}, cores))
            ts = {**at, "model_name": "resnet-18", "model_version": "default"}
            self.counters.append(("ts_inference_requests_total", ts, p.rps))
            self.counters.append(("ts_inference_latency_microseconds", ts,
                                  p.rps * p.mean_ms * 1000.0))
            self.counters.append(("ts_queue_latency_microseconds", ts, p.rps * 1000.0))

    def host_power(self, at: dict[str, str], watts: float) -> None:
        if self.kepler == "v0.10":
            for zone, share in (("package", 0.8), ("dram", 0.2), ("core", 0.5)):
                self.gauges.append(("kepler_node_cpu_watts", {**at, "zone": zone,
                                                              "path": f"/rapl/{zone}"},
                                    watts * share))
        else:
            for mode, share in (("dynamic", 0.25), ("idle", 0.75)):
                self.counters.append(("kepler_node_platform_joules_total",
                                      {**at, "mode": mode, "source": "acpi"}, watts * share))
            self.counters.append(("kepler_node_package_joules_total", {**at, "mode": "idle"},
                                  watts))

    def pod_power(self, p: Pod, watts: float) -> None:
        # Scraped from the node's Kepler pod: namespace/pod are Kepler's own.
        at = {"cluster": p.cluster, "node": p.node, "namespace": "kepler",
              "pod": f"kepler-{p.node}"}
        if self.kepler == "v0.10":
            for zone, share in (("package", 0.75), ("dram", 0.25), ("core", 0.4)):
                self.gauges.append(("kepler_pod_cpu_watts", {
                    **at, "pod_namespace": "ml", "pod_name": p.name, "pod_id": p.name[-5:],
                    "zone": zone}, watts * share))
        else:
            for mode, share in (("dynamic", 0.6), ("idle", 0.4)):
                self.counters.append(("kepler_container_joules_total", {
                    **at, "container_namespace": "ml", "pod_name": p.name,
                    "container_name": "torchserve", "container_id": p.name[-5:],
                    "mode": mode}, watts * share))

    def exposition(self) -> bytes:
        stamp = int((time.time() - LAG_S) * 1000)
        elapsed = stamp / 1000.0 - self.t0
        lines = [f"{name}{{{_labels(labels)}}} {value!r} {stamp}"
                 for name, labels, value in self.gauges]
        lines += [f"{name}{{{_labels(labels)}}} {rate * elapsed!r} {stamp}"
                  for name, labels, rate in self.counters]
        hostname, users = USERS[self.cluster]
        lines.append(f'loadgen_users{{hostname="{hostname}"}} {users}')
        return ("\n".join(lines) + "\n").encode()


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def serve(cluster: FederatedCluster) -> ThreadingHTTPServer:
    return serve_metrics(("127.0.0.1", 0), lambda path: (
        (503, b"down\n") if cluster.down else (200, cluster.exposition())))


@dataclass
class Federation:
    url: str
    clusters: dict[str, FederatedCluster]


@pytest.fixture(scope="module", params=["v0.7", "v0.10"])
def federation(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    clusters = {name: FederatedCluster(name, request.param) for name in ("edge", "fog")}
    servers = {name: serve(c) for name, c in clusters.items()}
    try:
        urls = {name: f"http://127.0.0.1:{s.server_address[1]}" for name, s in servers.items()}
        proc, url = start_global_prometheus(tmp_path_factory.mktemp("prometheus"), urls,
                                            scrape_interval="1s")
        try:
            yield Federation(url, clusters)
        finally:
            proc.stop()
    finally:
        for s in servers.values():
            s.shutdown()
            s.server_close()


def continuum(url: str, **prometheus: Any) -> ContinuumConfig:
    clusters: dict[str, list[dict[str, Any]]] = {}
    for h in HOSTS:
        clusters.setdefault(h.cluster, []).append({
            "name": h.node, "cores": h.cores, "idle_watts": 10, "max_watts": 100,
            "network_latency_ms": h.network_ms})
    return ContinuumConfig.model_validate({
        "clusters": [{"name": c, "tier": c, "ingress": "127.0.0.1:8080", "hosts": hosts}
                     for c, hosts in clusters.items()],
        "dns": {"provider": "rfc2136", "server": "127.0.0.1", "zone": "continuum.test.",
                "tsig_key_file": "tsig.key"},
        "services": [
            {"namespace": "ml", "name": "resnet", "hostname": "resnet.continuum.test."},
            {"namespace": "ml", "name": "bert", "hostname": "bert.continuum.test."},
        ],
        "prometheus": {"url": url, "rate_window": WINDOW, "max_sample_age_s": 10, **prometheus},
    })


def wait_for(what: str, readings: Callable[[], Readings], done: Callable[[Readings], bool],
             timeout: float = 30.0) -> Readings:
    """Observe until `done`: data, not readiness (the first samples take seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        r = readings()
        if done(r):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen in {timeout} s; last: "
                                 + " | ".join(f"{s.key}: {s.reason}" for s in r.services))
        time.sleep(0.25)


def all_valid(r: Readings) -> bool:
    return all(s.valid for s in r.services)


def test_observe_returns_what_the_exporters_serve(federation: Federation) -> None:
    cfg = continuum(federation.url)
    r = wait_for("valid readings", lambda: observe(federation.url, cfg), all_valid)

    for h, reading in zip(HOSTS, r.hosts, strict=True):
        assert (reading.cluster, reading.name) == (h.cluster, h.node)
        assert reading.power_w and reading.power_w.value == pytest.approx(h.watts)
        assert reading.cpu and reading.cpu.value == pytest.approx(h.busy_cores / h.cores)
        assert not reading.problems
        # Federated samples keep their scrape time: at least the lag old, not much more.
        assert LAG_S - 0.01 <= reading.power_w.age_s < LAG_S + 5

    resnet = r.service("ml/resnet")
    assert resnet.location == Location("edge", "edge1")
    assert resnet.power_w and resnet.power_w.value == pytest.approx(7.5)
    assert resnet.cpu and resnet.cpu.value == pytest.approx(0.8 / 4)
    assert resnet.throughput_rps and resnet.throughput_rps.value == pytest.approx(20)
    assert resnet.latency_ms and resnet.latency_ms.value == pytest.approx(45 + 5.0)
    assert resnet.users and resnet.users.value == 12
    assert resnet.users.age_s < 5  # scraped without a timestamp: as old as the last scrape

    bert = r.service("ml/bert")  # two replicas on fog0: summed, latency weighted by requests
    assert bert.location == Location("fog", "fog0")
    assert bert.power_w and bert.power_w.value == pytest.approx(3 + 4)
    assert bert.cpu and bert.cpu.value == pytest.approx((0.5 + 0.7) / 8)
    assert bert.throughput_rps and bert.throughput_rps.value == pytest.approx(40)
    assert bert.latency_ms and bert.latency_ms.value == pytest.approx(
        (10 * 100 + 30 * 60) / 40 + 10.0)
    assert bert.users and bert.users.value == 30

    # The strategies' Observation: hosts in config order, the service on its host's index.
    obs = r.observation("ml/resnet", step=3)
    assert obs.step == 3 and obs.location == Location("edge", "edge1")
    assert obs.service.host == 1 and obs.service.users == 12
    assert [(h.name, h.power_w) for h in obs.hosts] == [
        ("edge0", pytest.approx(40)), ("edge1", pytest.approx(50)), ("fog0", pytest.approx(80))]


def test_kepler_generation_pinned_to_the_other_one_finds_no_power(
        federation: Federation) -> None:
    served = federation.clusters["edge"].kepler
    other = "v0.7" if served == "v0.10" else "v0.10"
    wait_for("valid readings", lambda: observe(federation.url, continuum(federation.url)),
             all_valid)

    r = observe(federation.url, continuum(federation.url, kepler=other))
    missing = "kepler_node_cpu_watts" if other == "v0.10" else "kepler_node_platform_joules_total"
    assert f"no host power for host edge/edge0 ({missing})" in r.hosts[0].problems
    resnet = r.service("ml/resnet")
    assert not resnet.valid
    assert "no service power for service ml/resnet" in resnet.reason
    assert "no host power for host fog/fog0" in resnet.reason
    with pytest.raises(ValueError, match="observation invalid"):
        r.observation("ml/resnet")


def test_samples_older_than_the_limit_make_the_observation_invalid(
        federation: Federation) -> None:
    wait_for("valid readings", lambda: observe(federation.url, continuum(federation.url)),
             all_valid)
    r = observe(federation.url, continuum(federation.url, max_sample_age_s=0.5))
    for s in r.services:
        assert not s.valid
        assert re.search(rf"service power for service {s.key} is \d+ s old \(limit 0.5 s\)",
                         s.reason), s.reason
    # Users are scraped directly (no lag), so they may still be fresh enough; hosts are not.
    assert all(h.problems for h in r.hosts)


def reader(federation: Federation, max_sample_age_s: float) -> Callable[[], Readings]:
    cfg = continuum(federation.url, max_sample_age_s=max_sample_age_s)
    return lambda: observe(federation.url, cfg)


def test_a_cluster_that_stops_answering_invalidates_then_recovers(
        federation: Federation) -> None:
    read = reader(federation, max_sample_age_s=3)
    wait_for("valid readings", read, all_valid)
    edge = federation.clusters["edge"]
    edge.down = True
    try:
        # Each series goes stale on its own scrape schedule: wait until all edge's have.
        r = wait_for("edge data going stale", read, lambda r: bool(
            re.search(r"service power for service ml/resnet is \d+ s old",
                      r.service("ml/resnet").reason or "")
            and re.search(r"host power for host edge/edge0 is \d+ s old",
                          r.service("ml/bert").reason or "")))
        resnet = r.service("ml/resnet")
        # Timestamped (federated) series linger and age; the directly scraped one ends at once.
        assert "no users for service ml/resnet (loadgen_users)" in resnet.reason
        assert re.search(r"service power for service ml/resnet is \d+ s old", resnet.reason)
        # bert's own data is fresh, but the edge hosts it could move to are not.
        bert = r.service("ml/bert")
        assert not bert.valid and "service ml/bert" not in bert.reason
        assert re.search(r"host power for host edge/edge0 is \d+ s old", bert.reason)
    finally:
        edge.down = False
    wait_for("recovery", read, all_valid)


def test_prometheus_down_raises_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(PrometheusUnavailable, match=re.escape(url)) as e:
        observe(url, continuum(url))
    assert "check prometheus.url" in str(e.value)


def test_a_prometheus_that_drops_connections_is_given_up_on_after_one_retry() -> None:
    # A tick must not hang on retries: the controller warns and tries again next tick.
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        accepted = 0

        def drop() -> None:
            nonlocal accepted
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn, _ = server.accept()
                    accepted += 1
                    conn.close()

        stop = threading.Event()
        dropper = threading.Thread(target=drop)
        dropper.start()
        try:
            with pytest.raises(PrometheusUnavailable, match=re.escape(url)):
                observe(url, continuum(url))
        finally:
            stop.set()
            dropper.join()
    assert 1 <= accepted <= 2


def test_a_pod_that_stopped_reporting_is_not_where_the_service_runs(
        federation: Federation) -> None:
    # The resnet pod on edge1 ends and a new one reports from edge0, as after a move. The old
    # series keep their last scrape time in the global Prometheus, which answers with them for
    # its lookback (5 min): once older than the limit they no longer place the service.
    read = reader(federation, max_sample_age_s=3)
    wait_for("valid readings", read, all_valid)
    edge = federation.clusters["edge"]
    old, new = "resnet-7f9c6d5b4-x2k8q", "resnet-6b8d7c5f4-z9y8w"
    saved = list(edge.gauges), list(edge.counters)

    def moved(series: list[tuple[str, dict[str, str], float]]) -> list[
            tuple[str, dict[str, str], float]]:
        out = []
        for name, labels, value in series:
            if old in labels.values():
                labels = {k: new if v == old else "edge0" if k == "node" else v
                          for k, v in labels.items()}
                if labels.get("pod", "").startswith("kepler-"):
                    labels["pod"] = "kepler-edge0"
            out.append((name, labels, value))
        return out

    edge.gauges, edge.counters = moved(edge.gauges), moved(edge.counters)
    try:
        r = wait_for("the service observed on edge0", read, lambda r: (
            r.service("ml/resnet").valid
            and r.service("ml/resnet").location == Location("edge", "edge0")))
        resnet = r.service("ml/resnet")
        assert resnet.throughput_rps and resnet.throughput_rps.value == pytest.approx(20)
        assert resnet.power_w and resnet.power_w.value == pytest.approx(7.5)
    finally:
        edge.gauges, edge.counters = saved
    wait_for("back on edge1", read, lambda r: r.service("ml/resnet").valid
             and r.service("ml/resnet").location == Location("edge", "edge1"))
