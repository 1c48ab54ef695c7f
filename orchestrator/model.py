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
    """Eq. 6: where the service runs and how it does."""

    name: str
    host: int  # index into Observation.hosts
    power_w: float
    cpu: float  # fraction of its host's cores
    latency_ms: float
    users: int
    throughput_rps: float


@dataclass(frozen=True)
class Observation:
    """Eq. 4: the service and all hosts at one step."""

    step: int
    service: ServiceState
    hosts: tuple[HostState, ...]

    @property
    def location(self) -> Location:
        h = self.hosts[self.service.host]
        return Location(h.cluster, h.name)


STAY = 0  # action 0 = stay; action h (1..N) = move to host index h - 1 (Eq. 8)


def target_host(action: int) -> int | None:
    """The host index an action moves to, or None for stay."""
    return None if action == STAY else action - 1
