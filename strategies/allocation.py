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
        hosts, fleet = scenario.hosts, scenario.fleet
        self.where = list(where)
        self.cores = np.array([float(h.cores) for h in hosts])
        self.memory = np.array([h.memory_gib for h in hosts])
        self.request = [s.cpu_request for s in fleet]
        self.needs = [s.memory_gib for s in fleet]
        self.cpu = np.array([h.background_utilization * h.cores for h in hosts])  # in cores
        self.mem = np.zeros(len(hosts))
        for i, h in enumerate(self.where):
            if h >= 0:
                self.cpu[h] += self.request[i]
                self.mem[h] += self.needs[i]
        # Per kind of request (CPU, memory), the hosts it fits within their cores, kept as
        # services are moved: `rooms_on` reads it instead of comparing every host each time
        kinds, kind = np.unique(np.stack([self.request, self.needs], axis=1), axis=0,
                                return_inverse=True)
        self.kind, self.kind_req, self.kind_mem = kind.ravel(), kinds[:, 0], kinds[:, 1]
        self.fit = ((self.cpu + self.kind_req[:, None] <= self.cores)
                    & (self.mem + self.kind_mem[:, None] <= self.memory))  # [kind, host]

    def _refit(self, h: int) -> None:
        """Host h's column of the kept table, once its totals changed (`__init__`'s test)."""
        self.fit[:, h] = ((self.cpu[h] + self.kind_req <= self.cores[h])
                          & (self.mem[h] + self.kind_mem <= self.memory[h]))

    def util(self, h: int) -> float:
        """CPU requested over the host's cores."""
        return float(self.cpu[h] / self.cores[h])

    def utils(self) -> np.ndarray:
        """`util` of every host."""
        return self.cpu / self.cores

    def room(self, i: int, h: int, limit: float = 1.0) -> bool:
        """Whether service i fits host h (not its own) keeping CPU requests within `limit`."""
        return bool(self.where[i] != h and self.cpu[h] + self.request[i] <= limit * self.cores[h]
                    and self.mem[h] + self.needs[i] <= self.memory[h])

    def rooms(self, i: int, limit: float = 1.0) -> np.ndarray:
        """`room` of service i on every host."""
        out = ((self.cpu + self.request[i] <= limit * self.cores)
               & (self.mem + self.needs[i] <= self.memory))
        if self.where[i] >= 0:
            out[self.where[i]] = False
        return out

    def rooms_on(self, i: int, at: np.ndarray) -> np.ndarray:
        """`rooms(i)[at]` (within the cores), read from the kept table on those hosts only."""
        return self.fit[self.kind[i]][at] & (at != self.where[i])

    def move(self, i: int, to: int) -> int:
        """Count service i on host `to`; the action that moves it there (Eq. 8)."""
        h = self.where[i]
        if h >= 0:
            self.cpu[h] -= self.request[i]
            self.mem[h] -= self.needs[i]
        self.cpu[to] += self.request[i]
        self.mem[to] += self.needs[i]
        self.where[i] = to
        if h >= 0:
            self._refit(h)
        self._refit(to)
        return to + 1

    def least_allocated(self, i: int, pool: Sequence[int], mask: np.ndarray) -> int | None:
        """Where the default scheduler puts service i among `pool` (LeastAllocated: the host
        least requested once it is there; the first such), None if none of them takes it."""
        at = np.asarray(pool, dtype=np.int64)
        fit = mask[at + 1] & self.rooms_on(i, at)
        if not fit.any():
            return None
        load = (self.cpu[at] + self.request[i]) / self.cores[at]
        return int(at[np.argmin(np.where(fit, load, np.inf))])
