"""Policy mode on real clusters (`greenwise-mc run --config`): every tick, observe every managed
service through Prometheus, let the strategy decide, and migrate through the migrators, behind
the gates an operator needs:

- no action for a service whose observation is invalid (stale or missing data; the reason is
  logged), and a warning every tick while Prometheus cannot be queried at all;
- a cooldown per service after each of its migrations, and no decision on a moved service
  until it is observed at its new place (the old pod's samples stay current for a while);
- at most `max_concurrent_migrations` migrations at once (they run in worker threads; ticks go
  on meanwhile and skip the services being moved);
- a move only when the predicted reward gain over staying reaches `min_predicted_gain`;
- one active controller (a Lease), unfinished journaled migrations resumed first, and on SIGTERM
  the migration in progress finished (traffic already moved) or rolled back, then exit 0.

Every decision is one JSON line on stderr; the controller's own metrics are on /metrics.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from orchestrator.config import ControllerConfig
from orchestrator.continuum import action_mask
from orchestrator.controller import Controller
from orchestrator.errors import BadInput, GreenwiseError
from orchestrator.kube.continuum import KubernetesContinuum, describe
from orchestrator.kube.lease import Lease
from orchestrator.migration.executor import MigrationFailed, MigrationPlan
from orchestrator.model import STAY, Location, Observation, target_host
from orchestrator.monitoring import Readings
from strategies.base import Strategy
from strategies.prediction import Predictor, compare


class EventLog:
    """One JSON object per line: time, level, event, then the event's fields."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def write(self, level: str, event: str, **fields: Any) -> None:
        line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level,
                "event": event, **fields}
        with self._lock:
            self.stream.write(json.dumps(line) + "\n")
            self.stream.flush()


class Metrics:
    """The controller's own metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter("greenwise_ticks", "Control ticks run", registry=self.registry)
        self.decisions = Counter(
            "greenwise_decisions", "Decisions per service and tick; action: stay, move, held "
            "(a gate held a move back) or none (no valid observation)",
            ["strategy", "action"], registry=self.registry)
        self.migrations = Counter(
            "greenwise_migrations", "Migrations by kind (intra, inter) and outcome (done, "
            "rolled_back, failed = needs --resume)", ["kind", "outcome"], registry=self.registry)
        self.tick_seconds = Histogram(
            "greenwise_tick_seconds", "Time to observe, decide and plan one tick",
            registry=self.registry)
        self._server: Any = None

    def serve(self, address: str) -> str:
        """Serve /metrics on host:port (port 0: any free one); return the address bound."""
        host, _, port = address.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            raise BadInput(f"--metrics-address must be HOST:PORT with a port in 0-65535, got "
                           f"{address!r}")
        try:
            server, _ = start_http_server(int(port), host or "127.0.0.1", self.registry)
        except (OSError, UnicodeError) as e:  # port taken, no such host, a name too long
            reason = getattr(e, "strerror", None) or str(e)
            raise BadInput(f"cannot serve metrics on {address}: {reason}; give another "
                           "--metrics-address") from e
        self._server = server
        return f"{host}:{server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class Guard:
    """The safety gates: cooldown per service, concurrent migrations, minimum predicted gain,
    and no decision on a moved service until it is observed at its new place."""

    # The source pod's federated samples count as current until they are max_sample_age_s
    # old, so a moved service can be observed at its old place for a while. Past this long,
    # the observation is trusted again (someone else may have moved it since).
    SETTLE_S = 300.0

    def __init__(self, settings: ControllerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.in_flight: set[str] = set()
        self.last_move: dict[str, float] = {}  # when each service's last migration ended
        self.moved_to: dict[str, tuple[Location, float]] = {}  # not yet observed there
        self._lock = threading.Lock()

    def hold(self, service: str, gain: float) -> str | None:
        """Why a move of `service` predicted to gain `gain` must not start now (None: go)."""
        s = self.settings
        with self._lock:
            if service in self.in_flight:
                return "a migration of it is in progress"
            since = self.clock() - self.last_move.get(service, float("-inf"))
            if since < s.cooldown_s:
                return f"cooldown: it last moved {since:.0f} s ago (cooldown {s.cooldown_s:g} s)"
            if s.min_predicted_gain is not None and gain < s.min_predicted_gain:
                return (f"predicted gain {gain:+.4f} is below the minimum "
                        f"{s.min_predicted_gain:g}")
            if len(self.in_flight) >= s.max_concurrent_migrations:
                return (f"{len(self.in_flight)} migration(s) in progress (at most "
                        f"{s.max_concurrent_migrations})")
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


@dataclass
class Decision:
    """What happened for one service in one tick: the structured log line."""

    service: str
    tick: int
    action: str  # stay | move | held (a gate held the move back) | none (nothing to decide on)
    state: dict[str, Any] | None = None
    target: str | None = None  # cluster/node
    kind: str | None = None  # intra | inter
    predicted_gain: float | None = None
    predicted: dict[str, dict[str, float]] | None = None  # strategies.prediction.compare
    outcome: str = "no action"  # stay | migration started | dry run: not applied | no action
    reason: str | None = None
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Learner(Protocol):
    """Online training's view of the loop (strategies.online.OnlineLearner)."""

    def observed(self, service: str, obs: Observation) -> None: ...

    def acted(self, service: str, obs: Observation, mask: np.ndarray, action: int) -> None: ...


