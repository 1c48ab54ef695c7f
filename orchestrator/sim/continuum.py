"""The simulated continuum: one service moving across a scenario's hosts, step by step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.config import Scenario
from orchestrator.model import HostState, Observation, ServiceState
from orchestrator.sim.performance import Outcome, PerformanceModel
from orchestrator.sim.workload import episode_users, pattern


@dataclass(frozen=True)
class Episode:
    """Everything random about one episode, drawn at reset: the oracle may read it."""

    users: np.ndarray  # users[t] for t = 0..steps
    jitter: np.ndarray  # multiplicative latency noise per step
    start_host: int


class SimulatedContinuum:
    """In-process stand-in for real clusters, built from a scenario (the embedded default).

    Time advances only in `apply`: the service is first moved (if asked), then the workload moves
    on one step and the new state is what `observe` reports.
    """

    def __init__(self, scenario: Scenario, phase: str = "train",
                 model: PerformanceModel | None = None, seed: int | None = None) -> None:
        self.scenario = scenario
        self.model = model or PerformanceModel(scenario)
        self.hosts = scenario.hosts
        self.clusters = [scenario.cluster_of(h.name) for h in self.hosts]
        self.steps = scenario.episode_steps
        wl = scenario.workload
        self.curve = pattern(wl.train if phase == "train" else wl.test, wl.peak_users)
        self.model.extend(int(max(self.curve) * (1 + 5 * wl.noise)) + 1)
        svc = scenario.service
        self.fits = [h.memory_gib >= svc.memory_gib and h.cores >= svc.cpu_request
                     for h in self.hosts]
        self.rng = np.random.default_rng(seed)
        self.episode = self._draw(None)
        self.t = 0
        self.host = self.episode.start_host
        self.moved: str | None = None  # "intra" | "inter" in the step of a move

    def _draw(self, start_host: int | None) -> Episode:
        wl = self.scenario.workload
        users = episode_users(self.curve, self.steps + 1, wl.noise, self.rng)
        jitter = 1.0 + wl.latency_jitter * self.rng.standard_normal(self.steps + 1)
        if start_host is None:
            start_host = int(self.rng.choice([i for i, ok in enumerate(self.fits) if ok]))
        return Episode(users, np.clip(jitter, 0.5, 1.5), start_host)

    def reset(self, seed: int | None = None, start_host: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.episode = self._draw(start_host)
        self.t, self.host, self.moved = 0, self.episode.start_host, None

    @property
    def done(self) -> bool:
        return self.t >= self.steps

    def can_host(self, host: int) -> bool:
        return self.fits[host]

    def move_kind(self, src: int, dst: int) -> str:
        return "intra" if self.clusters[src] == self.clusters[dst] else "inter"

    def apply(self, target: int | None) -> None:
        """Move to `target` (None or the current host: stay), then advance one step."""
        self.moved = None
        if target is not None and target != self.host:
            self.moved = self.move_kind(self.host, target)
            self.host = target
        self.t += 1


    # --- what is observed -------------------------------------------------------------------
    def outcome(self, host: int, t: int, moved: str | None) -> tuple[float, float, Outcome]:
        """(service watts, latency ms, raw outcome) on `host` at step t, with move costs."""
        o = self.model.outcome(host, int(self.episode.users[t]))
        latency = o.latency_ms * float(self.episode.jitter[t])
        watts = o.service_watts
        if moved is not None:
            cost = (self.scenario.migration.intra_cluster if moved == "intra"
                    else self.scenario.migration.inter_cluster)
            latency += cost.latency_ms
            watts += cost.watts
        return watts, latency, o

    def current(self) -> tuple[float, float]:
        """(service watts, latency ms) now."""
        watts, latency, _ = self.outcome(self.host, self.t, self.moved)
        return watts, latency

    def observe(self) -> Observation:
        watts, latency, o = self.outcome(self.host, self.t, self.moved)
        hosts = []
        for i, h in enumerate(self.hosts):
            cpu, power = (o.host_cpu, o.host_watts) if i == self.host else self.model.empty[i]
            hosts.append(HostState(h.name, self.clusters[i], power, cpu))
        service = ServiceState(self.scenario.service.name, self.host, watts, o.service_cpu,
                               latency, int(self.episode.users[self.t]), o.throughput_rps)
        return Observation(self.t, service, tuple(hosts))
