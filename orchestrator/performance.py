"""Latency and power of the served model on each host, as a function of the number of users.

Latency (Eq. 3) = backend + network. The backend is TorchServe's batching front end in front of
single-threaded workers (one per core unless the service sets `workers`), driven by a closed
population of users who think `think_time_s` between requests (Locust). Per throughput X:
  * batch size k = clamp(X * max_batch_delay, 1, batch_size), batch time t = overhead + k * s;
  * requests wait to fill a batch, up to max_batch_delay, unless a queue already fills it;
  * batches queue for the workers as an M/M/c queue (Erlang C);
and X solves X = users / (think + latency(X)), so a small host saturates: X stops growing and
latency grows with users. Power (Eq. 1-2) = idle + per-host curve of CPU utilization; the
service gets its CPU share of the dynamic part and its process share of the idle part.
Everything is tabulated per host and integer user count once, so a simulator step is lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from orchestrator.config import HostProfile, Scenario, ServiceSpec


@dataclass(frozen=True)
class Outcome:
    """What the service and its host look like for one host and user count."""

    latency_ms: float  # end to end
    throughput_rps: float
    service_cpu: float  # fraction of the host's cores
    service_watts: float
    host_cpu: float
    host_watts: float


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load `load` < servers."""
    if load <= 0:
        return 0.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= load / k
        total += term
    last = term * load / servers * servers / (servers - load)
    return last / (total + last)


def curve_fraction(curve: tuple[tuple[float, float], ...], utilization: float) -> float:
    """Piecewise-linear dynamic-power fraction at a CPU utilization in [0, 1]."""
    u = min(max(utilization, 0.0), 1.0)
    for (x0, y0), (x1, y1) in pairwise(curve):
        if u <= x1:
            return y0 + (y1 - y0) * (u - x0) / (x1 - x0)
    return curve[-1][1]


class Backend:
    """TorchServe-like backend of one service on one host."""

    def __init__(self, service: ServiceSpec, host: HostProfile) -> None:
        self.servers = service.workers_on(host)
        slow = host.speed * (1.0 - host.background_utilization)
        self.per_image = service.inference_ms_per_image / 1000.0 / slow
        self.overhead = service.batch_overhead_ms / 1000.0 / slow
        self.batch = service.batch_size
        self.delay = service.max_batch_delay_ms / 1000.0
        self.think = sum(service.think_time_s) / 2.0

    def _batch(self, x: float) -> tuple[float, float]:
        k = min(float(self.batch), max(1.0, x * self.delay))
        return k, self.overhead + k * self.per_image

    def busy_workers(self, x: float) -> float:
        k, t = self._batch(x)
        return x / k * t

    def latency(self, x: float) -> float:
        """Mean backend latency in seconds at throughput x (x below capacity)."""
        k, t = self._batch(x)
        p_wait = erlang_c(self.servers, x / k * t)
        fill = self.delay if x <= 0 else min(self.delay, (self.batch - 1) / x)
        batch_wait = fill * (1.0 + 1.0 / k) / 2.0
        queue_wait = p_wait * t / (self.servers - x / k * t)
        return batch_wait * (1.0 - p_wait) + queue_wait + t

    def solve(self, users: int) -> tuple[float, float]:
        """(throughput, backend latency) for a closed population of `users`."""
        if users <= 0:
            return 0.0, self.latency(0.0)
        lo, hi = 0.0, users / self.think
        cap_lo, cap_hi = 0.0, hi  # largest x with busy workers below the worker count
        if self.busy_workers(hi) >= self.servers:
            for _ in range(60):
                mid = (cap_lo + cap_hi) / 2
                cap_lo, cap_hi = (mid, cap_hi) if self.busy_workers(mid) < self.servers else (
                    cap_lo, mid)
            hi = cap_lo
        for _ in range(60):  # x * (think + R(x)) grows with x: bisect for = users
            mid = (lo + hi) / 2
            if mid * (self.think + self.latency(mid)) < users:
                lo = mid
            else:
                hi = mid
        x = (lo + hi) / 2
        return x, users / x - self.think


class PerformanceModel:
    """Tabulated outcomes of one service (default: the scenario's first) for every host of a
    scenario and every user count."""

    def __init__(self, scenario: Scenario, max_users: int = 200,
                 service: ServiceSpec | None = None) -> None:
        self.scenario = scenario
        self.service = service or scenario.fleet[0]
        self.hosts = scenario.hosts
        self.backends = [Backend(self.service, h) for h in self.hosts]
        self.p_max = max(h.max_watts for h in self.hosts)  # reward normalization (Eq. 9)
        self.empty = [self._host_only(h) for h in self.hosts]
        self._tables: list[list[Outcome]] = [[] for _ in self.hosts]
        self.extend(max_users)

    def _host_only(self, host: HostProfile) -> tuple[float, float]:
        u = host.background_utilization
        return u, host.idle_watts + (host.max_watts - host.idle_watts) * curve_fraction(
            host.power_curve, u)

    def _outcome(self, i: int, users: int) -> Outcome:
        host, backend = self.hosts[i], self.backends[i]
        x, back = backend.solve(users)
        svc_cpu = backend.busy_workers(x) * (1.0 - host.background_utilization) / host.cores
        host_cpu = min(1.0, host.background_utilization + svc_cpu)
        dynamic = (host.max_watts - host.idle_watts) * curve_fraction(host.power_curve, host_cpu)
        processes = 1 + backend.servers  # TorchServe front end + its workers
        idle_share = host.idle_watts * processes / (host.base_processes + processes)
        svc_dynamic = dynamic * svc_cpu / host_cpu if host_cpu > 0 else 0.0
        return Outcome(
            latency_ms=back * 1000.0 + host.network_latency_ms,
            throughput_rps=x,
            service_cpu=svc_cpu,
            service_watts=svc_dynamic + idle_share,
            host_cpu=host_cpu,
            host_watts=host.idle_watts + dynamic,
        )

    def extend(self, max_users: int) -> None:
        for i, table in enumerate(self._tables):
            table.extend(self._outcome(i, u) for u in range(len(table), max_users + 1))

    def outcome(self, host: int, users: int) -> Outcome:
        table = self._tables[host]
        if users >= len(table):
            self.extend(max(users, 2 * len(table)))
        return table[users]

    def table(self, host: int) -> list[Outcome]:
        return self._tables[host]


def describe(model: PerformanceModel, users: list[int]) -> list[dict[str, float | str | int]]:
    """Rows of (host, users, latency, power, cpu) for docs and `--help`-level inspection."""
    return [
        {"host": h.name, "users": u, "latency_ms": round(o.latency_ms, 1),
         "service_watts": round(o.service_watts, 1), "service_cpu": round(o.service_cpu, 3),
         "throughput_rps": round(o.throughput_rps, 1)}
        for i, h in enumerate(model.hosts) for u in users
        for o in [model.outcome(i, u)]
    ]

