"""Oracle: the best placement sequence for the whole episode, by dynamic programming over
(step, host) with the episode's future workload and noise known. An upper bound; it needs the
simulated continuum and cannot run on real clusters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.errors import BadInput
from orchestrator.model import Observation
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.base import StrategyOptions
from strategies.reward import reward


class OracleStrategy:
    name: ClassVar[str] = "oracle"
    simulation_only: ClassVar[bool] = True

    def __init__(self, options: StrategyOptions) -> None:
        self.reward_kind = options.reward
        self.plan: list[int] = []

    def reset(self, sim: SimulatedContinuum | None) -> None:
        if sim is None:
            raise BadInput("the oracle needs the simulated continuum (it reads the future)")
        n, steps = len(sim.hosts), sim.steps
        p_max, l_max = sim.model.p_max, sim.scenario.service.sla_latency_ms

        def r(t: int, src: int, dst: int) -> float:
            moved = None if src == dst else sim.move_kind(src, dst)
            watts, latency, _ = sim.outcome(dst, t, moved)
            return reward(self.reward_kind, watts, latency, p_max, l_max)

        value = np.full(n, -np.inf)
        value[sim.host] = 0.0
        back = np.zeros((steps + 1, n), dtype=int)
        for t in range(1, steps + 1):
            new = np.full(n, -np.inf)
            for dst in range(n):
                if not sim.can_host(dst):
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
