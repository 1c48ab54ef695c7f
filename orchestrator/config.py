"""Loading scenarios (orchestrator/scenario.py: their schema; `load_scenario("paper")` gives the
GreenWise paper's testbed) and the schema of the real clusters' `continuum.yaml`, whose hosts
are a scenario's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from orchestrator.errors import BadInput
from orchestrator.scenario import (
    PAPER,
    ClusterSpec,
    HostProfile,
    InterClusterMove,
    Migration,
    Scenario,
    ServiceSpec,
    Strict,
    Tier,
    WorkloadSpec,
)
from orchestrator.workload import PATTERNS, pattern

# Built-in scenarios besides `paper`: files shipped with the package, every parameter's source
# written beside it.
SCENARIO_DIR = Path(__file__).parent / "scenarios"
BUILTIN = ("paper", *sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))


# libyaml's safe loader where PyYAML has it (its wheels do): a scenario of 1,000 services reads
# in 0.13 s instead of 0.84 s
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str | bytes) -> Any:
    """YAML text as data, through the safe loader: every file greenwise-mc reads."""
    return yaml.load(text, Loader=SAFE_LOADER)


def _read_mapping(path: Path, expected: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; anything else is one clear error."""
    try:
        data = parse_yaml(path.read_text())
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
    if problem := scenario.crowded():
        raise BadInput(f"{path}: {problem}")
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


class ClusterConfig(Strict):
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


class ManagedService(Strict):
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


class Rfc2136Config(Strict):
    provider: Literal["rfc2136"]
    server: str
    port: int = Field(default=53, gt=0, lt=65536)
    zone: str
    tsig_key_file: Path
    ttl: int = Field(default=30, gt=0)
    owner_id: str = Field(default="greenwise-mc", pattern=r"^[\w.-]+$")  # in ownership records


class CloudDnsConfig(Strict):
    provider: Literal["google-cloud-dns"]
    project: str
    managed_zone: str
    zone: str
    credentials_file: Path | None = None
    api_endpoint: str | None = None  # a private or test endpoint instead of Google's
    ttl: int = Field(default=30, gt=0)
    owner_id: str = Field(default="greenwise-mc", pattern=r"^[\w.-]+$")  # in ownership records


class PrometheusConfig(Strict):
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


class ControllerConfig(Strict):
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


class ContinuumConfig(Strict):
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
