"""The Continuum protocol: what strategies and the controller see, simulated or real."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from orchestrator.config import HostProfile
from orchestrator.model import Observation


class Continuum(Protocol):
    """Hosts that can be observed, and a service that can be told where to run."""

    hosts: tuple[HostProfile, ...]

    def observe(self) -> Observation:
        """The service and every host now."""

    def can_host(self, host: int) -> bool:
        """Whether host `host` can take the service at all (capacity, memory, taints)."""

    def apply(self, target: int | None) -> None:
        """Move the service to host `target` (None: stay), then let one control interval pass."""


def action_mask(continuum: Continuum, current: int) -> np.ndarray:
    """Eq. 7: stay is always allowed; the current host and hosts that cannot take it are not."""
    mask = np.ones(len(continuum.hosts) + 1, dtype=bool)
    for i in range(len(continuum.hosts)):
        mask[i + 1] = i != current and continuum.can_host(i)
    return mask
