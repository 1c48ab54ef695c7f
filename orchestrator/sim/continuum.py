"""The simulated continuum: a scenario's services moving across its hosts, step by step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.config import Scenario
from orchestrator.migration.plan import INTER_STEPS, INTRA_STEPS
from orchestrator.model import HostState, Move, ServiceState, Snapshot
from orchestrator.performance import Outcome, PerformanceModel, curve_fraction
from orchestrator.topology import MoveKind, Topology
from orchestrator.workload import episode_users, pattern


@dataclass(frozen=True)
class Episode:
    """Everything random about one episode, drawn at reset: the oracle may read it."""

    users: np.ndarray  # users[s, t] of service s for t = 0..steps
    jitter: np.ndarray  # multiplicative latency noise per service and step
    start_hosts: tuple[int, ...]


@dataclass(frozen=True)
class SimulatedPlan:
    """What a move would do on clusters, named as the executors name their steps."""

    move: Move
    kind: MoveKind
    steps: tuple[str, ...]


class SimulatedContinuum:
    """In-process stand-in for real clusters, built from a scenario (the embedded default).

    Time advances only in `apply`: the services are first moved (if asked), then the workload
    moves on one step and the new state is what `snapshot` reports. Services do not slow each
    other down yet; their CPU adds up on a host, and capacity and memory are counted for all.
    """

    def __init__(self, scenario: Scenario, phase: str = "train",
                 model: PerformanceModel | None = None, seed: int | None = None) -> None:
        self.scenario = scenario
        self.topology = Topology(scenario.clusters)
        self.specs = scenario.fleet
        self.models = [model if model is not None and i == 0 else
                       PerformanceModel(scenario, service=s) for i, s in enumerate(self.specs)]
        self.hosts = scenario.hosts
        self.idle = [self._host(i, 0.0) for i in range(len(self.hosts))]  # no service on it
        self.steps = scenario.episode_steps
        wl = scenario.workload
        self.curve = pattern(wl.train if phase == "train" else wl.test, wl.peak_users)
        for m in self.models:
            m.extend(int(max(self.curve) * (1 + 5 * wl.noise)) + 1)
        self.rng = np.random.default_rng(seed)
        self.episode = self._draw(None)
        self.t = 0
        self.placement = list(self.episode.start_hosts)
        self.moved: list[MoveKind | None] = [None] * len(self.specs)  # in the step of a move

    @property
    def model(self) -> PerformanceModel:
        """The first service's performance model (the paper's single service)."""
        return self.models[0]

    @property
    def host(self) -> int:
        """The first service's host (the paper's single service)."""
        return self.placement[0]

    def _draw(self, start_hosts: Sequence[int | None] | None) -> Episode:
        wl = self.scenario.workload
        users, jitter, starts = [], [], []
        taken: list[int] = []
        for s in range(len(self.specs)):
            users.append(episode_users(self.curve, self.steps + 1, wl.noise, self.rng))
            j = 1.0 + wl.latency_jitter * self.rng.standard_normal(self.steps + 1)
            jitter.append(np.clip(j, 0.5, 1.5))
            start = None if start_hosts is None else start_hosts[s]
            if start is None:
                start = int(self.rng.choice([h for h in range(len(self.hosts))
                                             if self._fits(s, h, taken)]))
            starts.append(start)
            taken.append(start)
        return Episode(np.array(users), np.array(jitter), tuple(starts))

    def reset(self, seed: int | None = None, start_host: int | None = None) -> None:
        """A new episode; `start_host` places the first service (None: random)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        starts = [start_host] + [None] * (len(self.specs) - 1)
        self.episode = self._draw(starts)
        self.t = 0
        self.placement = list(self.episode.start_hosts)
        self.moved = [None] * len(self.specs)

    @property
    def done(self) -> bool:
        return self.t >= self.steps

    # --- feasibility ------------------------------------------------------------------------
    def _fits(self, service: int, host: int, placement: Sequence[int]) -> bool:
        """Memory and CPU requests of `service` fit `host` beside the others in `placement`."""
        h, spec = self.hosts[host], self.specs[service]
        others = [self.specs[o] for o, at in enumerate(placement) if at == host and o != service]
        return (h.memory_gib - sum(o.memory_gib for o in others) >= spec.memory_gib
                and h.cores - sum(o.cpu_request for o in others) >= spec.cpu_request)

    def can_host(self, host: int, service: int = 0) -> bool:
        return self._fits(service, host, self.placement)

    def masks(self, snapshot: Snapshot) -> np.ndarray:
        """Eq. 7 per service: stay always; not its current host; hosts it fits beside the others."""
        n = len(self.hosts)
        out = np.zeros((len(self.specs), n + 1), dtype=bool)
        out[:, 0] = True
        for s, at in enumerate(self.placement):
            for h in range(n):
                out[s, h + 1] = h != at and self._fits(s, h, self.placement)
        return out

    # --- acting -----------------------------------------------------------------------------
    def plan(self, move: Move) -> SimulatedPlan:
        kind = self.topology.move_kind(self.placement[move.service], move.host)
        assert kind is not None, "a move to the current host is no move"
        return SimulatedPlan(move, kind, INTER_STEPS if kind == "inter" else INTRA_STEPS)

    def apply(self, plans: Sequence[SimulatedPlan],
              on_done: Callable[[SimulatedPlan, str], None] | None = None) -> None:
        """Make the planned moves, then advance one step."""
        self.moved = [None] * len(self.specs)
        for p in plans:
            self.moved[p.move.service] = p.kind
            self.placement[p.move.service] = p.move.host
            if on_done:
                on_done(p, "done")
        self.t += 1

    # --- what is observed -------------------------------------------------------------------
    def outcome(self, host: int, t: int, moved: MoveKind | None,
                service: int = 0) -> tuple[float, float, Outcome]:
        """(service watts, latency ms, raw outcome) on `host` at step t, with move costs."""
        o = self.models[service].outcome(host, int(self.episode.users[service, t]))
        latency = o.latency_ms * float(self.episode.jitter[service, t])
        watts = o.service_watts
        if moved is not None:
            cost = (self.scenario.migration.intra_cluster if moved == "intra"
                    else self.scenario.migration.inter_cluster)
            latency += cost.latency_ms
            watts += cost.watts
        return watts, latency, o

    def current(self, service: int = 0) -> tuple[float, float]:
        """(service watts, latency ms) now."""
        watts, latency, _ = self.outcome(self.placement[service], self.t, self.moved[service],
                                         service)
        return watts, latency

    def snapshot(self) -> Snapshot:
        services, busy = [], [0.0] * len(self.hosts)
        for s, spec in enumerate(self.specs):
            at = self.placement[s]
            watts, latency, o = self.outcome(at, self.t, self.moved[s], s)
            busy[at] += o.service_cpu
            services.append(ServiceState(spec.name, at, watts, o.service_cpu, latency,
                                         int(self.episode.users[s, self.t]), o.throughput_rps))
        hosts = tuple(self._host(i, busy[i]) if busy[i] else self.idle[i]
                      for i in range(len(self.hosts)))
        return Snapshot(self.t, tuple(services), hosts)

    def _host(self, i: int, busy: float) -> HostState:
        """Host i with its background load and `busy` (the services' CPU share) on top."""
        h = self.hosts[i]
        cpu = min(1.0, h.background_utilization + busy)
        power = h.idle_watts + (h.max_watts - h.idle_watts) * curve_fraction(h.power_curve, cpu)
        return HostState(h.name, self.topology.clusters[i], power, cpu)
