"""Round-robin: move to the next host each step, cycling evenly across hosts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.model import Observation
from strategies.base import Stateless


class RoundRobinStrategy(Stateless):
    name: ClassVar[str] = "round-robin"

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        n = len(obs.hosts)
        for k in range(1, n + 1):  # next host that can take the service
            h = (obs.service.host + k) % n
            if mask[h + 1]:
                return h + 1
        return 0
