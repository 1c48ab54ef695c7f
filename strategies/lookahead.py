"""Lookahead: a receding-horizon planner on the performance model, for every service in turn.

Each tick it forecasts each service's users `horizon` steps ahead from what it has observed
(a straight line through its last `window` observations; never the future) and gives each
service the host with the best predicted reward summed over the horizon: its own, plus what
its being there costs the services it would share the host with (contention), with a move's
cost (orchestrator/move_cost.py) counted in its first step. So a move pays when its gain over
the horizon outweighs its cost, and a service does not crowd a host whose tenants lose more
than it gains. Services decided before it in the tick count where they go (their load and
their requests), as in greedy; within gates it proposes what they let through
(strategies/gated.py): while the limit on migrations binds, the moves worth most first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.continuum import Continuum
from orchestrator.model import STAY, Snapshot
from strategies.allocation import Allocation
from strategies.base import NoOptions, StrategyContext
from strategies.gated import Proposals
from strategies.prediction import Place, Predictor


class LookaheadOptions(NoOptions):
    # [assume] an hour ahead (4 steps of 15 minutes), a trend over the last hour (window 1:
    # users stay as last seen)
    horizon: int = Field(default=4, ge=1)
    window: int = Field(default=4, ge=1)


class LookaheadStrategy:
    name: ClassVar[str] = "lookahead"
    needs_future: ClassVar[bool] = False
    fleet: ClassVar[bool] = True
    Options: ClassVar[type[LookaheadOptions]] = LookaheadOptions

    def __init__(self, context: StrategyContext, options: LookaheadOptions) -> None:
        self.scenario = context.scenario
        self.predictor = Predictor(context.scenario, context.reward)
        self.horizon, self.window = options.horizon, options.window
        self.proposals = Proposals(context.gates)
        self.seen: list[list[int]] = []  # users observed per tick, per service

    def reset(self, continuum: Continuum) -> None:
        self.seen = []
        self.proposals.reset()

    def forecast_background(self, snapshot: Snapshot) -> list[list[float]]:
        """Each host's co-tenant CPU in each of the next `horizon` steps: as observed now."""
        return [[b] * self.horizon for b in snapshot.background]

    def forecast(self, service: int) -> list[int]:
        """Users of `service` in each of the next `horizon` steps: the least-squares line
        through its last `window` observations, extended; never below 0."""
        seen = np.array([tick[service] for tick in self.seen[-self.window:]], dtype=float)
        if len(seen) < 2:
            return [int(seen[-1])] * self.horizon
        slope, level = np.polyfit(np.arange(len(seen)), seen, 1)
        return [max(0, round(level + slope * (len(seen) - 1 + k)))
                for k in range(1, self.horizon + 1)]

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        services = snapshot.services
        self.seen.append([s.users for s in services])
        where = [s.host if s.valid else -1 for s in services]
        users = [self.forecast(i) for i in range(len(services))]
        background = self.forecast_background(snapshot)
        alloc = Allocation(self.scenario, where)

        def best(i: int) -> tuple[float, int]:
            host = services[i].host
            mask = self.proposals.mask(snapshot, i, masks[i], 0, self.predictor)
            v = {a: self.value(i, host, host if a == STAY else a - 1, where, users, background,
                                 snapshot)
                 for a in range(len(mask)) if a == STAY or (mask[a] and alloc.room(i, a - 1))}
            a = max(v, key=v.__getitem__)
            return v[a] - v[STAY], a

        actions = [STAY] * len(services)
        for i, a in self.proposals(snapshot, best):
            actions[i] = alloc.move(i, a - 1)
            where[i] = a - 1
        return actions

    def value(self, i: int, src: int, dst: int, where: Sequence[int],
              users: Sequence[Sequence[int]], background: Sequence[Sequence[float]],
              now: Snapshot) -> float:
        """Predicted reward over the horizon of service i going from src to dst, and of the
        services on dst with it there minus without it; users[o][k] and background[h][k] as
        forecast, sleeping hosts as observed `now`."""
        p = self.predictor

        def alone(o: int, host: int, k: int) -> float:
            place = Place(host, background=background[host][k])
            return p.outcome(o, place, users[o][k]).service_cpu

        beside = [o for o, at in enumerate(where) if at == dst and o != i]
        total = 0.0
        for k in range(self.horizon):
            cpu = {o: alone(o, dst, k) for o in beside}
            load = sum(cpu.values())
            there = Place(dst, load, len(beside), background[dst][k], now.hosts[dst].asleep)
            here = there
            if k == 0 and src != dst:  # where it serves until its new copy is ready
                with_it = [o for o, at in enumerate(where) if at == src and o != i]
                here = Place(src, sum(alone(o, src, k) for o in with_it), len(with_it),
                             background[src][k])
            own = p.at(i, here, there, users[i][k])
            total += own.reward
            for o in beside:
                rest = load - cpu[o]
                for sign, others, count in ((1, rest + own.cpu, len(beside)),
                                            (-1, rest, len(beside) - 1)):
                    place = Place(dst, others, count, background[dst][k])
                    total += sign * p.at(o, place, place, users[o][k]).reward
        return total
