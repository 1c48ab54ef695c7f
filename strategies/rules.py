"""Rules a careful operator would write, from observed latency and CPU and the host profiles:
  1. latency above `evacuate_at` of the SLA: move to the host with the most spare capacity;
  2. latency below `consolidate_below` of the SLA, and no evacuation in the last `hold_steps`
     steps: consolidate onto the lowest-power host whose projected CPU stays under `safe_cpu`,
     if that saves at least `min_saving` of the current power estimate.
It evacuates only to a roomier host than its own; that, the gap between the two latency marks
and the hold keep it from flapping between a big host and a small one (without them: 134 moves
and 41 SLA violations in 20 test episodes of `paper`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from orchestrator.continuum import Continuum
from orchestrator.model import Observation
from strategies.base import NoOptions, StrategyContext
from strategies.prediction import background


class RulesOptions(NoOptions):
    evacuate_at: float = Field(default=0.8, gt=0)  # fraction of the SLA
    safe_cpu: float = Field(default=0.6, gt=0, le=1)  # projected host CPU utilization
    min_saving: float = Field(default=0.2, ge=0, le=1)  # fraction of the current power
    consolidate_below: float = Field(default=0.5, gt=0)  # fraction of the SLA
    hold_steps: int = Field(default=3, ge=0)  # after an evacuation


class RulesStrategy:
    name: ClassVar[str] = "rules"
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[RulesOptions]] = RulesOptions

    def __init__(self, context: StrategyContext, options: RulesOptions) -> None:
        self.hosts = context.scenario.hosts
        service = context.spec
        self.sla = service.sla_latency_ms
        self.evacuate_at, self.safe_cpu = options.evacuate_at, options.safe_cpu
        self.min_saving, self.hold_steps = options.min_saving, options.hold_steps
        self.consolidate_below = options.consolidate_below
        self.evacuated_at: int | None = None
        self.processes = [1 + service.workers_on(h) for h in self.hosts]  # front end + workers

    def reset(self, continuum: Continuum) -> None:
        self.evacuated_at = None

    def _cpu_on(self, obs: Observation, h: int) -> float:
        """The service's CPU as a fraction of host h's cores."""
        cur = self.hosts[obs.service.host]
        work = obs.service.cpu * cur.cores * cur.speed  # core-seconds/s at unit speed
        return work / (self.hosts[h].cores * self.hosts[h].speed)

    def _projected_cpu(self, obs: Observation, h: int) -> float:
        return background(obs, self.hosts, h) + self._cpu_on(obs, h)

    def _power_estimate(self, obs: Observation, h: int) -> float:
        # not from the projected CPU less the background: hosts of one kind tie exactly (the
        # first wins), not by the rounding of their different backgrounds
        host = self.hosts[h]
        idle_share = host.idle_watts * self.processes[h] / (host.base_processes + self.processes[h])
        return idle_share + (host.max_watts - host.idle_watts) * self._cpu_on(obs, h)

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        candidates = [h for h in range(len(self.hosts)) if mask[h + 1]]
        if not candidates:
            return 0
        if obs.service.latency_ms > self.evacuate_at * self.sla:
            here = obs.service.host
            # Spare capacity, the service's own share counted free where it runs now
            spare = {h: self.hosts[h].cores * self.hosts[h].speed * (
                1 - obs.hosts[h].cpu + (obs.service.cpu if h == here else 0.0))
                for h in [*candidates, here]}
            best = max(spare, key=lambda h: spare[h])
            if best == here:  # nowhere roomier: moving would not help
                return 0
            self.evacuated_at = obs.step
            return 1 + best
        held = self.evacuated_at is not None and obs.step - self.evacuated_at < self.hold_steps
        if held or obs.service.latency_ms > self.consolidate_below * self.sla:
            return 0
        here = obs.service.host
        safe = [h for h in [*candidates, here] if self._projected_cpu(obs, h) < self.safe_cpu]
        if not safe:
            return 0
        best = min(safe, key=lambda h: self._power_estimate(obs, h))
        here_safe = here in safe
        saving = 1 - self._power_estimate(obs, best) / max(self._power_estimate(obs, here), 1e-9)
        if best != here and (not here_safe or saving >= self.min_saving):
            return best + 1
        return 0
