"""The simulated continuum: a scenario's services moving across its hosts, step by step."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from orchestrator.errors import BadInput
from orchestrator.migration.plan import INTER_STEPS, INTRA_STEPS
from orchestrator.model import HostState, Move, ServiceState, Snapshot
from orchestrator.move_cost import MoveCost, Timeline
from orchestrator.performance import SHARE_STEP, PerformanceModel, fleet_models
from orchestrator.scenario import Scenario
from orchestrator.sim.claims import Requests, SimulatedClaims
from orchestrator.sim.sharing import Settled, Sharing
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
        self.models = fleet_models(scenario, model)
        self.hosts = scenario.hosts
        self.names = [h.name for h in self.hosts]
        self.service_names = [s.name for s in self.specs]
        self.steps = scenario.episode_steps
        self.lag = scenario.observation_lag_steps
        self.sleepy = [i for i, h in enumerate(self.hosts) if h.sleep_watts is not None]
        self.workloads = [scenario.workload_of(s) for s in range(len(self.specs))]
        self.curves = [np.array(pattern(w.train if phase == "train" else w.test, w.peak_users))
                       for w in self.workloads]
        self.backgrounds = [None if h.background is None else np.array(shape(h.background))
                            for h in self.hosts]
        self.move_cost = MoveCost(scenario, self.models)
        self.sharing = Sharing(scenario, self.models)
        self.requests = Requests(self.specs, self.hosts)
        self.rng = np.random.default_rng(seed)
        if problem := scenario.crowded():
            raise BadInput(f"scenario {scenario.name!r}: {problem}")
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
        for s, (spec, wl) in enumerate(zip(self.specs, self.workloads, strict=True)):
            users.append(episode_users(self.curves[s], self.steps + 1, wl.noise, self.rng))
            j = 1.0 + wl.latency_jitter * self.rng.standard_normal(self.steps + 1)
            jitter.append(np.clip(j, 0.5, 1.5))
            start = None if start_hosts is None else start_hosts[s]
            if start is None:  # a host it fits beside those placed before it (as `fits`)
                fit = np.flatnonzero((room_mem >= spec.memory_gib)
                                     & (room_req >= spec.cpu_request))
                if not len(fit):
                    raise BadInput(
                        f"scenario {self.scenario.name!r}: service {spec.name!r} "
                        f"({spec.memory_gib:g} GiB, {spec.cpu_request:g} CPU requested) fits no "
                        "host beside the services placed at random before it: give the hosts "
                        "more memory_gib or cores, or the services less")
                start = int(self.rng.choice(fit))
            starts.append(start)
            room_mem[start] -= spec.memory_gib
            room_req[start] -= spec.cpu_request
        # Co-tenants: each varying host from its own random point of its shape (drawn after
        # the services, so their draws do not depend on it)
        background = np.repeat([[h.background_utilization] for h in self.hosts], self.steps + 1,
                               axis=1)
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
        self._begin(self._draw(starts))

    def fork(self) -> SimulatedContinuum:
        """A continuum at the start of this episode (the same draws), to replay plans on: the
        oracle's. It shares the performance models (and their caches)."""
        twin = copy.copy(self)
        twin.rng = copy.deepcopy(self.rng)  # its draws leave this one's alone
        twin._begin(self.episode)
        return twin

    def _begin(self, episode: Episode) -> None:
        """Start `episode` from its first step."""
        self.episode = episode
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
        return SimulatedClaims(self.requests, self.placement, {
            s: f.plan.move.host for s, f in self.moving.items() if not f.switched})

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

    def _moving(self, s: int, f: InFlight, here: tuple[float, float],
                before: Settled | None) -> tuple[float, float]:
        """(watts, latency ms) of service s in this step of its move, `here` being what it
        gets where it serves (the target once switched, else the source); `before`: what
        each service gets where the step's moves began (None: asked here)."""
        phases = f.timeline.in_tick(f.tick(self.t))
        at_src = here
        if f.switched and phases.source_s > 0:  # served at the source until the switch
            at_src = self.on_host(f.src, [o for o, h in enumerate(self.before) if h == f.src],
                                  self.t)[s] if before is None else (
                before.watts[s], before.latency_ms[s] * float(self.episode.jitter[s, self.t]))
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
        return current([self])[0]

    def _known(self, snapshot: Snapshot | None = None) -> Snapshot | None:
        """The truth of this step if measured already (`snapshot`: it is measured now)."""
        key = (self.t, tuple(self.placement))
        if snapshot is not None:
            self._truth = key, snapshot
            if self.lag:
                self._measured[self.t] = snapshot
                self._measured.pop(self.t - self.lag - 1, None)
        return self._truth[1] if self._truth is not None and self._truth[0] == key else None


def current(sims: Sequence[SimulatedContinuum]) -> list[Snapshot]:
    """`current()` of each simulated continuum (of one scenario), those not measured in their
    step yet measured together (memoized per step, so a tick and the step after it measure
    once)."""
    known = [sim._known() for sim in sims]
    todo = [sim for sim, k in zip(sims, known, strict=True) if k is None]
    measured = iter(measure(todo) if todo else [])
    return [k if k is not None else sim._known(next(measured))
            for sim, k in zip(sims, known, strict=True)]


def measure(sims: Sequence[SimulatedContinuum]) -> list[Snapshot]:
    """The services and hosts of each simulated continuum (all of one scenario) in its current
    step: settled where each serves (orchestrator/sim/sharing.py: host by host for a few
    services, vectorized over all hosts of all of them for many), a moving one as its move's
    phases say, a sleeping host at its sleep power."""
    first = sims[0]
    users = [sim.episode.users[:, sim.t] for sim in sims]
    before: list[Settled | None] = [None] * len(sims)  # where the moves began, if needed
    if len(sims) * len(first.specs) < VECTORIZED_FROM:
        settled = [sim.sharing.fleet(sim.placement, u, sim.background[sim.t])
                   for sim, u in zip(sims, users, strict=True)]
    else:
        def fleets(placements: list[list[int]], some: list[int]) -> list[Settled]:
            return first.sharing.fleets(np.array(placements), np.array([users[b] for b in some]),
                                        np.array([sims[b].background[sims[b].t] for b in some]))

        settled = fleets([sim.placement for sim in sims], list(range(len(sims))))
        moved = [b for b, sim in enumerate(sims) if any(f.switched for f in sim.moving.values())]
        for b, got in zip(moved, fleets([sims[b].before for b in moved], moved) if moved else [],
                          strict=True):
            before[b] = got
    out = []
    for sim, got, u, then in zip(sims, settled, users, before, strict=True):
        asleep = sim._asleep()
        power = got.host_power
        for i in sim.sleepy:
            if asleep[i]:  # idle until removed, if it just emptied; asleep after
                idle_s = 0.0 if sim.was_asleep[i] else SCALE_DOWN_UNNEEDED_S
                power[i] = (idle_s * power[i] + (TICK_S - idle_s) * (
                    sim.hosts[i].sleep_watts or 0.0)) / TICK_S
        hosts = tuple(map(HostState, sim.names, sim.topology.clusters, power, got.host_cpu,
                          asleep))
        watts = got.watts
        latency = [ms * j for ms, j in zip(got.latency_ms, sim.episode.jitter[:, sim.t].tolist(),
                                           strict=True)]
        for s, f in sim.moving.items():
            watts[s], latency[s] = sim._moving(s, f, (watts[s], latency[s]), then)
        out.append(Snapshot(sim.t, tuple(map(
            ServiceState, sim.service_names, sim.placement, watts, got.cpu, latency, u.tolist(),
            got.throughput_rps)), hosts))
    return out
