"""Observe the continuum through the global Prometheus: per host and per service, each value with
the age of its newest sample, and per service whether the strategies may act on it and why not.

A service's pods are those of its Deployment (`<deployment>-<hash>-<suffix>`) in its namespace
that report TorchServe's request counter (within the age limit: a pod that stopped reporting
is gone, unless none reports); the node they report from is where it runs.
End-to-end latency is TorchServe's mean (which includes queueing) plus the host's
`network_latency_ms` from the config, as in the simulated continuum.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from orchestrator.config import ContinuumConfig, HostProfile, ManagedService, PrometheusConfig
from orchestrator.errors import OperationalError
from orchestrator.model import HostState, Location, Observation, ServiceState
from orchestrator.monitoring.catalog import (
    CATALOG,
    HOST_CPU,
    HOST_POWER,
    POD_CPU,
    POD_LATENCY,
    POD_POWER,
    POD_REQUESTS,
    USERS,
    Quantity,
)


class MonitoringError(OperationalError):
    """Prometheus answered, but not with data (it rejected a query)."""


class PrometheusUnavailable(MonitoringError):
    """The global Prometheus could not be queried at all: nothing is observed this time."""


@dataclass(frozen=True)
class Sample:
    value: float
    age_s: float  # how long before the query its newest sample was taken (inf: none)


@dataclass(frozen=True)
class HostReading:
    cluster: str
    name: str
    power_w: Sample | None
    cpu: Sample | None  # utilization of its cores, in [0, 1]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ServiceReading:
    key: str  # namespace/name
    location: Location | None
    power_w: Sample | None
    cpu: Sample | None  # fraction of its host's cores
    latency_ms: Sample | None  # end to end
    throughput_rps: Sample | None
    users: Sample | None
    # Its own problems, then those of any host: each one makes the observation invalid.
    problems: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True)
class Readings:
    """Everything observed at one query: hosts in config order (the strategies' host indices)."""

    hosts: tuple[HostReading, ...]
    services: tuple[ServiceReading, ...]

    def service(self, key: str) -> ServiceReading:
        for s in self.services:
            if s.key == key:
                return s
        raise KeyError(f"no managed service {key!r}")

    def host_states(self) -> tuple[HostState, ...]:
        """Every host's power and CPU (NaN where nothing usable was read)."""
        return tuple(HostState(h.name, h.cluster, _value(h.power_w), _value(h.cpu))
                     for h in self.hosts)

    def state(self, key: str) -> ServiceState:
        """One service as the strategies see it; an invalid reading keeps its reason, NaN
        where nothing usable was read, host -1 and users -1 where unknown."""
        s = self.service(key)
        index = next((i for i, h in enumerate(self.hosts)
                      if Location(h.cluster, h.name) == s.location), -1)
        users = _value(s.users)
        return ServiceState(key, index, _value(s.power_w), _value(s.cpu), _value(s.latency_ms),
                            round(users) if math.isfinite(users) else -1,
                            _value(s.throughput_rps), None if s.valid else s.reason)

    def observation(self, key: str, step: int = 0) -> Observation:
        """The strategies' view of one service; only for a valid reading."""
        if not self.service(key).valid:
            raise ValueError(f"{key}: observation invalid: {self.service(key).reason}")
        return Observation(step, self.state(key), self.host_states())


def _value(sample: Sample | None) -> float:
    return math.nan if sample is None else sample.value


Key = tuple[str, ...]


@dataclass(frozen=True)
class _Measurement:
    """One quantity's samples by its `by` labels, as Prometheus answered."""

    quantity: Quantity
    samples: dict[Key, Sample]

    def total(self, keys: Sequence[Key], subject: str, limit: float,
              problems: list[str]) -> Sample | None:
        """The sum over `keys`, its age the oldest; a problem if any is missing or too old."""
        q = self.quantity
        found = [self.samples[k] for k in keys if k in self.samples]
        if not found or len(found) < len(keys):
            problems.append(f"no {q.name} for {subject} ({' or '.join(q.metrics)})")
            return None
        total = Sample(sum(s.value for s in found), max(s.age_s for s in found))
        if total.age_s > limit:
            age = ("has no current sample" if math.isinf(total.age_s)
                   else f"is {total.age_s:.0f} s old")
            problems.append(f"{q.name} for {subject} {age} (limit {limit:g} s)")
        elif math.isnan(total.value):
            problems.append(f"no {q.name} for {subject} yet (a counter needs two recent samples)")
        return total


def observe(url: str, config: ContinuumConfig) -> Readings:
    """Query the global Prometheus at `url` (normally `config.prometheus.url`) twice per catalog
    quantity (values, sample times). Settings (Kepler generation, maximum sample age, window)
    come from `config.prometheus`, defaults without it. Raises PrometheusUnavailable if it cannot
    be queried; missing or old data does not raise but makes readings invalid."""
    settings = config.prometheus or PrometheusConfig(url=url)
    retry = Retry(total=1, read=0, status=0, backoff_factor=0)  # one quick reconnect at most
    with PrometheusConnect(url=url, disable_ssl=True, retry=retry,
                           timeout=settings.timeout_s) as prom:
        measured = {q.record: _measure(prom, url, q.for_kepler(settings.kepler),
                                       settings.rate_window) for q in CATALOG}
    return _readings(config, settings.max_sample_age_s, measured)


def _measure(prom: PrometheusConnect, url: str, q: Quantity, window: str) -> _Measurement:
    """Per group: the value (NaN if only a sample time, e.g. too few samples for irate) and age."""
    values = _query(prom, url, q.value(window), q.by)
    times = _query(prom, url, q.sample_time(), q.by)  # (now, time of the newest sample)
    return _Measurement(q, {k: Sample(values[k][1] if k in values else math.nan,
                                      times[k][0] - times[k][1] if k in times else math.inf)
                            for k in values.keys() | times.keys()})


def _query(prom: PrometheusConnect, url: str, promql: str,
           by: tuple[str, ...]) -> dict[Key, tuple[float, float]]:
    """{label values: (evaluation time, value)} of an instant query."""
    try:
        result = prom.custom_query(promql)
    except requests.RequestException as e:
        raise PrometheusUnavailable(
            f"cannot query Prometheus at {url} ({type(e).__name__}); check prometheus.url in "
            "the config and that Prometheus is running") from e
    except PrometheusApiClientException as e:  # "HTTP Status Code 503 (b'...')"
        status = re.search(r"Status Code (\d+)", str(e))
        cls = PrometheusUnavailable if status and int(status[1]) >= 500 else MonitoringError
        raise cls(f"Prometheus at {url} did not answer a query: {str(e)[:300]}") from e
    return {tuple(r["metric"].get(label, "") for label in by):
            (float(r["value"][0]), float(r["value"][1])) for r in result}


def _readings(config: ContinuumConfig, limit: float,
              measured: dict[str, _Measurement]) -> Readings:
    hosts = []
    for cluster in config.clusters:
        for h in cluster.hosts:
            problems: list[str] = []
            subject, key = f"host {cluster.name}/{h.name}", [(cluster.name, h.name)]
            power = measured[HOST_POWER.record].total(key, subject, limit, problems)
            busy = measured[HOST_CPU.record].total(key, subject, limit, problems)
            hosts.append(HostReading(cluster.name, h.name, power, _per_core(busy, h),
                                     tuple(problems)))
    host_problems = tuple(p for h in hosts for p in h.problems)
    services = tuple(_service(s, config, measured, limit, host_problems)
                     for s in config.services)
    return Readings(tuple(hosts), services)


def _service(svc: ManagedService, config: ContinuumConfig, measured: dict[str, _Measurement],
             limit: float, host_problems: tuple[str, ...]) -> ServiceReading:
    subject = f"service {svc.key}"
    requests_by_pod = measured[POD_REQUESTS.record]
    pod_name = re.compile(re.escape(svc.deployment_name) + r"-[a-z0-9]+-[a-z0-9]+")
    pods = sorted(k for k in requests_by_pod.samples
                  if k[2] == svc.namespace and pod_name.fullmatch(k[3]))
    # A pod whose counter stopped reporting (older than the limit) is gone, e.g. the source of
    # a move: federated series carry their scrape time, so Prometheus keeps answering with
    # them for its lookback (5 min) after they ended. If none reports, the age is the problem.
    pods = [k for k in pods if requests_by_pod.samples[k].age_s <= limit] or pods
    places = sorted({(cluster, node) for cluster, node, _, _ in pods})
    where = ", ".join(f"{c}/{n}" for c, n in places)
    problems: list[str] = []
    host: HostProfile | None = None
    if not places:
        problems.append(f"{subject}: no pod of deployment {svc.deployment_name} reports "
                        f"{POD_REQUESTS.metrics[0]}")
    elif len(places) > 1:
        problems.append(f"{subject} runs on {len(places)} hosts ({where}); observing it needs "
                        "one")
    else:
        host = _host(config, *places[0])
        if host is None:
            problems.append(f"{subject} runs on {where}, which is not a host in the config")
    if host is None:
        return ServiceReading(svc.key, None, None, None, None, None, None,
                              (*problems, *host_problems))

    pod_keys = [(c, ns, p) for c, _, ns, p in pods]
    power = measured[POD_POWER.record].total(pod_keys, subject, limit, problems)
    busy = measured[POD_CPU.record].total(pod_keys, subject, limit, problems)
    requests_ = requests_by_pod.total(pods, subject, limit, problems)
    latency_us = measured[POD_LATENCY.record].total(pod_keys, subject, limit, problems)
    seen = measured[USERS.record]  # hostnames with or without the trailing dot are the same
    users = _Measurement(seen.quantity, {(k[0].rstrip("."),): v for k, v in seen.samples.items()}
                         ).total([(svc.hostname.rstrip("."),)], subject, limit, problems)
    latency = None
    if requests_ and latency_us and not math.isnan(requests_.value + latency_us.value):
        if requests_.value > 0:
            latency = Sample(latency_us.value / requests_.value / 1000.0 + host.network_latency_ms,
                             max(requests_.age_s, latency_us.age_s))
        else:
            problems.append(f"{subject} served no requests lately: its latency is unknown")
    return ServiceReading(svc.key, Location(*places[0]), power, _per_core(busy, host), latency,
                          requests_, users, (*problems, *host_problems))


def _host(config: ContinuumConfig, cluster: str, node: str) -> HostProfile | None:
    for c in config.clusters:
        if c.name == cluster:
            return next((h for h in c.hosts if h.name == node), None)
    return None


def _per_core(busy: Sample | None, host: HostProfile) -> Sample | None:
    if busy is None:
        return None
    return Sample(min(1.0, max(0.0, busy.value / host.cores)), busy.age_s)
