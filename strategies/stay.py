"""Stay: never move (what happens when nobody manages placement). An operator baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from orchestrator.model import STAY, Snapshot
from strategies.base import Stateless


class StayStrategy(Stateless):
    name: ClassVar[str] = "stay"
    fleet: ClassVar[bool] = True  # nothing to look at per service

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        return [STAY] * len(snapshot.services)
