"""The safety gates between a decision and a migration, on any continuum and its own clock:
cooldown per service, concurrent migrations, minimum predicted gain, and no decision on a moved
service until it is observed at its new place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from orchestrator.config import ControllerConfig
from orchestrator.model import Location


class Gates:
    # On clusters the source pod's federated samples count as current until they are
    # max_sample_age_s old, so a moved service can be observed at its old place for a while.
    # Past this long, the observation is trusted again (someone else may have moved it since).
    SETTLE_S = 300.0

    def __init__(self, settings: ControllerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.in_flight: set[str] = set()
        self.last_move: dict[str, float] = {}  # when each service's last migration ended
        self.moved_to: dict[str, tuple[Location, float]] = {}  # not yet observed there
        self._lock = threading.Lock()

    def hold(self, service: str, gain: Callable[[], float]) -> str | None:
        """Why a move of `service` must not start now (None: go). Its predicted `gain` is asked
        last, only of a move the other gates let through: a prediction costs more."""
        s = self.settings
        with self._lock:
            if service in self.in_flight:
                return "a migration of it is in progress"
            since = self.clock() - self.last_move.get(service, float("-inf"))
            if since < s.cooldown_s:
                return f"cooldown: it last moved {since:.0f} s ago (cooldown {s.cooldown_s:g} s)"
            if len(self.in_flight) >= s.max_concurrent_migrations:
                return (f"{len(self.in_flight)} migration(s) in progress (at most "
                        f"{s.max_concurrent_migrations})")
            if s.min_predicted_gain is not None and (g := gain()) < s.min_predicted_gain:
                return f"predicted gain {g:+.4f} is below the minimum {s.min_predicted_gain:g}"
            return None

    def started(self, service: str) -> None:
        with self._lock:
            self.in_flight.add(service)

    def finished(self, service: str, moved_to: Location | None = None) -> None:
        with self._lock:
            self.in_flight.discard(service)
            self.last_move[service] = self.clock()
            if moved_to is not None:
                self.moved_to[service] = (moved_to, self.clock())

    def unsettled(self, service: str, seen: Location | None) -> str | None:
        """Why an observation of `service` at `seen` must not be decided on (None: it may)."""
        with self._lock:
            if service not in self.moved_to:
                return None
            to, when = self.moved_to[service]
            if seen == to or self.clock() - when > self.SETTLE_S:
                del self.moved_to[service]
                return None
            return (f"observed at {seen}, but it moved to {to}: waiting until the old pod's "
                    "samples are no longer current")
