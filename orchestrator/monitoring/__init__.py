"""Observing real clusters through the global (federating) Prometheus: the PromQL catalog
(Kepler, node_exporter, cAdvisor, TorchServe, load generator) and `observe`."""

from orchestrator.monitoring.catalog import CATALOG, Kepler, Quantity, Source
from orchestrator.monitoring.observe import (
    HostReading,
    MonitoringError,
    PrometheusUnavailable,
    Readings,
    Sample,
    ServiceReading,
    observe,
)

__all__ = [
    "CATALOG",
    "HostReading",
    "Kepler",
    "MonitoringError",
    "PrometheusUnavailable",
    "Quantity",
    "Readings",
    "Sample",
    "ServiceReading",
    "Source",
    "observe",
]
