"""Scenario schema: clusters of hosts, the served model, workload, SLA and migration costs.

The same host schema is part of the real `continuum.yaml`; a scenario is what the simulated
continuum is built from. `load_scenario("paper")` gives the GreenWise paper's testbed.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrator.errors import BadInput
from orchestrator.workload import MAX_USERS, PATTERNS, pattern

Tier = Literal["edge", "fog", "cloud"]


class _Strict(BaseModel):
    # nan and inf are refused everywhere: one would turn every reward into nan.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HostProfile(_Strict):
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


class ClusterSpec(_Strict):
    name: str = Field(min_length=1)
    tier: Tier
    hosts: tuple[HostProfile, ...] = Field(min_length=1)


class WorkloadSpec(_Strict):
    """Users per step. `train` and `test` name a built-in pattern or a CSV trace `time,users`."""

    train: str = "ramp"
    test: str = "day"
    peak_users: int = Field(default=60, gt=0, le=MAX_USERS)
    noise: float = Field(default=0.1, ge=0, le=1)  # relative, seeded
    latency_jitter: float = Field(default=0.05, ge=0, le=1)


class ServiceSpec(_Strict):
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


class _Move(_Strict):
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


class Migration(_Strict):
    """How long a move's phases take, per kind (orchestrator/move_cost.py says what they cost;
    the model load is the service's cold_start_s)."""

    intra_cluster: IntraClusterMove = IntraClusterMove()
    inter_cluster: InterClusterMove = InterClusterMove()


class Scenario(_Strict):
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

# Built-in scenarios besides `paper`: files shipped with the package, every parameter's source
# written beside it.
SCENARIO_DIR = Path(__file__).parent / "scenarios"
BUILTIN = ("paper", *sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))


