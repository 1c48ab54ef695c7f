"""The PromQL catalog: which metrics give each value greenwise-mc observes, and how.

Every series carries `cluster` (each cluster's Prometheus sets it; the global one federates with
`honor_labels`). Host series carry the scrape target's `node`; pod series are keyed by
`namespace` and `pod` (Kepler's own pod labels are copied there, overriding the Kepler
exporter pod's). Counters are read with irate(): the rate over the last two samples, that is
over the last scrape interval (the paper aggregates every 10 s).

| quantity                  | metric (exporter)                                                   |
|---------------------------|---------------------------------------------------------------------|
| host power, W             | kepler_node_cpu_watts{zone=~"package|dram"} (Kepler >= 0.10), else  |
|                           | kepler_node_platform_joules_total, all modes (Kepler <= 0.7)        |
| host busy cores           | node_cpu_seconds_total{mode!~"idle|iowait|steal"} (node_exporter)   |
| pod power, W              | kepler_pod_cpu_watts{zone=~"package|dram"} (>= 0.10), else          |
|                           | kepler_container_joules_total, all modes (<= 0.7)                   |
| pod busy cores            | container_cpu_usage_seconds_total{container!~"|POD"} (cAdvisor)     |
| pod latency, µs per s     | ts_inference_latency_microseconds (TorchServe; includes queueing)   |
| pod requests per s        | ts_inference_requests_total (TorchServe; also gives the pod's node) |
| users                     | loadgen_users{hostname} (the load generator)                        |

Every quantity is a sum, so the values of a service's pods add up. The recording rules in
manifests/prometheus/greenwise-rules.yaml record exactly these expressions (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Kepler = Literal["auto", "v0.7", "v0.10"]
RULES_WINDOW = "1m"  # the window the recording rules use


@dataclass(frozen=True)
class Source:
    """One metric that gives a quantity.

    `copy_labels` are (target, source) pairs that make every source of a quantity yield the same
    label names; `kepler` is the Kepler generation the metric belongs to (None: any).
    """

    selector: str
    counter: bool
    copy_labels: tuple[tuple[str, str], ...] = ()
    kepler: str | None = None

    @property
    def metric(self) -> str:
        return self.selector.split("{", 1)[0]

    def _relabelled(self, expr: str) -> str:
        for target, source in self.copy_labels:
            expr = f'label_replace({expr}, "{target}", "$1", "{source}", "(.+)")'
        return expr

    def value(self, window: str) -> str:
        return self._relabelled(f"irate({self.selector}[{window}])" if self.counter
                                else self.selector)

    def sample_time(self) -> str:
        return self._relabelled(f"timestamp({self.selector})")


@dataclass(frozen=True)
class Quantity:
    """A value summed by `by`, from the first of its sources that has data for a group."""

    name: str  # in the domain, for messages: "host power"
    record: str  # the recording rule's series name
    by: tuple[str, ...]
    sources: tuple[Source, ...]

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(s.metric for s in self.sources)

    def value(self, window: str) -> str:
        by = ", ".join(self.by)
        return " or ".join(f"sum by ({by}) ({s.value(window)})" for s in self.sources)

    def sample_time(self) -> str:
        """Unix time of each group's newest sample (its oldest source series decides)."""
        by = ", ".join(self.by)
        return " or ".join(f"min by ({by}) ({s.sample_time()})" for s in self.sources)

    def for_kepler(self, kepler: Kepler) -> Quantity:
        if kepler == "auto":
            return self
        return replace(self, sources=tuple(s for s in self.sources if s.kepler in (None, kepler)))


HOST = ("cluster", "node")
POD = ("cluster", "namespace", "pod")
_POWER_ZONES = 'zone=~"package|dram"'  # core and uncore are parts of package

HOST_POWER = Quantity("host power", "node:greenwise_power_watts:sum", HOST, (
    Source(f"kepler_node_cpu_watts{{{_POWER_ZONES}}}", counter=False, kepler="v0.10"),
    Source("kepler_node_platform_joules_total", counter=True, kepler="v0.7"),
))
HOST_CPU = Quantity("host CPU", "node:greenwise_cpu_busy_cores:sum", HOST, (
    Source('node_cpu_seconds_total{mode!~"idle|iowait|steal"}', counter=True),
))
POD_POWER = Quantity("service power", "pod:greenwise_power_watts:sum", POD, (
    Source(f'kepler_pod_cpu_watts{{{_POWER_ZONES},pod_name!=""}}', counter=False,
           copy_labels=(("namespace", "pod_namespace"), ("pod", "pod_name")), kepler="v0.10"),
    Source('kepler_container_joules_total{pod_name!=""}', counter=True,
           copy_labels=(("namespace", "container_namespace"), ("pod", "pod_name")),
           kepler="v0.7"),
))
POD_CPU = Quantity("service CPU", "pod:greenwise_cpu_busy_cores:sum", POD, (
    Source('container_cpu_usage_seconds_total{container!~"|POD"}', counter=True),
))
POD_LATENCY = Quantity(
    "service latency", "pod:greenwise_inference_latency_microseconds:irate", POD,
    (Source("ts_inference_latency_microseconds", counter=True),))
POD_REQUESTS = Quantity(
    "service throughput", "pod:greenwise_inference_requests:irate", ("cluster", "node",
                                                                      "namespace", "pod"),
    (Source("ts_inference_requests_total", counter=True),))
USERS = Quantity("users", "hostname:greenwise_users:sum", ("hostname",), (
    Source("loadgen_users", counter=False),
))

CATALOG: tuple[Quantity, ...] = (HOST_POWER, HOST_CPU, POD_POWER, POD_CPU, POD_LATENCY,
                                 POD_REQUESTS, USERS)
