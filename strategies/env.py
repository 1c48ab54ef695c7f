"""The Gymnasium environment `GreenWise-v0`: the migration MDP of section 4.2.

Observation (Eq. 4-6, all in [0, 1]): the service's host as one-hot, the service's power, CPU,
latency and users, then each host's power and CPU. Action (Eq. 8): Discrete(N + 1), 0 = stay,
h = move to host h. `action_masks()` (Eq. 7) hides the current host and hosts that cannot take
the service; choosing a masked action anyway keeps the service where it is and earns -1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from orchestrator.config import Scenario, load_scenario
from orchestrator.continuum import action_mask
from orchestrator.model import Observation, target_host
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.reward import INVALID_ACTION_PENALTY, REWARDS, reward

ENV_ID = "GreenWise-v0"


class Encoder:
    """Turns an Observation into the normalized vector the RL policies see."""

    def __init__(self, scenario: Scenario) -> None:
        self.n = len(scenario.hosts)
        self.p_max = max(h.max_watts for h in scenario.hosts)
        self.l_max = scenario.service.sla_latency_ms
        self.u_max = 2.0 * scenario.workload.peak_users
        self.size = 2 * self.n + 4 + self.n

    def __call__(self, obs: Observation) -> np.ndarray:
        v = np.zeros(self.size, dtype=np.float32)
        s = obs.service
        v[s.host] = 1.0
        n = self.n
        v[n] = s.power_w / self.p_max
        v[n + 1] = s.cpu
        v[n + 2] = 0.5 * s.latency_ms / self.l_max  # 1.0 = twice the SLA
        v[n + 3] = s.users / self.u_max
        for i, h in enumerate(obs.hosts):
            v[n + 4 + 2 * i] = h.power_w / self.p_max
            v[n + 5 + 2 * i] = h.cpu
        return np.clip(v, 0.0, 1.0, out=v)


class GreenWiseEnv(gym.Env[np.ndarray, np.int64]):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, scenario: Scenario | str = "paper", phase: str = "train",
                 reward_kind: str = "power-latency", seed: int | None = None) -> None:
        if reward_kind not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, not {reward_kind!r}")
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.sim = SimulatedContinuum(self.scenario, phase, seed=seed)
        self.encode = Encoder(self.scenario)
        self.reward_kind = reward_kind
        self.p_max = self.encode.p_max
        self.l_max = self.encode.l_max
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.encode.size,), np.float32)
        self.action_space = gym.spaces.Discrete(len(self.scenario.hosts) + 1)

    def observation(self) -> Observation:
        return self.sim.observe()

    def action_masks(self) -> np.ndarray:
        return action_mask(self.sim, self.sim.host)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        self.sim.reset(seed=seed, start_host=(options or {}).get("start_host"))
        return self.encode(self.sim.observe()), {"host": self.sim.host}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        valid = bool(self.action_masks()[action])
        self.sim.apply(target_host(action) if valid else None)
        watts, latency = self.sim.current()
        r = reward(self.reward_kind, watts, latency, self.p_max, self.l_max)
        if not valid:
            r = INVALID_ACTION_PENALTY
        info = {"host": self.sim.host, "power_w": watts, "latency_ms": latency,
                "moved": self.sim.moved, "invalid": not valid,
                "sla_violation": latency > self.l_max}
        return self.encode(self.sim.observe()), r, False, self.sim.done, info


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="strategies.env:GreenWiseEnv",
                     max_episode_steps=None)
