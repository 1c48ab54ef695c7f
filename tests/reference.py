"""The straightforward computations the fast paths replace, kept as their reference: the
performance model one point at a time in Python (orchestrator/performance.py's Backend and
PerformanceModel before their outcomes were solved vectorized in blocks), the simulated
continuum's masks computed whole after every move, the RL strategies asking the model for
one service at a time, and greedy and lookahead predicting every host one by one. Tests pin
the fast paths to these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from orchestrator.model import STAY, Load, Move, Snapshot, target_host
from orchestrator.performance import SHARE_STEP, Outcome, share_watts
from orchestrator.scenario import HostProfile, ServiceSpec
from strategies.allocation import Allocation
from strategies.lookahead import tenancy
from strategies.rl import CHOOSE


def erlang_c(servers: int, load: float) -> float:
    if load <= 0:
        return 0.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= load / k
        total += term
    last = term * load / servers * servers / (servers - load)
    return last / (total + last)


class Backend:
    def __init__(self, service: ServiceSpec, host: HostProfile, taken: float = 0.0,
                 background: float | None = None) -> None:
        self.servers = service.workers_on(host)
        free = 1.0 - (host.background_utilization if background is None else background)
        self.others = self.servers * min(taken / free, 1.0 - SHARE_STEP)
        slow = host.speed * free
        self.per_image = service.inference_ms_per_image / 1000.0 / slow
        self.overhead = service.batch_overhead_ms / 1000.0 / slow
        self.batch = service.batch_size
        self.delay = service.max_batch_delay_ms / 1000.0
        self.think = sum(service.think_time_s) / 2.0

    def _batch(self, x: float) -> tuple[float, float]:
        k = min(float(self.batch), max(1.0, x * self.delay))
        return k, self.overhead + k * self.per_image

    def busy_workers(self, x: float) -> float:
        k, t = self._batch(x)
        return x / k * t

    def latency(self, x: float) -> float:
        k, t = self._batch(x)
        load = x / k * t + self.others
        p_wait = erlang_c(self.servers, load)
        fill = self.delay if x <= 0 else min(self.delay, (self.batch - 1) / x)
        batch_wait = fill * (1.0 + 1.0 / k) / 2.0
        queue_wait = p_wait * t / (self.servers - load)
        return batch_wait * (1.0 - p_wait) + queue_wait + t

    def solve(self, users: int) -> tuple[float, float]:
        if users <= 0:
            return 0.0, self.latency(0.0)
        lo, hi = 0.0, users / self.think
        cap_lo, cap_hi = 0.0, hi
        room = self.servers - self.others
        if self.busy_workers(hi) >= room:
            for _ in range(60):
                mid = (cap_lo + cap_hi) / 2
                cap_lo, cap_hi = (mid, cap_hi) if self.busy_workers(mid) < room else (
                    cap_lo, mid)
            hi = cap_lo
        for _ in range(60):
            mid = (lo + hi) / 2
            if mid * (self.think + self.latency(mid)) < users:
                lo = mid
            else:
                hi = mid
        x = (lo + hi) / 2
        return x, users / x - self.think


def outcome(service: ServiceSpec, host: HostProfile, network_ms: float, background_step: int,
            step: int, users: int) -> Outcome:
    """The service on the host with `users`, `step` % of its cores taken by other managed
    services and `background_step` % by co-tenants."""
    background, taken = background_step * SHARE_STEP, step * SHARE_STEP
    backend = Backend(service, host, taken, background)
    x, back = backend.solve(users)
    svc_cpu = backend.busy_workers(x) * (1.0 - background) / host.cores
    host_watts, (watts, _) = share_watts(host, background, (svc_cpu, taken),
                                         (1 + service.workers_on(host), 0))
    return Outcome(latency_ms=back * 1000.0 + network_ms, throughput_rps=x,
                   service_cpu=svc_cpu, service_watts=watts,
                   host_cpu=min(1.0, background + taken + svc_cpu), host_watts=host_watts)


def rl_actions(strategy: Any, snapshot: Snapshot, masks: np.ndarray,
               proposals: Any) -> list[int]:
    """An RL strategy's decisions as it made them one service at a time through the model:
    each service's observation encoded on its own, its masks recomputed after every move
    without what the gates hold (`proposals`: the strategy's, as they were before it decided),
    and its action asked of the model through torch (strategies.rl.CHOOSE: MaskablePPO's
    `predict` with the mask; A2C's most probable valid action)."""
    actions: list[int] = []
    moves: list[Move] = []
    load = Load(snapshot, strategy.capacity)
    proposals.begin(snapshot)
    for i, s in enumerate(snapshot.services):
        if not s.valid:
            actions.append(STAY)
            continue
        if moves and strategy.continuum is not None:
            masks = strategy.continuum.masks(snapshot, moves)
        mask = proposals.mask(snapshot, i, masks[i], len(moves), strategy.predictor)
        a = CHOOSE[strategy.name](strategy.model, strategy.encoders[i](load.view(i)), mask)
        to = target_host(a)
        if to is not None:
            moves.append(Move(i, to))
            load.move(i, to)
        actions.append(a)
    return actions


def greedy_actions(greedy: Any, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
    """GreedyStrategy.decide as first written: every action the masks and the requests allow
    predicted one by one (`predict`), the best passing the gates taken (`greedy.proposals`:
    as they were before it decided)."""
    alloc = Allocation(greedy.scenario, [s.host for s in snapshot.services])
    load = Load(snapshot, greedy.scenario.capacity)

    def best(i: int) -> tuple[float, int]:
        obs = load.view(i)
        valid = [a for a in range(len(masks[i]))
                 if a == STAY or (masks[i][a] and alloc.room(i, a - 1))]
        r = {a: greedy.predictor.predict(obs, a, i).reward for a in valid}
        a = max((a for a in r if a == STAY or greedy.proposals.passes(r[a] - r[STAY])),
                key=r.__getitem__)
        return r[a] - r[STAY], a

    actions = [STAY] * len(snapshot.services)
    for i, a in greedy.proposals(snapshot, best):
        actions[i] = alloc.move(i, a - 1)
        load.move(i, a - 1)
    return actions


def lookahead_actions(look: Any, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
    """LookaheadStrategy.decide as first written: every action the masks, the gates and the
    requests allow valued one by one (`value`)."""
    services = snapshot.services
    where = [s.host if s.valid else -1 for s in services]
    users, background = look.observe(snapshot)
    alloc = Allocation(look.scenario, where)

    def best(i: int) -> tuple[float, int]:
        host, tenants = services[i].host, tenancy(where, len(background))
        mask = look.proposals.mask(snapshot, i, masks[i], 0, look.predictor)
        v = {a: look.value(i, host, host if a == STAY else a - 1, tenants, users, background,
                           snapshot)
             for a in range(len(mask)) if a == STAY or (mask[a] and alloc.room(i, a - 1))}
        a = max(v, key=v.__getitem__)
        return v[a] - v[STAY], a

    actions = [STAY] * len(services)
    for i, a in look.proposals(snapshot, best):
        actions[i] = alloc.move(i, a - 1)
        where[i] = a - 1
    return actions


def masks(sim: Any, moves: Sequence[Move] = ()) -> np.ndarray:
    """The simulated continuum's masks (Eq. 7) once `moves` are made, computed whole for
    every service and host."""
    n = len(sim.hosts)
    placement = np.array(sim.placement)
    for m in moves:
        placement[m.service] = m.host
    mem = np.array([s.memory_gib for s in sim.specs])
    req = np.array([s.cpu_request for s in sim.specs])
    on = placement[:, None] == np.arange(n)
    pending = [(s, f.plan.move.host) for s, f in sim.moving.items() if not f.switched]
    for s, dst in pending:
        on[s, dst] = True
    room_mem = np.array([h.memory_gib for h in sim.hosts]) - (mem @ on - mem[:, None] * on)
    room_req = np.array([h.cores for h in sim.hosts]) - (req @ on - req[:, None] * on)
    out = np.zeros((len(sim.specs), n + 1), dtype=bool)
    out[:, 0] = True
    out[:, 1:] = ((room_mem >= mem[:, None]) & (room_req >= req[:, None])
                  & (np.array(sim.placement)[:, None] != np.arange(n)))
    for s, _ in pending:
        out[s, 1:] = False
    return out
