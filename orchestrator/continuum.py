"""The Continuum protocol: what the loop and the strategies see, simulated or real.

A continuum is hosts (in the order of its `topology`) and the managed services placed on them.
`snapshot()` observes all of them at one instant; `masks()` says, per service, which actions
are feasible (Eq. 7: stay always; hosts that can take it, counting the other services), and
`claims()` the same as the moves of a tick are accepted one by one;
`plan()` says what a move would do, reading only; `apply()` carries out planned moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from orchestrator.model import Move, Snapshot
from orchestrator.move_cost import MoveCost
from orchestrator.scenario import ServiceSpec
from orchestrator.topology import MoveKind, Topology


class Plan(Protocol):
    """A move and how it is carried out (the migration's steps)."""

    @property
    def move(self) -> Move: ...

    @property
    def kind(self) -> MoveKind: ...

    @property
    def steps(self) -> Sequence[str]: ...


Done = Callable[[Plan, str], None]


class Claims(Protocol):
    """The capacity the moves accepted so far in a tick claim, and the masks that leave: what
    `Continuum.masks(snapshot, moves)` says, one service at a time as moves are added."""

    def add(self, move: Move) -> None: ...

    def mask(self, service: int) -> np.ndarray:
        """bool[hosts + 1]: the feasible actions of `service` once the moves added are made."""

    def allows(self, service: int, action: int) -> bool:
        """Whether `mask(service)[action]` (one action: cheaper)."""


class Continuum(Protocol):
    topology: Topology
    specs: tuple[ServiceSpec, ...]  # per service, in snapshot order: its SLA and performance

    def snapshot(self) -> Snapshot:
        """Every service and every host now."""

    def masks(self, snapshot: Snapshot, moves: Sequence[Move] = ()) -> np.ndarray:
        """bool[services, hosts + 1]: the feasible actions of each service (Eq. 7), as if
        `moves` (accepted earlier in the tick) were made."""

    def claims(self, snapshot: Snapshot) -> Claims:
        """No moves yet; each move added changes the masks of two hosts only."""

    def plan(self, move: Move) -> Plan:
        """What `move` would do (reads only); raises GreenwiseError if it cannot be done."""

    def apply(self, plans: Sequence[Plan], on_done: Done | None = None) -> None:
        """Carry the plans out, calling `on_done(plan, outcome)` as each ends ("done",
        "rolled_back" or "failed"). The simulated continuum moves at once and then lets one
        control interval pass; on clusters the migrations start (journaled, in the background)."""


@runtime_checkable
class Clairvoyant(Continuum, Protocol):
    """A continuum that knows its future, and the present its snapshots may show late (the
    simulated one): what the oracle plans over and what evaluation is scored on."""

    steps: int
    t: int  # the current step
    placement: list[int]  # where each service serves now
    move_cost: MoveCost  # what a move costs in its step, from where it serves on either side

    def on_host(self, host: int, members: Sequence[int], t: int
                ) -> dict[int, tuple[float, float]]:
        """(service watts, latency ms) of each of `members` serving on `host` at step t."""

    def fork(self) -> Clairvoyant:
        """A continuum at the start of this episode (the same future), to replay plans on."""

    def current(self) -> Snapshot:
        """Every service and host as they truly are now (snapshot() may lag behind)."""

    def could_sleep(self, host: int, t: int) -> bool:
        """Whether `host` sleeps at step t if no managed service is on it."""

    def fits(self, service: int, host: int, beside: Iterable[int]) -> bool:
        """Whether `host` takes `service` beside the services `beside` (requests, memory)."""
