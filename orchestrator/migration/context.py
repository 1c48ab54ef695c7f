"""What a migration step sees: its migration's plan and service, the clusters, DNS, the limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from orchestrator.config import ContinuumConfig, ManagedService
from orchestrator.errors import OperationalError
from orchestrator.kube.clusters import Cluster, Clusters
from orchestrator.migration.dns import DnsProvider
from orchestrator.migration.plan import MigrationPlan

# (event: start|done|retry|note|undo|fail|resume, step, detail)
Reporter = Callable[[str, str, str], None]
POLL_S = 0.2


@dataclass
class MigrationContext:
    id: str  # the migration's id: everything it creates is labelled with it (OWNER_LABEL)
    plan: MigrationPlan
    service: ManagedService
    config: ContinuumConfig
    clusters: Clusters
    dns_provider: Callable[[], DnsProvider]  # made on first use: an intra move needs no DNS
    report: Reporter
    # Asked between steps and while waiting for the target: once it says True, a migration
    # whose traffic has not moved yet rolls back; one past that point is finished.
    interrupted: Callable[[], bool]
    timeout: float = 120.0  # seconds to wait for anything to become ready
    drain_seconds: float = 2.0  # after the DNS TTL, for requests in flight to the old copy
    # A failover's source: the objects kept at the last migration (the cluster does not answer)
    recorded: list[dict[str, Any]] | None = None

    def source_object(self, kind: str, name: str) -> dict[str, Any] | None:
        """The service's object as the source has it: from the source cluster, or for a
        failover from the manifests kept (a Secret there is only its name: it must be in the
        target already)."""
        if self.recorded is None:
            return self.source.get(kind, self.service.namespace, name)
        return next((o for o in self.recorded if o["kind"] == kind
                     and o["metadata"]["name"] == name), None)

    @cached_property
    def dns(self) -> DnsProvider:
        return self.dns_provider()

    @property
    def source(self) -> Cluster:
        return self.clusters[self.plan.source_cluster]

    @property
    def target(self) -> Cluster:
        return self.clusters[self.plan.target.cluster]

    def wait(self, what: str, check: Callable[[], bool], interruptible: bool = False) -> None:
        """Poll `check` until it holds; give up after `timeout` (or when interrupted, if
        `interruptible`: only waits before traffic moves are)."""
        deadline = time.monotonic() + self.timeout
        while not check():
            if interruptible and self.interrupted():
                raise OperationalError(f"interrupted (shutting down) while waiting for {what}")
            if time.monotonic() > deadline:
                raise OperationalError(f"timed out after {self.timeout:g}s waiting for {what}")
            time.sleep(POLL_S)
