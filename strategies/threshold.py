"""Threshold: per service, the host nearest its users (that takes it) while its users stay
below a threshold, else a cloud host (the scheduler's pick, as strategies/cloud.py). The
threshold comes from the service's capacity on the nearest host, never from a workload
pattern: the most users it serves there within `sla_fraction` of the SLA (the queueing model
of orchestrator/performance.py). It moves back only below (1 - `hysteresis`) of the
threshold, so that users hovering around it do not make it flap. An operator baseline: the
one rule a person would configure per service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.model import STAY, Snapshot
from orchestrator.performance import Backend, kind
from strategies.allocation import Allocation, cloud_hosts
from strategies.base import NoOptions, Stateless, StrategyContext

MAX_USERS = 10_000


class ThresholdOptions(NoOptions):
    sla_fraction: float = Field(default=0.8, gt=0)  # as the rules' evacuate_at
    hysteresis: float = Field(default=0.1, ge=0, lt=1)  # of the threshold


def capacity_users(backend: Backend, network_ms: float, limit_ms: float) -> int:
    """The most users the backend serves with an end-to-end latency of at most `limit_ms`
    (solved for 256 user counts at a time)."""
    for first in range(1, MAX_USERS, 256):
        users = np.arange(first, min(first + 256, MAX_USERS))
        over = np.flatnonzero(backend.solve(users)[1] * 1000 + network_ms > limit_ms)
        if over.size:
            return int(users[over[0]]) - 1
    return MAX_USERS


class ThresholdStrategy(Stateless):
    name: ClassVar[str] = "threshold"
    fleet: ClassVar[bool] = True
    Options: ClassVar[type[ThresholdOptions]] = ThresholdOptions

    def __init__(self, context: StrategyContext, options: ThresholdOptions) -> None:
        self.scenario = sc = context.scenario
        hosts = sc.hosts
        self.big = np.array(cloud_hosts(sc), dtype=np.int64)
        self.cloud = set(self.big.tolist())
        # per service, from its users' region: hosts nearest first, each host's place in that
        # order, and its threshold
        self.by_distance: list[np.ndarray] = []
        self.rank: list[np.ndarray] = []
        self.thresholds: list[int] = []
        known: dict[tuple[object, ...], int] = {}  # a fleet's copies of a service share theirs
        for spec in sc.fleet:
            network = sc.network_ms(spec)
            by_distance = sorted(range(len(hosts)), key=lambda h: network[h])
            near = by_distance[0]
            self.by_distance.append(np.array(by_distance, dtype=np.int64))
            self.rank.append(np.argsort(self.by_distance[-1]))
            limit = options.sla_fraction * spec.sla_latency_ms
            key = (kind(spec, hosts[near]), hosts[near].background_utilization, network[near],
                   limit)
            if key not in known:
                known[key] = capacity_users(Backend(spec, hosts[near]), network[near], limit)
            self.thresholds.append(known[key])
        self.hysteresis = options.hysteresis

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        alloc = Allocation(self.scenario, [s.host for s in snapshot.services])
        actions = [STAY] * len(snapshot.services)
        for i, s in enumerate(snapshot.services):
            if not s.valid:
                continue
            threshold = self.thresholds[i]
            if s.users > threshold:  # the scheduler's cloud host
                to = s.host if s.host in self.cloud else alloc.least_allocated(i, self.big,
                                                                                masks[i])
            elif s.users < (1 - self.hysteresis) * threshold or s.host not in self.cloud:
                to = self._near(alloc, i, s.host, masks[i])  # off the cloud it is never big
            else:
                to = s.host  # between the two marks: where it is
            if to is not None and to != s.host:
                actions[i] = alloc.move(i, to)
        return actions

    def _near(self, alloc: Allocation, i: int, host: int, mask: np.ndarray) -> int:
        """The nearest host that takes service i, its own `host` counting as one: only those
        nearer than it are asked."""
        nearer = self.by_distance[i][:self.rank[i][host]]
        if not nearer.size:
            return host
        takes = mask[1:][nearer] & alloc.rooms_on(i, nearer)
        first = takes.argmax()
        return int(nearer[first]) if takes[first] else host
