"""Round-robin: move to the next host each step, cycling evenly across hosts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.continuum import Continuum
from orchestrator.model import Observation
from strategies.base import NoOptions, StrategyContext


class RoundRobinStrategy:
    name: ClassVar[str] = "round-robin"
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        pass

    def reset(self, continuum: Continuum) -> None:
        pass

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        n = len(obs.hosts)
        for k in range(1, n + 1):  # next host that can take the service
            h = (obs.service.host + k) % n
            if mask[h + 1]:
                return h + 1
        return 0
