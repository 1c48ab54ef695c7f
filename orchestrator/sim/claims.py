"""Masks of the simulated continuum (Eq. 7) as the moves of a tick are accepted one by one:
what each service requests of each host, kept per host, a move changing two hosts' totals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.model import Move
from orchestrator.scenario import HostProfile, ServiceSpec


class Requests:
    """What each service requests (memory, CPU) and each host offers; the services by kind
    of request (so that a mask row is its kind's)."""

    def __init__(self, specs: Sequence[ServiceSpec], hosts: Sequence[HostProfile]) -> None:
        self.mem = np.array([s.memory_gib for s in specs])
        self.req = np.array([s.cpu_request for s in specs])
        self.host_mem = np.array([h.memory_gib for h in hosts])
        self.host_req = np.array([float(h.cores) for h in hosts])
        kinds, kind = np.unique(np.stack([self.mem, self.req], axis=1), axis=0,
                                return_inverse=True)
        self.kind, self.kind_mem, self.kind_req = kind.ravel(), kinds[:, :1], kinds[:, 1:]


class SimulatedClaims:
    """What the services request of each host as the moves accepted in a tick are added (a
    pending move's target reserved), and the masks that leave (Eq. 7): stay always; not its
    current host; hosts it fits beside the others. The same test as `fits`, vectorized; a move
    changes two hosts' totals."""

    def __init__(self, requests: Requests, placement: Sequence[int],
                 pending: dict[int, int]) -> None:
        """`placement`: where each service serves; `pending`: the targets of the moves under
        way that do not serve there yet."""
        r = requests
        self.mem, self.req, self.host_mem, self.host_req = r.mem, r.req, r.host_mem, r.host_req
        self.kind, self.kind_mem, self.kind_req = r.kind, r.kind_mem, r.kind_req
        self.now = np.array(placement)  # where each serves (its own host is masked)
        self.where = self.now.copy()  # once the moves are made
        self.pending = pending
        n = len(self.host_mem)
        self.mem_on = np.bincount(self.where, self.mem, n)  # requested on each host
        self.req_on = np.bincount(self.where, self.req, n)
        for s, dst in self.pending.items():  # its target's capacity is reserved
            self.mem_on[dst] += self.mem[s]
            self.req_on[dst] += self.req[s]
        self.fit = self._fit(slice(None))  # per kind of request: the hosts it fits

    def _fit(self, hosts: slice | list[int]) -> np.ndarray:
        return ((self.host_mem[hosts] - self.mem_on[hosts] >= self.kind_mem)
                & (self.host_req[hosts] - self.req_on[hosts] >= self.kind_req))

    def add(self, move: Move) -> None:
        s, src = move.service, self.where[move.service]
        self.mem_on[src] -= self.mem[s]
        self.req_on[src] -= self.req[s]
        self.mem_on[move.host] += self.mem[s]
        self.req_on[move.host] += self.req[s]
        self.where[s] = move.host
        self.fit[:, [src, move.host]] = self._fit([src, move.host])

    def _fits(self, service: int, host: int) -> bool:
        """Whether `service` fits `host` beside the others there (not counting itself)."""
        on = 1.0 if host == self.where[service] else 0.0
        mem, req = self.mem[service], self.req[service]
        return bool(self.host_mem[host] - (self.mem_on[host] - mem * on) >= mem
                    and self.host_req[host] - (self.req_on[host] - req * on) >= req)

    def allows(self, service: int, action: int) -> bool:
        host = action - 1
        if action == 0:
            return True
        if service in self.pending or host == self.now[service] or \
                not 0 <= host < len(self.host_mem):
            return False
        return self._fits(service, host)

    def mask(self, service: int) -> np.ndarray:
        out = np.zeros(len(self.host_mem) + 1, dtype=bool)
        out[0] = True
        if service in self.pending:  # a pending move: it may only stay
            return out
        out[1:] = self.fit[self.kind[service]]
        out[1 + self.where[service]] = self._fits(service, self.where[service])
        out[1 + self.now[service]] = False
        return out

    def masks(self) -> np.ndarray:
        """bool[services, hosts + 1] of every service."""
        rows = np.arange(len(self.mem))
        out = np.ones((len(self.mem), len(self.host_mem) + 1), dtype=bool)
        out[:, 1:] = self.fit[self.kind]
        out[rows, 1 + self.where] = [self._fits(s, h) for s, h in enumerate(self.where)]
        out[rows, 1 + self.now] = False
        out[list(self.pending), 1:] = False  # a pending move: it may only stay
        return out
