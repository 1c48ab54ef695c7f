"""The scenario schema: clusters of hosts, client regions, the served models and their
workloads, SLAs and how moves unfold; `PAPER` is the GreenWise paper's testbed.

The host schema is also part of the real `continuum.yaml` (orchestrator/config.py, which loads
both); a scenario is what the simulated continuum is built from.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.workload import MAX_USERS

Tier = Literal["edge", "fog", "cloud"]


class Strict(BaseModel):
    # nan and inf are refused everywhere: one would turn every reward into nan.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HostProfile(Strict):
    """One machine: its capacity, power profile and network distance to the users."""

    name: str = Field(min_length=1)
    cores: int = Field(gt=0)
    idle_watts: float = Field(ge=0)
    max_watts: float = Field(gt=0)
    # From its users; a scenario that declares client `regions` gives it per region instead.
    network_latency_ms: float | None = Field(default=None, ge=0)
    memory_gib: float = Field(default=8.0, gt=0)
    # Relative per-core speed; inference time per image is divided by it.
    speed: float = Field(default=1.0, gt=0)
    # Dynamic power as a fraction of (max - idle) at given CPU utilizations, piecewise linear
    # between the points; the default is the linear model.
    power_curve: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 1.0))
    # Processes of everything else on the host (OS, kubelet, ...): idle power is shared by
    # process count (Eq. 2), so this sets the service's share of the idle power.
    base_processes: int = Field(default=200, ge=0)
    # CPU utilization of other tenants, in [0, 1): constant, or the peak of `background`.
    background_utilization: float = Field(default=0.0, ge=0, lt=1)
    # Their load over time (simulated): a pattern (ramp, day, bursty) or a CSV trace whose
    # shape, normalized to its peak, scales background_utilization; None: constant.
    background: str | None = None
    # (simulated) An empty host without co-tenants sleeps at sleep_watts (None: never) and
    # takes wake_s to take a service again (suspend-to-RAM resume, a cluster autoscaler's node).
    sleep_watts: float | None = Field(default=None, ge=0)
    wake_s: float | None = Field(default=None, ge=0)
    # edge | fog | cloud, so that one cluster may hold several tiers; None: its cluster's
    tier: Tier | None = None

    @model_validator(mode="after")
    def _check(self) -> HostProfile:
        if (self.sleep_watts is None) != (self.wake_s is None):
            raise ValueError(f"host {self.name!r}: give both sleep_watts and wake_s (a host "
                             "that sleeps and how long it takes to wake), or neither")
        if self.sleep_watts is not None and self.sleep_watts > self.idle_watts:
            raise ValueError(f"host {self.name!r}: sleep_watts ({self.sleep_watts}) is above "
                             f"idle_watts ({self.idle_watts}); sleeping must draw less")
        if self.background is not None and self.background_utilization == 0:
            raise ValueError(f"host {self.name!r}: background {self.background!r} needs "
                             "background_utilization, its peak level (e.g. 0.2)")
        if self.max_watts < self.idle_watts:
            raise ValueError(
                f"host {self.name!r}: max_watts ({self.max_watts}) is below idle_watts "
                f"({self.idle_watts}); max must be >= idle"
            )
        xs = [p[0] for p in self.power_curve]
        if xs[0] != 0.0 or xs[-1] != 1.0 or any(b <= a for a, b in pairwise(xs)):
            raise ValueError(
                f"host {self.name!r}: power_curve utilizations must rise from 0.0 to 1.0"
            )
        if any(not 0.0 <= p[1] <= 1.0 for p in self.power_curve):
            raise ValueError(
                f"host {self.name!r}: power_curve fractions must be within [0, 1] (the share "
                "of max_watts - idle_watts drawn at that utilization)"
            )
        return self


class ClusterSpec(Strict):
    name: str = Field(min_length=1)
    tier: Tier
    hosts: tuple[HostProfile, ...] = Field(min_length=1)


class WorkloadSpec(Strict):
    """Users per step. `train` and `test` name a built-in pattern or a CSV trace `time,users`."""

    train: str = "ramp"
    test: str = "day"
    peak_users: int = Field(default=60, gt=0, le=MAX_USERS)
    noise: float = Field(default=0.1, ge=0, le=1)  # relative, seeded
    latency_jitter: float = Field(default=0.05, ge=0, le=1)


class ServiceSpec(Strict):
    """The served model, by default the paper's TorchServe ResNet-18 (batch 8, delay 100 ms)."""

    name: str = "resnet-18"
    inference_ms_per_image: float = Field(default=40.0, gt=0)  # one core, intra-op threads = 1
    batch_overhead_ms: float = Field(default=5.0, ge=0)
    batch_size: int = Field(default=8, gt=0)
    max_batch_delay_ms: float = Field(default=100.0, ge=0)
    # Requests computed at once (TorchServe's backend workers); None: one per core of the host,
    # the paper's setting (workers = cores, one intra-op thread each).
    workers: int | None = Field(default=None, gt=0)
    # Clients wait uniformly between these before their next request (Locust wait_time).
    think_time_s: tuple[float, float] = (0.1, 0.5)
    sla_latency_ms: float = Field(default=500.0, gt=0)
    memory_gib: float = Field(default=2.0, gt=0)
    cpu_request: float = Field(default=1.0, gt=0)
    # Its own users (pattern, peak, noise); None: the scenario's workload. Each service's
    # episode starts at its own random point of its curve, so equal curves are phase-shifted.
    workload: WorkloadSpec | None = None
    # Where its users are: one of the scenario's `regions` (None: the first region).
    region: str | None = None
    # [assume] Seconds a new copy takes to load its model before it serves (TorchServe
    # starting and loading ResNet-18)
    cold_start_s: float = Field(default=15.0, ge=0)

    def workers_on(self, host: HostProfile) -> int:
        """How many requests it computes at once on `host`."""
        return self.workers or host.cores


