"""What the model predicts an action will do: the basis of greedy decisions, plans and the
minimum-gain gate. Users are assumed to stay as observed (one-step lookahead)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from orchestrator.model import Load, Observation, Snapshot, target_host
from orchestrator.move_cost import MoveCost
from orchestrator.performance import (
    TABLES,
    Outcome,
    PerformanceModel,
    fleet_models,
    grid_steps,
)
from orchestrator.scenario import HostProfile, Scenario
from orchestrator.topology import MoveKind, Topology
from strategies.reward import SLA_PENALTY, reward, rewards

LATENCY, CPU, WATTS = 0, 2, 3  # fields of `outcomes` (the performance tables')
# Predicted at once, rewards equal those predicted one by one wherever the tests compare them
# (tests/test_fast_paths.py); planners predict again one by one the moves within this of the
# best, so that float rounding in another order could not change a choice
ROUNDING = 1e-9
# Services whose moves are predicted in one array (~60,000 moves at 924 hosts, a few MB an
# array): about half the time per move of one service at a time (measured at 1008 services)
AT_ONCE = 64


@dataclass(frozen=True)
class Prediction:
    """The service in the step of the action: a move's cost in that step is included (as the
    simulator's step includes it) and also kept apart, so what it settles at is known."""

    host: int
    power_w: float
    latency_ms: float
    reward: float
    move: MoveKind | None
    move_cost_w: float = 0.0
    move_cost_ms: float = 0.0
    cpu: float = 0.0  # the service's share of the host's cores

    @property
    def move_cost(self) -> dict[str, float]:
        return {"power_w": self.move_cost_w, "latency_ms": self.move_cost_ms}

    @property
    def settled(self) -> dict[str, float]:
        """Power and latency once the move is over (the cost of moving spent)."""
        return {"power_w": self.power_w - self.move_cost_w,
                "latency_ms": self.latency_ms - self.move_cost_ms}


def background(obs: Observation, hosts: Sequence[HostProfile], host: int) -> float:
    """The co-tenants' CPU on `host`: as observed (the host's CPU minus the managed services'
    on it) where the observation tells, else the host's profile."""
    return obs.background[host] if obs.background else hosts[host].background_utilization


@dataclass(frozen=True)
class Place:
    """A host and what else runs on it: `count` other managed services using `cpu` of its
    cores, and co-tenants using `background` of them (None: the host's profile); whether it
    sleeps."""

    host: int
    cpu: float = 0.0
    count: int = 0
    background: float | None = None
    asleep: bool = False  # a move onto it waits for it to wake


