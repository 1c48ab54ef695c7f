"""The simulated continuum: a scenario's services moving across its hosts, step by step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from orchestrator.migration.plan import INTER_STEPS, INTRA_STEPS
from orchestrator.model import HostState, Move, ServiceState, Snapshot
from orchestrator.move_cost import MoveCost, Timeline
from orchestrator.performance import SHARE_STEP, PerformanceModel
from orchestrator.scenario import Scenario
from orchestrator.sim.sharing import Sharing
from orchestrator.topology import MoveKind, Topology
from orchestrator.workload import TICK_S, episode_users, looped, pattern, shape

# A host that empties sleeps after the cluster autoscaler's scale-down-unneeded-time (its
# default, 10 minutes: kubernetes/autoscaler FAQ), within the step it empties in.
SCALE_DOWN_UNNEEDED_S = 600.0
# Services (of all the episodes measured together) from which the hosts are settled vectorized
# rather than host by host: where numpy's cost per call is repaid (measured per service: 23 vs
# 25 us at 48 services of `continuum`, 16 vs 15 at 96, 15 vs 5 at 768; `paper`: 81 vs 59 us at 64).
VECTORIZED_FROM = 64


@dataclass(frozen=True)
class Episode:
    """Everything random about one episode, drawn at reset: the oracle may read it."""

    users: np.ndarray  # users[s, t] of service s for t = 0..steps
    jitter: np.ndarray  # multiplicative latency noise per service and step
    start_hosts: tuple[int, ...]
    background: np.ndarray  # background[h, t]: co-tenants' CPU on host h (on the 1 % grid)


@dataclass(frozen=True)
class SimulatedPlan:
    """What a move would do on clusters, named as the executors name their steps."""

    move: Move
    kind: MoveKind
    steps: tuple[str, ...]


@dataclass
class InFlight:
    """A move under way: from `src`, decided at step `decided`, along its timeline."""

    plan: SimulatedPlan
    src: int
    decided: int
    timeline: Timeline
    switched: bool = False  # the new copy serves

    def tick(self, t: int) -> int:
        """Which tick of the move step t reports (0: the one after its decision)."""
        return t - 1 - self.decided


class SimulatedClaims:
    """What the services request of each host as the moves accepted in a tick are added (a
    pending move's target reserved), and the masks that leave (Eq. 7): stay always; not its
    current host; hosts it fits beside the others. The same test as `fits`, vectorized; a move
    changes two hosts' totals."""

    def __init__(self, sim: SimulatedContinuum) -> None:
        n = len(sim.hosts)
        self.mem = np.array([s.memory_gib for s in sim.specs])
        self.req = np.array([s.cpu_request for s in sim.specs])
        self.host_mem = np.array([h.memory_gib for h in sim.hosts])
        self.host_req = np.array([float(h.cores) for h in sim.hosts])
        self.now = np.array(sim.placement)  # where each serves (its own host is masked)
        self.where = self.now.copy()  # once the moves are made
        self.pending = {s: f.plan.move.host for s, f in sim.moving.items() if not f.switched}
        self.mem_on = np.bincount(self.where, self.mem, n)  # requested on each host
        self.req_on = np.bincount(self.where, self.req, n)
        for s, dst in self.pending.items():  # its target's capacity is reserved
            self.mem_on[dst] += self.mem[s]
            self.req_on[dst] += self.req[s]
        # Per kind of request (memory, CPU), the hosts it fits beside everyone there
        kinds, self.kind = np.unique(np.stack([self.mem, self.req], axis=1), axis=0,
                                     return_inverse=True)
        self.kind = self.kind.ravel()
        self.kind_mem, self.kind_req = kinds[:, :1], kinds[:, 1:]
        self.fit = self._fit(slice(None))

    def _fit(self, hosts: slice | list[int]) -> np.ndarray:
        return ((self.host_mem[hosts] - self.mem_on[hosts] >= self.kind_mem)
                & (self.host_req[hosts] - self.req_on[hosts] >= self.kind_req))

    def add(self, move: Move) -> None:
        s, src = move.service, self.where[move.service]
        self.mem_on[src] -= self.mem[s]
        self.req_on[src] -= self.req[s]
        self.mem_on[move.host] += self.mem[s]
        self.req_on[move.host] += self.req[s]
        self.where[s] = move.host
        self.fit[:, [src, move.host]] = self._fit([src, move.host])

    def _fits(self, service: int, host: int) -> bool:
        """Whether `service` fits `host` beside the others there (not counting itself)."""
        on = 1.0 if host == self.where[service] else 0.0
        mem, req = self.mem[service], self.req[service]
        return bool(self.host_mem[host] - (self.mem_on[host] - mem * on) >= mem
                    and self.host_req[host] - (self.req_on[host] - req * on) >= req)

    def allows(self, service: int, action: int) -> bool:
        host = action - 1
        if action == 0:
            return True
        if service in self.pending or host == self.now[service] or \
                not 0 <= host < len(self.host_mem):
            return False
        return self._fits(service, host)

    def mask(self, service: int) -> np.ndarray:
        out = np.zeros(len(self.host_mem) + 1, dtype=bool)
        out[0] = True
        if service in self.pending:  # a pending move: it may only stay
            return out
        out[1:] = self.fit[self.kind[service]]
        out[1 + self.where[service]] = self._fits(service, self.where[service])
        out[1 + self.now[service]] = False
        return out

    def masks(self) -> np.ndarray:
        """bool[services, hosts + 1] of every service."""
        rows = np.arange(len(self.mem))
        out = np.ones((len(self.mem), len(self.host_mem) + 1), dtype=bool)
        out[:, 1:] = self.fit[self.kind]
        out[rows, 1 + self.where] = [self._fits(s, h) for s, h in enumerate(self.where)]
        out[rows, 1 + self.now] = False
        out[list(self.pending), 1:] = False  # a pending move: it may only stay
        return out


class SimulatedContinuum:
    """In-process stand-in for real clusters, built from a scenario (the embedded default).

    Time advances only in `apply`: the moves asked start, the workload moves on one step, a
    move whose new copy serves within that step switches the service there, and the new state
    is what `snapshot` reports (a moving service as orchestrator/move_cost.py says). Services
    on one host share its cores and slow each other down (`_on_host`); CPU requests and memory
    are hard limits.
    """

    def __init__(self, scenario: Scenario, phase: str = "train",
                 model: PerformanceModel | None = None, seed: int | None = None) -> None:
        self.scenario = scenario
        self.topology = Topology(scenario.clusters)
        self.specs = scenario.fleet
        self.models = [model if model is not None and i == 0 else
                       PerformanceModel(scenario, service=s) for i, s in enumerate(self.specs)]
        self.hosts = scenario.hosts
        self.steps = scenario.episode_steps
        self.lag = scenario.observation_lag_steps
        self.sleepy = [i for i, h in enumerate(self.hosts) if h.sleep_watts is not None]
        self.curves = [pattern(w.train if phase == "train" else w.test, w.peak_users)
                       for w in map(scenario.workload_of, range(len(self.specs)))]
        self.backgrounds = [None if h.background is None else shape(h.background)
                            for h in self.hosts]
        self.move_cost = MoveCost(scenario, self.models)
        self.sharing = Sharing(scenario, self.models)
        self.rng = np.random.default_rng(seed)
        self.reset()

    @property
    def model(self) -> PerformanceModel:
        """The first service's performance model (the paper's single service)."""
        return self.models[0]

    @property
    def host(self) -> int:
        """The first service's host (the paper's single service)."""
        return self.placement[0]

    def _draw(self, start_hosts: Sequence[int | None] | None) -> Episode:
        users, jitter, starts = [], [], []
        room_mem = np.array([h.memory_gib for h in self.hosts])  # left by those placed so far
        room_req = np.array([float(h.cores) for h in self.hosts])
        for s, spec in enumerate(self.specs):
            wl = self.scenario.workload_of(s)
            users.append(episode_users(self.curves[s], self.steps + 1, wl.noise, self.rng))
            j = 1.0 + wl.latency_jitter * self.rng.standard_normal(self.steps + 1)
            jitter.append(np.clip(j, 0.5, 1.5))
            start = None if start_hosts is None else start_hosts[s]
            if start is None:  # a host it fits beside those placed before it (as `fits`)
                start = int(self.rng.choice(np.flatnonzero(
                    (room_mem >= spec.memory_gib) & (room_req >= spec.cpu_request))))
            starts.append(start)
            room_mem[start] -= spec.memory_gib
            room_req[start] -= spec.cpu_request
        # Co-tenants: each varying host from its own random point of its shape (drawn after
        # the services, so their draws do not depend on it)
        background = np.array([[h.background_utilization] * (self.steps + 1) for h in self.hosts])
        for i, curve in enumerate(self.backgrounds):
            if curve is not None:
                level = looped(curve, self.steps + 1, self.rng)
                background[i] = np.rint(level * self.hosts[i].background_utilization
                                        / SHARE_STEP) * SHARE_STEP
        return Episode(np.array(users), np.array(jitter), tuple(starts), background)

    def reset(self, seed: int | None = None, start_host: int | None = None) -> None:
        """A new episode; `start_host` places the first service (None: random)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        starts = [start_host] + [None] * (len(self.specs) - 1)
        self.episode = self._draw(starts)
        self.t = 0
        self.background = self.episode.background.T.tolist()  # [t][host], read every step
        self.placement = list(self.episode.start_hosts)  # where each service serves
        self.before = list(self.placement)  # where they served when the step's moves began
        self.moved: list[MoveKind | None] = [None] * len(self.specs)  # decided last step
        self.moving: dict[int, InFlight] = {}
        self._truth: tuple[tuple[int, tuple[int, ...]], Snapshot] | None = None
        self._measured: dict[int, Snapshot] = {}  # the truth of the last `lag` + 1 steps
        # Which hosts slept in the step before (those empty at the start slept before it),
        # and when each is awake after a move woke it (seconds since the episode began).
        self.was_asleep = self._asleep()
        self.awake_at = [0.0] * len(self.hosts)

    @property
    def done(self) -> bool:
        return self.t >= self.steps

    # --- feasibility ------------------------------------------------------------------------
    def fits(self, service: int, host: int, beside: Iterable[int]) -> bool:
        """Memory and CPU requests of `service` fit `host` beside the services `beside`."""
        h, spec = self.hosts[host], self.specs[service]
        others = [self.specs[o] for o in set(beside) if o != service]
        return (h.memory_gib - sum(o.memory_gib for o in others) >= spec.memory_gib
                and h.cores - sum(o.cpu_request for o in others) >= spec.cpu_request)

    def masks(self, snapshot: Snapshot, moves: Sequence[Move] = ()) -> np.ndarray:
        """Eq. 7 per service: stay always; not its current host; hosts it fits beside the
        others (where they are once `moves` are made)."""
        claims = self.claims(snapshot)
        for m in moves:
            claims.add(m)
        return claims.masks()

    def claims(self, snapshot: Snapshot) -> SimulatedClaims:
        return SimulatedClaims(self)

    # --- acting -----------------------------------------------------------------------------
    def plan(self, move: Move) -> SimulatedPlan:
        kind = self.topology.move_kind(self.placement[move.service], move.host)
        assert kind is not None, "a move to the current host is no move"
        return SimulatedPlan(move, kind, INTER_STEPS if kind == "inter" else INTRA_STEPS)

    def apply(self, plans: Sequence[SimulatedPlan],
              on_done: Callable[[SimulatedPlan, str], None] | None = None) -> None:
        """Start the planned moves, advance one step, and switch the services whose new copy
        serves within it (`on_done` then: a move spanning steps completes later)."""
        if self.lag:  # what this step measured, seen later
            self.current()
        self.moved = [None] * len(self.specs)
        self.before = list(self.placement)
        self.was_asleep = self._asleep()
        wait = [self.wake_wait(p.move.host) for p in plans]  # moves onto one host wake it once
        for p, wake_s in zip(plans, wait, strict=True):
            s, src, dst = p.move.service, self.placement[p.move.service], p.move.host
            self.awake_at[dst] = self.t * TICK_S + wake_s
            self.moved[s] = p.kind
            self.moving[s] = InFlight(p, src, self.t,
                                      self.move_cost.timeline(s, src, dst, wake_s))
        self.t += 1
        for s, f in list(self.moving.items()):
            start = f.tick(self.t) * TICK_S
            if f.timeline.end_s <= start:  # nothing of it left in this step
                del self.moving[s]
            elif not f.switched and f.timeline.switch_s < start + TICK_S:
                f.switched, self.placement[s] = True, f.plan.move.host
                if on_done:
                    on_done(f.plan, "done")

    def _busy(self) -> set[int]:
        """The hosts a managed service is on or on its way to."""
        return set(self.placement) | {f.plan.move.host for f in self.moving.values()
                                      if not f.switched}

    def _asleep(self) -> list[bool]:
        """Per host, whether it sleeps now: it may, no managed service is on it or on its way
        there, and it has no co-tenants."""
        out = [False] * len(self.hosts)
        if self.sleepy:
            busy = self._busy()
            for i in self.sleepy:
                out[i] = i not in busy and self.background[self.t][i] == 0
        return out

    def wake_wait(self, host: int) -> float:
        """Seconds a move decided now waits for `host` to wake: its wake time if it sleeps,
        what is left of it if a move woke it earlier, else 0."""
        if host not in self._busy() and self.could_sleep(host, self.t):
            return self.hosts[host].wake_s or 0.0
        return max(0.0, self.awake_at[host] - self.t * TICK_S)

    def could_sleep(self, host: int, t: int) -> bool:
        """Whether `host` sleeps at step t if no managed service is on it."""
        return self.hosts[host].sleep_watts is not None and self.background[t][host] == 0

    # --- what is observed -------------------------------------------------------------------
    def on_host(self, host: int, members: Sequence[int], t: int
                ) -> dict[int, tuple[float, float]]:
        """(service watts, latency ms) of each of `members` serving on `host` at step t, when
        not moving: what the snapshot reports, and what the oracle plans over."""
        watts, outcomes, _, _ = self.sharing.host(host, members, self.episode.users[:, t],
                                                  self.background[t][host])
        return {s: (w, o.latency_ms * float(self.episode.jitter[s, t]))
                for s, w, o in zip(members, watts, outcomes, strict=True)}

    def _moving(self, s: int, f: InFlight, here: tuple[float, float]) -> tuple[float, float]:
        """(watts, latency ms) of service s in this step of its move, `here` being what it
        gets where it serves (the target once switched, else the source)."""
        phases = f.timeline.in_tick(f.tick(self.t))
        at_src = here
        if f.switched and phases.source_s > 0:  # served at the source until the switch
            at_src = self.on_host(f.src, [o for o, h in enumerate(self.before) if h == f.src],
                                  self.t)[s]
        return self.move_cost.mix(s, f.src, f.plan.move.host, phases, at_src, here)

    def snapshot(self) -> Snapshot:
        """What decisions see: each service where it runs now, but with the observation lag
        the services' and hosts' metrics measured that many steps before (where each ran
        then; at an episode's start, its first step)."""
        now = self.current()
        if not self.lag:
            return now
        then = self._measured[max(0, self.t - self.lag)]
        return Snapshot(self.t, tuple(replace(s, host=at) for s, at in
                                      zip(then.services, self.placement, strict=True)),
                        then.hosts, then.background)

    def current(self) -> Snapshot:
        """Every service and host as they truly are now (what rewards are computed on)."""
        key = (self.t, tuple(self.placement))
        if self._truth is None or self._truth[0] != key:
            self._truth = key, self._measure()
            if self.lag:
                self._measured[self.t] = self._truth[1]
                self._measured.pop(self.t - self.lag - 1, None)
        return self._truth[1]

    def _measure(self) -> Snapshot:
        return measure([self])[0]


def measure(sims: Sequence[SimulatedContinuum]) -> list[Snapshot]:
    """The services and hosts of each simulated continuum (all of one scenario) in its current
    step: settled where each serves (orchestrator/sim/sharing.py: host by host for a few
    services, vectorized over all hosts of all of them for many), a moving one as its move's
    phases say, a sleeping host at its sleep power."""
    first = sims[0]
    users = [sim.episode.users[:, sim.t] for sim in sims]
    if len(sims) * len(first.specs) < VECTORIZED_FROM:
        settled = [sim.sharing.fleet(sim.placement, u, sim.background[sim.t])
                   for sim, u in zip(sims, users, strict=True)]
    else:
        settled = first.sharing.fleets(np.array([sim.placement for sim in sims]),
                                       np.array(users), np.array([sim.background[sim.t]
                                                                  for sim in sims]))
    out = []
    for sim, got, u in zip(sims, settled, users, strict=True):
        asleep = sim._asleep()
        hosts = []
        for i, (h, p, c) in enumerate(zip(sim.hosts, got.host_power, got.host_cpu,
                                          strict=True)):
            if asleep[i]:  # idle until removed, if it just emptied; asleep after
                idle_s = 0.0 if sim.was_asleep[i] else SCALE_DOWN_UNNEEDED_S
                p = (idle_s * p + (TICK_S - idle_s) * (h.sleep_watts or 0.0)) / TICK_S
            hosts.append(HostState(h.name, sim.topology.clusters[i], p, c, asleep[i]))
        jitter = sim.episode.jitter[:, sim.t].tolist()
        served = [(w, ms * j) for w, ms, j in zip(got.watts, got.latency_ms, jitter,
                                                   strict=True)]
        for s, f in sim.moving.items():
            served[s] = sim._moving(s, f, served[s])
        out.append(Snapshot(sim.t, tuple(
            ServiceState(spec.name, at, w, c, ms, u, x) for spec, at, (w, ms), c, u, x in zip(
                sim.specs, sim.placement, served, got.cpu, u.tolist(), got.throughput_rps,
                strict=True)), tuple(hosts)))
    return out