class _Move(Strict):
    @model_validator(mode="before")
    @classmethod
    def _not_flat_costs(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"latency_ms", "watts"} & set(data):
            raise ValueError(
                "latency_ms and watts are no longer used: a move costs what its phases cost "
                "(README, The simulated continuum); give copy_s (seconds until the copy is "
                "Ready)" + (" and dns_s (the DNS TTL)" if cls is InterClusterMove else ""))
        return data


class IntraClusterMove(_Move):
    """A move to another node of the cluster (a surge-only rolling update)."""

    copy_s: float = Field(default=0.73, ge=0)  # [lab] bench.migrate_bench, end to end (#12)

    @property
    def dns_s(self) -> float:
        return 0.0  # the Service's endpoints follow the pod: no DNS change


class InterClusterMove(_Move):
    """A migration to another cluster: copy, route, DNS, forward (the live-migration paper)."""

    copy_s: float = Field(default=5.09, ge=0)  # [lab] bench.migrate_bench, end to end (#12)
    # DNS convergence after the switch: the DNS TTL (continuum.yaml's dns.ttl default)
    dns_s: float = Field(default=30.0, ge=0)


class Migration(Strict):
    """How long a move's phases take, per kind (orchestrator/move_cost.py says what they cost;
    the model load is the service's cold_start_s)."""

    intra_cluster: IntraClusterMove = IntraClusterMove()
    inter_cluster: InterClusterMove = InterClusterMove()