class Predictor:
    """Predictions for every service of a scenario, each with its own performance and SLA."""

    def __init__(self, scenario: Scenario, reward_kind: str = "power-latency",
                 model: PerformanceModel | None = None) -> None:
        self.scenario = scenario
        self.hosts = scenario.hosts  # a property that builds the tuple: read once
        self.topology = Topology(scenario.clusters)
        self.models = fleet_models(scenario, model)
        self.move_cost = MoveCost(scenario, self.models)
        self.reward_kind = reward_kind
        self.p_max = self.topology.p_max
        # the same as arrays (for `gains`): tables and network latency [service, host], ...
        self.tables = np.array([m.tables for m in self.models])
        self.network = np.array([m.network_ms for m in self.models])
        self.slas = np.array([s.sla_latency_ms for s in scenario.fleet])
        self.wake_s = np.array([h.wake_s or 0.0 for h in self.hosts])
        # The least power and latency any host could give each service, however loaded (for
        # `ceilings`): its share of the host's idle power (its dynamic share is >= 0) and one
        # batch of one image on a whole core of that host, plus its users' network latency
        # (less float rounding: the tables' latency is found numerically, to ~1e-15)
        processes = np.array([m.processes for m in self.models])
        idle, base = (np.array([[getattr(h, f) for h in self.hosts]])
                      for f in ("idle_watts", "base_processes"))
        self.idle_share = idle * processes / (base + processes)  # [service, host]
        self.least_watts = self.idle_share.min(axis=1)
        batch_ms = (np.array([[s.batch_overhead_ms + s.inference_ms_per_image]
                              for s in scenario.fleet])
                    / np.array([h.speed for h in self.hosts]))
        self.least_latency = (batch_ms + self.network).min(axis=1) * (1.0 - 1e-9)

    def index(self, name: str) -> int:
        """The index of the service named `name` (0 if unknown: the single service)."""
        names = [s.name for s in self.scenario.fleet]
        return names.index(name) if name in names else 0

    def sla(self, service: int = 0) -> float:
        return self.scenario.fleet[service].sla_latency_ms

    def reward(self, power_w: float, latency_ms: float, service: int = 0) -> float:
        """Eq. 9-11 for `service` drawing `power_w` at `latency_ms` (against its own SLA)."""
        return reward(self.reward_kind, power_w, latency_ms, self.p_max, self.sla(service))

    def outcome(self, service: int, place: Place, users: int) -> Outcome:
        """`service` settled on `place` with `users`. The other services there leave it all
        they do not use, but at least an equal share with each (as the simulated continuum
        gives services with as many processes; an assumption where they differ)."""
        background = place.background
        if background is None:
            background = self.hosts[place.host].background_utilization
        free = 1.0 - background
        return self.models[service].outcome(place.host, users,
                                            min(place.cpu, free - free / (1 + place.count)),
                                            background)

    def outcomes(self, service: np.ndarray | int, host: np.ndarray, cpu: np.ndarray,
                 count: np.ndarray | int, background: np.ndarray, users: np.ndarray
                 ) -> np.ndarray:
        """`outcome` elementwise (the same arithmetic), arrays broadcast together: [...,
        (LATENCY, throughput, CPU, WATTS)] of `service` on `host` with `users`, `count` other
        services using `cpu` there and co-tenants using `background`."""
        free = 1.0 - background
        taken = np.minimum(cpu, free - free / (1 + count))
        out = TABLES.lookup(self.tables[service, host], grid_steps(background),
                            grid_steps(taken), users)
        out[..., LATENCY] += self.network[service, host]
        return out

    def place(self, obs: Observation, host: int) -> Place:
        """`host` as `obs` shows it to its service: the others there, the co-tenants, whether
        it sleeps (an observation of the service alone, as `migrate --dry-run` makes, shows no
        hosts: awake)."""
        return Place(host, *obs.neighbours(host), background(obs, self.hosts, host),
                     bool(obs.hosts) and obs.hosts[host].asleep)

    def predict(self, obs: Observation, action: int, service: int = 0) -> Prediction:
        src, dst = obs.service.host, target_host(action)
        here = self.place(obs, src)
        return self.at(service, here, here if dst is None else self.place(obs, dst),
                       obs.service.users)

    def at(self, service: int, src: Place, dst: Place, users: int) -> Prediction:
        """`service` going from `src` to `dst` (staying if the same host) with `users`: in the
        step of the move (orchestrator/move_cost.py), and where it settles."""
        move = self.topology.move_kind(src.host, dst.host)
        o = self.outcome(service, dst, users)
        watts, latency = o.service_watts, o.latency_ms
        if move is not None:
            s = self.outcome(service, src, users)
            wake_s = (self.hosts[dst.host].wake_s or 0.0) if dst.asleep else 0.0
            watts, latency = self.move_cost.step(service, src.host, dst.host,
                                                 (s.service_watts, s.latency_ms),
                                                 (o.service_watts, o.latency_ms), wake_s)
        return Prediction(dst.host, watts, latency, self.reward(watts, latency, service), move,
                          watts - o.service_watts, latency - o.latency_ms, o.service_cpu)

    def gains(self, snapshot: Snapshot, services: Sequence[int], actions: Sequence[int]
              ) -> list[float]:
        """What each (service, move action) is predicted to gain over staying, as `predict`
        from `snapshot.view(service)` and `compare` give it (`compare`'s reward change), all at
        once: the gates weigh many moves a tick."""
        return [round(c, 4) for c in self.changes(snapshot, services, actions).tolist()]

    def changes_each(self, snapshot: Snapshot, services: Sequence[int],
                     actions: Sequence[np.ndarray], load: Load | None = None
                     ) -> list[np.ndarray]:
        """`changes` of each service's move `actions`, predicted together AT_ONCE services
        at a time."""
        out: list[np.ndarray] = []
        for start in range(0, len(services), AT_ONCE):
            some, each = services[start:start + AT_ONCE], actions[start:start + AT_ONCE]
            ks, at = np.unique(some, return_inverse=True)
            counts = [len(a) for a in each]
            change = self._changes(snapshot, ks, np.repeat(at, counts), np.concatenate(each),
                                   load)
            out += np.split(change, np.cumsum(counts)[:-1])
        return out

    def changes(self, snapshot: Snapshot, services: Sequence[int], actions: Sequence[int],
                load: Load | None = None) -> np.ndarray:
        """Each (service, move action)'s predicted reward minus staying's, as `predict` from
        `load.view(service)` gives them for a service `load` has not moved (`load`: the
        snapshot's own), all at once: the same arithmetic, elementwise."""
        ks, at = np.unique(services, return_inverse=True)  # each service asked once
        return self._changes(snapshot, ks, at, actions, load)

    def _changes(self, snapshot: Snapshot, ks: np.ndarray, at: np.ndarray,
                 actions: Sequence[int], load: Load | None) -> np.ndarray:
        """`changes` of the moves `actions`, of services ks[at]."""
        if not len(at):
            return np.zeros(0)
        here = Here(self, snapshot, ks, load)
        dst = np.asarray(actions) - 1
        k, there = ks[at], here.settled(at, dst)
        wake = np.where(snapshot.sleeping[dst], self.wake_s[dst], 0.0)
        watts, latency = self.move_cost.steps(k, here.src[at], dst, (here.watts[at],
                                                                    here.latency[at]),
                                              there, wake)
        chosen = rewards(self.reward_kind, watts, latency, self.p_max, self.slas[k])
        return chosen - here.reward[at]

    def ceilings(self, snapshot: Snapshot, services: Sequence[int], load: Load | None = None
                 ) -> np.ndarray:
        """For each of `services`, a bound no move's `changes` exceeds, without predicting
        any move: a move's tick mixes where it serves before and after the move, its power
        and latency weighted by the same parts of the tick (orchestrator/move_cost.py), so
        they are at least the lesser of staying's and of the least any host could give
        (`least_watts`, `least_latency`); the reward falls as either grows."""
        if not len(services):
            return np.zeros(0)
        ks = np.asarray(services, dtype=np.int64)
        here = Here(self, snapshot, ks, load)
        return self.most(ks, here.watts, here.latency) - here.reward + ROUNDING

    def most(self, ks: np.ndarray, watts: ArrayLike = np.inf, latency: ArrayLike = np.inf
             ) -> np.ndarray:
        """The most reward each service of `ks` could earn in a step: with the least power and
        latency any host could give it (`least_watts`, `least_latency`), or `watts` and
        `latency` where they are less; never below an SLA violation's (rewards' floor)."""
        return np.maximum(rewards(self.reward_kind, np.minimum(watts, self.least_watts[ks]),
                                  np.minimum(latency, self.least_latency[ks]), self.p_max,
                                  self.slas[ks]), SLA_PENALTY)


