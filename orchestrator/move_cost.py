"""What a move costs in the ticks it spans: the one definition used by the simulated continuum,
the predictions, the oracle, the Gymnasium environment and lookahead.

A move is make-before-break, as greenwise-mc's migrations are on clusters. From the start of
the tick it is decided in (the tick is orchestrator.workload.TICK_S long):
  1. wake: a sleeping target is woken first (its `wake_s`; 0 if awake); the source serves;
  2. load: the new copy is created until Ready (`copy_s` of the move's kind, measured on the lab)
     and loads its model (the service's `cold_start_s`) while the old one keeps serving: the
     service's latency is the source's; the target carries the new copy, which draws its share
     of the idle power and the cold start's CPU (`COLD_START_CORES`);
  3. forward (inter-cluster only): for `dns_s` after the switch (DNS convergence: the TTL)
     clients still reach the source cluster, whose forwarder sends them on: the target's
     latency plus the source's network latency (the extra hop);
  4. the target serves.
The power and latency reported for the service in a tick are the time-weighted mix of what it
spends in each phase. What the move does to the services sharing either host is left out: they
see the service where it serves for most of the tick (the load phase is seconds of 900).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from orchestrator.performance import PerformanceModel, share_watts
from orchestrator.scenario import Scenario
from orchestrator.topology import Topology
from orchestrator.workload import TICK_S

# [assume] A loading copy keeps one core busy (TorchServe unpacking and loading the model).
COLD_START_CORES = 1.0


@dataclass(frozen=True)
class Timeline:
    """A move's phases in seconds from the start of the tick it is decided in."""

    wake_s: float  # until a sleeping target is awake
    load_s: float  # creating the copy until Ready and loading the model
    forward_s: float  # after the switch, clients forwarded by the source (inter-cluster)

    @property
    def switch_s(self) -> float:
        """When the new copy starts serving."""
        return self.wake_s + self.load_s

    @property
    def end_s(self) -> float:
        """When the move no longer costs anything."""
        return self.switch_s + self.forward_s

    def in_tick(self, tick: int) -> Phases:
        """The seconds of tick `tick` (0: the tick it is decided in) spent in each phase."""
        lo, hi = tick * TICK_S, (tick + 1) * TICK_S

        def part(start: float, end: float) -> float:
            return max(0.0, min(end, hi) - max(start, lo))

        return Phases(source_s=part(0.0, self.switch_s),
                      loading_s=part(self.wake_s, self.switch_s),
                      forward_s=part(self.switch_s, self.end_s),
                      target_s=part(self.end_s, float("inf")))


@dataclass(frozen=True)
class Phases:
    """Seconds of one tick: served by the source (of which the new copy loads `loading_s`),
    forwarded to the target, served by the target. They add up to the tick."""

    source_s: float
    loading_s: float
    forward_s: float
    target_s: float


class MoveCost:
    """Moves of a scenario's services: their timelines and what a tick of one costs."""

    def __init__(self, scenario: Scenario, models: Sequence[PerformanceModel]) -> None:
        self.topology = Topology(scenario.clusters)
        self.migration = scenario.migration
        self.hosts = scenario.hosts
        self.cold_start_s = [m.service.cold_start_s for m in models]
        self.network_ms = [m.network_ms for m in models]
        # What a loading copy draws on each host (Eq. 1-2, as if alone there: exact for the
        # linear power curve, whatever else runs there; alike for services of as many
        # processes on a host)
        @cache
        def loading(host: int, processes: int) -> float:
            h = self.hosts[host]
            return share_watts(h, 0.0, [COLD_START_CORES / h.cores], [processes])[1][0]

        self.loading_w = [[loading(i, p) for i, p in enumerate(m.processes)] for m in models]
        # the same, as arrays [service, host] (for `steps`)
        self.cluster = np.unique(self.topology.clusters, return_inverse=True)[1].ravel()
        self.cold_start = np.array(self.cold_start_s)
        self.loading, self.network = np.array(self.loading_w), np.array(self.network_ms)
        # A move's first tick by (service, kind, wake): predictions ask it for each move
        self._first: dict[tuple[int, str, float], Phases] = {}

    def timeline(self, service: int, src: int, dst: int, wake_s: float = 0.0) -> Timeline:
        kind = self.topology.move_kind(src, dst)
        assert kind is not None, "a move to the current host is no move"
        cost = self.migration.intra_cluster if kind == "intra" else self.migration.inter_cluster
        return Timeline(wake_s, cost.copy_s + self.cold_start_s[service], cost.dns_s)

    def mix(self, service: int, src: int, dst: int, phases: Phases,
            at_src: tuple[float, float], at_dst: tuple[float, float]) -> tuple[float, float]:
        """(watts, latency ms) of `service` over a tick of its move from src to dst, from
        (watts, latency ms) where it serves on each: settled on dst, and on src beside the
        services that were there when the move began."""
        p = phases
        watts = (p.source_s * at_src[0] + p.loading_s * self.loading_w[service][dst]
                 + (p.forward_s + p.target_s) * at_dst[0])
        latency = (p.source_s * at_src[1] + p.target_s * at_dst[1]
                   + p.forward_s * (at_dst[1] + self.network_ms[service][src]))
        return watts / TICK_S, latency / TICK_S

    def step(self, service: int, src: int, dst: int, at_src: tuple[float, float],
             at_dst: tuple[float, float], wake_s: float = 0.0) -> tuple[float, float]:
        """(watts, latency ms) of `service` in the tick it moves from src to dst (at_dst if
        it stays)."""
        if src == dst:
            return at_dst
        key = (service, self.topology.move_kind(src, dst) or "", wake_s)
        phases = self._first.get(key)
        if phases is None:
            phases = self._first[key] = self.timeline(service, src, dst, wake_s).in_tick(0)
        return self.mix(service, src, dst, phases, at_src, at_dst)

    def steps(self, service: np.ndarray, src: np.ndarray, dst: np.ndarray,
              at_src: tuple[np.ndarray, np.ndarray], at_dst: tuple[np.ndarray, np.ndarray],
              wake_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`step` elementwise over arrays (the same arithmetic)."""
        inter = self.cluster[src] != self.cluster[dst]
        copy_s = np.where(inter, self.migration.inter_cluster.copy_s,
                          self.migration.intra_cluster.copy_s)
        switch = wake_s + (copy_s + self.cold_start[service])
        end = switch + np.where(inter, self.migration.inter_cluster.dns_s, 0.0)

        def part(start: np.ndarray | float, stop: np.ndarray | float) -> np.ndarray:
            return np.maximum(0.0, np.minimum(stop, TICK_S) - np.maximum(start, 0.0))

        source, loading, forward, target = (part(0.0, switch), part(wake_s, switch),
                                            part(switch, end), part(end, np.inf))
        watts = (source * at_src[0] + loading * self.loading[service, dst]
                 + (forward + target) * at_dst[0]) / TICK_S
        latency = (source * at_src[1] + target * at_dst[1]
                   + forward * (at_dst[1] + self.network[service, src])) / TICK_S
        moved = src != dst
        return np.where(moved, watts, at_dst[0]), np.where(moved, latency, at_dst[1])
