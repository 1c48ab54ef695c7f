"""The load generator against real local servers: counts, DNS following, loopback-only, bounds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import httpx
import pytest

from tests.lab import loadgen
from tests.lab.dns import Bind9Info, tsig_key
from tests.lab.netfixtures import running, running_bind9, start_backend
from tests.lab.procs import free_port

REPO = Path(__file__).resolve().parents[2]
HOST = "svc"


@dataclass
class Lab:
    dns: Bind9Info
    port: int  # the "ingress" port every backend listens on, each on its own address
    host: str

    def point(self, address: str) -> None:
        u = dns.update.Update(self.dns.zone, keyring=tsig_key(self.dns.key_file))
        u.replace(HOST, 1, "A", address)
        r = dns.query.tcp(u, self.dns.server, port=self.dns.port, timeout=5)
        assert r.rcode() == dns.rcode.NOERROR

    def metrics(self, address: str) -> dict[str, float]:
        """What the backend at `address` itself counted (not what the generator thinks)."""
        text = httpx.get(f"http://{address}:{self.port}/metrics", trust_env=False).text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line and not line.startswith("#")}

    def served(self, address: str) -> int:
        return int(self.metrics(address)["lab_backend_requests_total"])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    port = free_port("127.0.0.41")
    with running_bind9(tmp_path / "bind9") as info, running([]) as procs:
        for i, (cluster, pod) in enumerate((("edge", "pod-a"), ("fog", "pod-b")), start=41):
            procs.append(start_backend(tmp_path, f"127.0.0.{i}", cluster, f"{cluster}-node",
                                       pod, port=port)[0])
        lab = Lab(dns=info, port=port, host=f"{HOST}.{info.zone}")
        lab.point("127.0.0.41")
        yield lab


def run(lab: Lab, **kw: object) -> loadgen.Report:
    args: dict[str, object] = {"rate": 100.0, "duration": 30.0, "path": "/predict"} | kw
    return loadgen.run(lab.host, f"127.0.0.41:{lab.port}", lab.dns.server, lab.dns.port,
                       **args)  # type: ignore[arg-type]


def test_counts_match_what_the_backend_served(lab: Lab) -> None:
    report = run(lab, rate=100.0, max_requests=150)
    assert (report.sent, report.ok, report.failed) == (150, 150, 0)
    assert lab.served("127.0.0.41") == 150
    assert lab.served("127.0.0.42") == 0
    # Sent to the resolved IP, but with the service's name as Host, as an ingress needs.
    assert 'lab_backend_last_host{host="svc.continuum.test"}' in lab.metrics("127.0.0.41")
    assert report.by_pod == {"pod-a": 150}
    assert report.by_cluster == {"edge": 150}
    assert report.by_node == {"edge-node": 150}
    assert report.by_address == {"127.0.0.41": 150}
    assert report.backend_timeline["edge/edge-node/pod-a"].count == 150
    lat = report.latency_ms
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report.dns_changes == [(0.0, "127.0.0.41")]


def test_traffic_follows_a_dns_change(lab: Lab) -> None:
    handle = loadgen.start(lab.host, f"127.0.0.41:{lab.port}", lab.dns.server, lab.dns.port,
                           rate=100.0, duration=30.0, path="/predict", max_requests=600)
    try:
        deadline = time.monotonic() + 20
        while handle.progress()["ok"] < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        lab.point("127.0.0.42")
        while lab.served("127.0.0.42") < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        report = handle.stop()
    assert report.failed == 0
    assert report.ok == report.sent == lab.served("127.0.0.41") + lab.served("127.0.0.42")
    assert set(report.by_cluster) == {"edge", "fog"} and report.by_cluster["fog"] >= 100
    assert [a for _, a in report.dns_changes] == ["127.0.0.41", "127.0.0.42"]
    # Once the new address was resolved, nothing went to the old one any more.
    switched = report.dns_changes[1][0]
    old = report.address_timeline["127.0.0.41"]
    new = report.address_timeline["127.0.0.42"]
    assert old.last <= switched <= new.first
    addresses = [s.address for s in report.samples]
    first_new = addresses.index("127.0.0.42")
    assert set(addresses[first_new:]) == {"127.0.0.42"}
    assert report.backend_timeline["fog/fog-node/pod-b"].first == new.first


def test_failures_are_counted_by_reason(lab: Lab) -> None:
    lab.point("127.0.0.43")  # nothing listens there
    report = run(lab, max_requests=20)
    assert (report.sent, report.ok, report.failed) == (20, 0, 20)
    assert report.failures == {"ConnectError": 20}
    assert report.by_address == {"127.0.0.43": 20}
    assert report.latency_ms["max"] == 0.0


def test_non_loopback_targets_are_refused(lab: Lab) -> None:
    with pytest.raises(loadgen.TargetError, match=r"outside 127\.0\.0\.0/8"):
        loadgen.run(lab.host, f"10.1.2.3:{lab.port}", lab.dns.server, lab.dns.port, 1, 1)
    with pytest.raises(loadgen.TargetError, match=r"outside 127\.0\.0\.0/8"):
        loadgen.run(lab.host, f"127.0.0.41:{lab.port}", "192.0.2.53", 53, 1, 1)
    with pytest.raises(loadgen.TargetError, match="not an IP address"):
        loadgen.run(lab.host, f"example.org:{lab.port}", lab.dns.server, lab.dns.port, 1, 1)
    # A record that points outside loopback: requests are refused, none is sent anywhere.
    lab.point("192.0.2.1")
    report = run(lab, max_requests=5)
    assert report.failures == {"NonLoopbackTarget": 5}
    assert lab.served("127.0.0.41") == 0


def test_rate_duration_and_count_are_bounded(lab: Lab) -> None:
    with pytest.raises(ValueError, match="rate"):
        run(lab, rate=501.0)
    with pytest.raises(ValueError, match="duration"):
        run(lab, duration=601.0)
    with pytest.raises(ValueError, match="rate"):
        run(lab, rate=0.0)
    assert run(lab, rate=200.0, max_requests=7).sent == 7
    # duration bounds the run: at 20 req/s for 1 s, never more than ~21 requests.
    assert 1 <= run(lab, rate=20.0, duration=1.0).sent <= 21
    # stop() ends a long run early.
    before = lab.served("127.0.0.41")
    handle = loadgen.start(lab.host, f"127.0.0.41:{lab.port}", lab.dns.server, lab.dns.port,
                           rate=50.0, duration=600.0, path="/predict")
    while handle.progress()["ok"] < 10:
        time.sleep(0.02)
    report = handle.stop()
    assert not handle.running()
    assert 10 <= report.sent < 50 * 600
    assert report.sent == report.ok == lab.served("127.0.0.41") - before


def metric_values(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_metrics_endpoint_reports_users_and_outcomes(lab: Lab) -> None:
    handle = loadgen.start(lab.host, f"127.0.0.41:{lab.port}", lab.dns.server, lab.dns.port,
                           rate=50.0, duration=30.0, path="/predict", max_requests=1000,
                           metrics_port=0)
    try:
        assert handle.metrics_url is not None and handle.metrics_url.startswith("http://127.0.0.1:")
        while handle.progress()["ok"] < 20:
            time.sleep(0.02)
        text = httpx.get(handle.metrics_url, trust_env=False).text
    finally:
        report = handle.stop()
    values = metric_values(text)
    host = 'hostname="svc.continuum.test"'  # every series: the hostname it loads
    assert values[f'loadgen_requests_total{{{host},outcome="ok"}}'] >= 20
    assert values[f'loadgen_requests_total{{{host},outcome="failed"}}'] == 0
    assert values[f"loadgen_target_rate{{{host}}}"] == 50
    assert 0 <= values[f"loadgen_users{{{host}}}"] <= loadgen.MAX_IN_FLIGHT  # open loop: in flight
    assert report.ok >= values[f'loadgen_requests_total{{{host},outcome="ok"}}']
    assert report.users is None
    with pytest.raises(httpx.ConnectError):  # the endpoint goes away with the run
        httpx.get(handle.metrics_url, trust_env=False)


def test_virtual_users_wait_for_answers_and_think(lab: Lab) -> None:
    with pytest.raises(ValueError, match="users"):
        run(lab, users=0)
    with pytest.raises(ValueError, match="think_s"):
        run(lab, users=2, think_s=(0.5, 0.1))
    handle = loadgen.start(lab.host, f"127.0.0.41:{lab.port}", lab.dns.server, lab.dns.port,
                           rate=100.0, duration=4.0, path="/predict", users=5,
                           think_s=(0.2, 0.2), metrics_port=0, seed=1)
    try:
        assert handle.metrics_url is not None
        time.sleep(1.0)
        values = metric_values(httpx.get(handle.metrics_url, trust_env=False).text)
        assert values['loadgen_users{hostname="svc.continuum.test"}'] == 5
        assert handle.progress()["users"] == 5
    finally:
        report = handle.result()
    assert report.users == 5 and report.failed == 0
    # Each user: one request, then 0.2 s of thought: at most 5 / 0.2 = 25 req/s, less the
    # start (spread over 0.2 s) and the answers' own time.
    assert 0.6 * 25 * 4 <= report.sent <= 25 * 4 + 5
    assert report.sent == report.ok == lab.served("127.0.0.41")
    assert 0 < report.latency_ms["mean"] <= report.latency_ms["max"]
    # The rate still caps them: 5 users that never think, at most 10 req/s.
    capped = run(lab, rate=10.0, duration=2.0, users=5, think_s=(0.0, 0.0))
    assert capped.sent <= 10 * 2 + 1


def test_registers_its_metrics_for_prometheus_while_it_runs(lab: Lab, tmp_path: Path) -> None:
    targets = tmp_path / "targets"
    handle = loadgen.start(lab.host, f"127.0.0.41:{lab.port}", lab.dns.server, lab.dns.port,
                           rate=20.0, duration=30.0, path="/predict", users=2,
                           register=targets)
    try:
        assert handle.target_file is not None and handle.target_file.parent == targets
        [group] = json.loads(handle.target_file.read_text())
        assert handle.metrics_url == f"http://{group['targets'][0]}/metrics"  # a free port
        assert [p.name for p in targets.iterdir()] == [handle.target_file.name]
    finally:
        handle.stop()
    assert list(targets.iterdir()) == []  # removed when the run ends


def test_cli_prints_the_report(lab: Lab) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.lab.loadgen", "--host", lab.host,
         "--ingress", f"127.0.0.41:{lab.port}", "--dns", f"{lab.dns.server}:{lab.dns.port}",
         "--rate", "50", "--duration", "10", "--max-requests", "12", "--path", "/predict"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    report = json.loads(out)
    assert (report["sent"], report["ok"], report["by_pod"]) == (12, 12, {"pod-a": 12})
