"""Oracle: the best placement sequence for the whole episode, by dynamic programming over
(step, host) with the episode's future workload and noise known. An upper bound for one
service; it needs a continuum that knows its future (the simulated one), never real clusters.
With several services each is planned alone (the others where they started)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.continuum import Clairvoyant, Continuum
from orchestrator.errors import BadInput
from orchestrator.model import Observation
from strategies.base import NoOptions, StrategyContext
from strategies.reward import reward


class OracleStrategy:
    name: ClassVar[str] = "oracle"
    needs_future: ClassVar[bool] = True
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        self.reward_kind = context.reward
        self.service = context.service
        self.sla = context.spec.sla_latency_ms
        self.plan: list[int] = []

    def reset(self, continuum: Continuum) -> None:
        if not isinstance(continuum, Clairvoyant):
            raise BadInput("the oracle needs the simulated continuum (it reads the future)")
        sim, s = continuum, self.service
        topology = continuum.topology
        n, steps = len(topology), sim.steps

        def r(t: int, src: int, dst: int) -> float:
            watts, latency, _ = sim.outcome(dst, t, topology.move_kind(src, dst), s)
            return reward(self.reward_kind, watts, latency, topology.p_max, self.sla)

        value = np.full(n, -np.inf)
        value[sim.placement[s]] = 0.0
        back = np.zeros((steps + 1, n), dtype=int)
        for t in range(1, steps + 1):
            new = np.full(n, -np.inf)
            for dst in range(n):
                if not sim.can_host(dst, s):
                    continue
                for src in range(n):
                    if value[src] > -np.inf and value[src] + r(t, src, dst) > new[dst]:
                        new[dst], back[t, dst] = value[src] + r(t, src, dst), src
            value = new
        host = int(np.argmax(value))
        path = [host]
        for t in range(steps, 0, -1):
            host = int(back[t, host])
            path.append(host)
        path.reverse()  # path[t] = host during step t
        self.plan = [0 if path[t + 1] == path[t] else path[t + 1] + 1 for t in range(steps)]

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        return self.plan[obs.step]
