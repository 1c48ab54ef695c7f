"""What the services request of each host, as the Kubernetes scheduler counts it: CPU requests
(co-tenants at their background utilization) and memory. The operator baselines place services
with it, one after the other within a tick, so that no two land where only one fits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.scenario import Scenario
from orchestrator.topology import Topology


def cloud_hosts(scenario: Scenario) -> list[int]:
    """The hosts of the cloud tier (all hosts if none is)."""
    tiers = Topology(scenario.clusters).tiers
    return [i for i, t in enumerate(tiers) if t == "cloud"] or list(range(len(tiers)))


class Allocation:
    def __init__(self, scenario: Scenario, where: Sequence[int]) -> None:
        self.hosts, self.fleet = scenario.hosts, scenario.fleet
        self.where = list(where)
        self.cpu = [h.background_utilization * h.cores for h in self.hosts]  # in cores
        self.mem = [0.0 for _ in self.hosts]
        for i, h in enumerate(self.where):
            if h >= 0:
                self.cpu[h] += self.fleet[i].cpu_request
                self.mem[h] += self.fleet[i].memory_gib

    def util(self, h: int) -> float:
        """CPU requested over the host's cores."""
        return self.cpu[h] / self.hosts[h].cores

    def room(self, i: int, h: int, limit: float = 1.0) -> bool:
        """Whether service i fits host h (not its own) keeping CPU requests within `limit`."""
        spec = self.fleet[i]
        return self.where[i] != h and (self.cpu[h] + spec.cpu_request) <= \
            limit * self.hosts[h].cores and self.mem[h] + spec.memory_gib <= \
            self.hosts[h].memory_gib

    def move(self, i: int, to: int) -> int:
        """Count service i on host `to`; the action that moves it there (Eq. 8)."""
        spec, h = self.fleet[i], self.where[i]
        if h >= 0:
            self.cpu[h] -= spec.cpu_request
            self.mem[h] -= spec.memory_gib
        self.cpu[to] += spec.cpu_request
        self.mem[to] += spec.memory_gib
        self.where[i] = to
        return to + 1

    def least_allocated(self, i: int, pool: Sequence[int], mask: np.ndarray) -> int | None:
        """Where the default scheduler puts service i among `pool` (LeastAllocated: the host
        least requested once it is there), None if none of them takes it."""
        fit = [h for h in pool if mask[h + 1] and self.room(i, h)]
        return min(fit, key=lambda h: (self.cpu[h] + self.fleet[i].cpu_request)
                   / self.hosts[h].cores, default=None)
