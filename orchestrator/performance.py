"""Latency and power of the served model on each host, as a function of the number of users.

Latency (Eq. 3) = backend + network. The backend is TorchServe's batching front end in front of
single-threaded workers (one per core unless the service sets `workers`), driven by a closed
population of users who think `think_time_s` between requests (Locust). Per throughput X:
  * batch size k = clamp(X * max_batch_delay, 1, batch_size), batch time t = overhead + k * s;
  * requests wait to fill a batch, up to max_batch_delay, unless a queue already fills it;
  * batches queue for the workers as an M/M/c queue (Erlang C);
and X solves X = users / (think + latency(X)), so a small host saturates: X stops growing and
latency grows with users. Power (Eq. 1-2) = idle + per-host curve of CPU utilization; the
service gets its CPU share of the dynamic part and its process share of the idle part.
Services on one host share its cores (CFS without CPU limits): the other managed services'
busy cores (`taken`; the simulated continuum says how much) are load on the same M/M/c queue.
Outcomes are computed once per kind of host, background load and share taken (in steps of 1 %)
and user count, in blocks solved together (vectorized), so a simulator step is mostly lookups.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from orchestrator.scenario import HostProfile, Scenario, ServiceSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What the service and its host look like for one host and user count."""

    latency_ms: float  # end to end
    throughput_rps: float
    service_cpu: float  # fraction of the host's cores
    service_watts: float
    host_cpu: float
    host_watts: float


def erlang_c(servers: ArrayLike, load: ArrayLike) -> np.ndarray:
    """Probability that an arrival waits in an M/M/c queue with offered load `load` < servers
    (elementwise over `load` and `servers`)."""
    load = np.asarray(load, dtype=float)
    sizes = np.unique(servers).tolist()  # each size's loads together: c - 1 terms each
    servers = np.broadcast_to(servers, load.shape)
    out = np.empty_like(load)
    for c in sizes:
        at = servers == c
        rho = load[at]
        term, total = np.ones_like(rho), np.ones_like(rho)
        for k in range(1, c):
            term = term * (rho / k)
            total = total + term
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            last = term * rho / c * c / (c - rho)
            out[at] = np.where(rho <= 0, 0.0, last / (total + last))
    return out


