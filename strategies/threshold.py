"""Threshold: the host nearest the users while the service's users stay below a threshold,
else the biggest host (strategies/cloud.py). The threshold comes from the service's capacity on
the near host, never from a workload pattern: the most users it serves there within
`sla_fraction` of the SLA (the queueing model of orchestrator/performance.py). It moves back
only below (1 - `hysteresis`) of the threshold, so that users hovering around it do not make
it flap. An operator baseline: the one rule a person would configure per service."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.model import STAY, Observation
from orchestrator.performance import Backend
from strategies.base import NoOptions, Stateless, StrategyContext
from strategies.cloud import biggest_host

MAX_USERS = 10_000


class ThresholdOptions(NoOptions):
    sla_fraction: float = Field(default=0.8, gt=0)  # as the rules' evacuate_at
    hysteresis: float = Field(default=0.1, ge=0, lt=1)  # of the threshold


def capacity_users(backend: Backend, network_ms: float, limit_ms: float) -> int:
    """The most users the backend serves with an end-to-end latency of at most `limit_ms`."""
    for users in range(1, MAX_USERS):
        if backend.solve(users)[1] * 1000 + network_ms > limit_ms:
            return users - 1
    return MAX_USERS


class ThresholdStrategy(Stateless):
    name: ClassVar[str] = "threshold"
    Options: ClassVar[type[ThresholdOptions]] = ThresholdOptions

    def __init__(self, context: StrategyContext, options: ThresholdOptions) -> None:
        hosts = context.scenario.hosts
        self.near = min(range(len(hosts)), key=lambda h: hosts[h].network_latency_ms)
        self.big = biggest_host(context.scenario)
        near = hosts[self.near]
        self.threshold = capacity_users(Backend(context.spec, near), near.network_latency_ms,
                                        options.sla_fraction * context.spec.sla_latency_ms)
        self.back_below = (1 - options.hysteresis) * self.threshold

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        users, here = obs.service.users, obs.service.host
        if users > self.threshold:
            target = self.big
        elif users < self.back_below or here not in (self.near, self.big):
            target = self.near
        else:
            target = here  # between the two marks: where it is
        return target + 1 if target != here and mask[target + 1] else STAY