class Here:
    """Services `ks` (distinct) where `load` (default: the snapshot's own) has them: their
    host, and their power, latency and reward settled there, as `outcome` of `place` gives
    them."""

    def __init__(self, predictor: Predictor, snapshot: Snapshot, ks: np.ndarray,
                 load: Load | None) -> None:
        self.predictor, self.ks = predictor, ks
        self.load = snapshot.load if load is None else load

        def each(value: Callable[[int], float]) -> np.ndarray:
            return np.array([value(i) for i in ks.tolist()])

        self.src = each(self.load.where.__getitem__)
        self.users = each(lambda i: snapshot.services[i].users)
        self.own, self.alone = each(self.load.own), each(self.load.alone)  # others on its host
        self.background = np.asarray(snapshot.background)
        self.watts, self.latency = self.settled(np.arange(len(ks)), self.src)
        self.reward = rewards(predictor.reward_kind, self.watts, self.latency,
                              predictor.p_max, predictor.slas[ks])

    def settled(self, s: np.ndarray, host: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(watts, latency ms) of services ks[s] on `host`."""
        load, alone = self.load, self.alone[s]
        mine = host == self.src[s]
        cpu = np.where(alone, 0.0, np.where(mine, self.own[s], load.cpu[host]))
        count = np.where(alone, 0, load.count[host] - mine)
        out = self.predictor.outcomes(self.ks[s], host, cpu, count, self.background[host],
                                      self.users[s])
        return out[..., WATTS], out[..., LATENCY]


def compare(stay: Prediction, chosen: Prediction) -> dict[str, dict[str, float]]:
    """Staying vs the chosen action, per quantity. Power and latency: where the service settles
    after the move (`change` = settled - staying) and what the move costs in its step apart
    (`move_cost`); reward: of the step itself, cost included (what the gain gate weighs)."""
    before, cost = stay.settled, chosen.move_cost
    out = {q: {"stay": round(before[q], 3), "chosen": round(v, 3),
               "change": round(v - before[q], 3), "move_cost": round(cost[q], 3)}
           for q, v in chosen.settled.items()}
    out["reward"] = {"stay": round(stay.reward, 4), "chosen": round(chosen.reward, 4),
                     "change": round(chosen.reward - stay.reward, 4)}
    return out