def curve_points(curves: Sequence[tuple[tuple[float, float], ...]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Power curves as arrays of their points' utilizations and fractions, [curves, points]
    (a shorter curve is padded with points at utilization inf)."""
    n = max(len(c) for c in curves)
    pad = [(np.inf, c[-1][1]) for c in curves]
    points = np.array([list(c) + [p] * (n - len(c)) for c, p in zip(curves, pad, strict=True)])
    return points[..., 0], points[..., 1]


def curve_fractions(xs: np.ndarray, ys: np.ndarray, utilization: ArrayLike) -> np.ndarray:
    """Piecewise-linear dynamic-power fractions at CPU utilizations in [0, 1], elementwise,
    each on its curve's points (`curve_points`, broadcast against the utilizations)."""
    u = np.minimum(np.maximum(utilization, 0.0), 1.0)
    xs, ys = (np.broadcast_to(a, np.shape(u) + a.shape[-1:]) for a in (xs, ys))
    j = np.argmax(u[..., None] <= xs[..., 1:], axis=-1)[..., None]  # the first segment

    def at(a: np.ndarray, k: int) -> np.ndarray:
        return np.take_along_axis(a, j + k, axis=-1)[..., 0]

    x0, y0, x1, y1 = at(xs, 0), at(ys, 0), at(xs, 1), at(ys, 1)
    return y0 + (y1 - y0) * (u - x0) / (x1 - x0)


def curve_fraction(curve: tuple[tuple[float, float], ...], utilization: float) -> float:
    """Piecewise-linear dynamic-power fraction at a CPU utilization in [0, 1] (one value;
    `curve_fractions` for arrays)."""
    u = min(max(utilization, 0.0), 1.0)
    for (x0, y0), (x1, y1) in pairwise(curve):
        if u <= x1:
            return y0 + (y1 - y0) * (u - x0) / (x1 - x0)
    return curve[-1][1]


def share_watts(host: HostProfile, background: float, cpus: Sequence[float],
                processes: Sequence[int]) -> tuple[float, list[float]]:
    """Eq. 1-2: the host's power with services using `cpus` (fractions of its cores) on top of
    its `background` load, and each one's share: of the dynamic part by CPU, of the idle part
    by process count (`processes` each, beside the host's own)."""
    host_cpu = min(1.0, background + sum(cpus))
    dynamic = (host.max_watts - host.idle_watts) * curve_fraction(host.power_curve, host_cpu)
    everyone = host.base_processes + sum(processes)
    return host.idle_watts + dynamic, [
        (dynamic * c / host_cpu if host_cpu > 0 else 0.0) + host.idle_watts * p / everyone
        for c, p in zip(cpus, processes, strict=True)]


SHARE_STEP = 0.01  # the grid of `taken` and background load outcomes are kept on
GRID = round(1 / SHARE_STEP) + 1  # 0 .. 100 % in steps of 1 %


def on_grid(share: float) -> int:
    """A share of a host's cores as a whole number of grid steps, at most all of them (a
    measured share may read a little above 1)."""
    return min(GRID - 1, max(0, round(share / SHARE_STEP)))


def grid_steps(share: np.ndarray) -> np.ndarray:
    """`on_grid` elementwise (rint rounds halves to even, as `round` does)."""
    return np.clip(np.rint(share / SHARE_STEP), 0, GRID - 1).astype(np.int64)


class Backend:
    """TorchServe-like backend of one service on one host, with `taken` of the host's cores
    used by other managed services: their busy cores count as load on the same cores, so
    its requests wait more as the host fills up (a shared M/M/c; an approximation, since their
    batches differ from its own), and it can use only what they leave. Co-tenants (`background`,
    default: the host's profile) slow its cores down. Elementwise over arrays of `taken`,
    `background` and (in `solve`) users, broadcast together; `service` and `host` may also be
    sequences, one pair per entry of those arrays' first axis."""

    def __init__(self, service: ServiceSpec | Sequence[ServiceSpec],
                 host: HostProfile | Sequence[HostProfile], taken: ArrayLike = 0.0,
                 background: ArrayLike | None = None) -> None:
        if isinstance(service, ServiceSpec) and isinstance(host, HostProfile):
            pairs, shape = [(service, host)], None
        else:
            assert not isinstance(service, ServiceSpec) and not isinstance(host, HostProfile)
            pairs, shape = list(zip(service, host, strict=True)), (-1,) + (1,) * (
                np.ndim(taken) - 1)

        def per_pair(value: Callable[[ServiceSpec, HostProfile], float]) -> Any:
            v = np.array([value(s, h) for s, h in pairs])
            return v[0] if shape is None else v.reshape(shape)

        self.servers = per_pair(lambda s, h: s.workers_on(h))
        self.cores = per_pair(lambda s, h: h.cores)
        free = 1.0 - (per_pair(lambda s, h: h.background_utilization) if background is None
                      else np.asarray(background, dtype=float))
        self.others = self.servers * np.minimum(np.asarray(taken) / free,
                                                1.0 - SHARE_STEP)  # in workers
        slow = per_pair(lambda s, h: h.speed) * free
        self.per_image = per_pair(lambda s, h: s.inference_ms_per_image) / 1000.0 / slow
        self.overhead = per_pair(lambda s, h: s.batch_overhead_ms) / 1000.0 / slow
        self.batch = per_pair(lambda s, h: s.batch_size)
        self.delay = per_pair(lambda s, h: s.max_batch_delay_ms) / 1000.0
        self.think = per_pair(lambda s, h: sum(s.think_time_s) / 2.0)

    def _batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.minimum(np.asarray(self.batch, dtype=float), np.maximum(1.0, x * self.delay))
        return k, self.overhead + k * self.per_image

    def busy_workers(self, x: ArrayLike) -> np.ndarray:
        k, t = self._batch(np.asarray(x, dtype=float))
        return x / k * t

    def latency(self, x: np.ndarray) -> np.ndarray:
        """Mean backend latency in seconds at throughput x (x below capacity)."""
        k, t = self._batch(x)
        load = x / k * t + self.others
        p_wait = erlang_c(self.servers, load)
        with np.errstate(divide="ignore"):
            fill = np.where(x <= 0, self.delay, np.minimum(self.delay, (self.batch - 1) / x))
        batch_wait = fill * (1.0 + 1.0 / k) / 2.0
        queue_wait = p_wait * t / (self.servers - load)
        return batch_wait * (1.0 - p_wait) + queue_wait + t

    def capacity(self) -> np.ndarray:
        """The throughput at which its busy workers fill the cores the others leave (busy
        workers are piecewise linear in x: batches of 1 below 1 / delay, of x * delay up to
        batch / delay, then full)."""
        room = self.servers - self.others
        o, p, b, d = self.overhead, self.per_image, np.asarray(self.batch, float), self.delay
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(room * d <= o + p, room / (o + p),
                            np.where(room * d <= o + b * p, (room - o / d) / p,
                                     room * b / (o + b * p)))

    def part(self, shape: tuple[int, ...], at: Any = slice(None)) -> Backend:
        """This backend's entries, broadcast to `shape` and flattened, at positions `at`."""
        part = copy.copy(self)
        for name in ("servers", "others", "per_image", "overhead", "batch", "delay", "think"):
            setattr(part, name, np.broadcast_to(getattr(self, name), shape).ravel()[at])
        return part

    def solve(self, users: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(throughput, backend latency) for closed populations of `users`, all at once: x
        solves x * (think + R(x)) = users, which grows with x, below `capacity` (where the
        busy workers fill the room the others leave and R has a pole)."""
        users = np.asarray(users, dtype=float)
        shape = np.broadcast_shapes(users.shape, np.shape(self.others), np.shape(self.per_image))
        flat = self.part(shape)
        users = np.broadcast_to(users, shape).ravel()

        def short(x: np.ndarray, at: Any = slice(None)) -> np.ndarray:
            # x * (think + R(x)) - users times the share of the room still free: the same
            # root, but finite up to capacity (the pole cancels: there it tends to x * t /
            # room), so the root finder interpolates instead of bisecting towards it
            b = flat.part((len(users),), at)
            room = b.servers - b.others
            free = 1.0 - b.busy_workers(x) / room
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                f = (x * (b.think + b.latency(x)) - users[at]) * free
            return np.where((free > 0) & np.isfinite(f), f, x * b._batch(x)[1] / room)

        with np.errstate(divide="ignore", invalid="ignore"):  # no think time: capacity bounds
            hi = np.minimum(users / flat.think, flat.capacity())
        f_hi = short(hi)
        inside = (users > 0) & (f_hi > 0)  # else x = hi (none), or 0 (no users)
        x, where = hi.copy(), np.flatnonzero(inside)
        # f is a difference of terms about `users` in size, each rounded: within 16 ulps of
        # them of 0, x is as good a root as f can tell (measured on continuum's tables: the
        # outcomes within 2e-14 of roots bracketed to the last ulps, 13 evaluations at most
        # instead of 80)
        x[where] = increasing_root(lambda xs, at: short(xs, where[at]), np.zeros(len(where)),
                                   hi[where], -users[where], f_hi[where],
                                   16 * np.finfo(float).eps * users[where])
        idle = users <= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            back = np.where(idle, flat.latency(np.zeros(len(users))), users / x - flat.think)
        return np.where(idle, 0.0, x).reshape(shape), back.reshape(shape)


def increasing_root(f: Callable[[np.ndarray, np.ndarray], np.ndarray], lo: np.ndarray,
                    hi: np.ndarray, f_lo: np.ndarray, f_hi: np.ndarray,
                    f_tol: np.ndarray) -> np.ndarray:
    """x with f(x) = 0 for each element of the brackets lo < hi (f(lo) = f_lo < 0 < f_hi =
    f(hi)), to a few units in the last place or to |f(x)| <= f_tol (f's rounding error: beyond
    it, a root finder only narrows the bracket from one side); f(x, at) evaluates the elements
    `at`.
    Chandrupatla's method (inverse quadratic interpolation where it is safe, else bisection;
    scipy's elementwise.find_root uses it too), each element only until it has converged."""
    out = np.where(np.abs(f_lo) < np.abs(f_hi), lo, hi)
    at = np.arange(len(lo))
    a, fa, b, fb = lo, f_lo, hi, f_hi  # a: the newest point; a and b bracket the root
    t = np.full(len(lo), 0.5)
    for _ in range(200):  # converges long before; bisection alone would take ~60 steps
        x = a + t * (b - a)
        fx = f(x, at)
        same = np.sign(fx) == np.sign(fa)
        c, fc = np.where(same, a, b), np.where(same, fa, fb)  # the point given up
        b, fb = np.where(same, b, a), np.where(same, fb, fa)
        a, fa = x, fx
        nearer = np.abs(fa) < np.abs(fb)
        best = np.where(nearer, a, b)
        tol, dx = 4 * np.finfo(float).eps * np.abs(best), np.abs(b - a)
        done = (np.abs(np.where(nearer, fa, fb)) <= f_tol) | (dx < tol)
        out[at[done]] = best[done]
        if done.all():
            break
        go = ~done
        at, a, fa, b, fb, c, fc, tol, dx, f_tol = (
            v[go] for v in (at, a, fa, b, fb, c, fc, tol, dx, f_tol))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            xi, phi = (a - b) / (c - b), (fa - fb) / (fc - fb)
            t = np.where((phi ** 2 < xi) & ((1 - phi) ** 2 < 1 - xi),
                         fa / (fb - fa) * fc / (fb - fc)
                         + (c - a) / (b - a) * fa / (fc - fa) * fb / (fc - fb), 0.5)
            t = np.clip(np.where(np.isfinite(t), t, 0.5), 0.5 * tol / dx, 1 - 0.5 * tol / dx)
    else:
        out[at] = best[go]
    return out


# Outcome tables hold (backend ms, throughput, service CPU, service watts) per background step,
# taken step and user count, in blocks of 16 taken steps x 32 user counts solved together when
# one of their points is first asked for (a vectorized solve of 512 points costs about what one
# point does).
FIELDS = 4
TAKEN_BLOCK, USERS_BLOCK = 16, 32


def host_kind(host: HostProfile) -> tuple[object, ...]:
    """What the outcomes of a service on `host` depend on of the host (not its name, place or
    its own background load)."""
    return (host.cores, host.speed, host.idle_watts, host.max_watts, host.power_curve,
            host.base_processes)


def kind(service: ServiceSpec, host: HostProfile) -> tuple[object, ...]:
    """What the outcomes of `service` on `host` depend on besides the load (the served model
    and the kind of host)."""
    return (service.inference_ms_per_image, service.batch_overhead_ms, service.batch_size,
            service.max_batch_delay_ms, service.workers, service.think_time_s,
            *host_kind(host))


class HostKinds:
    """A continuum's hosts as their kinds (`host_kind`): a large one is a few kinds of host
    many times, so what a service's model reads of a host is computed once per kind."""

    def __init__(self, hosts: Sequence[HostProfile]) -> None:
        self.hosts = hosts
        first: dict[tuple[object, ...], int] = {}
        self.first = [first.setdefault(host_kind(h), i) for i, h in enumerate(hosts)]
        self.kinds = sorted(first.values())  # the first host of each kind

    def each(self, value: Callable[[HostProfile], T]) -> list[T]:
        """`value` of every host, computed on the first host of each kind."""
        known = {i: value(self.hosts[i]) for i in self.kinds}
        return [known[i] for i in self.first]


class OutcomeTables:
    """Outcomes of each served model on each kind of host (one table per pair), every point
    solved once; a lookup reads many points of many tables at once."""

    def __init__(self) -> None:
        self.pairs: list[tuple[ServiceSpec, HostProfile]] = []
        self._ids: dict[tuple[object, ...], int] = {}
        # block number per (table, background step, taken block, users block); -1: unsolved
        self.index = np.full((0, GRID, -(-GRID // TAKEN_BLOCK), 1), -1, dtype=np.int64)
        self.blocks = np.empty((8, TAKEN_BLOCK, USERS_BLOCK, FIELDS))  # grown by doubling
        self.solved = 0  # blocks in use

    def id(self, service: ServiceSpec, host: HostProfile) -> int:
        """The table of `service` on `host` (what names and places do not change: its users'
        network latency is added per service)."""
        key = kind(service, host)
        if key not in self._ids:
            self._ids[key] = len(self.pairs)
            self.pairs.append((service, host))
            self.index = np.concatenate([self.index, np.full((1, *self.index.shape[1:]), -1,
                                                             dtype=np.int64)])
        return self._ids[key]

    def lookup(self, table: np.ndarray, background: np.ndarray, taken: np.ndarray,
               users: np.ndarray) -> np.ndarray:
        """[..., FIELDS] of the given tables at the given background steps, taken steps and
        user counts (integer arrays, broadcast together)."""
        tb, ub = taken // TAKEN_BLOCK, users // USERS_BLOCK
        if ub.size and ub.max() >= self.index.shape[3]:
            grown = np.full((*self.index.shape[:3], int(ub.max()) + 1), -1, dtype=np.int64)
            grown[..., :self.index.shape[3]] = self.index
            self.index = grown
        # flat positions read with np.take: several times faster than indexing by 4 arrays
        # (steps are on the grid, users >= 0: no coordinate runs into the next one's)
        _, _, tbs, ubs = self.index.shape
        at = ((table * GRID + background) * tbs + tb) * ubs + ub
        block = np.take(self.index, at)
        if (block < 0).any():
            new = block < 0
            table, background, tb, ub = np.broadcast_arrays(table, background, tb, ub)
            self._solve(sorted(set(zip(table[new].tolist(), background[new].tolist(),
                                       tb[new].tolist(), ub[new].tolist(), strict=True))))
            block = np.take(self.index, at)
        point = (block * TAKEN_BLOCK + taken % TAKEN_BLOCK) * USERS_BLOCK + users % USERS_BLOCK
        return np.take(self.blocks.reshape(-1, FIELDS), point, axis=0)

    def point(self, table: int, background: int, taken: int, users: int) -> list[float]:
        """`lookup` of one point (without arrays, where its block is solved)."""
        tb, ub = taken // TAKEN_BLOCK, users // USERS_BLOCK
        if ub < self.index.shape[3] and (block := int(self.index[table, background, tb, ub])) >= 0:
            return self.blocks[block, taken % TAKEN_BLOCK, users % USERS_BLOCK].tolist()
        return self.lookup(*(np.array([v]) for v in (table, background, taken, users)))[0].tolist()

    def _solve(self, keys: list[tuple[int, int, int, int]]) -> None:
        """Solve the blocks `keys` (table, background step, taken block, users block), all at
        once."""
        first, self.solved = self.solved, self.solved + len(keys)
        if self.solved > len(self.blocks):
            more = np.empty((max(len(self.blocks), len(keys)), *self.blocks.shape[1:]))
            self.blocks = np.concatenate([self.blocks, more])
        self.blocks[first:self.solved] = self._outcomes(keys)
        for j, key in enumerate(keys):
            self.index[key] = first + j

    def _outcomes(self, keys: list[tuple[int, int, int, int]]) -> np.ndarray:
        """[blocks, TAKEN_BLOCK, USERS_BLOCK, FIELDS] of the blocks `keys`."""
        services, hosts = zip(*(self.pairs[k[0]] for k in keys), strict=True)
        k = np.array(keys)[:, :, None, None]
        taken_step = k[:, 2] * TAKEN_BLOCK + np.arange(TAKEN_BLOCK)[:, None]
        users = k[:, 3] * USERS_BLOCK + np.arange(USERS_BLOCK)
        background, taken = k[:, 1] * SHARE_STEP, taken_step * SHARE_STEP
        backend = Backend(services, hosts, taken, background)
        x, back = backend.solve(users)
        svc_cpu = backend.busy_workers(x) * (1.0 - background) / backend.cores

        def per_host(value: Callable[[HostProfile], float]) -> np.ndarray:
            return np.array([value(h) for h in hosts])[:, None, None]

        # The others' CPU counts for the host's utilization; their processes are not known
        # here (the simulated continuum shares the idle power among all of them).
        host_cpu = np.minimum(1.0, background + (svc_cpu + taken))
        xs, ys = curve_points([h.power_curve for h in hosts])
        dynamic = per_host(lambda h: h.max_watts - h.idle_watts) * curve_fractions(
            xs[:, None, None], ys[:, None, None], host_cpu)
        processes = 1 + backend.servers
        with np.errstate(divide="ignore", invalid="ignore"):
            watts = (np.where(host_cpu > 0, dynamic * svc_cpu / host_cpu, 0.0)
                     + per_host(lambda h: h.idle_watts) * processes
                     / (per_host(lambda h: h.base_processes) + processes))
        return np.stack([back * 1000.0, x, svc_cpu, watts], axis=-1)


TABLES = OutcomeTables()  # one per process: every model of the same service and host shares
_KNOWN: dict[tuple[tuple[int, ...], tuple[float, ...]], dict[tuple[int, int, int, int],
                                                              Outcome]] = {}


class PerformanceModel:
    """Outcomes of one service (default: the scenario's first) on every host of a scenario, by
    the share of the host taken by other services and the user count."""

    def __init__(self, scenario: Scenario, service: ServiceSpec | None = None,
                 kinds: HostKinds | None = None) -> None:
        self.scenario = scenario
        self.service = service = service or scenario.fleet[0]
        kinds = kinds or HostKinds(scenario.hosts)
        self.hosts = kinds.hosts
        self.tables = kinds.each(lambda h: TABLES.id(service, h))
        self.processes = kinds.each(lambda h: 1 + service.workers_on(h))  # front end + workers
        self.network_ms = scenario.network_ms(self.service)  # from its users, per host
        # reward normalization (Eq. 9; max_watts is of the host's kind)
        self.p_max = max(self.hosts[i].max_watts for i in kinds.kinds)
        # (host, background step, taken step, users) -> outcome, shared by the models of the
        # services that share tables and network latencies (a fleet's copies of one service)
        self._known = _KNOWN.setdefault((tuple(self.tables), self.network_ms), {})

    def outcome(self, host: int, users: int, taken: float = 0.0,
                background: float | None = None) -> Outcome:
        """The service on `host` with `users`, `taken` of the host's cores used by other
        managed services and `background` by co-tenants (None: the host's profile); computed
        once per host, 1 % of share, 1 % of background and user count."""
        key = self._key(host, users, taken, background)
        if key not in self._known:
            self._known[key] = self._outcome(key, TABLES.point(self.tables[host], *key[1:]))
        return self._known[key]

    def _key(self, host: int, users: int, taken: float, background: float | None
             ) -> tuple[int, int, int, int]:
        level = self.hosts[host].background_utilization if background is None else background
        return host, on_grid(level), on_grid(taken), users

    def _outcome(self, key: tuple[int, int, int, int], solved: list[float]) -> Outcome:
        i, background_step, step, _ = key
        back_ms, x, svc_cpu, watts = solved
        background, taken = background_step * SHARE_STEP, step * SHARE_STEP
        host_watts, _ = share_watts(self.hosts[i], background, (svc_cpu, taken),
                                    (self.processes[i], 0))
        return Outcome(latency_ms=back_ms + self.network_ms[i], throughput_rps=x,
                       service_cpu=svc_cpu, service_watts=watts,
                       host_cpu=min(1.0, background + taken + svc_cpu), host_watts=host_watts)


def fleet_models(scenario: Scenario, first: PerformanceModel | None = None
                 ) -> list[PerformanceModel]:
    """A performance model for every service of `scenario` (`first` for the first, if given),
    the hosts' kinds found once for all of them."""
    kinds = HostKinds(scenario.hosts)
    return [first if first is not None and i == 0 else PerformanceModel(scenario, s, kinds)
            for i, s in enumerate(scenario.fleet)]
