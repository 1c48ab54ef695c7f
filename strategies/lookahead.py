"""Lookahead: a receding-horizon planner on the performance model, for every service in turn.

Each tick it forecasts each service's users `horizon` steps ahead from what it has observed
(a straight line through its last `window` observations; never the future), spread over the
errors that forecast has made so far (`outlook`: a service whose users jumped before may jump
again), and gives each service the host with the best predicted reward summed over the
horizon, averaged over the spread: its own, plus what its being there costs the services it
would share the host with (contention), with a move's cost (orchestrator/move_cost.py)
counted in its first step. So a move pays when its gain over the horizon outweighs its cost,
and a service does not crowd a host whose tenants lose more than it gains, nor one a tenant's
likely jump would overload. Services decided before it in the tick count where they go (their
load and their requests), as in greedy; within gates it proposes what they let through
(strategies/gated.py): while the limit on migrations binds, the moves worth most first, not
valuing the services whose ceiling (what any move could gain them, `Plan.ceilings`) is below a
gain already found.
Every move of many services is valued at once (`Plan.values`), and their staying
(`Plan.staying`); a service's best, and those within float rounding of it or of staying, again
one by one (`value`), so that ties fall as in valuing each in turn.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.continuum import Continuum
from orchestrator.model import STAY, Snapshot
from orchestrator.workload import DAY_STEPS
from strategies.allocation import Allocation
from strategies.base import NoOptions, StrategyContext
from strategies.gated import Proposals
from strategies.prediction import CPU, LATENCY, ROUNDING, WATTS, Place, Predictor
from strategies.reward import WEIGHTS, rewards

# [assume] the errors of the last day's forecasts (of 15-minute steps in simulation; on clusters
# as many ticks)
HISTORY = DAY_STEPS


class LookaheadOptions(NoOptions):
    # Steps of 15 minutes planned over. [measured] With users as last seen and spread, 2 or 4
    # steps scored as 1 within noise on continuum and bursty (40 episodes each), and each
    # step costs a tick as much again (README, lookahead)
    horizon: int = Field(default=1, ge=1)
    # The line through the last `window` observations (1: users stay as last seen). [measured]
    # A trend over the last hour (4) scored lower on continuum and bursty
    window: int = Field(default=1, ge=1)
    # Each step's forecast spread over this many equiprobable quantiles of the errors the
    # forecast made as many steps ahead (over the last HISTORY ticks; 0: the forecast alone).
    # [measured] 4, 8 and 16 scored alike; each costs a tick as much again
    spread: int = Field(default=4, ge=0)


class LookaheadStrategy:
    name: ClassVar[str] = "lookahead"
    needs_future: ClassVar[bool] = False
    fleet: ClassVar[bool] = True
    Options: ClassVar[type[LookaheadOptions]] = LookaheadOptions

    def __init__(self, context: StrategyContext, options: LookaheadOptions) -> None:
        self.scenario = context.scenario
        self.predictor = Predictor(context.scenario, context.reward)
        self.horizon, self.window, self.spread = options.horizon, options.window, options.spread
        self.proposals = Proposals(context.gates)
        # users observed per tick, per service, and the forecast made at each tick: the last
        # HISTORY ticks' (a policy runs for days)
        self.seen: list[Sequence[int]] = []
        self.made: list[np.ndarray] = []

    def reset(self, continuum: Continuum) -> None:
        self.seen, self.made = [], []
        self.proposals.reset()

    @property
    def columns(self) -> int:
        """Columns per step of the horizon in `outlook` (the first step's are the move's)."""
        return max(self.spread, 1)

    def forecast_background(self, snapshot: Snapshot) -> list[list[float]]:
        """Each host's co-tenant CPU in each of the next `horizon` steps: as observed now."""
        return [[b] * self.horizon for b in snapshot.background]

    def outlook(self, forecast: list[list[int]], background: list[list[float]]
                ) -> tuple[list[list[int]], list[list[float]]]:
        """The horizon in `columns` per step, step after step: each service's users,
        `forecast` (this tick's) times each of `spread` equiprobable quantiles of (seen + 1) /
        (forecast + 1) over the forecasts made so far for as many steps ahead (quantile by
        quantile across services: together high, together low; a cautious joint spread, as
        the services' errors are not known to be independent; before any error is seen: the
        forecast); each host's co-tenant CPU, `background` in each of its step's columns."""
        point = np.array(forecast, dtype=float).reshape(-1, self.horizon)
        ratios = np.ones((self.columns, *point.shape))  # [quantile, service, step]
        seen = np.array(self.seen, dtype=float)  # [tick, service]
        made = np.array(self.made[:len(seen) - 1]).reshape(-1, *point.shape)
        for k in range(self.horizon if self.spread else 0):
            # the forecasts of step k made at ticks 0 .. len(seen) - k - 2, and what came
            # (none before tick k + 1)
            came = max(len(seen) - k - 1, 0)
            errors = (seen[k + 1:] + 1.0) / (made[:came, :, k] + 1.0)
            if len(errors):
                ratios[:, :, k] = np.quantile(errors, (np.arange(self.spread) + 0.5)
                                              / self.spread, axis=0, method="inverted_cdf")
        users = np.maximum(0, np.rint((point + 1.0) * ratios - 1.0)).astype(np.int64)
        return (users.transpose(1, 2, 0).reshape(len(point), -1).tolist(),
                [[b for b in row for _ in range(self.columns)] for row in background])

    def forecast(self) -> list[list[int]]:
        """Each service's users in each of the next `horizon` steps: the least-squares line
        through its last `window` observations, extended; never below 0."""
        seen = np.array(self.seen[-self.window:], dtype=float)  # [tick, service]
        if len(seen) < 2:
            return [[int(u)] * self.horizon for u in seen[-1]]
        slope, level = np.polyfit(np.arange(len(seen)), seen, 1)  # every service at once
        ahead = len(seen) - 1 + np.arange(1, self.horizon + 1)
        return np.maximum(0, np.rint(level[:, None] + slope[:, None] * ahead)).astype(
            np.int64).tolist()

    def observe(self, snapshot: Snapshot) -> tuple[list[list[int]], list[list[float]]]:
        """Keep this tick's users and forecast (the last HISTORY ticks'); the horizon's
        columns of users and co-tenants the tick plans over (`outlook`)."""
        self.seen.append(np.array([s.users for s in snapshot.services]))
        forecast = self.forecast()
        columns = self.outlook(forecast, self.forecast_background(snapshot))
        self.made.append(np.array(forecast))
        del self.seen[:-HISTORY], self.made[:-HISTORY]
        return columns

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        services = snapshot.services
        plan = Plan(self.predictor, [s.host if s.valid else -1 for s in services],
                    *self.observe(snapshot), self.columns)
        alloc = Allocation(self.scenario, plan.where)

        def value(i: int, a: int) -> float:
            host = services[i].host
            return self.value(i, host, host if a == STAY else a - 1, plan.tenants, plan.users,
                              plan.background, snapshot)

        ahead: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # moves let through, valued

        def weigh(services: list[int]) -> list[float]:
            each = [np.flatnonzero(masks[i][1:] & alloc.rooms(i)) + 1 for i in services]
            allowed = self.proposals.allowed(snapshot, services, each, 0, self.predictor)
            values = plan.values(services, [moves - 1 for moves in allowed], snapshot)
            ahead.update(zip(services, zip(allowed, values, strict=True), strict=True))
            # what `best` can gain: >= 0, its values one by one within ROUNDING of these
            return [max(v.max(initial=-np.inf) - staying, 0.0) + 2 * ROUNDING
                    for v, staying in zip(values, plan.staying(np.array(services)).tolist(),
                                          strict=True)]

        def best(i: int) -> tuple[float, int]:
            if i not in ahead:
                weigh([i])
            moves, v = ahead.pop(i)
            if not len(moves):
                return 0.0, STAY
            stay = value(i, STAY)
            # a move worth less than staying is not taken (ties go to staying)
            near = moves[v >= v.max(initial=stay) - ROUNDING].tolist()
            values = {STAY: stay} | {a: value(i, a) for a in near}
            a = max(values, key=values.__getitem__)
            return values[a] - stay, a

        actions = [STAY] * len(services)
        for i, a in self.proposals(snapshot, best, weigh, plan.ceilings):
            actions[i] = alloc.move(i, a - 1)
            plan.move(i, a - 1)
        return actions

    def value(self, i: int, src: int, dst: int, tenants: Sequence[Sequence[int]],
              users: Sequence[Sequence[int]], background: Sequence[Sequence[float]],
              now: Snapshot) -> float:
        """Predicted reward over the horizon of service i going from src to dst, and of the
        services on dst with it there minus without it; tenants[h] the services on host h (in
        service order), users[o][k] and background[h][k] in column k of the horizon
        (`outlook`: the first `columns` are the move's step), sleeping hosts as observed
        `now`."""
        p = self.predictor

        def alone(o: int, host: int, k: int) -> float:
            place = Place(host, background=background[host][k])
            return p.outcome(o, place, users[o][k]).service_cpu

        beside = [o for o in tenants[dst] if o != i]
        total = 0.0
        for k in range(len(users[i])):
            cpu = {o: alone(o, dst, k) for o in beside}
            load = sum(cpu.values())
            there = Place(dst, load, len(beside), background[dst][k], now.hosts[dst].asleep)
            here = there
            if k < self.columns and src != dst:  # where it serves until its copy is ready
                with_it = [o for o in tenants[src] if o != i]
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


