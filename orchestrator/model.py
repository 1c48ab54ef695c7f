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
        """Service `service` and all hosts: the single-service view (Eq. 4)."""
        return Observation(self.step, self.services[service], self.hosts)


STAY = 0  # action 0 = stay; action h (1..N) = move to host index h - 1 (Eq. 8)


def target_host(action: int) -> int | None:
    """The host index an action moves to, or None for stay."""
    return None if action == STAY else action - 1


@dataclass(frozen=True)
class Move:
    """Service `service` (index into the snapshot) to host `host` (index into the hosts)."""

    service: int
    host: int
