"""Policy mode on real clusters (`greenwise-mc run --config`): the control loop every tick,
around it what an operator needs:

- a warning every tick while Prometheus cannot be queried at all (no action then), and any
  exception in one tick or one migration logged while the controller goes on;
- the gates (orchestrator/control/gates.py) and migrations in worker threads (ticks go on
  meanwhile and skip the services being moved);
- one active controller (a Lease), unfinished journaled migrations resumed first, and on SIGTERM
  or SIGINT the migration in progress finished (traffic already moved) or rolled back.

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
from datetime import UTC, datetime
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from orchestrator.control.lease import Lease
from orchestrator.control.loop import Decision, Loop, keep_long_lived
from orchestrator.errors import BadInput, GreenwiseError, OperationalError
from orchestrator.kube.continuum import KubernetesContinuum


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


class Controller:
    """Policy mode: the loop on a Kubernetes continuum, logged, measured, never stopped by one
    service's failure."""

    def __init__(self, continuum: KubernetesContinuum, loop: Loop, strategy_name: str,
                 log: EventLog, metrics: Metrics | None = None) -> None:
        self.continuum = continuum
        self.loop = loop
        self.strategy_name = strategy_name
        self.log = log
        self.metrics = metrics
        self.dry_run = loop.dry_run
        self.unobserved = 0  # consecutive ticks without Prometheus
        self.outcomes: Tally[str] = Tally()
        loop.contain_errors = True
        continuum.report = self._report
        continuum.on_outcome = self._outcome

    @property
    def ticks(self) -> int:
        return self.loop.ticks

    def tick(self) -> list[Decision]:
        start = time.perf_counter()
        try:
            decisions = list(self.loop.tick().decisions)
        except OperationalError as e:  # Prometheus down or refusing queries: no action
            self.loop.ticks += 1
            self.unobserved += 1
            self.log.write("warning", "observe", tick=self.ticks,
                           message=f"{e}; no action this tick ({self.unobserved} tick(s) "
                                   "without observations)")
            decisions = [Decision(k, self.ticks, "none", reason=f"not observed: {e}")
                         for k in self.continuum.services]
        except Exception as e:  # a bug or an unexpected answer: say so, keep running
            self.loop.ticks += 1
            self.log.write("error", "tick", tick=self.ticks,
                           message=f"tick failed, no action: {type(e).__name__}: {e}")
            decisions = []
        else:
            if self.unobserved:
                self.log.write("info", "observe", tick=self.ticks,
                               message=f"Prometheus answers again after {self.unobserved} "
                                       "tick(s) without observations")
            self.unobserved = 0
        if not self.dry_run:
            self.continuum.fence_in_worker()
        for d in decisions:
            self.log.write("info", "decision", **d.to_dict())
            if self.metrics:
                self.metrics.decisions.labels(self.strategy_name, d.action).inc()
        if self.metrics:
            self.metrics.ticks.inc()
            self.metrics.tick_seconds.observe(time.perf_counter() - start)
        return decisions

    def _report(self, service: str, event: str, step: str, detail: str) -> None:
        self.log.write("info", "migration-step", service=service, step=step, status=event,
                       detail=detail)

    def _outcome(self, service: str, kind: str, outcome: str, error: str | None,
                 seconds: float) -> None:
        self.outcomes[outcome] += 1
        if self.metrics:
            self.metrics.migrations.labels(kind, outcome).inc()
        self.log.write("info" if outcome == "done" else "error", "migration", service=service,
                       kind=kind, outcome=outcome, seconds=round(seconds, 2), error=error)

    def resume_unfinished(self) -> None:
        """Finish or roll back what the journal says a previous run left unfinished."""
        gates = self.loop.gates
        for rec in self.continuum.unfinished():
            if gates and rec.service in gates.in_flight:  # ours, still running in a worker
                continue
            self.log.write("warning", "resume", service=rec.service, migration=rec.id,
                           message=f"unfinished {rec.kind}-cluster migration {rec.source} -> "
                                   f"{rec.target} ({rec.state}): finishing or rolling back")
            if gates:
                gates.started(rec.service)
            self.continuum.resume_in_worker(
                rec, lambda _, key=rec.service: gates.finished(key) if gates else None)

    def drain(self) -> None:
        """Stop: in-flight migrations finish (traffic moved) or roll back; wait for them."""
        self.continuum.drain()


def identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def serve(loop: Controller, interval: float, ticks: int | None, lease: Lease | None) -> None:
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
                if loop.ticks == 1:
                    keep_long_lived()
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


def _lead(loop: Controller) -> None:
    if loop.dry_run:
        pending = loop.continuum.unfinished()
        if pending:
            loop.log.write("warning", "resume", message=f"{len(pending)} unfinished migration(s) "
                           "in the journal; a dry run leaves them: run `greenwise-mc migrate "
                           "--resume`")
        return
    loop.resume_unfinished()
