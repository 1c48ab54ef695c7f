"""Cloud: every service on the cloud tier (all hosts, if no host is a cloud one), each on the
host the default scheduler would pick there (least allocated by requests), the placement an
operator picks to be safe. An operator baseline, for every service at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from orchestrator.model import STAY, Snapshot
from strategies.allocation import Allocation, cloud_hosts
from strategies.base import NoOptions, Stateless, StrategyContext


class CloudStrategy(Stateless):
    name: ClassVar[str] = "cloud"
    fleet: ClassVar[bool] = True

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        self.scenario = context.scenario
        self.pool = cloud_hosts(context.scenario)

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        alloc = Allocation(self.scenario, [s.host for s in snapshot.services])
        actions = [STAY] * len(snapshot.services)
        for i, s in enumerate(snapshot.services):
            if s.valid and s.host not in self.pool:
                to = alloc.least_allocated(i, self.pool, masks[i])
                if to is not None:
                    actions[i] = alloc.move(i, to)
        return actions