class PolicyLoop:
    def __init__(self, continuum: KubernetesContinuum, strategy: Strategy, strategy_name: str,
                 predictor: Predictor, guard: Guard, log: EventLog,
                 metrics: Metrics | None = None, dry_run: bool = False,
                 learner: Learner | None = None) -> None:
        self.continuum = continuum
        self.strategy = strategy
        self.strategy_name = strategy_name
        self.predictor = predictor
        self.guard = guard
        self.log = log
        self.metrics = metrics
        self.dry_run = dry_run
        self.learner = learner
        self.ticks = 0
        self.unobserved = 0  # consecutive ticks without Prometheus
        self.stopping = threading.Event()  # set: in-flight migrations finish or roll back
        self.pool = ThreadPoolExecutor(guard.settings.max_concurrent_migrations,
                                       thread_name_prefix="migration")
        self.futures: list[Future[None]] = []
        self.outcomes: Tally[str] = Tally()

    # --- one tick ---------------------------------------------------------------------------
    def tick(self) -> list[Decision]:
        start = time.perf_counter()
        self.ticks += 1
        try:
            readings = self.continuum.refresh()
        except GreenwiseError as e:  # MonitoringError: Prometheus down or refusing queries
            self.unobserved += 1
            self.log.write("warning", "observe", tick=self.ticks,
                           message=f"{e}; no action this tick ({self.unobserved} tick(s) "
                                   "without observations)")
            decisions = [Decision(k, self.ticks, "none", reason=f"not observed: {e}")
                         for k in self.continuum.services]
        else:
            if self.unobserved:
                self.log.write("info", "observe", tick=self.ticks,
                               message=f"Prometheus answers again after {self.unobserved} "
                                       "tick(s) without observations")
            self.unobserved = 0
            decisions = self.decide_all(readings)
        for d in decisions:
            self.log.write("info", "decision", **d.to_dict())
            if self.metrics:
                self.metrics.decisions.labels(self.strategy_name, d.action).inc()
        if self.metrics:
            self.metrics.ticks.inc()
            self.metrics.tick_seconds.observe(time.perf_counter() - start)
        return decisions

    def decide_all(self, readings: Readings) -> list[Decision]:
        decisions = []
        for key in self.continuum.services:
            try:
                decisions.append(self.decide(key, readings))
            except GreenwiseError as e:  # e.g. its cluster does not answer: no action
                decisions.append(Decision(key, self.ticks, "none", reason=str(e)))
        return decisions

    def decide(self, key: str, readings: Readings) -> Decision:
        """Decide for one service and, unless a dry run, start its migration."""
        reading = readings.service(key)
        d = Decision(key, self.ticks, "none", state=describe(reading))
        if key in self.guard.in_flight:
            d.reason = "a migration of it is in progress"
            return d
        if not reading.valid:
            d.reason = f"observation invalid: {reading.reason}"
            return d
        d.reason = self.guard.unsettled(key, reading.location)
        if d.reason:
            return d
        service = self.continuum.service(key)
        obs = service.observe()
        if self.learner:
            self.learner.observed(key, obs)
        action, chosen = Controller(service, self.strategy, self.predictor).decide(obs)
        stay = self.predictor.predict(obs, STAY)
        d.predicted = compare(stay, chosen)
        d.predicted_gain = d.predicted["reward"]["change"]
        target = target_host(action)
        executed = STAY
        if target is None or target == obs.service.host:
            d.action, d.outcome = "stay", "stay"
        else:
            d.action, d.target = "move", str(self.continuum.locations[target])
            d.reason = self.guard.hold(key, d.predicted_gain)
            plan = None
            if d.reason is None:
                try:
                    plan = self.continuum.plan(key, target)
                except GreenwiseError as e:
                    d.reason = f"cannot plan the move: {e}"
            if plan is None:
                d.action = "held"
            else:
                d.kind, d.steps = plan.kind, list(plan.steps)
                if self.dry_run:
                    d.outcome = "dry run: not applied"
                else:
                    d.outcome, executed = "migration started", action
                    self._start(plan)
        if self.learner:
            self.learner.acted(key, obs, action_mask(service, obs.service.host), executed)
        return d

    # --- migrations in worker threads -------------------------------------------------------
    def _start(self, plan: MigrationPlan) -> None:
        self.guard.started(plan.service)
        to = Location(plan.target_cluster, plan.target_node) if plan.target_node else None
        self.futures.append(self.pool.submit(self._run, plan.service, plan.kind,
                                             lambda: self.continuum.migrate(
                                                 plan, self._reporter(plan.service),
                                                 self.stopping.is_set), to))

    def resume_unfinished(self) -> None:
        """Finish or roll back what the journal says a previous run left unfinished."""
        for rec in self.continuum.unfinished():
            if rec.service in self.guard.in_flight:  # ours, still running in a worker
                continue
            self.log.write("warning", "resume", service=rec.service, migration=rec.id,
                           message=f"unfinished {rec.kind}-cluster migration {rec.source} -> "
                                   f"{rec.target} ({rec.state}): finishing or rolling back")
            self.guard.started(rec.service)
            self.futures.append(self.pool.submit(
                self._run, rec.service, rec.kind,
                lambda mid=rec.id, key=rec.service: self.continuum.resume(
                    mid, self._reporter(key))))

    def _run(self, service: str, kind: str, migrate: Callable[[], Any],
             to: Location | None = None) -> None:
        started = time.monotonic()
        outcome, error = "done", None
        try:
            migrate()
        except MigrationFailed as e:
            outcome, error = ("rolled_back" if e.rolled_back else "failed"), str(e)
        except Exception as e:  # a bug or an unexpected API answer: say so, keep running
            outcome, error = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.guard.finished(service, to if outcome == "done" else None)
        self.outcomes[outcome] += 1
        if self.metrics:
            self.metrics.migrations.labels(kind, outcome).inc()
        self.log.write("info" if outcome == "done" else "error", "migration", service=service,
                       kind=kind, outcome=outcome, seconds=round(time.monotonic() - started, 2),
                       error=error)

    def _reporter(self, service: str) -> Callable[[str, str, str], None]:
        def report(event: str, step: str, detail: str) -> None:
            self.log.write("info", "migration-step", service=service, step=step,
                           status=event, detail=detail)
        return report

    def drain(self) -> None:
        """Stop: in-flight migrations finish (traffic moved) or roll back; wait for them."""
        self.stopping.set()
        self.pool.shutdown(wait=True)


def identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def serve(loop: PolicyLoop, interval: float, ticks: int | None, lease: Lease | None) -> None:
    """Tick every `interval` s while holding the Lease (if any) until SIGTERM/SIGINT or `ticks`
    ticks; then finish or roll back what is in flight and give the Lease up."""
    log = loop.log
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.write("info", "shutdown", message=f"{signal.Signals(signum).name}: finishing or "
                                              "rolling back what is in progress")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    leader = lease is None
    if leader:
        _lead(loop)
    next_tick = time.monotonic()
    next_renew = next_tick if lease else float("inf")
    last_holder: str | None = ""
    try:
        while not stop.is_set():
            now = time.monotonic()
            if lease is not None and now >= next_renew:
                next_renew = now + lease.duration_s / 3
                was = leader
                try:
                    state = lease.acquire()
                    leader = state.mine
                except GreenwiseError as e:
                    state, leader = None, False
                    log.write("warning", "lease", message=f"cannot reach the {lease.where}: {e}; "
                                                          "not acting until it answers")
                if leader and not was:
                    log.write("info", "lease", message=f"acquired the {lease.where} as "
                                                       f"{lease.identity}: acting")
                    _lead(loop)
                elif state is not None and not leader and (was or state.holder != last_holder):
                    log.write("warning", "lease", holder=state.holder,
                              message=f"the {lease.where} is held by {state.holder} (renewed "
                                      f"{state.renewed_s_ago:.0f} s ago): waiting, not acting")
                if state is not None:
                    last_holder = state.holder
            if leader and now >= next_tick:
                loop.tick()
                if ticks is not None and loop.ticks >= ticks:
                    break
                next_tick = max(next_tick + interval, time.monotonic())
            wake = min(next_tick, next_renew) if leader else next_renew
            stop.wait(max(0.0, wake - time.monotonic()))
    finally:
        loop.drain()
        if lease is not None and leader:
            try:
                lease.release()
            except GreenwiseError as e:
                log.write("warning", "lease", message=f"could not release the lease: {e}")
        log.write("info", "shutdown", message=f"stopped after {loop.ticks} tick(s)",
                  migrations=dict(loop.outcomes))


def _lead(loop: PolicyLoop) -> None:
    if loop.dry_run:
        pending = loop.continuum.unfinished()
        if pending:
            loop.log.write("warning", "resume", message=f"{len(pending)} unfinished migration(s) "
                           "in the journal; a dry run leaves them: run `greenwise-mc migrate "
                           "--resume`")
        return
    loop.resume_unfinished()
