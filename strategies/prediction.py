"""What the model predicts an action will do: the basis of greedy decisions, plans and the
policy mode's minimum-gain guard. Users are assumed to stay as observed (one-step lookahead)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import Scenario
from orchestrator.model import Observation, target_host
from orchestrator.sim.performance import PerformanceModel
from strategies.reward import reward


@dataclass(frozen=True)
class Prediction:
    host: int
    power_w: float
    latency_ms: float
    reward: float
    move: str | None  # "intra" | "inter" | None


class Predictor:
    def __init__(self, scenario: Scenario, reward_kind: str = "power-latency",
                 model: PerformanceModel | None = None) -> None:
        self.scenario = scenario
        self.model = model or PerformanceModel(scenario)
        self.reward_kind = reward_kind
        self.clusters = [scenario.cluster_of(h.name) for h in scenario.hosts]
        self.l_max = scenario.service.sla_latency_ms

    def predict(self, obs: Observation, action: int) -> Prediction:
        src = obs.service.host
        dst = target_host(action)
        dst = src if dst is None else dst
        move = None if dst == src else (
            "intra" if self.clusters[src] == self.clusters[dst] else "inter")
        o = self.model.outcome(dst, obs.service.users)
        watts, latency = o.service_watts, o.latency_ms
        if move is not None:
            cost = getattr(self.scenario.migration, f"{move}_cluster")
            watts += cost.watts
            latency += cost.latency_ms
        r = reward(self.reward_kind, watts, latency, self.model.p_max, self.l_max)
        return Prediction(dst, watts, latency, r, move)
