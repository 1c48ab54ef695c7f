"""The Gymnasium environment `GreenWise-v0`: the migration MDP of section 4.2.

Observation (Eq. 4-6, all in [0, 1]): the service's host as one-hot, the service's power, CPU,
latency and users, then each host's power and CPU. Action (Eq. 8): Discrete(N + 1), 0 = stay,
h = move to host h. `action_masks()` (Eq. 7) hides the current host and hosts that cannot take
the service; choosing a masked action anyway keeps the service where it is and earns -1.
A step is one tick of the control loop (orchestrator/control/loop.py), without gates.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from orchestrator.config import Scenario, load_scenario
from orchestrator.control.loop import Loop, rewards
from orchestrator.model import STAY, Observation
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.prediction import Predictor
from strategies.reward import REWARDS

ENV_ID = "GreenWise-v0"


class Encoder:
    """Turns an Observation into the normalized vector the RL policies see."""

    def __init__(self, scenario: Scenario, service: int = 0) -> None:
        self.n = len(scenario.hosts)
        self.p_max = max(h.max_watts for h in scenario.hosts)
        self.l_max = scenario.fleet[service].sla_latency_ms
        self.u_max = 2.0 * scenario.peak_users
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
        self.loop = Loop(self.sim, None, Predictor(self.scenario, reward_kind, self.sim.model),
                         explain=False)
        self._observe()
        self.encode = Encoder(self.scenario)
        self.reward_kind = reward_kind
        self.p_max = self.encode.p_max
        self.l_max = self.encode.l_max
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.encode.size,), np.float32)
        self.action_space = gym.spaces.Discrete(len(self.scenario.hosts) + 1)

    def observation(self) -> Observation:
        return self._now[0].view(0)

    def action_masks(self) -> np.ndarray:
        return self._now[1][0]

    def _observe(self) -> None:
        """The snapshot and masks of this step, taken once (the policy asks several times)."""
        snapshot = self.sim.snapshot()
        self._now = (snapshot, self.sim.masks(snapshot))

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        self.sim.reset(seed=seed, start_host=(options or {}).get("start_host"))
        self._observe()
        return self.encode(self.observation()), {"host": self.sim.host}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """The agent's action for the first service, through the control loop (no gates);
        any other services stay."""
        before, masks = self._now
        actions = [int(action)] + [STAY] * (len(before.services) - 1)
        tick = self.loop.act(before, masks, actions)
        self._observe()
        after = self._now[0]
        s = after.services[0]
        info = {"host": s.host, "power_w": s.power_w, "latency_ms": s.latency_ms,
                "moved": self.sim.moved[0], "invalid": tick.masked(0),
                "sla_violation": s.latency_ms > self.l_max}
        r = rewards(self.loop.predictor, tick, after)[0]
        return self.encode(after.view(0)), r, False, self.sim.done, info


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="strategies.env:GreenWiseEnv",
                     max_episode_steps=None)


register()
