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
Services on one host share its cores (CFS without CPU limits): the other managed services'
busy cores (`taken`; the simulated continuum says how much) are load on the same M/M/c queue.
Outcomes are computed once per host, background load and share taken (in steps of 1 %) and
user count, so a simulator step is mostly lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from orchestrator.scenario import HostProfile, Scenario, ServiceSpec


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


def share_watts(host: HostProfile, background: float, cpus: Sequence[float],
                processes: Sequence[int]) -> tuple[float, list[float]]:
    """Eq. 1-2: the host's power with services using `cpus` (fractions of its cores) on top of
    its `background` load, and each one's share: of the dynamic part by CPU, of the idle part
    by process count (`processes` each, beside the host's own)."""
    host_cpu = min(1.0, background + sum(cpus))
    dynamic = (host.max_watts - host.idle_watts) * curve_fraction(host.power_curve, host_cpu)
    everyone = host.base_processes + sum(processes)
    return host.idle_watts + dynamic, [
        (dynamic * c / host_cpu if host_cpu > 0 else 0.0) + host.idle_watts * p / everyone
        for c, p in zip(cpus, processes, strict=True)]


SHARE_STEP = 0.01  # the grid of `taken` and background load outcomes are kept on


def on_grid(share: float) -> int:
    """A share of a host's cores as a whole number of grid steps."""
    return max(0, round(share / SHARE_STEP))


class Backend:
    """TorchServe-like backend of one service on one host, with `taken` of the host's cores
    used by other managed services: their busy cores count as load on the same cores, so
    its requests wait more as the host fills up (a shared M/M/c; an approximation, since their
    batches differ from its own), and it can use only what they leave. Co-tenants (`background`,
    default: the host's profile) slow its cores down."""

    def __init__(self, service: ServiceSpec, host: HostProfile, taken: float = 0.0,
                 background: float | None = None) -> None:
        self.servers = service.workers_on(host)
        free = 1.0 - (host.background_utilization if background is None else background)
        self.others = self.servers * min(taken / free, 1.0 - SHARE_STEP)  # in workers
        slow = host.speed * free
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
        load = x / k * t + self.others
        p_wait = erlang_c(self.servers, load)
        fill = self.delay if x <= 0 else min(self.delay, (self.batch - 1) / x)
        batch_wait = fill * (1.0 + 1.0 / k) / 2.0
        queue_wait = p_wait * t / (self.servers - load)
        return batch_wait * (1.0 - p_wait) + queue_wait + t

    def solve(self, users: int) -> tuple[float, float]:
        """(throughput, backend latency) for a closed population of `users`."""
        if users <= 0:
            return 0.0, self.latency(0.0)
        lo, hi = 0.0, users / self.think
        cap_lo, cap_hi = 0.0, hi  # largest x with busy workers below what the others leave
        room = self.servers - self.others
        if self.busy_workers(hi) >= room:
            for _ in range(60):
                mid = (cap_lo + cap_hi) / 2
                cap_lo, cap_hi = (mid, cap_hi) if self.busy_workers(mid) < room else (
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
    """Outcomes of one service (default: the scenario's first) on every host of a scenario, by
    the share of the host taken by other services and the user count."""

    def __init__(self, scenario: Scenario, service: ServiceSpec | None = None) -> None:
        self.scenario = scenario
        self.service = service or scenario.fleet[0]
        self.hosts = scenario.hosts
        self.processes = [1 + self.service.workers_on(h) for h in self.hosts]  # front end + workers
        self.network_ms = scenario.network_ms(self.service)  # from its users, per host
        self.p_max = max(h.max_watts for h in self.hosts)  # reward normalization (Eq. 9)
        # (host, background step, taken step, users)
        self._known: dict[tuple[int, int, int, int], Outcome] = {}

    def _outcome(self, i: int, background_step: int, step: int, users: int) -> Outcome:
        host = self.hosts[i]
        background, taken = background_step * SHARE_STEP, step * SHARE_STEP
        backend = Backend(self.service, host, taken, background)
        x, back = backend.solve(users)
        svc_cpu = backend.busy_workers(x) * (1.0 - background) / host.cores
        # The others' CPU counts for the host's utilization; their processes are not known
        # here (the simulated continuum shares the idle power among all of them).
        host_watts, (watts, _) = share_watts(host, background, (svc_cpu, taken),
                                             (self.processes[i], 0))
        return Outcome(
            latency_ms=back * 1000.0 + self.network_ms[i],
            throughput_rps=x,
            service_cpu=svc_cpu,
            service_watts=watts,
            host_cpu=min(1.0, background + taken + svc_cpu),
            host_watts=host_watts,
        )

    def outcome(self, host: int, users: int, taken: float = 0.0,
                background: float | None = None) -> Outcome:
        """The service on `host` with `users`, `taken` of the host's cores used by other
        managed services and `background` by co-tenants (None: the host's profile); computed
        once per host, 1 % of share, 1 % of background and user count."""
        level = self.hosts[host].background_utilization if background is None else background
        key = (host, on_grid(level), on_grid(taken), users)
        if key not in self._known:
            self._known[key] = self._outcome(*key)
        return self._known[key]
