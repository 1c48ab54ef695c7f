"""Greedy: one-step lookahead on the performance model, for every service in turn: the action
with the best predicted reward for that service (move costs included), assuming users stay as
observed. The services decided before it in the tick count where they go: their load on the
hosts (contention, strategies/prediction.py) and their requests (no two onto a host that cannot
take both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from orchestrator.model import STAY, Load, Snapshot
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
        alloc = Allocation(self.scenario, [s.host for s in snapshot.services])
        load = Load(snapshot, self.scenario.capacity)
        actions = [STAY] * len(snapshot.services)
        for i, s in enumerate(snapshot.services):
            if not s.valid:
                continue
            obs = load.view(i)
            valid = [a for a in range(len(masks[i]))
                     if masks[i][a] and (a == STAY or alloc.room(i, a - 1))]
            self.predictor.prefetch((i, obs, a) for a in valid)  # what is new, at once
            a = max(valid, key=lambda a: self.predictor.predict(obs, a, i).reward)
            if a != STAY:
                actions[i] = alloc.move(i, a - 1)
                load.move(i, a - 1)
        return actions
