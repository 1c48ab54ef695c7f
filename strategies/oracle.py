"""Oracle: the clairvoyant reference. It knows the episode's future (each service's users, the
latency noise, the co-tenants: the simulated continuum's draws; never real clusters) and plans
where every service runs over the whole episode.

What kind of reference it is:
- one service, no gates: exact dynamic programming over (step, host): the best any strategy
  can score on that episode, a true upper bound;
- several services, or gates: a search, not a proven bound. Coordinate ascent over the same DP
  (each service in turn gets the path that maximizes everyone's total reward given the others'
  paths, so its moves count the slowdown it brings its neighbours), from several starting
  plans: every service staying, and the trajectory each strategy in `starts` (greedy,
  lookahead) takes on the episode. Each plan is scored exactly by replaying it through the
  control loop, with the same gates, on a copy of the episode (`Clairvoyant.fork`; the
  simulation is deterministic given the episode), and the oracle follows the best trajectory
  replayed. So on every episode it scores at least what each of its starts scores; another
  strategy may still beat it (a local optimum).
Under gates the DP keeps their hard limits: at most max_concurrent_migrations moves a step
across the fleet and none within cooldown_s of a service's last move (planned as completing
within its step, as every built-in scenario's moves do); the minimum-gain gate judges a
one-step prediction the DP cannot see, so a move it held in a replay is left out of the next
rounds' plans. The DP plans a move as done within the step it is decided in (its cost as
orchestrator/move_cost.py says, waiting for a sleeping host) and scores the others settled in
a step where they move; the replay's score is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from orchestrator.continuum import Clairvoyant, Continuum
from orchestrator.control.loop import simulated, step
from orchestrator.errors import BadInput
from orchestrator.model import STAY, Snapshot, target_host
from orchestrator.workload import TICK_S
from strategies.base import RL, NoOptions, Strategy, StrategyContext, create, strategy_class
from strategies.prediction import Predictor
from strategies.reward import reward


class OracleOptions(NoOptions):
    rounds: int = Field(default=3, ge=1)  # coordinate-ascent rounds per starting plan
    # strategies whose trajectory on the episode is a starting plan (besides staying)
    starts: tuple[str, ...] = ("greedy", "lookahead")

    @field_validator("starts")
    @classmethod
    def _plannable(cls, starts: tuple[str, ...]) -> tuple[str, ...]:
        for name in starts:
            if name in RL or name == "oracle" or strategy_class(name).needs_future:
                raise ValueError(f"{name!r} cannot be a start: give strategies that need "
                                 "neither a model nor the future (e.g. greedy, lookahead)")
        return starts


Paths = list[list[int]]  # paths[s][t]: the host service s serves on during step t


def follow(paths: Paths, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
    """Each service's action toward its host of the next step; one the continuum cannot take
    now (a move still under way, a host that is full): stay."""
    t = snapshot.step
    actions = [STAY if p[t + 1] == s.host else p[t + 1] + 1
               for p, s in zip(paths, snapshot.services, strict=True)]
    return [a if masks[i][a] else STAY for i, a in enumerate(actions)]


class _Follow:
    """A strategy that follows planned paths."""

    name = "plan"

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def reset(self, continuum: Continuum) -> None:
        pass

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
        return follow(self.paths, snapshot, masks)


@dataclass(frozen=True)
class Replay:
    """A strategy's run through one episode: its score (the evaluation's: every service's
    reward summed over the steps), where each service served, the moves the loop held, and
    what each tick observed."""

    score: float
    paths: Paths
    held: frozenset[tuple[int, int, int]]  # (service, step decided, target host)
    seen: tuple[Snapshot, ...]


class OracleStrategy:
    name: ClassVar[str] = "oracle"
    needs_future: ClassVar[bool] = True
    fleet: ClassVar[bool] = True
    Options: ClassVar[type[OracleOptions]] = OracleOptions

    def __init__(self, context: StrategyContext, options: OracleOptions) -> None:
        self.reward_kind = context.reward
        self.slas = [s.sla_latency_ms for s in context.scenario.fleet]
        self.rounds = options.rounds
        self.gates = context.gates
        self.predictor = Predictor(context.scenario, context.reward)
        self.starts: list[Strategy] = [create(n, context) for n in options.starts]
        gates = context.gates
        # moves a step across the fleet, and steps after a service's move before its next
        self.per_step = gates.max_concurrent_migrations if gates else len(self.slas)
        self.cooldown = ceil(gates.cooldown_s / TICK_S) if gates else 0
        self.paths: Paths = []
        self.score = 0.0  # the replayed score of the trajectory it follows
        self.seen: tuple[Snapshot, ...] = ()  # what the last replay observed, per tick
        self.gains: dict[tuple[int, int, int, int], bool] = {}  # the gain gate on `seen`

    def reset(self, continuum: Continuum) -> None:
        if not isinstance(continuum, Clairvoyant):
            raise BadInput("the oracle needs the simulated continuum (it reads the future)")
        self.sim, self.topology = continuum, continuum.topology
        self.memo: dict[tuple[int, tuple[int, ...], int], dict[int, tuple[float, float]]] = {}
        self.forbidden: set[tuple[int, int, int]] = set()
        stay = [[start] * (continuum.steps + 1) for start in continuum.placement]
        best = self.replay(_Follow(stay))
        for start in [best] + [self.replay(s) for s in self.starts]:
            result = start
            for _ in range(self.rounds):
                self.seen, self.gains = result.seen, {}
                ascended = self._ascend(result.paths)
                unchanged = ascended == result.paths
                result = self.replay(_Follow(ascended))
                self.forbidden |= result.held
                if result.score > best.score:
                    best = result
                if unchanged and not result.held:
                    break
        self.paths = best.paths
        self.score = best.score

    def _passes(self, s: int, tick: int, src: int, dst: int) -> bool:
        """Whether the minimum-gain gate lets service s move from src to dst at `tick`, as
        the loop judges it (strategies.prediction on what the tick observes), on what the last
        replay observed then: the others as they were there."""
        gates = self.gates
        if gates is None or gates.min_predicted_gain is None:
            return True
        key = (s, tick, src, dst)
        if key not in self.gains:
            p, obs = self.predictor, self.seen[tick].view(s)
            here, users = p.place(obs, src), obs.service.users
            gain = (p.at(s, here, p.place(obs, dst), users).reward
                    - p.at(s, here, here, users).reward)
            self.gains[key] = round(gain, 4) >= gates.min_predicted_gain
        return self.gains[key]

    def replay(self, strategy: Strategy) -> Replay:
        """`strategy` through this episode, on a copy, through the loop and the gates."""
        sim = self.sim.fork()
        strategy.reset(sim)
        loop = simulated(sim, strategy, self.predictor, self.gates)
        paths = [[h] for h in sim.placement]
        score, held, seen = 0.0, set(), []
        while not sim.done:
            st = step(loop)
            score += sum(st.rewards)
            seen.append(st.tick.snapshot)
            for i, d in enumerate(st.tick.decisions):
                to = target_host(st.tick.actions[i])
                if d.action in ("held", "refused") and to is not None:
                    held.add((i, st.tick.snapshot.step, to))
            for p, h in zip(paths, sim.placement, strict=True):
                p.append(h)
        return Replay(score, paths, frozenset(held), tuple(seen))

    def _ascend(self, paths: Paths) -> Paths:
        """One round of coordinate ascent: each service in turn its best path, the others'
        fixed."""
        self.paths = [list(p) for p in paths]
        for s in range(len(self.paths)):
            self.paths[s] = self._best_path(s)
        return self.paths

    def _r(self, s: int, watts: float, latency: float) -> float:
        return reward(self.reward_kind, watts, latency, self.topology.p_max, self.slas[s])

    def _on_host(self, host: int, members: Sequence[int], t: int
                 ) -> dict[int, tuple[float, float]]:
        """The continuum's on_host, with members in service order (as it measures them),
        remembered for the episode: the same hosts' tenants recur across rounds and starts."""
        key = (host, tuple(sorted(members)), t)
        if key not in self.memo:
            self.memo[key] = self.sim.on_host(host, key[1], t)
        return self.memo[key]

    def _step_values(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray, list[list[int]]]:
        """At step t, with the others on their paths, per host h for service s: whether h
        takes it, the total reward of the others with s on h, (watts, latency) of s settled
        on h, and of s serving on h beside those there at t - 1 (the source of a move), and
        those others."""
        n = len(self.topology)
        on = [[o for o, p in enumerate(self.paths) if o != s and p[t] == h] for h in range(n)]
        before = [[o for o, p in enumerate(self.paths) if o != s and p[t - 1] == h]
                  for h in range(n)]
        without = [sum(self._r(o, *v) for o, v in self._on_host(h, on[h], t).items())
                   for h in range(n)]
        feasible, others = np.zeros(n, dtype=bool), np.zeros(n)
        own, leaving = np.zeros((n, 2)), np.zeros((n, 2))
        for h in range(n):
            # fits beside those there before and after the step: whichever the loop meets
            feasible[h] = self.sim.fits(s, h, on[h] + before[h])
            if feasible[h]:
                with_s = self._on_host(h, [s, *on[h]], t)
                others[h] = sum(without) - without[h] + sum(
                    self._r(o, *v) for o, v in with_s.items() if o != s)
                own[h] = with_s[s]
            leaving[h] = own[h] if feasible[h] and on[h] == before[h] else \
                self._on_host(h, [s, *before[h]], t)[s]
        return feasible, others, own, leaving, before

    def _best_path(self, s: int) -> list[int]:
        """The path of service s maximizing everyone's total reward, the others' paths fixed,
        within the gates' hard limits. The state is (host, steps its cooldown still holds)."""
        n, steps, wait = len(self.topology), len(self.paths[s]) - 1, self.cooldown + 1
        value = np.full((n, wait), -np.inf)
        value[self.paths[s][0], 0] = 0.0
        back = np.zeros((steps + 1, n, wait, 2), dtype=int)
        for t in range(1, steps + 1):
            feasible, others, own, leaving, before = self._step_values(s, t)
            moving = sum(p[t] != p[t - 1] for o, p in enumerate(self.paths) if o != s)
            new = np.full((n, wait), -np.inf)
            for h in np.flatnonzero(feasible):  # stay on h: the cooldown runs down
                r = others[h] + self._r(s, *own[h])
                for w in range(wait):
                    w2 = max(0, w - 1)
                    if value[h, w] + r > new[h, w2]:
                        new[h, w2], back[t, h, w2] = value[h, w] + r, (h, w)
            if moving < self.per_step:
                self._moves(s, t, value[:, 0], feasible, others, own, leaving, before,
                            new[:, wait - 1], back[t, :, wait - 1])
            value = new
        h, w = np.unravel_index(int(np.argmax(value)), value.shape)
        path = [int(h)]
        for t in range(steps, 0, -1):
            h, w = back[t, h, w]
            path.append(int(h))
        return path[::-1]

    def _moves(self, s: int, t: int, ready: np.ndarray, feasible: np.ndarray,
               others: np.ndarray, own: np.ndarray, leaving: np.ndarray,
               before: list[list[int]], new: np.ndarray, back: np.ndarray) -> None:
        """Moves of service s into step t from hosts where its cooldown is over (`ready`):
        into `new` (the values after a move) and `back` (where from)."""
        for dst in np.flatnonzero(feasible):
            # a host left empty in the step before sleeps: a move onto it waits
            asleep = not before[dst] and self.sim.could_sleep(dst, t - 1)
            wake_s = (self.topology.hosts[dst].wake_s or 0.0) if asleep else 0.0
            # from a host it fits beside those arriving: whoever decides first in the tick
            for src in np.flatnonzero((ready > -np.inf) & feasible):
                if src == dst or (s, t - 1, dst) in self.forbidden \
                        or not self._passes(s, t - 1, src, dst):
                    continue
                w, ms = self.sim.move_cost.step(s, src, dst, tuple(leaving[src]),
                                                tuple(own[dst]), wake_s)
                v = ready[src] + others[dst] + self._r(s, w, ms)
                if v > new[dst]:
                    new[dst], back[dst] = v, (src, 0)

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        return follow(self.paths, snapshot, masks)
