"""Scenario schema: clusters of hosts, the served model, workload, SLA and migration costs.

The same host schema is part of the real `continuum.yaml`; a scenario is what the simulated
continuum is built from. `load_scenario("paper")` gives the GreenWise paper's testbed.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import GreenwiseError

Tier = Literal["edge", "fog", "cloud"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostProfile(_Strict):
    """One machine: its capacity, power profile and network distance to the users."""

    name: str = Field(min_length=1)
    cores: int = Field(gt=0)
    idle_watts: float = Field(ge=0)
    max_watts: float = Field(gt=0)
    network_latency_ms: float = Field(ge=0)
    memory_gib: float = Field(default=8.0, gt=0)
    # Relative per-core speed; inference time per image is divided by it.
    speed: float = Field(default=1.0, gt=0)
    # Dynamic power as a fraction of (max - idle) at given CPU utilizations, piecewise linear
    # between the points; the default is the linear model.
    power_curve: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 1.0))
    # Processes of everything else on the host (OS, kubelet, ...): idle power is shared by
    # process count (Eq. 2), so this sets the service's share of the idle power.
    base_processes: int = Field(default=200, ge=0)
    # CPU utilization of other tenants, in [0, 1).
    background_utilization: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> HostProfile:
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
        return self


class ClusterSpec(_Strict):
    name: str = Field(min_length=1)
    tier: Tier
    hosts: tuple[HostProfile, ...] = Field(min_length=1)


class ServiceSpec(_Strict):
    """The served model, by default the paper's TorchServe ResNet-18 (batch 8, delay 100 ms)."""

    name: str = "resnet-18"
    inference_ms_per_image: float = Field(default=40.0, gt=0)  # one core, intra-op threads = 1
    batch_overhead_ms: float = Field(default=5.0, ge=0)
    batch_size: int = Field(default=8, gt=0)
    max_batch_delay_ms: float = Field(default=100.0, ge=0)
    # Clients wait uniformly between these before their next request (Locust wait_time).
    think_time_s: tuple[float, float] = (0.1, 0.5)
    sla_latency_ms: float = Field(default=500.0, gt=0)
    memory_gib: float = Field(default=2.0, gt=0)
    cpu_request: float = Field(default=1.0, gt=0)


class MigrationCost(_Strict):
    """What one move costs in the step it happens (make-before-break: two copies run briefly,
    the new one starts cold, and inter-cluster clients are forwarded until DNS converges)."""

    latency_ms: float = Field(ge=0)
    watts: float = Field(ge=0)


class MigrationCosts(_Strict):
    intra_cluster: MigrationCost = MigrationCost(latency_ms=25.0, watts=3.0)
    inter_cluster: MigrationCost = MigrationCost(latency_ms=80.0, watts=8.0)


class WorkloadSpec(_Strict):
    """Users per step. `train` and `test` name a built-in pattern or a CSV trace `time,users`."""

    train: str = "ramp"
    test: str = "day"
    peak_users: int = Field(default=60, gt=0)
    noise: float = Field(default=0.1, ge=0, le=1)  # relative, seeded
    latency_jitter: float = Field(default=0.05, ge=0, le=1)


class Scenario(_Strict):
    name: str = "custom"
    clusters: tuple[ClusterSpec, ...] = Field(min_length=1)
    service: ServiceSpec = ServiceSpec()
    workload: WorkloadSpec = WorkloadSpec()
    migration: MigrationCosts = MigrationCosts()
    episode_steps: int = Field(default=25, gt=0)

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        for kind, names in (("cluster", [c.name for c in self.clusters]),
                            ("host", [h.name for h in self.hosts])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(dup)}")
        return self

    @property
    def hosts(self) -> tuple[HostProfile, ...]:
        return tuple(h for c in self.clusters for h in c.hosts)

    def cluster_of(self, host: str) -> str:
        return next(c.name for c in self.clusters for h in c.hosts if h.name == host)


PAPER = Scenario(
    name="paper",
    clusters=(
        ClusterSpec(name="edge", tier="edge", hosts=(
            HostProfile(name="edge0", cores=4, idle_watts=19.0, max_watts=58.5,
                        network_latency_ms=14.0),
            HostProfile(name="edge1", cores=4, idle_watts=36.6, max_watts=69.7,
                        network_latency_ms=5.0),
            HostProfile(name="edge2", cores=4, idle_watts=21.4, max_watts=102.0,
                        network_latency_ms=3.0),
        )),
        ClusterSpec(name="cloud", tier="cloud", hosts=(
            HostProfile(name="cloud", cores=12, idle_watts=162.0, max_watts=280.0,
                        network_latency_ms=30.9, memory_gib=128.0),
        )),
    ),
)

BUILTIN = {"paper": PAPER}


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a YAML file; bad input raises GreenwiseError."""
    if str(name_or_path) in BUILTIN:
        return BUILTIN[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise GreenwiseError(
            f"scenario {str(name_or_path)!r} is neither a built-in ({', '.join(BUILTIN)}) "
            "nor a readable file; pass --scenario paper or a path to a scenario YAML"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise GreenwiseError(f"{path}: not valid YAML ({_first_line(str(e))})") from e
    if not isinstance(data, dict):
        raise GreenwiseError(f"{path}: expected a mapping with a 'clusters' list at the top")
    data.setdefault("name", path.stem)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise GreenwiseError(f"{path}: {describe_validation_error(e)}") from e
    return _resolve_traces(scenario, path.parent)


def describe_validation_error(e: ValidationError) -> str:
    """The first problem pydantic found, as `where: what`."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _resolve_traces(scenario: Scenario, base: Path) -> Scenario:
    """Trace paths in a scenario file are relative to that file; check and pin them."""
    from orchestrator.sim.workload import PATTERNS, pattern  # late: workload imports errors only

    resolved = {}
    for field in ("train", "test"):
        spec = getattr(scenario.workload, field)
        if spec not in PATTERNS:
            pattern(spec, scenario.workload.peak_users, base)  # raises a clear error
            resolved[field] = str(spec if Path(spec).is_absolute() else base / spec)
    if not resolved:
        return scenario
    workload = scenario.workload.model_copy(update=resolved)
    return scenario.model_copy(update={"workload": workload})


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
