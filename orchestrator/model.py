"""Plain value types shared by every continuum, strategy and command."""

from __future__ import annotations

from dataclasses import dataclass


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
    others_cpu: tuple[float, ...] = ()
    others_count: tuple[int, ...] = ()

    def neighbours(self, host: int) -> tuple[float, int]:
        """(CPU, count) of the other managed services on `host`."""
        if not self.others_cpu:
            return 0.0, 0
        return self.others_cpu[host], self.others_count[host]

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

    def view(self, service: int) -> Observation:
        """Service `service` and all hosts (Eq. 4), with the other services' load per host."""
        cpu, count = [0.0] * len(self.hosts), [0] * len(self.hosts)
        for i, s in enumerate(self.services):
            if i != service and s.valid and 0 <= s.host < len(self.hosts):
                cpu[s.host] += s.cpu
                count[s.host] += 1
        if not any(count):
            return Observation(self.step, self.services[service], self.hosts)
        return Observation(self.step, self.services[service], self.hosts, tuple(cpu),
                           tuple(count))


STAY = 0  # action 0 = stay; action h (1..N) = move to host index h - 1 (Eq. 8)


def target_host(action: int) -> int | None:
    """The host index an action moves to, or None for stay."""
    return None if action == STAY else action - 1


@dataclass(frozen=True)
class Move:
    """Service `service` (index into the snapshot) to host `host` (index into the hosts)."""

    service: int
    host: int
