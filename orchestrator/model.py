"""Plain value types shared by every continuum, strategy and command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Location:
    cluster: str
    node: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.node}"


@dataclass(frozen=True)
class HostState:
    """Eq. 5: one host's power and CPU utilization."""

    name: str
    cluster: str
    power_w: float
    cpu: float  # utilization in [0, 1]
    asleep: bool = False  # a move onto it waits for it to wake


@dataclass(frozen=True)
class ServiceState:
    """Eq. 6: where a service runs and how it does. An invalid state (stale or missing
    metrics, unknown place) says why in `reason`; nothing is decided on it."""

    name: str
    host: int  # index into the snapshot's hosts (-1: unknown)
    power_w: float
    cpu: float  # fraction of its host's cores
    latency_ms: float
    users: int
    throughput_rps: float
    reason: str | None = None  # None: valid

    @property
    def valid(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Observation:
    """Eq. 4: one service and all hosts at one step (what a single-service strategy sees)."""

    step: int
    service: ServiceState
    hosts: tuple[HostState, ...]
    # Per host, the other managed services on it: their CPU (fraction of its cores) and count
    # (empty: none anywhere). What it would share a host with if it moved there.
    others_cpu: np.ndarray | tuple[float, ...] = ()
    others_count: np.ndarray | tuple[int, ...] = ()
    # Per host, the CPU its co-tenants use (Snapshot.background; empty: not known).
    background: tuple[float, ...] = ()

    def neighbours(self, host: int) -> tuple[float, int]:
        """(CPU, count) of the other managed services on `host`."""
        if not len(self.others_cpu):
            return 0.0, 0
        return float(self.others_cpu[host]), int(self.others_count[host])

    @property
    def location(self) -> Location:
        h = self.hosts[self.service.host]
        return Location(h.cluster, h.name)


@dataclass(frozen=True)
class Snapshot:
    """Every managed service and every host of a continuum at one instant."""

    step: int
    services: tuple[ServiceState, ...]
    hosts: tuple[HostState, ...]
    # Per host, the co-tenants' CPU as measured with the hosts' CPU, where the services are
    # not where they were measured (observation lag); empty: derived (`background`).
    measured_background: tuple[float, ...] = ()

    def view(self, service: int) -> Observation:
        """Service `service` and all hosts (Eq. 4), with the other services' load per host."""
        return self.load.view(service)

    @cached_property
    def background(self) -> tuple[float, ...]:
        """Per host, the CPU of what is not a managed service (co-tenants, the system): its
        CPU minus the managed services' CPU on it."""
        if self.measured_background:
            return self.measured_background
        cpu = [h.cpu for h in self.hosts]
        for s in self.services:
            if s.valid and 0 <= s.host < len(cpu):
                cpu[s.host] -= s.cpu
        return tuple(max(0.0, c) for c in cpu)

    @cached_property
    def sleeping(self) -> np.ndarray:
        """bool[hosts]: whether each host sleeps (read once per snapshot, for many moves)."""
        return np.array([h.asleep for h in self.hosts], dtype=bool)

    @cached_property
    def load(self) -> Load:
        """The services' load per host as observed (counted once; never moved)."""
        return Load(self)


class Load:
    """The managed services' CPU and count per host, kept as a tick's moves are decided, so
    each service decides seeing where the ones before it go. A moved service is counted on
    its new host as the same work on that host's cores and speed (`capacity`, cores x speed
    per host; until it is observed there)."""

    def __init__(self, snapshot: Snapshot, capacity: Sequence[float] = ()) -> None:
        self.snapshot = snapshot
        n = len(snapshot.hosts)
        self.capacity = list(capacity) or [1.0] * n
        self.cpu, self.count = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.where = [s.host if s.valid and 0 <= s.host < n else -1 for s in snapshot.services]
        self.busy = [s.cpu for s in snapshot.services]
        for i, h in enumerate(self.where):  # in service order, as each one's CPU adds up
            if h >= 0:
                self.cpu[h] += self.busy[i]
                self.count[h] += 1
        self.placed = sum(h >= 0 for h in self.where)

    def view(self, service: int) -> Observation:
        """`service` as observed, the others where the moves decided so far put them."""
        s, h = self.snapshot, self.where[service]
        if self.alone(service):
            return Observation(s.step, s.services[service], s.hosts, background=s.background)
        count = self.count.copy()
        if h >= 0:
            count[h] -= 1
        return Observation(s.step, s.services[service], s.hosts, self.others(service), count,
                           s.background)

    def alone(self, service: int) -> bool:
        """Whether no other managed service is anywhere."""
        return self.placed - (self.where[service] >= 0) == 0

    def others(self, service: int) -> np.ndarray:
        """The others' CPU on each host, as `service` sees it."""
        cpu, h = self.cpu.copy(), self.where[service]
        if h >= 0:
            cpu[h] = self.own(service)
        return cpu

    def own(self, service: int) -> float:
        """The others' CPU on the host of `service` (it must be on one)."""
        h = self.where[service]
        return max(0.0, self.cpu[h] - self.busy[service])  # no rounding below zero

    def move(self, service: int, host: int) -> None:
        src = self.where[service]
        if src < 0 or src == host:
            return
        self.cpu[src] -= self.busy[service]
        self.count[src] -= 1
        self.busy[service] *= self.capacity[src] / self.capacity[host]
        self.cpu[host] += self.busy[service]
        self.count[host] += 1
        self.where[service] = host


STAY = 0  # action 0 = stay; action h (1..N) = move to host index h - 1 (Eq. 8)


def target_host(action: int) -> int | None:
    """The host index an action moves to, or None for stay."""
    return None if action == STAY else action - 1


@dataclass(frozen=True)
class Move:
    """Service `service` (index into the snapshot) to host `host` (index into the hosts)."""

    service: int
    host: int