class Scenario(Strict):
    name: str = "custom"
    clusters: tuple[ClusterSpec, ...] = Field(min_length=1)
    # One service (`service`, the paper's case) or several (`services`), sharing the hosts.
    service: ServiceSpec = ServiceSpec()
    services: tuple[ServiceSpec, ...] = ()
    workload: WorkloadSpec = WorkloadSpec()
    migration: Migration = Migration()
    episode_steps: int = Field(default=25, gt=0)
    # Decisions see the services' and hosts' metrics as measured this many steps before (where
    # each service runs now is known); rewards and evaluation use the true state.
    observation_lag_steps: int = Field(default=0, ge=0)
    # Where users are: region -> {host: network latency in ms from there}, every host listed.
    # Without regions each host's `network_latency_ms` is its latency from every user.
    regions: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        if self.services and "service" in self.model_fields_set:
            raise ValueError("give either service (one) or services (several), not both")
        for kind, names in (("cluster", [c.name for c in self.clusters]),
                            ("host", [h.name for h in self.hosts]),
                            ("service", [s.name for s in self.fleet])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(dup)}")
        self._check_regions()
        return self

    def _check_regions(self) -> None:
        hosts = [h.name for h in self.hosts]
        if not self.regions:
            for s in self.fleet:
                if s.region is not None:
                    raise ValueError(f"service {s.name!r}: region {s.region!r} needs the "
                                     "scenario's regions (region: {host: latency ms})")
            for h in self.hosts:
                if h.network_latency_ms is None:
                    raise ValueError(f"host {h.name!r}: give its network_latency_ms, or declare "
                                     "regions with its latency from each")
            return
        for name, row in self.regions.items():
            missing, unknown = set(hosts) - set(row), set(row) - set(hosts)
            if missing or unknown:
                raise ValueError(
                    f"region {name!r} must give the latency of every host and only hosts: "
                    + "; ".join(f"{what}: {', '.join(sorted(n))}" for what, n in
                                (("missing", missing), ("unknown", unknown)) if n))
            if any(ms < 0 for ms in row.values()):
                raise ValueError(f"region {name!r}: latencies must be >= 0 ms")
        for h in self.hosts:
            if h.network_latency_ms is not None:
                raise ValueError(f"host {h.name!r}: network_latency_ms is not used when the "
                                 "scenario declares regions; give it in each region instead")
        for s in self.fleet:
            if s.region is not None and s.region not in self.regions:
                raise ValueError(f"service {s.name!r}: region {s.region!r} is not one of the "
                                 f"scenario's regions ({', '.join(self.regions)})")

    def crowded(self) -> str | None:
        """Why the services cannot all be placed on the simulated continuum's hosts (None:
        each fits some host alone and all fit the hosts' memory and cores together). Not
        checked of clusters' scenarios: there they run where they already are."""
        hosts, fleet = self.hosts, self.fleet
        for s in fleet:
            if not any(h.memory_gib >= s.memory_gib and h.cores >= s.cpu_request
                       for h in hosts):
                return (f"service {s.name!r} ({s.memory_gib:g} GiB, {s.cpu_request:g} CPU "
                        "requested) fits no host: give a host that much memory_gib and cores")
        for what, need, have in (
                ("GiB of memory", sum(s.memory_gib for s in fleet),
                 sum(h.memory_gib for h in hosts)),
                ("CPU requested", sum(s.cpu_request for s in fleet),
                 sum(h.cores for h in hosts))):
            if need > have:
                return (f"the services need {need:g} {what}, the hosts have {have:g}: add "
                        "hosts, or give fewer services")
        return None

    def network_ms(self, service: ServiceSpec) -> tuple[float, ...]:
        """Per host, the network latency from `service`'s users (its region's row)."""
        if not self.regions:
            return tuple(float(h.network_latency_ms or 0.0) for h in self.hosts)
        row = self.regions[service.region or next(iter(self.regions))]
        return tuple(row[h.name] for h in self.hosts)

    @property
    def fleet(self) -> tuple[ServiceSpec, ...]:
        """Every service of the scenario, in order."""
        return self.services or (self.service,)

    @property
    def hosts(self) -> tuple[HostProfile, ...]:
        return tuple(h for c in self.clusters for h in c.hosts)

    @property
    def capacity(self) -> tuple[float, ...]:
        """Each host's cores x speed: how much work its whole CPU does."""
        return tuple(h.cores * h.speed for h in self.hosts)

    def workload_of(self, service: int) -> WorkloadSpec:
        return self.fleet[service].workload or self.workload

    @property
    def peak_users(self) -> int:
        """The largest peak of any service's workload."""
        return max(self.workload_of(i).peak_users for i in range(len(self.fleet)))

    def cluster_of(self, host: str) -> str:
        return next(c.name for c in self.clusters for h in c.hosts if h.name == host)


PAPER = Scenario(
    name="paper",
    # Section 5.1: one Kubernetes cluster of four nodes, a 12-core control-plane node with
    # 48 GiB (the cloud host) and three 4-core edge nodes with 8 GiB; their power, Table 3.
    clusters=(ClusterSpec(name="testbed", tier="edge", hosts=(
        HostProfile(name="edge0", cores=4, idle_watts=19.0, max_watts=58.5),
        HostProfile(name="edge1", cores=4, idle_watts=36.6, max_watts=69.7),
        HostProfile(name="edge2", cores=4, idle_watts=21.4, max_watts=102.0),
        HostProfile(name="cloud", cores=12, idle_watts=162.0, max_watts=280.0,
                    memory_gib=48.0, tier="cloud"),
    )),),
    # Table 4: the clients are in area-1
    regions={"area-1": {"edge0": 14.0, "edge1": 5.0, "edge2": 3.0, "cloud": 30.9}},
)
