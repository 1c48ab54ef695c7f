"""Deciding within the gates the decisions pass (StrategyContext.gates): greedy, lookahead and
the RL strategies (and the RL environment that trains them) know what the gates let through.

The loop lets at most max_concurrent_migrations moves start at once, holds a move whose
one-step predicted gain is below min_predicted_gain and a service within cooldown_s of its last
move, and meets the services in their order. A strategy proposing a move for every service in
that order spends the limit on whichever services come first, and moves the gates hold are
decisions that never happen. So, with gates:
- a move the gates would hold is not proposed: none once the limit is reached in the tick,
  none below the minimum gain, none for a service seen on a new host since the last tick (its
  cooldown holds it at the next tick; on clusters, whose ticks are shorter than a cooldown,
  the gate still holds it later);
- a planner (greedy, lookahead) proposes, while the limit binds, its most valuable moves
  first, up to the limit, instead of those of the first services.
Without gates, or with a limit that does not bind, every service in turn, each seeing the moves
chosen before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from orchestrator.config import ControllerConfig
from orchestrator.model import STAY, Snapshot
from strategies.prediction import AT_ONCE, Predictor

Best = Callable[[int], tuple[float, int]]
"""A service's best action given the moves chosen so far, and what it gains over staying."""
Bounds = Callable[[list[int]], Sequence[float]]
"""For each of some services, a gain its `Best` cannot exceed (inf: no bound known)."""
FIRST = 8  # services weighed first while the limit binds (then twice as many, up to AT_ONCE)


