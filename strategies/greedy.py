"""Greedy: one-step lookahead on the performance model; the action with the best predicted
reward (move costs included), assuming users stay as observed."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.continuum import Continuum
from orchestrator.model import Observation
from strategies.base import NoOptions, StrategyContext
from strategies.prediction import Predictor


class GreedyStrategy:
    name: ClassVar[str] = "greedy"
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        self.predictor = Predictor(context.scenario, context.reward)
        self.service = context.service

    def reset(self, continuum: Continuum) -> None:
        pass

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        valid = [a for a in range(len(mask)) if mask[a]]
        return max(valid, key=lambda a: self.predictor.predict(obs, a, self.service).reward)
