"""Descheduler: what sigs.k8s.io/descheduler does every `interval_steps`, with the default
scheduler placing what it evicts. An operator baseline, for every service at once.

Utilization is by requests, as the descheduler's default: each service's `cpu_request`, plus
co-tenants at their background utilization, over the host's cores.
  - LowNodeUtilization (evacuate): while some host is below `thresholds` (20 %), a host above
    `target_thresholds` (50 %) has services evicted until it is back under it; each goes to
    the least allocated underutilized host that stays under the target with it (the
    scheduler's default LeastAllocated score).
  - HighNodeUtilization (consolidate): services on a host below `thresholds` are evicted to
    the most allocated host that takes them under the target (MostAllocated scoring, as the
    descheduler's documentation pairs it with).
  - Limits: at most `max_evictions_per_node` per host and run (maxNoOfPodsToEvictPerNode);
    memory is a hard limit; a service no host can take stays (an eviction would only put it
    back, which the descheduler avoids by checking that another node fits it)."""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.model import STAY, Snapshot
from strategies.allocation import Allocation
from strategies.base import NoOptions, Stateless, StrategyContext


class DeschedulerOptions(NoOptions):
    thresholds: float = Field(default=0.2, ge=0, le=1)  # the descheduler's default, cpu: 20
    target_thresholds: float = Field(default=0.5, ge=0, le=1)  # its default, cpu: 50
    max_evictions_per_node: int = Field(default=1, ge=1)
    interval_steps: int = Field(default=1, ge=1)


class DeschedulerStrategy(Stateless):
    name: ClassVar[str] = "descheduler"
    fleet: ClassVar[bool] = True
    Options: ClassVar[type[DeschedulerOptions]] = DeschedulerOptions

    def __init__(self, context: StrategyContext, options: DeschedulerOptions) -> None:
        self.scenario, self.hosts = context.scenario, context.scenario.hosts
        self.o = options

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        actions = [STAY] * len(snapshot.services)
        if snapshot.step % self.o.interval_steps:
            return actions
        alloc = Allocation(self.scenario, [s.host for s in snapshot.services])
        util, low, high = alloc.util, self.o.thresholds, self.o.target_thresholds
        on: list[list[int]] = [[] for _ in self.hosts]  # the valid services on each host
        for i, s in enumerate(snapshot.services):
            if s.valid:
                on[s.host].append(i)

        def move(i: int, to: int) -> None:
            on[alloc.where[i]].remove(i)
            insort(on[to], i)
            actions[i] = alloc.move(i, to)

        def fits(i: int) -> np.ndarray:
            return masks[i][1:] & alloc.rooms(i, high)

        evicted = [0 for _ in self.hosts]
        for h in range(len(self.hosts)):  # LowNodeUtilization
            for i in list(on[h]):
                if util(h) <= high or evicted[h] >= self.o.max_evictions_per_node:
                    break
                utils = alloc.utils()
                under = (utils < low) & fits(i)
                if not under.any():
                    break
                move(i, int(np.argmin(np.where(under, utils, np.inf))))  # least utilized
                evicted[h] += 1
        for h in range(len(self.hosts)):  # HighNodeUtilization; one evicted already stays
            for i in [i for i in on[h] if actions[i] == STAY]:
                if util(h) >= low or evicted[h] >= self.o.max_evictions_per_node:
                    break
                utils = alloc.utils()
                fuller = (utils >= utils[h]) & fits(i)
                fuller[h] = False
                if fuller.any():
                    move(i, int(np.argmax(np.where(fuller, utils, -np.inf))))  # most utilized
                    evicted[h] += 1
        return actions
