"""The Kubernetes continuum: the clusters of a continuum.yaml, observed through the global
Prometheus and changed through the migrators; the Continuum protocol on real clusters.

`snapshot()` queries Prometheus once for every managed service; `masks()` judges the nodes on
watch-fed caches of every cluster's Nodes, Pods and Deployments (a tick makes no API request);
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
from orchestrator.errors import BadInput
from orchestrator.kube.cache import ClusterView, KubeCaches, Obj, owned
from orchestrator.kube.clusters import Clusters
from orchestrator.kube.feasibility import requested, unfit
from orchestrator.migration.executor import MigrationFailed, MigrationPlan, Migrator, Reporter
from orchestrator.migration.journal import MigrationRecord
from orchestrator.migration.plan import Target
from orchestrator.model import Location, Move, Snapshot
from orchestrator.monitoring import Readings, Sample, observe
from orchestrator.topology import MoveKind, Topology

# Reads made while deciding give up quickly on a cluster that does not answer (its nodes then
# cannot host); migrations use the config's own, longer retry budget. The caches get as long
# to sync when they start.
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
# (service key, kind, outcome: done|rolled_back|failed, error or None, seconds)
Outcome = Callable[[str, str, str, str | None, float], None]

# Requests per node (cluster, node) that moves accepted earlier in a tick will add.
Claimed = dict[tuple[str, str], dict[str, float]]


class KubeClaims:
    """What the moves accepted so far in a tick will request on their target nodes (what they
    free where they leave is not counted: it is freed only once they have moved), and the
    masks that leave."""

    def __init__(self, continuum: KubernetesContinuum, snapshot: Snapshot) -> None:
        self.continuum, self.snapshot = continuum, snapshot
        self.claimed: Claimed = {}

    def add(self, move: Move) -> None:
        c = self.continuum
        dep = c._deployment(c.services[move.service])
        if not isinstance(dep, dict):
            return
        loc = c.locations[move.host]
        spec = dep["spec"]["template"]["spec"]
        more = requested([spec] * dep["spec"].get("replicas", 1))
        was = self.claimed.get((loc.cluster, loc.node), dict.fromkeys(more, 0.0))
        self.claimed[loc.cluster, loc.node] = {r: was[r] + v for r, v in more.items()}

    def allows(self, service: int, action: int) -> bool:
        return 0 <= action <= len(self.continuum.hosts) and bool(self.mask(service)[action])

    def mask(self, service: int) -> np.ndarray:
        c, s = self.continuum, self.snapshot.services[service]
        out = np.zeros(len(c.hosts) + 1, dtype=bool)
        out[0] = True
        if s.valid:
            key = c.services[service]
            for h, loc in enumerate(c.locations):
                out[h + 1] = h != s.host and c.can_host(
                    key, h, self.claimed.get((loc.cluster, loc.node)))
        return out


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
        self.topology = Topology(config.clusters)
        self.hosts = self.topology.hosts
        self.locations = self.topology.locations
        self.scenario = config.scenario()
        self.specs = self.scenario.fleet
        self.services = tuple(s.key for s in config.services)
        self.readings: Readings | None = None
        self.step = 0
        self._fits: dict[tuple[str, int, tuple[tuple[str, float], ...]], bool] = {}
        self.caches = KubeCaches(self.clusters, {s.namespace for s in config.services})
        self._views: dict[str, ClusterView] = {}  # the caches' content, once per refresh
        self._used: dict[tuple[str, str], dict[str, float]] = {}  # requests bound, per node
        # Per refresh: each service's Deployment, and what its own pods request per node.
        self._deployments: dict[str, Obj | str] = {}
        self._own: dict[tuple[str, str, str], dict[str, float]] = {}
        # Migrations run in workers; `stopping` set: in flight ones finish or roll back.
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(config.controller.max_concurrent_migrations,
                                       thread_name_prefix="migration")
        self.futures: list[Future[None]] = []
        self.fencing: Future[None] | None = None
        self.report: StepReport = lambda key, event, step, detail: None
        self.on_outcome: Outcome = lambda key, kind, outcome, error, seconds: None

    # --- observing ----------------------------------------------------------------------------
    def refresh(self) -> Readings:
        """Observe every service and host now (raises PrometheusUnavailable / MonitoringError)."""
        self.readings, self._fits, self._views, self._used = None, {}, {}, {}
        self._deployments, self._own = {}, {}
        assert self.config.prometheus is not None
        self.readings = observe(self.config.prometheus.url, self.config)
        self.step += 1
        return self.readings

    def snapshot(self) -> Snapshot:
        return self.snapshot_of(self.refresh())

    def snapshot_of(self, readings: Readings) -> Snapshot:
        return Snapshot(self.step, tuple(readings.state(k) for k in self.services),
                        readings.host_states())

    # --- feasibility --------------------------------------------------------------------------
    def masks(self, snapshot: Snapshot, moves: Sequence[Move] = ()) -> np.ndarray:
        claims = self.claims(snapshot)
        for m in moves:
            claims.add(m)
        return np.array([claims.mask(i) for i in range(len(self.services))])

    def claims(self, snapshot: Snapshot) -> KubeClaims:
        return KubeClaims(self, snapshot)

    @property
    def views(self) -> dict[str, ClusterView]:
        """Every cluster's caches as they are at the first use after a refresh (the first use of
        all starts them, waiting a moment for them to sync)."""
        if not self._views:
            if not self.caches.started:
                self.caches.start(wait_s=DECIDE_RETRY_S)
            self._views = self.caches.views()
        return self._views

    def close(self) -> None:
        """Stop the caches' watches."""
        self.caches.close()
        self._views = {}

    def can_host(self, key: str, host: int, claimed: dict[str, float] | None = None) -> bool:
        """Whether the host's node can take every replica of the service, on the caches' view
        at the last refresh (exists, Ready, schedulable, taints, labels, allocatable), beside
        the requests other moves of the tick have `claimed` on it. Judged once per refresh and
        claim: a tick's moves change the claim on their targets only, so each re-judges one
        column of the masks, not all of them."""
        at = (key, host, tuple(sorted((claimed or {}).items())))
        if at not in self._fits:
            self._fits[at] = self.why_unfit(key, host, claimed) is None
        return self._fits[at]

    def _deployment(self, key: str) -> Obj | str:
        """The service's Deployment where it runs, or why it cannot be read (once per
        refresh)."""
        if key not in self._deployments:
            self._deployments[key] = self._read_deployment(key)
        return self._deployments[key]

    def _read_deployment(self, key: str) -> Obj | str:
        svc = self.config.service(key)
        reading = self.readings.service(key) if self.readings else None
        if reading is None or reading.location is None:
            return "the service's place is unknown"
        source = self.views[reading.location.cluster]
        if not source.synced:
            return source.problem
        dep = source.deployments.get((svc.namespace, svc.deployment_name))
        if dep is None:
            return f"no Deployment {svc.namespace}/{svc.deployment_name} in {source.cluster}"
        return dep

    def why_unfit(self, key: str, host: int,
                  claimed: dict[str, float] | None = None) -> str | None:
        """Why the host cannot take the service now (None: it can), with `claimed` requests
        (of other moves in this tick) on top of what is bound to its node."""
        dep = self._deployment(key)
        if isinstance(dep, str):
            return dep
        reading = self.readings.service(key) if self.readings else None
        assert reading is not None and reading.location is not None
        loc = self.locations[host]
        source, target = self.views[reading.location.cluster], self.views[loc.cluster]
        if not target.synced:
            return target.problem
        node = target.nodes.get(loc.node)
        if node is None:
            return f"node {loc} does not exist"
        pods = target.pods_by_node.get(loc.node, [])
        if (loc.cluster, loc.node) not in self._used:
            self._used[loc.cluster, loc.node] = requested(p["spec"] for p in pods)
        used = self._used[loc.cluster, loc.node]
        used = {r: v + (claimed or {}).get(r, 0.0) for r, v in used.items()}
        if source.cluster == target.cluster:  # its own pods leave as it moves: room for it
            at = (key, loc.cluster, loc.node)
            if at not in self._own:
                self._own[at] = requested(p["spec"] for p in pods if owned(dep, p))
            own = self._own[at]
            used = {r: v - own[r] for r, v in used.items()}
        return unfit(str(loc), node, used, dep["spec"]["template"]["spec"],
                     dep["spec"].get("replicas", 1))

    def place(self, key: str) -> Location | None:
        """Where the caches (at the last refresh) see the service: the cluster whose Deployment
        has replicas and a node of its pods there; None if nowhere or not yet scheduled."""
        svc = self.config.service(key)
        for view in self.views.values():
            dep = view.deployments.get((svc.namespace, svc.deployment_name))
            if dep and dep["spec"].get("replicas"):
                nodes = sorted(p["spec"]["nodeName"] for p in view.pods_of(dep))
                return Location(view.cluster, nodes[0]) if nodes else None
        return None

    # --- acting -------------------------------------------------------------------------------
    def plan(self, move: Move) -> KubePlan:
        """The migration that would make `move` (reads only)."""
        loc = self.locations[move.host]
        return KubePlan(move, self.migrator.plan(self.services[move.service],
                                                 Target(loc.cluster, loc.node)))

    def apply(self, plans: Sequence[KubePlan],
              on_done: Callable[[KubePlan, str], None] | None = None) -> None:
        """Start each plan's migration in a worker; `on_done(plan, outcome)` when it ends."""
        for p in plans:
            self._in_worker(p.migration.service, p.kind,
                            lambda report, p=p: self.migrate(p.migration, report,
                                                             self.stopping.is_set),
                            lambda outcome, p=p: on_done(p, outcome) if on_done else None)

    def fence_in_worker(self) -> None:
        """Fence failovers' stale copies whose cluster answers again (as `migrate --resume`
        does), in a worker and one pass at a time: a cluster still down must not hold up a
        tick."""
        if (self.fencing is not None and not self.fencing.done()) or \
                not self.migrator.journal.fences():
            return
        self.fencing = self.pool.submit(self._fence)

    def _fence(self) -> None:
        m = Migrator(self.config)
        try:
            for f in m.fence_returned():
                self.report(f["service"], "done" if f["state"] == "fenced" else "waiting",
                            "fence", f"the stale copy in {f['cluster']}: {f['state']}")
        finally:
            m.journal.close()

    def resume_in_worker(self, record: MigrationRecord, done: Callable[[str], None]) -> None:
        """Finish or roll back an unfinished migration in a worker; `done(outcome)` after."""
        self._in_worker(record.service, record.kind,
                        lambda report: self.resume(record.id, report), done)

    def _in_worker(self, key: str, kind: str, work: Callable[[Reporter], object],
                   done: Callable[[str], None]) -> None:
        self.futures.append(self.pool.submit(self._run, key, kind, work, done))

    def _run(self, key: str, kind: str, work: Callable[[Reporter], object],
             done: Callable[[str], None]) -> None:
        started = time.monotonic()
        outcome, error = "done", None
        try:
            work(lambda ev, step, detail: self.report(key, ev, step, detail))
        except MigrationFailed as e:
            outcome, error = ("rolled_back" if e.rolled_back else "failed"), str(e)
        except Exception as e:  # a bug or an unexpected API answer: say so, keep running
            outcome, error = "failed", f"{type(e).__name__}: {e}"
        finally:
            done(outcome)
        self.on_outcome(key, kind, outcome, error, time.monotonic() - started)

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
        """Stop: in-flight migrations finish (traffic moved) or roll back; wait for them; stop
        the caches."""
        self.stopping.set()
        self.pool.shutdown(wait=True)
        self.close()


def finite(sample: Sample | None, digits: int) -> float | None:
    """A sample's value rounded, or None when there is none (or it is NaN: too few samples)."""
    if sample is None or not math.isfinite(sample.value):
        return None
    return round(sample.value, digits)
