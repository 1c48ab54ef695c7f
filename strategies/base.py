"""The strategy protocols and their registry: every strategy is one module with one class.

A strategy decides for every managed service at once: `decide(snapshot, masks)` returns one
action per service (Eq. 8: 0 = stay, h = move to host h - 1). Most strategies here are written
for one service (`decide(obs, mask) -> action`, the paper's MDP); `PerService` runs one instance
of such a strategy per service; one that declares `fleet = True` decides for all itself.
Each strategy declares typed `Options`, checked when it is created, and whether it
`needs_future` (simulation only). Strategies see a continuum only
through the protocol in orchestrator/continuum.py, never an implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.config import ControllerConfig, describe_validation_error
from orchestrator.continuum import Continuum
from orchestrator.errors import BadInput
from orchestrator.model import STAY, Observation, Snapshot
from orchestrator.scenario import Scenario, ServiceSpec


class NoOptions(BaseModel):
    """A strategy without options: any option given is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class StrategyContext:
    """What every strategy may know: the hosts and services (a scenario; on clusters, made
    from the config), the seed, the reward objective, the gates its decisions pass (the
    controller's settings; None: no gates), and which service it decides for."""

    scenario: Scenario
    seed: int = 0
    reward: str = "power-latency"
    on_clusters: bool = False
    service: int = 0  # for a single-service strategy: the index of its service
    gates: ControllerConfig | None = None

    @property
    def spec(self) -> ServiceSpec:
        return self.scenario.fleet[self.service]


class Stateless:
    """A base for strategies that keep nothing between episodes: no options unless declared,
    nothing to reset."""

    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, context: StrategyContext, options: BaseModel) -> None:
        pass

    def reset(self, continuum: Continuum) -> None:
        pass


class ServiceStrategy(Protocol):
    """Decides for one service (the paper's MDP)."""

    name: ClassVar[str]
    needs_future: ClassVar[bool]
    Options: ClassVar[type[BaseModel]]

    def reset(self, continuum: Continuum) -> None:
        """A new episode (simulation) or run starts."""

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        """The action for this step: 0 = stay, h = move to host h - 1 (mask[h] must be True)."""


class Strategy(Protocol):
    """Decides for every service at once."""

    name: str

    def reset(self, continuum: Continuum) -> None: ...

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> Sequence[int]:
        """One action per service of the snapshot."""


class PerService:
    """A single-service strategy run for each service: one instance per service, each with
    its own service's SLA and performance profile; invalid services stay."""

    def __init__(self, cls: type, context: StrategyContext, options: BaseModel) -> None:
        self.name: str = cls.name
        self.parts = [cls(replace(context, service=i), options)
                      for i in range(len(context.scenario.fleet))]

    def reset(self, continuum: Continuum) -> None:
        for p in self.parts:
            p.reset(continuum)

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
        return [p.decide(snapshot.view(i), masks[i]) if s.valid else STAY
                for i, (p, s) in enumerate(zip(self.parts, snapshot.services, strict=True))]


# One registry: name -> "module:Class". Modules load on first use, so commands that never touch
# an RL strategy never import torch. Another package can add its own entries.
REGISTRY: dict[str, str] = {
    "stay": "strategies.stay:StayStrategy",
    "cloud": "strategies.cloud:CloudStrategy",
    "threshold": "strategies.threshold:ThresholdStrategy",
    "random": "strategies.random_choice:RandomStrategy",
    "round-robin": "strategies.round_robin:RoundRobinStrategy",
    "rules": "strategies.rules:RulesStrategy",
    "descheduler": "strategies.descheduler:DeschedulerStrategy",
    "greedy": "strategies.greedy:GreedyStrategy",
    "lookahead": "strategies.lookahead:LookaheadStrategy",
    "oracle": "strategies.oracle:OracleStrategy",
    "maskppo": "strategies.rl:MaskPPOStrategy",
    "a2c": "strategies.rl:A2CStrategy",
}


# The strategies that learn (strategies/rl.py): trained on the simulator unless given a model.
RL = ("maskppo", "a2c")


def names() -> list[str]:
    return list(REGISTRY)


def strategy_class(name: str) -> Any:
    if name not in REGISTRY:
        raise BadInput(f"unknown strategy {name!r}; choose one of: {', '.join(names())}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check(name: str, context: StrategyContext, options: dict[str, Any] | None = None
          ) -> tuple[Any, BaseModel]:
    """The class of strategy `name` and its checked options, or one line saying what is
    wrong (an unknown name, a strategy that reads the future on clusters, a bad option)."""
    cls = strategy_class(name)
    if cls.needs_future and context.on_clusters:
        raise BadInput(f"strategy {name!r} needs the simulated continuum (it reads the "
                       "future); run it without --config")
    try:
        return cls, cls.Options.model_validate(options or {})
    except ValidationError as e:
        raise BadInput(f"strategy {name!r}: {describe_validation_error(e)}") from e


def create(name: str, context: StrategyContext, options: dict[str, Any] | None = None
           ) -> Strategy:
    """The strategy `name` for every service of the context's scenario, its options checked."""
    cls, opts = check(name, context, options)
    if getattr(cls, "fleet", False):  # decides for every service itself
        return cls(context, opts)  # type: ignore[no-any-return]
    return PerService(cls, context, opts)