class Proposals:
    def __init__(self, gates: ControllerConfig | None) -> None:
        self.gates = gates
        self.last: tuple[int, ...] = ()  # where each service was at the last tick
        self.free: set[int] = set()  # the services the cooldown does not hold this tick

    def reset(self) -> None:
        self.last = ()

    def begin(self, snapshot: Snapshot) -> list[int]:
        """A tick starts: the services that may move in it (valid, not cooling down)."""
        now = tuple(s.host for s in snapshot.services)
        cooling = self.gates is not None and self.gates.cooldown_s > 0
        moved = {i for i, (a, b) in enumerate(zip(self.last, now, strict=False)) if a != b}
        self.last = now
        free = [i for i, s in enumerate(snapshot.services)
                if s.valid and not (cooling and i in moved)]
        self.free = set(free)
        return free

    def closed(self, i: int, chosen: int) -> bool:
        """Whether the gates hold every move of service i now, `chosen` moves being decided
        before it in the tick (after `begin`): it stays, whatever it would choose."""
        g = self.gates
        return g is not None and (i not in self.free or chosen >= g.max_concurrent_migrations)

    def passes(self, gain: float) -> bool:
        """Whether the minimum-gain gate lets a move predicted to gain `gain` through (the
        loop's prediction, rounded as it rounds it)."""
        g = self.gates
        return g is None or g.min_predicted_gain is None or \
            round(gain, 4) >= g.min_predicted_gain

    def mask(self, snapshot: Snapshot, i: int, mask: np.ndarray, chosen: int,
             predictor: Predictor) -> np.ndarray:
        """Service i's `mask` without the moves the gates would hold, `chosen` moves being
        decided before it in the tick (after `begin`)."""
        if self.gates is None:
            return mask
        out = mask.copy()
        out[1:] = False
        [allowed] = self.allowed(snapshot, [i], [np.flatnonzero(mask[1:]) + 1], chosen,
                                 predictor)
        out[allowed] = True
        return out

    def allowed(self, snapshot: Snapshot, services: list[int], moves: list[np.ndarray],
                chosen: int, predictor: Predictor) -> list[np.ndarray]:
        """Of each service's move actions, those the gates would let through, `chosen` moves
        being decided before them in the tick (after `begin`): the gains predicted at once."""
        if self.gates is None:
            return moves
        moves = [m[:0] if self.closed(i, chosen) else m for i, m in zip(services, moves,
                                                                       strict=True)]
        if self.gates.min_predicted_gain is None:
            return moves
        changes = predictor.changes_each(snapshot, services, moves)
        return [m[self.passing(c)] for m, c in zip(moves, changes, strict=True)]

    def passing(self, gains: np.ndarray) -> np.ndarray:
        """`passes` of each of `gains` (unrounded) at once: rounding to 4 decimals moves a gain
        by at most half of 1e-4, so only those nearer the minimum than 1e-4 are rounded to
        tell."""
        g = self.gates
        if g is None or g.min_predicted_gain is None:
            return np.ones(len(gains), dtype=bool)
        out = gains >= g.min_predicted_gain
        near = np.flatnonzero(np.abs(gains - g.min_predicted_gain) < 1e-4)
        out[near] = [self.passes(gain) for gain in gains[near].tolist()]
        return out

    def choose(self, snapshot: Snapshot, i: int, mask: np.ndarray, chosen: int,
               predictor: Predictor, scores: np.ndarray) -> int:
        """argmax(where(self.mask(...), scores, -inf)): the best-scoring action the gates let
        through, predicting the gain only of the moves scored above staying (not of every
        host: most of a tick's services see several hundred)."""
        g = self.gates
        if g is None or g.min_predicted_gain is None or self.closed(i, chosen):
            return int(np.argmax(np.where(self.mask(snapshot, i, mask, chosen, predictor),
                                          scores, -np.inf)))
        # the moves the mask allows scored above staying (ties: the first, as argmax), best
        # first; staying is always allowed
        above = np.flatnonzero(mask & (scores > scores[STAY]))
        above = above[np.argsort(-scores[above], kind="stable")].tolist()
        gains = predictor.gains(snapshot, [i] * len(above), above)
        return next((a for a, gain in zip(above, gains, strict=True) if self.passes(gain)), STAY)

    def __call__(self, snapshot: Snapshot, best: Best, weigh: Bounds | None = None,
                 ceiling: Bounds | None = None) -> Iterator[tuple[int, int]]:
        """(service, action) of each move a planner proposes; the caller counts each one
        (where it goes, what it requests) before the next is chosen. `best` must leave out
        the moves `passes` refuses. While the limit binds, services are weighed side by side
        (nothing moving between them), FIRST and then twice as many at a time up to AT_ONCE,
        those with the highest `ceiling` first: `weigh`, if given, is told them before
        `best` is asked of each (a planner may predict them all at once) and bounds their
        gains tighter; `best` is asked only of those whose bounds reach the best gain found
        so far."""
        pending = self.begin(snapshot)
        limit = len(pending) if self.gates is None else self.gates.max_concurrent_migrations
        if limit >= len(pending):  # in turn
            for i in pending:
                _, a = best(i)
                if a != STAY:
                    yield i, a
            return
        for _ in range(limit):  # best first
            (_, a), i = self.top(pending, best, weigh, ceiling)
            if a == STAY:
                return
            yield i, a
            pending.remove(i)

    @staticmethod
    def top(pending: list[int], best: Best, weigh: Bounds | None, ceiling: Bounds | None
            ) -> tuple[tuple[float, int], int]:
        """max((best(i), i) for i in pending), without asking `best` of the services whose
        bound is below a gain already found: no such service could be the max or tie it."""
        cap = dict(zip(pending, ceiling(pending) if ceiling else [np.inf] * len(pending),
                       strict=True))
        order = sorted(pending, key=lambda i: -cap[i])  # stable: ties in service order
        found = ((0.0, STAY), -1)  # every best gains >= 0, staying 0
        # a few first, then more at a time: once a gain is found, most bounds are below it
        start, size = 0, FIRST
        while start < len(order):
            some = [i for i in order[start:start + size] if cap[i] >= found[0][0]]
            start, size = start + size, min(2 * size, AT_ONCE)
            if not some:
                break
            bounds = weigh(some) if weigh else [np.inf] * len(some)
            # the highest bounds first: the best found soonest, the fewest asked
            for bound, i in sorted(zip(bounds, some, strict=True), key=lambda b: -b[0]):
                if bound < found[0][0]:
                    break
                found = max(found, (best(i), i))
        return found
