"""The strategy protocol and its registry: every strategy is one module with one class."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from orchestrator.config import Scenario
from orchestrator.errors import BadInput
from orchestrator.model import Observation
from orchestrator.sim.continuum import SimulatedContinuum


@dataclass
class StrategyOptions:
    scenario: Scenario
    seed: int = 0
    model_path: Path | None = None
    reward: str = "power-latency"
    extra: dict[str, str] = field(default_factory=dict)


class Strategy(Protocol):
    name: ClassVar[str]
    simulation_only: ClassVar[bool]

    def reset(self, sim: SimulatedContinuum | None) -> None:
        """A new episode starts; `sim` is given only on the simulated continuum."""

    def decide(self, obs: Observation, mask: np.ndarray) -> int:
        """The action for this step: 0 = stay, h = move to host h (mask[h] must be True)."""


# One registry: name -> "module:Class". Modules load on first use, so commands that never touch
# an RL strategy never import torch. Another package can add its own entries.
REGISTRY: dict[str, str] = {
    "random": "strategies.random_choice:RandomStrategy",
    "round-robin": "strategies.round_robin:RoundRobinStrategy",
    "rules": "strategies.rules:RulesStrategy",
    "greedy": "strategies.greedy:GreedyStrategy",
    "oracle": "strategies.oracle:OracleStrategy",
    "maskppo": "strategies.rl:MaskPPOStrategy",
    "a2c": "strategies.rl:A2CStrategy",
}


def names() -> list[str]:
    return list(REGISTRY)


def strategy_class(name: str) -> type:
    if name not in REGISTRY:
        raise BadInput(f"unknown strategy {name!r}; choose one of: {', '.join(names())}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, options: StrategyOptions) -> Strategy:
    return strategy_class(name)(options)
