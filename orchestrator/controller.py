"""Policy mode: observe -> decide -> execute, one control tick at a time, on any continuum."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.continuum import Continuum, action_mask
from orchestrator.model import Observation, target_host
from strategies.base import Strategy
from strategies.prediction import Prediction, Predictor
from strategies.reward import reward


@dataclass(frozen=True)
class Tick:
    """One control step: what was seen, decided, predicted, and what came of it."""

    before: Observation
    action: int
    prediction: Prediction
    after: Observation
    reward: float

    @property
    def moved(self) -> bool:
        return self.after.service.host != self.before.service.host


class Controller:
    def __init__(self, continuum: Continuum, strategy: Strategy, predictor: Predictor) -> None:
        self.continuum = continuum
        self.strategy = strategy
        self.predictor = predictor

    def decide(self, obs: Observation) -> tuple[int, Prediction]:
        """What the strategy would do now and what the model predicts of it (a plan)."""
        action = self.strategy.decide(obs, action_mask(self.continuum, obs.service.host))
        return action, self.predictor.predict(obs, action)

    def tick(self) -> Tick:
        before = self.continuum.observe()
        action, prediction = self.decide(before)
        self.continuum.apply(target_host(action))
        after = self.continuum.observe()
        p = self.predictor
        r = reward(p.reward_kind, after.service.power_w, after.service.latency_ms,
                   p.model.p_max, p.l_max)
        return Tick(before, action, prediction, after, r)