def tenancy(where: Sequence[int], hosts: int) -> list[list[int]]:
    """The services on each of `hosts` hosts (in service order), `where` each service is (-1:
    nowhere)."""
    tenants: list[list[int]] = [[] for _ in range(hosts)]
    for o, h in enumerate(where):
        if h >= 0:
            tenants[h].append(o)
    return tenants


class Plan:
    """A tick's forecast and where its services are as its moves are chosen; for `values`,
    each service's CPU alone on its host in each step of the horizon and each host's sum of
    them (summed in service order, as `LookaheadStrategy.value` sums them: both see the same
    loads, so they put the same load on the same step of the performance tables), each
    service's reward over the horizon where it is (what a move onto its host changes), and
    the services host by host."""

    def __init__(self, predictor: Predictor, where: Sequence[int],
                 users: Sequence[Sequence[int]], background: Sequence[Sequence[float]],
                 moving: int = 1) -> None:
        self.predictor = predictor
        self.moving = moving  # the columns of the horizon that are the move's step
        self.where = np.array(where, dtype=np.int64)
        self.users, self.background = users, background  # as `value` reads them
        self.users_array = np.array(users, dtype=np.int64).reshape(len(where), -1)
        self.background_array = np.array(background, dtype=float)
        self.tenants = tenancy(where, len(background))
        self.count = np.array([len(t) for t in self.tenants])
        self.alone = np.zeros(self.users_array.shape)  # [service, step]
        self.load = np.zeros(self.background_array.shape)  # [host, step]
        self.current = np.zeros(len(where))  # [service]
        self.spared = np.zeros(len(where))  # [service], see `_reward_now`
        valid = np.flatnonzero(self.where >= 0)
        self._settle(valid)
        # each host's services added one by one in service order, from 0: as `_sum` sums them
        np.add.at(self.load, self.where[valid], self.alone[valid])
        self._reward_now(valid)
        self._index()

    def _settle(self, services: np.ndarray) -> None:
        """`alone` of `services` on their hosts."""
        at = self.where[services]
        self.alone[services] = self.predictor.outcomes(
            services[:, None], at[:, None], 0.0, 0, self.background_array[at],
            self.users_array[services])[..., CPU]

    def _sum(self, h: int) -> None:
        self.load[h] = [sum(step) for step in self.alone[self.tenants[h]].T.tolist()]

    def _index(self) -> None:
        """`by_host`: the services on every host, host after host (each in service order);
        `first`: where each host's services start in it."""
        self.by_host = np.array([o for t in self.tenants for o in t], dtype=np.int64)
        self.first = np.cumsum(self.count) - self.count

    def _reward_now(self, services: np.ndarray) -> None:
        """`current` and `spared` of `services`."""
        p, at = self.predictor, self.where[services]
        out = self._outcomes(services, self.load[at] - self.alone[services],
                             self.count[at, None] - 1)
        watts, latency = out[..., WATTS], out[..., LATENCY]
        self.current[services] = rewards(p.reward_kind, watts, latency, p.p_max,
                                         p.slas[services, None]).sum(axis=1)
        # A service arriving on its host slows it (its latency does not fall) and may lower its
        # power's dynamic share (its idle share stays): at most the reward of that share
        # while within its SLA
        dynamic = np.maximum(watts - p.idle_share[services, at][:, None], 0.0)
        within = latency <= p.slas[services, None]
        self.spared[services] = (WEIGHTS[p.reward_kind][0] / p.p_max
                                 * np.where(within, dynamic, 0.0)).sum(axis=1)

    def _outcomes(self, o: np.ndarray, others: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Over the horizon, the outcomes of each service o on its host with `count` others
        there using `others` of its cores."""
        p, at = self.predictor, self.where[o]
        return p.outcomes(o[:, None], at[:, None], others, count, self.background_array[at],
                          self.users_array[o])

    def _rewards(self, o: np.ndarray, others: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Over the horizon, the reward of each service o on its host with `count` others
        there using `others` of its cores."""
        p, out = self.predictor, self._outcomes(o, others, count)
        return rewards(p.reward_kind, out[..., WATTS], out[..., LATENCY], p.p_max,
                       p.slas[o, None]).sum(axis=1)

    def ceilings(self, services: list[int]) -> list[float]:
        """For each of `services` (valid), a bound no move's `values` less its `staying`
        exceeds, without valuing any move: in each step of the horizon its own reward is at
        most what the least power and latency any host could give it earn (`Predictor.most`),
        and the tenants of the host it goes to gain at most what they would spare (`spared`),
        summed over the host that could spare the most."""
        p, ks = self.predictor, np.asarray(services, dtype=np.int64)
        most = p.most(ks)
        valid = np.flatnonzero(self.where >= 0)
        tenants = np.bincount(self.where[valid], self.spared[valid],
                              minlength=len(self.count)).max(initial=0.0)
        return (most * self.users_array.shape[1] + tenants - self.staying(ks)
                + 4 * ROUNDING).tolist()

    def move(self, i: int, to: int) -> None:
        """Count service i on host `to`."""
        src = int(self.where[i])
        self.tenants[src].remove(i)
        insort(self.tenants[to], i)
        self.where[i] = to
        self.count[[src, to]] += -1, 1
        self._settle(np.array([i]))
        self._sum(src)
        self._sum(to)
        self._reward_now(np.array(self.tenants[src] + self.tenants[to], dtype=np.int64))
        self._index()

    def values(self, services: Sequence[int], dst: Sequence[np.ndarray], now: Snapshot
               ) -> list[np.ndarray]:
        """`LookaheadStrategy.value` of each of `services` going to each of its hosts `dst`
        (not its own), all at once: the same arithmetic, summed in another order."""
        p, counts = self.predictor, [len(d) for d in dst]
        i = np.repeat(np.asarray(services, dtype=np.int64), counts)  # each move's service
        d = np.concatenate([*dst, np.zeros(0, dtype=np.int64)])  # and its host
        src = self.where[i]
        own = p.outcomes(i[:, None], d[:, None], self.load[d], self.count[d, None],
                         self.background_array[d], self.users_array[i])
        watts, latency = own[..., WATTS], own[..., LATENCY]
        # its first step is the move, from where it serves with the others there until then
        here = np.repeat(np.reshape([self._here(s) for s in services], (-1, self.moving, 2)),
                         counts, axis=0)
        wake = np.where(now.sleeping[d], p.wake_s[d], 0.0)
        for k in range(self.moving):
            watts[:, k], latency[:, k] = p.move_cost.steps(
                i, src, d, (here[:, k, 0], here[:, k, 1]), (watts[:, k], latency[:, k]), wake)
        total = rewards(p.reward_kind, watts, latency, p.p_max, p.slas[i, None]).sum(axis=1)
        # the services on each move's host (o, beside the m-th move), with it there minus
        # without it
        m, o = self._on(d)
        at = self.where[o]
        change = self._rewards(o, self.load[at] - self.alone[o] + own[m, :, CPU],
                               self.count[at, None]) - self.current[o]
        total += np.bincount(m, weights=change, minlength=len(d))
        return np.split(total, np.cumsum(counts)[:-1])

    def _on(self, hosts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The services on each of `hosts`, host after host (each in service order): which
        of `hosts` (its index), and the service."""
        n = self.count[hosts]
        which = np.repeat(np.arange(len(hosts)), n)
        return which, self.by_host[np.repeat(self.first[hosts] - np.cumsum(n) + n, n)
                                   + np.arange(len(which))]

    def _here(self, i: int) -> list[tuple[float, float]]:
        """(watts, latency ms) of service i in each column of the move's step where it is,
        beside the others there (summed in service order, as `LookaheadStrategy.value` sums
        them)."""
        src = int(self.where[i])
        with_it = [o for o in self.tenants[src] if o != i]
        out = []
        for k in range(self.moving):
            o = self.predictor.outcome(i, Place(src, sum(self.alone[with_it, k].tolist()),
                                                len(with_it), self.background[src][k]),
                                       self.users[i][k])
            out.append((o.service_watts, o.latency_ms))
        return out

    def staying(self, services: np.ndarray) -> np.ndarray:
        """`LookaheadStrategy.value` of each of `services` (valid) staying where it is, all
        at once: the same arithmetic, summed in another order."""
        p, src = self.predictor, self.where[services]
        rest = self.load[src] - self.alone[services]  # the others' CPU on its host, per step
        cpu = p.outcomes(services[:, None], src[:, None], rest, self.count[src, None] - 1,
                         self.background_array[src], self.users_array[services])[..., CPU]
        # the others on its host (o, beside the s-th of services), with it minus without it
        which, o = self._on(src)
        beside = o != services[which]
        s, o = which[beside], o[beside]
        others, n = rest[s] - self.alone[o], self.count[src[s], None] - 1
        change = self._rewards(o, others + cpu[s], n) - self._rewards(o, others, n - 1)
        return self.current[services] + np.bincount(s, weights=change,
                                                    minlength=len(services))
