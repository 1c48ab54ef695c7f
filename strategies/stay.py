"""Stay: never move (what happens when nobody manages placement). An operator baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.continuum import Continuum
from orchestrator.model import STAY, Observation
from strategies.base import NoOptions, StrategyContext


class StayStrategy:
    name: ClassVar[str] = "stay"
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        pass

    def reset(self, continuum: Continuum) -> None:
        pass

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        return STAY
