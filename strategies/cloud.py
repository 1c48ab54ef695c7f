"""Cloud: every service on the biggest host of the cloud tier (of all hosts, if no cluster is
a cloud), the placement an operator picks to be safe. An operator baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from orchestrator.config import Scenario
from orchestrator.model import STAY, Observation
from strategies.base import NoOptions, Stateless, StrategyContext


def biggest_host(scenario: Scenario) -> int:
    """The index of the host with the most capacity (cores x speed), on the cloud tier if any."""
    cloud = {h.name for c in scenario.clusters if c.tier == "cloud" for h in c.hosts}
    hosts = list(enumerate(scenario.hosts))
    pool = [(i, h) for i, h in hosts if h.name in cloud] or hosts
    return max(pool, key=lambda p: p[1].cores * p[1].speed)[0]


class CloudStrategy(Stateless):
    name: ClassVar[str] = "cloud"

    def __init__(self, context: StrategyContext, options: NoOptions) -> None:
        self.target = biggest_host(context.scenario)

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        if obs.service.host != self.target and mask[self.target + 1]:
            return self.target + 1
        return STAY
