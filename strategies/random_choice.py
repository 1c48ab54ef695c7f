"""Random: a uniformly random host each step; it may pick the current host (paper's baseline)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.model import Observation
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.base import StrategyOptions


class RandomStrategy:
    name: ClassVar[str] = "random"
    simulation_only: ClassVar[bool] = False

    def __init__(self, options: StrategyOptions) -> None:
        self.rng = np.random.default_rng(options.seed)

    def reset(self, sim: SimulatedContinuum | None) -> None:
        pass

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        return 1 + int(self.rng.integers(len(obs.hosts)))
