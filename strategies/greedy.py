"""Greedy: one-step lookahead on the performance model, for every service in turn: the action
with the best predicted reward for that service (move costs included), assuming users stay as
observed. The services decided before it in the tick count where they go: their load on the
hosts (contention, strategies/prediction.py) and their requests (no two onto a host that cannot
take both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from orchestrator.model import STAY, Observation, Snapshot
from strategies.allocation import Allocation
from strategies.base import NoOptions, Stateless, StrategyContext
from strategies.prediction import Predictor


class GreedyStrategy(Stateless):
    name: ClassVar[str] = "greedy"
    fleet: ClassVar[bool] = True

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        self.scenario = context.scenario
        self.predictor = Predictor(context.scenario, context.reward)

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        hosts = self.scenario.hosts
        alloc = Allocation(self.scenario, [s.host for s in snapshot.services])
        cpu, count = [0.0] * len(hosts), [0] * len(hosts)  # the services' load per host
        for s in snapshot.services:
            if s.valid:
                cpu[s.host] += s.cpu
                count[s.host] += 1
        actions = [STAY] * len(snapshot.services)
        for i, s in enumerate(snapshot.services):
            if not s.valid:
                continue
            cpu[s.host] -= s.cpu
            count[s.host] -= 1
            obs = Observation(snapshot.step, s, snapshot.hosts, tuple(cpu), tuple(count))
            valid = [a for a in range(len(masks[i]))
                     if masks[i][a] and (a == STAY or alloc.room(i, a - 1))]
            a = max(valid, key=lambda a: self.predictor.predict(obs, a, i).reward)
            to = s.host if a == STAY else a - 1
            if a != STAY:
                actions[i] = alloc.move(i, to)
            # its load where it goes: the same work on that host's cores and speed
            src, dst = hosts[s.host], hosts[to]
            cpu[to] += s.cpu * src.cores * src.speed / (dst.cores * dst.speed)
            count[to] += 1
        return actions
