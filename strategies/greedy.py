"""Greedy: one-step lookahead on the performance model; the action with the best predicted
reward (move costs included), assuming users stay as observed."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.model import Observation
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.base import StrategyOptions
from strategies.prediction import Predictor


class GreedyStrategy:
    name: ClassVar[str] = "greedy"
    simulation_only: ClassVar[bool] = False

    def __init__(self, options: StrategyOptions) -> None:
        self.predictor = Predictor(options.scenario, options.reward)

    def reset(self, sim: SimulatedContinuum | None) -> None:
        pass

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        valid = [a for a in range(len(mask)) if mask[a]]
        return max(valid, key=lambda a: self.predictor.predict(obs, a).reward)
