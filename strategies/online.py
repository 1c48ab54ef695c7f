"""Online training (`run --online-training`): MaskablePPO keeps learning from policy mode's live
transitions, as the paper trains online, and the model is checkpointed after each round.

What it does, exactly:
- Each tick, per service with a valid observation, the controller records the observation it
  acted on, its action mask and the action it actually took (stay when a gate held a move back
  or in a dry run). At that service's next valid observation the transition is completed with
  the reward (Eq. 9-11) that the observed power and latency earn.
- Every `every` completed transitions, the model trains for one rollout (its `n_steps`) on
  `ReplayEnv`, a Gymnasium environment over the last `window` transitions: an episode walks
  recorded states in order from a random start; the action taken live earns the observed reward,
  any other valid action earns what the performance model predicts for it (it was not tried), a
  masked one -1. The next state is always the recorded one: the workload is what it was and the
  placement what the controller did, so this corrects the policy one step at a time
  (contextual-bandit-like) rather than exploring counterfactual futures.
- The strategy decides with the same model object, so the next tick uses the updated policy; the
  checkpoint (a file `greenwise-mc run --strategy maskppo --model` loads) is replaced atomically.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO

from orchestrator.model import Observation
from strategies.env import Encoder
from strategies.prediction import Predictor
from strategies.reward import INVALID_ACTION_PENALTY


@dataclass(frozen=True)
class Transition:
    obs: Observation
    vector: np.ndarray  # the observation as its service's encoder put it
    mask: np.ndarray
    action: int  # the action taken live
    reward: float  # what the next observation earned


class ReplayEnv(gym.Env[np.ndarray, np.int64]):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, transitions: Sequence[Transition], predictor: Predictor,
                 episode_steps: int = 25) -> None:
        if not transitions:
            raise ValueError("no transitions to replay")
        self.transitions = list(transitions)
        size, n = len(transitions[0].vector), len(transitions[0].mask)
        self.predictor = predictor
        self.episode_steps = episode_steps
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
        self.action_space = gym.spaces.Discrete(n)
        self.i = self.t = 0

    def action_masks(self) -> np.ndarray:
        return self.transitions[self.i].mask

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.i, self.t = int(self.np_random.integers(len(self.transitions))), 0
        return self.transitions[self.i].vector.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        tr = self.transitions[self.i]
        if a == tr.action:
            r = tr.reward
        elif not tr.mask[a]:
            r = INVALID_ACTION_PENALTY
        else:
            r = self.predictor.predict(tr.obs, a).reward
        self.i = (self.i + 1) % len(self.transitions)
        self.t += 1
        return (self.transitions[self.i].vector.copy(), float(r), False,
                self.t >= self.episode_steps, {"observed": a == tr.action})


class OnlineLearner:
    """Collects live transitions and trains `model` on them every `every` of them."""

    def __init__(self, model: MaskablePPO, encoders: Sequence[Encoder], predictor: Predictor,
                 checkpoint: Path, every: int = 25, window: int = 500,
                 on_round: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.model = model
        self.encoders = encoders  # per service
        self.predictor = predictor
        self.checkpoint = checkpoint
        self.every = every
        self.transitions: deque[Transition] = deque(maxlen=window)
        self.pending: dict[str, Transition] = {}  # its reward still to come
        self.new = 0
        self.rounds = 0
        self.on_round = on_round or (lambda info: None)

    def observed(self, service: str, obs: Observation) -> None:
        """A valid observation of `service`: it completes the service's pending transition."""
        if service not in self.pending:
            return
        p = self.predictor
        r = p.reward(obs.service.power_w, obs.service.latency_ms, p.index(service))
        self.transitions.append(replace(self.pending.pop(service), reward=r))
        self.new += 1
        if self.new >= self.every:
            self.train()

    def acted(self, service: str, obs: Observation, mask: np.ndarray, action: int) -> None:
        vector = self.encoders[self.predictor.index(service)](obs)
        self.pending[service] = Transition(obs, vector, mask, action, 0.0)

    def train(self) -> dict[str, Any]:
        env = ReplayEnv(self.transitions, self.predictor)
        self.model.set_env(env)
        steps = int(self.model.n_steps)
        self.model.learn(total_timesteps=steps, reset_num_timesteps=False)
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint.with_name(self.checkpoint.stem + ".partial.zip")
        self.model.save(partial)
        os.replace(partial, self.checkpoint)
        self.new = 0
        self.rounds += 1
        info = {"round": self.rounds, "transitions": len(self.transitions),
                "trained_steps": steps, "total_steps": int(self.model.num_timesteps),
                "mean_observed_reward": round(float(np.mean(
                    [t.reward for t in self.transitions])), 4),
                "checkpoint": str(self.checkpoint)}
        self.on_round(info)
        return info
