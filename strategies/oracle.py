"""Oracle: the best placement sequences for the whole episode, planned with the episode's future
workload and noise known (a continuum that knows its future: the simulated one, never real
clusters).

One service: exact dynamic programming over (step, host), a true upper bound on any strategy
(with the gates off). Several: coordinate ascent over the same DP: each service in turn gets the
path that maximizes the *total* reward of all services given the others' paths (so that its
moves count the slowdown it brings its neighbours), from every service staying, for up to
`rounds` rounds or until no path changes. Each round can only raise the total, but it stops at
a local optimum: for several services it is a reference, not a proven upper bound. It plans a
move as done within the step it is decided in (its cost as orchestrator/move_cost.py says,
waiting for a sleeping host): exact while a move's new copy serves within that step, as with
every built-in scenario's durations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.continuum import Clairvoyant, Continuum
from orchestrator.errors import BadInput
from orchestrator.model import STAY, Snapshot
from strategies.base import NoOptions, StrategyContext
from strategies.reward import reward


class OracleOptions(NoOptions):
    rounds: int = Field(default=3, ge=1)


class OracleStrategy:
    name: ClassVar[str] = "oracle"
    needs_future: ClassVar[bool] = True
    fleet: ClassVar[bool] = True
    Options: ClassVar[type[OracleOptions]] = OracleOptions

    def __init__(self, context: StrategyContext, options: OracleOptions) -> None:
        self.reward_kind = context.reward
        self.slas = [s.sla_latency_ms for s in context.scenario.fleet]
        self.rounds = options.rounds
        self.paths: list[list[int]] = []  # paths[s][t]: the host of service s during step t

    def reset(self, continuum: Continuum) -> None:
        if not isinstance(continuum, Clairvoyant):
            raise BadInput("the oracle needs the simulated continuum (it reads the future)")
        self.sim, self.topology = continuum, continuum.topology
        self.paths = [[start] * (continuum.steps + 1) for start in continuum.placement]
        for _ in range(self.rounds):
            changed = False
            for s in range(len(self.paths)):
                best = self._best_path(s)
                changed |= best != self.paths[s]
                self.paths[s] = best
            if not changed or len(self.paths) == 1:
                break

    def _r(self, s: int, watts: float, latency: float) -> float:
        return reward(self.reward_kind, watts, latency, self.topology.p_max, self.slas[s])

    def _step_values(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray, list[list[int]]]:
        """At step t, with the others on their paths, per host h for service s: whether h
        takes it, the total reward of the others with s on h, (watts, latency) of s settled
        on h, and of s serving on h beside those there at t - 1 (the source of a move), and
        those others."""
        sim, n = self.sim, len(self.topology)
        on = [[o for o, p in enumerate(self.paths) if o != s and p[t] == h] for h in range(n)]
        before = [[o for o, p in enumerate(self.paths) if o != s and p[t - 1] == h]
                  for h in range(n)]
        without = [sum(self._r(o, *v) for o, v in sim.on_host(h, on[h], t).items())
                   for h in range(n)]
        feasible, others = np.zeros(n, dtype=bool), np.zeros(n)
        own, leaving = np.zeros((n, 2)), np.zeros((n, 2))
        for h in range(n):
            # fits beside those there before and after the step: whichever the loop meets
            feasible[h] = sim.fits(s, h, on[h] + before[h])
            if feasible[h]:
                with_s = sim.on_host(h, [s, *on[h]], t)
                others[h] = sum(without) - without[h] + sum(
                    self._r(o, *v) for o, v in with_s.items() if o != s)
                own[h] = with_s[s]
            leaving[h] = own[h] if feasible[h] and on[h] == before[h] else \
                sim.on_host(h, [s, *before[h]], t)[s]
        return feasible, others, own, leaving, before

    def _best_path(self, s: int) -> list[int]:
        """The path of service s maximizing everyone's total reward, the others' paths fixed."""
        n, steps = len(self.topology), len(self.paths[s]) - 1
        value = np.full(n, -np.inf)
        value[self.paths[s][0]] = 0.0
        back = np.zeros((steps + 1, n), dtype=int)
        for t in range(1, steps + 1):
            feasible, others, own, leaving, before = self._step_values(s, t)
            new = np.full(n, -np.inf)
            for dst in range(n):
                if not feasible[dst]:
                    continue
                # a host left empty in the step before sleeps: a move onto it waits
                asleep = not before[dst] and self.sim.could_sleep(dst, t - 1)
                wake_s = (self.topology.hosts[dst].wake_s or 0.0) if asleep else 0.0
                for src in range(n):
                    if value[src] == -np.inf:
                        continue
                    w, ms = self.sim.move_cost.step(s, src, dst, tuple(leaving[src]),
                                                    tuple(own[dst]), wake_s)
                    r = others[dst] + self._r(s, w, ms)
                    if value[src] + r > new[dst]:
                        new[dst], back[t, dst] = value[src] + r, src
            value = new
        host = int(np.argmax(value))
        path = [host]
        for t in range(steps, 0, -1):
            host = int(back[t, host])
            path.append(host)
        return path[::-1]

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        t = snapshot.step
        actions = [STAY if p[t + 1] == s.host else p[t + 1] + 1
                   for p, s in zip(self.paths, snapshot.services, strict=True)]
        # a move the continuum cannot take now (still under way): stay
        return [a if masks[i][a] else STAY for i, a in enumerate(actions)]