def _read_mapping(path: Path, expected: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; anything else is one clear error."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BadInput(f"{path}: not valid YAML ({_first_line(str(e))})") from e
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping with {expected}")
    return data


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a YAML file; bad input raises BadInput."""
    if str(name_or_path) == "paper":
        return PAPER
    path = (SCENARIO_DIR / f"{name_or_path}.yaml" if str(name_or_path) in BUILTIN
            else Path(name_or_path).expanduser())
    if not path.is_file():
        raise BadInput(
            f"scenario {str(name_or_path)!r} is neither a built-in ({', '.join(BUILTIN)}) "
            "nor a readable file; pass --scenario paper or a path to a scenario YAML"
        )
    data = _read_mapping(path, "a 'clusters' list at the top")
    data.setdefault("name", path.stem)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise BadInput(f"{path}: {describe_validation_error(e)}") from e
    return _resolve_traces(scenario, path.parent)


def describe_validation_error(e: ValidationError) -> str:
    """The first problem pydantic found, as `where: what`."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _resolve_traces(scenario: Scenario, base: Path) -> Scenario:
    """Trace paths in a scenario file are relative to that file; check and pin them."""

    def pinned(spec: str) -> str:
        if spec in PATTERNS:
            return spec
        pattern(spec, 1, base)  # raises a clear error
        return str(spec if Path(spec).is_absolute() else base / spec)

    def resolved(workload: WorkloadSpec) -> WorkloadSpec:
        return workload.model_copy(update={f: pinned(getattr(workload, f))
                                           for f in ("train", "test")})

    update: dict[str, Any] = {"workload": resolved(scenario.workload), "clusters": tuple(
        c.model_copy(update={"hosts": tuple(
            h.model_copy(update={"background": pinned(h.background)}) if h.background else h
            for h in c.hosts)}) for c in scenario.clusters)}
    if scenario.services:
        update["services"] = tuple(
            s.model_copy(update={"workload": resolved(s.workload)}) if s.workload else s
            for s in scenario.services)
    return scenario.model_copy(update=update)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- continuum.yaml: real clusters ------------------------------------------------------------


class ClusterConfig(_Strict):
    """One Kubernetes cluster of the continuum. Hosts are its nodes (name == node name)."""

    name: str = Field(min_length=1)
    tier: Tier
    kubeconfig: Path | None = None  # default: $KUBECONFIG, then ~/.kube/config
    context: str | None = None  # default: a context named like the cluster
    ingress: str = Field(pattern=r"^[^:\s]+:\d+$")  # host:port of its ingress (Traefik web)
    # Traefik applies a changed Service or route at most every providersThrottleDuration (its
    # default: 2 s); a migration waits this long where it cannot see the change applied.
    ingress_reload_s: float = Field(default=2.0, ge=0)
    prometheus: str | None = None
    # Its cluster DNS domain: the in-cluster names a migrated service is routed under.
    cluster_domain: str = Field(default="cluster.local",
                                pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    hosts: tuple[HostProfile, ...] = Field(min_length=1)

    @property
    def ingress_host(self) -> str:
        return self.ingress.rsplit(":", 1)[0]

    @property
    def ingress_port(self) -> int:
        return int(self.ingress.rsplit(":", 1)[1])


class ManagedService(_Strict):
    """A service greenwise-mc may move: its Deployment and Service share the namespace."""

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)  # the Service
    deployment: str | None = None  # default: same as the Service
    hostname: str = Field(min_length=1)  # public name, inside the DNS zone
    sla_latency_ms: float = Field(default=500.0, gt=0)
    # Asked through the target's ingress before DNS moves, to know its route is live
    # (TorchServe's health endpoint by default).
    probe_path: str = Field(default="/ping", pattern=r"^/")
    # Take over a hostname that greenwise-mc does not own (no ownership TXT record of its
    # owner_id): without it a migration refuses such a name.
    adopt_dns: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.name


class Rfc2136Config(_Strict):
    provider: Literal["rfc2136"]
    server: str
    port: int = Field(default=53, gt=0, lt=65536)
    zone: str
    tsig_key_file: Path
    ttl: int = Field(default=30, gt=0)
    owner_id: str = Field(default="greenwise-mc", pattern=r"^[\w.-]+$")  # in ownership records


class CloudDnsConfig(_Strict):
    provider: Literal["google-cloud-dns"]
    project: str
    managed_zone: str
    zone: str
    credentials_file: Path | None = None
    api_endpoint: str | None = None  # a private or test endpoint instead of Google's
    ttl: int = Field(default=30, gt=0)
    owner_id: str = Field(default="greenwise-mc", pattern=r"^[\w.-]+$")  # in ownership records


class PrometheusConfig(_Strict):
    url: str  # the global Prometheus that federates every cluster (series carry `cluster`)
    # Kepler's metric names: v0.7 (<= 0.7, joules counters), v0.10 (>= 0.10, watts gauges with
    # `zone`), or auto (per node and pod, whichever is there; v0.10 where both are).
    kepler: Literal["auto", "v0.7", "v0.10"] = "auto"
    # A value whose newest sample is older than this, or missing, invalidates the observation.
    max_sample_age_s: float = Field(default=30.0, gt=0)
    rate_window: str = Field(default="1m", pattern=r"^[1-9]\d*[smh]$")  # irate() lookback
    timeout_s: float = Field(default=5.0, gt=0)  # per query

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"must be a URL like http://HOST:9090, got {url!r}")
        return url


class ControllerConfig(_Strict):
    """Policy mode (`greenwise-mc run --config`): leader election and the safety gates."""

    # One active controller: a coordination.k8s.io/v1 Lease in this cluster (default: the first
    # one) and namespace (created if missing). A holder that stops renewing for
    # `lease_duration_s` loses it; clocks are assumed in sync to well within that.
    lease_cluster: str | None = None
    lease_namespace: str = Field(default="greenwise-system", min_length=1)
    lease_name: str = Field(default="greenwise-mc", min_length=1)
    lease_duration_s: float = Field(default=15.0, ge=2)
    # No new move of a service for this long after its last one ended.
    cooldown_s: float = Field(default=60.0, ge=0)
    max_concurrent_migrations: int = Field(default=1, ge=1)
    # Move only if the predicted reward (Eq. 9, per tick) beats staying by at least this much;
    # null: no gain gate (every move the strategy wants, within the other gates).
    min_predicted_gain: float | None = Field(default=0.02, ge=0)


