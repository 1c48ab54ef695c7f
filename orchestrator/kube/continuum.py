"""The Kubernetes continuum: the clusters of a continuum.yaml, observed through the global
Prometheus and changed through the migrators; the Continuum protocol on real clusters.

`snapshot()` queries Prometheus once for every managed service; `masks()` checks the nodes;
`plan()` asks the migrator for the migration a move needs (reads only); `apply()` runs the
migrations in worker threads, journaled, and reports each outcome. Host indices are the hosts
in config order across clusters (the topology), as the monitoring module numbers them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from orchestrator.config import ContinuumConfig
from orchestrator.errors import BadInput, GreenwiseError
from orchestrator.kube.clusters import Clusters
from orchestrator.migration.executor import MigrationFailed, MigrationPlan, Migrator, Reporter
from orchestrator.migration.journal import MigrationRecord
from orchestrator.migration.nodes import check_node
from orchestrator.model import Move, Snapshot
from orchestrator.monitoring import Readings, Sample, observe
from orchestrator.topology import MoveKind, Topology

# Reads made while deciding give up quickly on a cluster that does not answer (its nodes then
# cannot host); migrations use the config's own, longer retry budget.
DECIDE_RETRY_S = 3.0


@dataclass(frozen=True)
class KubePlan:
    """A move and the journaled migration that carries it out."""

    move: Move
    migration: MigrationPlan

    @property
    def kind(self) -> MoveKind:
        return "intra" if self.migration.kind == "intra" else "inter"

    @property
    def steps(self) -> Sequence[str]:
        return self.migration.steps


# (service key, event: start|done|undo|fail|resume, step, detail)
StepReport = Callable[[str, str, str, str], None]
# (plan, outcome: done|rolled_back|failed, error or None, seconds)
Outcome = Callable[[KubePlan, str, str | None, float], None]


class KubernetesContinuum:
    def __init__(self, config: ContinuumConfig, clusters: Clusters | None = None) -> None:
        if config.prometheus is None:
            raise BadInput("policy mode observes through Prometheus: set prometheus.url "
                           "(the global, federating one) in the config")
        if not config.services:
            raise BadInput("the config manages no services: list them under services:")
        self.config = config
        self.clusters = clusters or Clusters(
            config, retry_seconds=min(config.api_retry_s, DECIDE_RETRY_S))
        self.migrator = Migrator(config, self.clusters)  # plans (reads only), in this thread
        self.topology = Topology([(c.name, c.hosts) for c in config.clusters])
        self.hosts = self.topology.hosts
        self.locations = self.topology.locations
        self.scenario = config.scenario()
        self.specs = self.scenario.fleet
        self.services = tuple(s.key for s in config.services)
        self.readings: Readings | None = None
        self.step = 0
        self._fits: dict[tuple[str, int], bool] = {}
        # Migrations run in workers; `stopping` set: in flight ones finish or roll back.
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(config.controller.max_concurrent_migrations,
                                       thread_name_prefix="migration")
        self.futures: list[Future[None]] = []
        self.report: StepReport = lambda key, event, step, detail: None
        self.on_outcome: Outcome = lambda plan, outcome, error, seconds: None

    # --- observing ----------------------------------------------------------------------------
    def refresh(self) -> Readings:
        """Observe every service and host now (raises PrometheusUnavailable / MonitoringError)."""
        self.readings, self._fits = None, {}
        assert self.config.prometheus is not None
        self.readings = observe(self.config.prometheus.url, self.config)
        self.step += 1
        return self.readings

    def snapshot(self) -> Snapshot:
        readings = self.refresh()
        return Snapshot(self.step, tuple(readings.state(k) for k in self.services),
                        readings.host_states())

    # --- feasibility --------------------------------------------------------------------------
    def masks(self, snapshot: Snapshot) -> np.ndarray:
        out = np.zeros((len(self.services), len(self.hosts) + 1), dtype=bool)
        out[:, 0] = True
        for i, s in enumerate(snapshot.services):
            if not s.valid:
                continue
            for h in range(len(self.hosts)):
                out[i, h + 1] = h != s.host and self.can_host(self.services[i], h)
        return out

    def can_host(self, key: str, host: int) -> bool:
        """check_node on the host's node (exists, Ready, schedulable, taints, allocatable)."""
        if (key, host) not in self._fits:
            self._fits[key, host] = self._check(key, host) is None
        return self._fits[key, host]

    def _check(self, key: str, host: int) -> str | None:
        svc = self.config.service(key)
        reading = self.readings.service(key) if self.readings else None
        if reading is None or reading.location is None:
            return "the service's place is unknown"
        loc = self.locations[host]
        try:
            dep = self.clusters[reading.location.cluster].get(
                "Deployment", svc.namespace, svc.deployment_name)
            if dep is None:
                return f"no Deployment {svc.namespace}/{svc.deployment_name}"
            check_node(self.clusters[loc.cluster], loc.node, dep["spec"]["template"]["spec"])
        except GreenwiseError as e:
            return str(e)
        return None

    # --- acting -------------------------------------------------------------------------------
    def plan(self, move: Move) -> KubePlan:
        """The migration that would make `move` (reads only)."""
        return KubePlan(move, self.migrator.plan(self.services[move.service],
                                                 str(self.locations[move.host])))

    def apply(self, plans: Sequence[KubePlan],
              on_done: Callable[[KubePlan, str], None] | None = None) -> None:
        """Start each plan's migration in a worker; `on_done(plan, outcome)` when it ends."""
        for p in plans:
            self.futures.append(self.pool.submit(self._run, p, on_done))

    def _run(self, plan: KubePlan, on_done: Callable[[KubePlan, str], None] | None) -> None:
        key = plan.migration.service
        started = time.monotonic()
        outcome, error = "done", None
        try:
            self.migrate(plan.migration, lambda ev, step, detail: self.report(key, ev, step,
                                                                             detail),
                         self.stopping.is_set)
        except MigrationFailed as e:
            outcome, error = ("rolled_back" if e.rolled_back else "failed"), str(e)
        except Exception as e:  # a bug or an unexpected API answer: say so, keep running
            outcome, error = "failed", f"{type(e).__name__}: {e}"
        finally:
            if on_done:
                on_done(plan, outcome)
        self.on_outcome(plan, outcome, error, time.monotonic() - started)

    def migrate(self, plan: MigrationPlan, report: Reporter | None = None,
                interrupted: Callable[[], bool] | None = None) -> MigrationRecord:
        """Execute a plan. Safe in a worker thread: it opens its own connections and journal."""
        m = Migrator(self.config, report=report, interrupted=interrupted)
        try:
            return m.execute(plan)
        finally:
            m.journal.close()

    def resume(self, migration_id: str, report: Reporter | None = None) -> MigrationRecord:
        """Finish or roll back one unfinished migration (as `migrate --resume`), in any thread."""
        m = Migrator(self.config, report=report)
        try:
            return m.resume_one(migration_id)
        finally:
            m.journal.close()

    def unfinished(self) -> list[MigrationRecord]:
        return self.migrator.journal.unfinished()

    def drain(self) -> None:
        """Stop: in-flight migrations finish (traffic moved) or roll back; wait for them."""
        self.stopping.set()
        self.pool.shutdown(wait=True)


def finite(sample: Sample | None, digits: int) -> float | None:
    """A sample's value rounded, or None when there is none (or it is NaN: too few samples)."""
    if sample is None or not math.isfinite(sample.value):
        return None
    return round(sample.value, digits)
