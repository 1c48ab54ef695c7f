"""Stay: never move (what happens when nobody manages placement). An operator baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.model import STAY, Observation
from strategies.base import Stateless


class StayStrategy(Stateless):
    name: ClassVar[str] = "stay"

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        return STAY