class ContinuumConfig(_Strict):
    state_dir: Path = Path(".greenwise")
    clusters: tuple[ClusterConfig, ...] = Field(min_length=1)
    dns: Rfc2136Config | CloudDnsConfig = Field(discriminator="provider")
    prometheus: PrometheusConfig | None = None
    services: tuple[ManagedService, ...] = ()
    # How the managed services perform (the simulator's `service` section: time per image,
    # batching, workers, users' think time): the predictions and the strategies use it.
    # Default: the paper's ResNet-18 on TorchServe. Each service's SLA is its own field.
    performance: ServiceSpec = ServiceSpec()
    controller: ControllerConfig = ControllerConfig()
    api_timeout_s: float = Field(default=10.0, gt=0)  # per Kubernetes API request
    api_retry_s: float = Field(default=20.0, ge=0)  # retrying transient API errors, in total

    @model_validator(mode="after")
    def _consistent(self) -> ContinuumConfig:
        for kind, names in (("cluster", [c.name for c in self.clusters]),
                            ("host", [h.name for c in self.clusters for h in c.hosts]),
                            ("service", [s.key for s in self.services])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(dup)}")
        for c in self.clusters:
            for h in c.hosts:
                if h.network_latency_ms is None:
                    raise ValueError(f"cluster {c.name!r}, host {h.name!r}: give its "
                                     "network_latency_ms (from its users, in ms)")
                for field in ("background", "sleep_watts"):
                    if getattr(h, field) is not None:
                        raise ValueError(f"cluster {c.name!r}, host {h.name!r}: {field} is for "
                                         "simulated scenarios (a real host is observed)")
        lease = self.controller.lease_cluster
        if lease is not None and lease not in {c.name for c in self.clusters}:
            raise ValueError(f"controller.lease_cluster {lease!r} is not a cluster of the config")
        if "sla_latency_ms" in self.performance.model_fields_set:
            raise ValueError("performance.sla_latency_ms: set sla_latency_ms on each service "
                             "instead")
        zone = self.dns.zone.rstrip(".")
        for s in self.services:
            if not (s.hostname.rstrip(".") + ".").endswith("." + zone + "."):
                raise ValueError(f"service {s.key}: hostname {s.hostname!r} is not inside the "
                                 f"DNS zone {self.dns.zone!r}")
        return self

    def cluster(self, name: str) -> ClusterConfig:
        for c in self.clusters:
            if c.name == name:
                return c
        raise BadInput(f"unknown cluster {name!r}; clusters in the config: "
                       f"{', '.join(c.name for c in self.clusters)}")

    def service(self, key: str) -> ManagedService:
        for s in self.services:
            if s.key == key:
                return s
        known = ", ".join(s.key for s in self.services) or "none"
        raise BadInput(f"unknown service {key!r} (expected NAMESPACE/SERVICE); managed "
                       f"services: {known}")

    def scenario(self) -> Scenario:
        """The clusters as a scenario, so the performance model can predict moves: one
        service profile per managed service (the shared performance, its own SLA)."""
        specs = tuple(self.performance.model_copy(
            update={"name": s.key, "sla_latency_ms": s.sla_latency_ms}) for s in self.services)
        return Scenario(
            name="continuum",
            clusters=tuple(ClusterSpec(name=c.name, tier=c.tier, hosts=c.hosts)
                           for c in self.clusters),
            services=specs,
            migration=Migration(inter_cluster=InterClusterMove(dns_s=self.dns.ttl)))


def load_continuum(path: Path) -> ContinuumConfig:
    """Read continuum.yaml; relative paths in it are relative to the file."""
    path = path.expanduser()
    if not path.is_file():
        raise BadInput(f"config {path} does not exist; pass --config continuum.yaml "
                       "(see kubeconfigs.example/continuum.yaml)")
    data = _read_mapping(path, "'clusters' and 'dns'")
    try:
        cfg = ContinuumConfig.model_validate(data)
    except ValidationError as e:
        raise BadInput(f"{path}: {describe_validation_error(e)}") from e
    base = path.resolve().parent

    def pin(p: Path | None) -> Path | None:
        """`p` with `~` expanded, relative to the config file; None when that changes nothing."""
        if p is None:
            return None
        full = p.expanduser()
        full = full if full.is_absolute() else base / full
        return None if full == p else full

    clusters = tuple(c.model_copy(update={"kubeconfig": pin(c.kubeconfig)})
                     if pin(c.kubeconfig) else c for c in cfg.clusters)
    update: dict[str, object] = {"clusters": clusters}
    if pin(cfg.state_dir):
        update["state_dir"] = pin(cfg.state_dir)
    if isinstance(cfg.dns, Rfc2136Config) and pin(cfg.dns.tsig_key_file):
        update["dns"] = cfg.dns.model_copy(update={"tsig_key_file": pin(cfg.dns.tsig_key_file)})
    if isinstance(cfg.dns, CloudDnsConfig) and pin(cfg.dns.credentials_file):
        update["dns"] = cfg.dns.model_copy(
            update={"credentials_file": pin(cfg.dns.credentials_file)})
    return cfg.model_copy(update=update)
