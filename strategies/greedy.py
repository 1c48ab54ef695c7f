"""Greedy: one-step lookahead on the performance model, for every service: the action with the
best predicted reward for that service (move costs included), assuming users stay as observed.
The services decided before it in the tick count where they go: their load on the hosts
(contention, strategies/prediction.py) and their requests (no two onto a host that cannot take
both). Within gates it proposes what they let through (strategies/gated.py): while the limit
on migrations binds, the moves that gain most first, predicting no move of a service whose
ceiling (what any move could gain it, `Predictor.ceilings`) is below a gain already found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from orchestrator.continuum import Continuum
from orchestrator.model import STAY, Load, Snapshot
from strategies.allocation import Allocation
from strategies.base import NoOptions, StrategyContext
from strategies.gated import Proposals
from strategies.prediction import ROUNDING, Predictor


class GreedyStrategy:
    name: ClassVar[str] = "greedy"
    fleet: ClassVar[bool] = True
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        self.scenario = context.scenario
        self.predictor = Predictor(context.scenario, context.reward)
        self.proposals = Proposals(context.gates)

    def reset(self, continuum: Continuum) -> None:
        self.proposals.reset()

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        alloc = Allocation(self.scenario, [s.host for s in snapshot.services])
        load = Load(snapshot, self.scenario.capacity)

        ahead: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # moves and changes, weighed

        def weigh(services: list[int]) -> list[float]:
            each = [np.flatnonzero(masks[i][1:] & alloc.rooms(i)) + 1 for i in services]
            changes = self.predictor.changes_each(snapshot, services, each, load)
            ahead.update(zip(services, zip(each, changes, strict=True), strict=True))
            # what `best` can gain: the best move's change if above staying's 0, as predicted
            # one by one
            return [c.max(initial=0.0) + ROUNDING for c in changes]

        def ceiling(services: list[int]) -> list[float]:
            return self.predictor.ceilings(snapshot, services, load).tolist()

        def best(i: int) -> tuple[float, int]:
            if i not in ahead:
                weigh([i])
            mine, change = ahead.pop(i)
            # Every move predicted at once finds the best; it and those within float rounding
            # of it are predicted one by one, so that ties fall as they always have (the best
            # passes the gain gate if any move does: the gate is monotone in the gain), unless
            # it gains less than staying (which ties go to)
            near = mine[change >= change.max(initial=0.0) - ROUNDING].tolist()
            if not near:
                return 0.0, STAY
            obs = load.view(i)
            r = {a: self.predictor.predict(obs, a, i).reward for a in (STAY, *near)}
            a = max((a for a in r if a == STAY or self.proposals.passes(r[a] - r[STAY])),
                    key=r.__getitem__)
            return r[a] - r[STAY], a

        actions = [STAY] * len(snapshot.services)
        for i, a in self.proposals(snapshot, best, weigh, ceiling):
            actions[i] = alloc.move(i, a - 1)
            load.move(i, a - 1)
        return actions
