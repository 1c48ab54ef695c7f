"""The straightforward computations the fast paths replace, kept as their reference: the
performance model one point at a time in Python (orchestrator/performance.py's Backend and
PerformanceModel before their outcomes were solved vectorized in blocks). Tests pin the fast
paths to these, to the bit."""

from __future__ import annotations

from orchestrator.performance import SHARE_STEP, Outcome, share_watts
from orchestrator.scenario import HostProfile, ServiceSpec


def erlang_c(servers: int, load: float) -> float:
    if load <= 0:
        return 0.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= load / k
        total += term
    last = term * load / servers * servers / (servers - load)
    return last / (total + last)


class Backend:
    def __init__(self, service: ServiceSpec, host: HostProfile, taken: float = 0.0,
                 background: float | None = None) -> None:
        self.servers = service.workers_on(host)
        free = 1.0 - (host.background_utilization if background is None else background)
        self.others = self.servers * min(taken / free, 1.0 - SHARE_STEP)
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
        k, t = self._batch(x)
        load = x / k * t + self.others
        p_wait = erlang_c(self.servers, load)
        fill = self.delay if x <= 0 else min(self.delay, (self.batch - 1) / x)
        batch_wait = fill * (1.0 + 1.0 / k) / 2.0
        queue_wait = p_wait * t / (self.servers - load)
        return batch_wait * (1.0 - p_wait) + queue_wait + t

    def solve(self, users: int) -> tuple[float, float]:
        if users <= 0:
            return 0.0, self.latency(0.0)
        lo, hi = 0.0, users / self.think
        cap_lo, cap_hi = 0.0, hi
        room = self.servers - self.others
        if self.busy_workers(hi) >= room:
            for _ in range(60):
                mid = (cap_lo + cap_hi) / 2
                cap_lo, cap_hi = (mid, cap_hi) if self.busy_workers(mid) < room else (
                    cap_lo, mid)
            hi = cap_lo
        for _ in range(60):
            mid = (lo + hi) / 2
            if mid * (self.think + self.latency(mid)) < users:
                lo = mid
            else:
                hi = mid
        x = (lo + hi) / 2
        return x, users / x - self.think


def outcome(service: ServiceSpec, host: HostProfile, network_ms: float, background_step: int,
            step: int, users: int) -> Outcome:
    """The service on the host with `users`, `step` % of its cores taken by other managed
    services and `background_step` % by co-tenants."""
    background, taken = background_step * SHARE_STEP, step * SHARE_STEP
    backend = Backend(service, host, taken, background)
    x, back = backend.solve(users)
    svc_cpu = backend.busy_workers(x) * (1.0 - background) / host.cores
    host_watts, (watts, _) = share_watts(host, background, (svc_cpu, taken),
                                         (1 + service.workers_on(host), 0))
    return Outcome(latency_ms=back * 1000.0 + network_ms, throughput_rps=x,
                   service_cpu=svc_cpu, service_watts=watts,
                   host_cpu=min(1.0, background + taken + svc_cpu), host_watts=host_watts)
