"""Random: a uniformly random host each step; it may pick the current host (paper's baseline)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.continuum import Continuum
from orchestrator.model import Observation
from strategies.base import NoOptions, StrategyContext


class RandomStrategy:
    name: ClassVar[str] = "random"
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        # service 0 keeps the paper's stream; each further service its own
        self.rng = np.random.default_rng(context.seed + context.service)

    def reset(self, continuum: Continuum) -> None:
        pass

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        return 1 + int(self.rng.integers(len(obs.hosts)))
