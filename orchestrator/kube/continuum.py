"""The Kubernetes continuum: the clusters of a continuum.yaml, observed through the global
Prometheus and changed through the migrators.

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
from orchestrator.errors import BadInput, GreenwiseError
from orchestrator.kube.clusters import Clusters
from orchestrator.migration.executor import MigrationPlan, Migrator, Reporter
from orchestrator.migration.journal import MigrationRecord
from orchestrator.migration.nodes import check_node
from orchestrator.model import Location, Observation
from orchestrator.monitoring import Readings, Sample, ServiceReading, observe

# Reads made while deciding give up quickly on a cluster that does not answer (its nodes then
# cannot host); migrations use the config's own, longer retry budget.
DECIDE_RETRY_S = 3.0


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
        self.hosts: tuple[HostProfile, ...] = tuple(h for c in config.clusters for h in c.hosts)
        self.locations = tuple(Location(c.name, h.name) for c in config.clusters
                               for h in c.hosts)
        self.services = tuple(s.key for s in config.services)
        self.readings: Readings | None = None
        self.step = 0
        self._fits: dict[tuple[str, int], bool] = {}

    def refresh(self) -> Readings:
        """Observe every service and host now (raises PrometheusUnavailable / MonitoringError)."""
        self.readings, self._fits = None, {}
        assert self.config.prometheus is not None
        self.readings = observe(self.config.prometheus.url, self.config)
        self.step += 1
        return self.readings

    def service(self, key: str) -> ServiceContinuum:
        return ServiceContinuum(self, key)

    def observe(self, key: str) -> Observation:
        if self.readings is None:
            raise RuntimeError("refresh() first")
        return self.readings.observation(key, self.step)

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
