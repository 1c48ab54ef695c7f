"""Services sharing hosts: what each service on a host gets, and the host's power and CPU.

Each runs on what the others leave of the host's cores, but gets at least its fair share by
process count (CFS with equal weights) when together they want more; their CPU use depends on
each other's, so it is iterated from each one alone (Gauss-Seidel, members in service order;
4 rounds: an assumption, settling within the 1 % grid in the cases tried). The host's power is
shared among them as Eq. 1-2 say (orchestrator.performance.share_watts).

Two forms of the one computation: per host in Python (`host`: few services, one host at a
time, as the oracle asks), and vectorized over many hosts of many episodes (`fleets`: the k-th
members of all hosts updated at once, their hosts being independent), with the same arithmetic
in the same order, so the figures are the same to the bit (tests/test_fast_paths.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.performance import (
    TABLES,
    Outcome,
    PerformanceModel,
    curve_fractions,
    curve_points,
    grid_steps,
    share_watts,
)
from orchestrator.scenario import Scenario

ROUNDS = 4  # Gauss-Seidel rounds


@dataclass(frozen=True)
class Settled:
    """What the services and hosts of one episode get: per service (wherever it serves;
    latency before the step's jitter) and per host."""

    watts: list[float]
    latency_ms: list[float]
    cpu: list[float]
    throughput_rps: list[float]
    host_power: list[float]
    host_cpu: list[float]


class Sharing:
    """The hosts of a scenario shared by its services (`models`, one per service)."""

    def __init__(self, scenario: Scenario, models: Sequence[PerformanceModel]) -> None:
        self.hosts, self.models = scenario.hosts, models
        self.tables = np.array([m.tables for m in models])  # [service, host]
        self.network = np.array([m.network_ms for m in models])
        self.processes = np.array([m.processes for m in models])
        self.idle = np.array([h.idle_watts for h in self.hosts])
        self.span = np.array([h.max_watts - h.idle_watts for h in self.hosts])
        self.base = np.array([h.base_processes for h in self.hosts])
        self.curve_x, self.curve_y = curve_points([h.power_curve for h in self.hosts])
        self.empty: dict[tuple[int, float], float] = {}  # (host, background): its power

    # --- per host, in Python ----------------------------------------------------------------
    def host(self, host: int, members: Sequence[int], users: Sequence[int], background: float
             ) -> tuple[list[float], list[Outcome], float, float]:
        """(watts, outcome) of each of `members` (in order) sharing `host` with `users`
        each (indexed by service) and co-tenants using `background`; the host's power and
        CPU."""
        if not members:  # its co-tenants' alone: remembered (most hosts of a small fleet)
            key = (host, background)
            if key not in self.empty:
                self.empty[key] = share_watts(self.hosts[host], background, [], [])[0]
            return [], [], self.empty[key], min(1.0, background)
        models = self.models
        outcomes = {s: models[s].outcome(host, int(users[s]), 0.0, background) for s in members}
        if len(members) > 1:
            procs = {s: models[s].processes[host] for s in members}
            free = 1.0 - background
            for _ in range(ROUNDS):
                for s in members:
                    others = sum(outcomes[o].service_cpu for o in members if o != s)
                    fair = free * procs[s] / sum(procs.values())
                    outcomes[s] = models[s].outcome(host, int(users[s]),
                                                    min(others, free - fair), background)
        cpus = [outcomes[s].service_cpu for s in members]
        power, watts = share_watts(self.hosts[host], background, cpus,
                                   [models[s].processes[host] for s in members])
        return watts, [outcomes[s] for s in members], power, min(1.0, background + sum(cpus))

    def fleet(self, where: Sequence[int], users: Sequence[int], background: Sequence[float]
              ) -> Settled:
        """One episode, host by host: services at `where`, with `users`; co-tenants'
        `background` per host."""
        n = len(where)
        watts, latency, cpu, throughput = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        members: list[list[int]] = [[] for _ in self.hosts]
        for s, at in enumerate(where):
            members[at].append(s)
        power, host_cpu = [], []
        for h, on in enumerate(members):
            w, outcomes, p, c = self.host(h, on, users, background[h])
            for s, ws, o in zip(on, w, outcomes, strict=True):
                watts[s], latency[s], cpu[s], throughput[s] = (ws, o.latency_ms, o.service_cpu,
                                                               o.throughput_rps)
            power.append(p)
            host_cpu.append(c)
        return Settled(watts, latency, cpu, throughput, power, host_cpu)

    # --- vectorized ---------------------------------------------------------------------------
    def fleets(self, where: np.ndarray, users: np.ndarray, background: np.ndarray
               ) -> list[Settled]:
        """Many episodes at once: services at `where` [episodes, services] with `users`
        [episodes, services]; co-tenants' `background` [episodes, hosts]."""
        episodes, n = len(where), len(self.hosts)
        members, slot = groups(where, n)
        s = np.maximum(members, 0)
        out = self.groups(np.tile(np.arange(n), episodes), members,
                          np.take_along_axis(users, s.reshape(episodes, -1), 1
                                             ).reshape(members.shape), background.ravel())
        per_service = [a.ravel()[slot].tolist() for a in out[:4]]
        per_host = [a.reshape(episodes, n).tolist() for a in out[4:]]
        return [Settled(*rows) for rows in zip(*per_service, *per_host, strict=True)]

    def groups(self, host: np.ndarray, members: np.ndarray, users: np.ndarray,
               background: np.ndarray) -> tuple[np.ndarray, ...]:
        """Groups: `host` [G], their `members` [G, R] (service indices in increasing order,
        then -1), the members' `users` [G, R] and the co-tenants' CPU `background` [G].
        Returns per member [G, R] (zeros for padding) watts, latency ms, CPU and throughput;
        per group [G] the host's power and CPU."""
        present = members >= 0
        s, h = np.where(present, members, 0), np.broadcast_to(host[:, None], members.shape)
        table = self.tables[s, h]
        steps = np.broadcast_to(grid_steps(background)[:, None], members.shape)
        procs = np.where(present, self.processes[s, h], 0)
        out = np.zeros((*members.shape, 4))  # backend ms, throughput, CPU, watts alone
        out[present] = TABLES.lookup(table[present], steps[present],
                                     np.zeros(int(present.sum()), dtype=np.int64),
                                     users[present])  # each one alone
        shared = present.sum(axis=1) > 1
        if shared.any():
            free = (1.0 - background[shared])[:, None]
            cap = np.zeros(members.shape)  # what the others may take: all but its fair share
            cap[shared] = free - free * procs[shared] / procs[shared].sum(axis=1)[:, None]
            rank = np.arange(members.shape[1])
            for _ in range(ROUNDS):
                for k in range(members.shape[1]):
                    g = np.flatnonzero(shared & present[:, k])
                    if not g.size:
                        break
                    cpu = np.where(rank != k, out[g, :, 2], 0.0)
                    others = np.cumsum(cpu, axis=1)[:, -1]  # in order, as Python's sum
                    taken = grid_steps(np.minimum(others, cap[g, k]))
                    out[g, k] = TABLES.lookup(table[g, k], steps[g, k], taken, users[g, k])
        cpu = out[..., 2]
        host_cpu = np.minimum(1.0, background + (np.cumsum(cpu, axis=1)[:, -1]
                                                 if members.shape[1] else 0.0))
        dynamic = self.span[host] * curve_fractions(self.curve_x[host], self.curve_y[host],
                                                    host_cpu)
        everyone = (self.base[host] + procs.sum(axis=1))[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            shares = np.where(host_cpu[:, None] > 0, dynamic[:, None] * cpu / host_cpu[:, None],
                              0.0)
        watts = np.where(present, shares + self.idle[host][:, None] * procs / everyone, 0.0)
        latency = np.where(present, out[..., 0] + self.network[s, h], 0.0)
        return watts, latency, cpu, out[..., 1], self.idle[host] + dynamic, host_cpu


def groups(where: np.ndarray, hosts: int) -> tuple[np.ndarray, np.ndarray]:
    """Every host of every episode as a group: (members [episodes * hosts, R], each
    service's place in them [episodes, services], a flat index into members) from where each
    service is (`where` [episodes, services], -1: nowhere)."""
    episodes, services = where.shape
    key = np.where(where >= 0, np.arange(episodes)[:, None] * hosts + where, -1).ravel()
    order = np.argsort(key, kind="stable")  # by group, services in order within each
    ordered = key[order]
    rank = np.arange(key.size) - np.searchsorted(ordered, ordered, side="left")
    placed = ordered >= 0
    width = int(rank[placed].max()) + 1 if placed.any() else 0
    members = np.full((episodes * hosts, width), -1, dtype=np.int64)
    members[ordered[placed], rank[placed]] = order[placed] % services
    slot = np.full(key.size, -1, dtype=np.int64)
    slot[order[placed]] = ordered[placed] * width + rank[placed]
    return members, slot.reshape(episodes, services)
