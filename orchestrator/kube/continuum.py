"""The Kubernetes continuum: the clusters of a continuum.yaml, observed through the global
Prometheus and watch-fed caches of their Nodes, Pods and Deployments, changed through the
migrators. A tick makes no API request: feasibility is judged on the caches' view.

`refresh()` queries Prometheus once for every managed service; `service(key)` is then that
service's view as the `Continuum` protocol has it (observe, can_host, apply), so the controller
and the strategies work on it exactly as on the simulated continuum. Host indices are the hosts
in config order across clusters, as the monitoring module numbers them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from orchestrator.config import ContinuumConfig, HostProfile
from orchestrator.errors import GreenwiseError
from orchestrator.kube.cache import ClusterView, KubeCaches, owned
from orchestrator.kube.clusters import Clusters
from orchestrator.kube.feasibility import requested, unfit
from orchestrator.migration.executor import MigrationPlan, Migrator, Reporter
from orchestrator.migration.journal import MigrationRecord
from orchestrator.model import Location, Observation
from orchestrator.monitoring import Readings, Sample, ServiceReading, observe

# Reads made while deciding give up quickly on a cluster that does not answer (its nodes then
# cannot host); migrations use the config's own, longer retry budget. The caches get as long
# to sync when they start.
DECIDE_RETRY_S = 3.0


class KubernetesContinuum:
    def __init__(self, config: ContinuumConfig, clusters: Clusters | None = None) -> None:
        if config.prometheus is None:
            raise GreenwiseError("policy mode observes through Prometheus: set prometheus.url "
                                 "(the global, federating one) in the config")
        if not config.services:
            raise GreenwiseError("the config manages no services: list them under services:")
        self.config = config
        self.clusters = clusters or Clusters(
            config, retry_seconds=min(config.api_retry_s, DECIDE_RETRY_S))
        self.migrator = Migrator(config, self.clusters)  # plans (reads only), in this thread
        self.hosts: tuple[HostProfile, ...] = tuple(h for c in config.clusters for h in c.hosts)
        self.locations = tuple(Location(c.name, h.name) for c in config.clusters
                               for h in c.hosts)
        self.services = tuple(s.key for s in config.services)
        self.readings: Readings | None = None
        self.step = 0
        self._fits: dict[tuple[str, int], bool] = {}
        self.caches = KubeCaches(self.clusters, {s.namespace for s in config.services})
        self._views: dict[str, ClusterView] = {}  # the caches' content, once per refresh
        self._used: dict[tuple[str, str], dict[str, float]] = {}  # requests bound, per node

    def refresh(self) -> Readings:
        """Observe every service and host now (raises PrometheusUnavailable / MonitoringError)."""
        self.readings, self._fits, self._views, self._used = None, {}, {}, {}
        assert self.config.prometheus is not None
        self.readings = observe(self.config.prometheus.url, self.config)
        self.step += 1
        return self.readings

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

    def service(self, key: str) -> ServiceContinuum:
        return ServiceContinuum(self, key)

    def observe(self, key: str) -> Observation:
        if self.readings is None:
            raise RuntimeError("refresh() first")
        return self.readings.observation(key, self.step)

    def can_host(self, key: str, host: int) -> bool:
        """Whether the host's node can take every replica of the service, on the caches' view
        at the last refresh (exists, Ready, schedulable, taints, labels, allocatable)."""
        if (key, host) not in self._fits:
            self._fits[key, host] = self.why_unfit(key, host) is None
        return self._fits[key, host]

    def why_unfit(self, key: str, host: int) -> str | None:
        """Why the host cannot take the service now (None: it can)."""
        svc = self.config.service(key)
        reading = self.readings.service(key) if self.readings else None
        if reading is None or reading.location is None:
            return "the service's place is unknown"
        loc = self.locations[host]
        source, target = self.views[reading.location.cluster], self.views[loc.cluster]
        for view in (source, target):
            if not view.synced:
                return view.problem
        dep = source.deployments.get((svc.namespace, svc.deployment_name))
        if dep is None:
            return f"no Deployment {svc.namespace}/{svc.deployment_name} in {source.cluster}"
        node = target.nodes.get(loc.node)
        if node is None:
            return f"node {loc} does not exist"
        pods = target.pods_by_node.get(loc.node, [])
        if (loc.cluster, loc.node) not in self._used:
            self._used[loc.cluster, loc.node] = requested(p["spec"] for p in pods)
        used = self._used[loc.cluster, loc.node]
        if source.cluster == target.cluster:  # its own pods leave as it moves: room for it
            own = requested(p["spec"] for p in pods if owned(dep, p))
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

    def plan(self, key: str, host: int) -> MigrationPlan:
        """The migration that would move the service to host `host` (reads only)."""
        return self.migrator.plan(key, str(self.locations[host]))

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


class ServiceContinuum:
    """One managed service of a KubernetesContinuum, as the Continuum protocol sees it."""

    def __init__(self, continuum: KubernetesContinuum, key: str) -> None:
        self.continuum = continuum
        self.key = key
        self.hosts = continuum.hosts

    def observe(self) -> Observation:
        return self.continuum.observe(self.key)

    def can_host(self, host: int) -> bool:
        return self.continuum.can_host(self.key, host)

    def apply(self, target: int | None) -> None:
        if target is not None:
            self.continuum.migrate(self.continuum.plan(self.key, target))


def finite(sample: Sample | None, digits: int) -> float | None:
    """A sample's value rounded, or None when there is none (or it is NaN: too few samples)."""
    if sample is None or not math.isfinite(sample.value):
        return None
    return round(sample.value, digits)


def describe(reading: ServiceReading) -> dict[str, Any]:
    """The observed state of a service, valid or not (None where nothing usable was read)."""
    return {"location": None if reading.location is None else str(reading.location),
            "users": finite(reading.users, 1), "latency_ms": finite(reading.latency_ms, 1),
            "power_w": finite(reading.power_w, 2), "cpu": finite(reading.cpu, 3),
            "throughput_rps": finite(reading.throughput_rps, 2)}
