"""Many episodes of GreenWise-v0 at once, as a stable-baselines3 VecEnv for training: what a
DummyVecEnv of Monitor-wrapped GreenWiseEnvs does (the same observations, rewards, episode ends
and infos, tests/test_env.py), with the rewards of all episodes computed together.

The episodes step in lockstep (each has as many services and ticks), so every step is the
same service's decision in each. A decision's reward needs the next step's reward of the
services on the hosts it touches, before and after the move; a tick's first one the whole
fleet's had no one moved: those hosts of all episodes are settled at once
(orchestrator/sim/sharing.py), their moves' costs and rewards computed as arrays. The rest
(masks, observations, the tick through the control loop) is each episode's GreenWiseEnv.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from orchestrator.config import ControllerConfig
from orchestrator.model import target_host
from orchestrator.scenario import Scenario
from orchestrator.sim.continuum import current
from orchestrator.sim.sharing import groups
from strategies.env import GreenWiseEnv, encode, host_state
from strategies.reward import INVALID_ACTION_PENALTY, rewards


class GreenWiseVecEnv(VecEnv):
    def __init__(self, scenario: Scenario, n_envs: int, phase: str = "train",
                 reward_kind: str = "power-latency", seed: int | None = None,
                 gates: ControllerConfig | None = None) -> None:
        self.envs = [GreenWiseEnv(scenario, phase, reward_kind, gates=gates,
                                  seed=None if seed is None else seed + b) for b in range(n_envs)]
        first = self.envs[0]
        super().__init__(n_envs, first.observation_space, first.action_space)
        self.sharing, self.move_cost = first.sim.sharing, first.sim.move_cost
        self.sla = np.array([s.sla_latency_ms for s in scenario.fleet])
        self.reward_kind, self.p_max = reward_kind, first.predictor.p_max
        self.hosts, self.services = len(scenario.hosts), len(scenario.fleet)
        self.actions = np.zeros(n_envs, dtype=np.int64)
        self.returns = [0.0] * n_envs  # the Monitor's: the episode's rewards so far
        self.lengths = [0] * n_envs
        self.started = time.time()

    # --- the next step's rewards, of all episodes at once -------------------------------------
    def _next_step(self) -> None:
        """What the next step holds for each episode, at its tick's start: where each
        service serves and what it gets there (`at_src` of a move), and each episode's stay
        share."""
        envs = self.envs
        sims, t = [e.sim for e in envs], [e.sim.t + 1 for e in envs]
        self.placement = np.array([s.placement for s in sims])
        self.users = np.array([s.episode.users[:, u] for s, u in zip(sims, t, strict=True)])
        self.jitter = np.array([s.episode.jitter[:, u] for s, u in zip(sims, t, strict=True)])
        self.background = np.array([s.background[u] for s, u in zip(sims, t, strict=True)])
        self.wake = np.array([[s.wake_wait(h) for h in range(self.hosts)] for s in sims])
        members, slot = groups(self.placement, self.hosts)
        episode = np.repeat(np.arange(len(envs)), self.hosts)
        host = np.tile(np.arange(self.hosts), len(envs))
        settled, at_dst = self._settle(episode, host, members)
        self.served = tuple(a.ravel()[slot] for a in at_dst)  # [episode, service]
        per_host = self._host_rewards(episode, host, members, settled, at_dst)
        fleet = np.cumsum(per_host.reshape(len(envs), self.hosts), axis=1)[:, -1]
        for e, share in zip(envs, (fleet / self.services).tolist(), strict=True):
            e._stay_share = share

    def _settle(self, episode: np.ndarray, host: np.ndarray, members: np.ndarray
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Groups (their episode, host and members) settled at the next step: (watts,
        latency ms) of each member there."""
        s = np.maximum(members, 0)
        out = self.sharing.groups(host, members, self.users[episode[:, None], s],
                                  self.background[episode, host])
        return s, (out[0], out[1] * self.jitter[episode[:, None], s])

    def _host_rewards(self, episode: np.ndarray, host: np.ndarray, members: np.ndarray,
                      s: np.ndarray, at_dst: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Each group's next reward summed over its members in order, a member that moves
        there in this tick as orchestrator/move_cost.py says (GreenWiseEnv._host_reward)."""
        e = episode[:, None]
        src, dst = self.placement[e, s], np.broadcast_to(host[:, None], s.shape)
        at_src = (self.served[0][e, s], self.served[1][e, s])
        watts, latency = self.move_cost.steps(s, src, dst, at_src, at_dst,
                                              np.broadcast_to(self.wake[episode, host][:, None],
                                                              s.shape))
        r = rewards(self.reward_kind, watts, latency, self.p_max, self.sla[s])
        r = np.where(members >= 0, r, 0.0)
        return np.cumsum(r, axis=1)[:, -1] if r.shape[1] else np.zeros(len(r))

    def _decisions(self, moving: Sequence[tuple[int, int]]) -> list[float]:
        """What moving the current service of each env `b` to host `to` changes in its
        fleet's next reward (GreenWiseEnv._decision_reward); the moves are made in the loads."""
        rows: list[list[int]] = []  # episode, host, its members: before and after the move
        for b, to in moving:
            where, i = self.envs[b].load.where, self.envs[b].service
            for now in (where, [*where[:i], to, *where[i + 1:]]):
                rows += [[b, h, *(s for s, at in enumerate(now) if at == h)]
                         for h in (where[i], to)]
            self.envs[b].load.move(i, to)
        width = max(len(r) for r in rows)
        table = np.array([r + [-1] * (width - len(r)) for r in rows])
        episode, host, members = table[:, 0], table[:, 1], table[:, 2:]
        s, at_dst = self._settle(episode, host, members)
        per_host = self._host_rewards(episode, host, members, s, at_dst).reshape(-1, 4)
        before = 0.0 + per_host[:, 0] + per_host[:, 1]  # in order, as Python's sum
        after = 0.0 + per_host[:, 2] + per_host[:, 3]
        return (after - before).tolist()

    # --- VecEnv ---------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        obs = []
        for b, env in enumerate(self.envs):
            options = {"options": self._options[b]} if self._options[b] else {}
            o, self.reset_infos[b] = env.reset(seed=self._seeds[b], **options)
            obs.append(o)
            self.returns[b], self.lengths[b] = 0.0, 0
        self._reset_seeds()
        self._reset_options()
        self._hosts()
        self._next_step()
        return np.stack(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        i = self.envs[0].service  # the service deciding in every episode
        judged = []  # (action, masked, moves to) per episode
        for env, action in zip(self.envs, self.actions.tolist(), strict=True):
            a = int(action)
            masked = not (0 <= a < len(env.mask) and env.mask[a])
            judged.append((a, masked, None if masked else target_host(a)))
        moving = [(b, to) for b, (_, _, to) in enumerate(judged) if to is not None]
        changes = dict(zip((b for b, _ in moving), self._decisions(moving) if moving else [],
                           strict=True))
        rews = np.array([INVALID_ACTION_PENALTY if masked else env.stay_share + changes.get(b, 0.0)
                         for b, (env, (_, masked, _)) in enumerate(zip(self.envs, judged,
                                                                       strict=True))])
        ended = [env.decided(a, masked) for env, (a, masked, _) in zip(self.envs, judged,
                                                                          strict=True)]
        if ended[0]:  # the tick carried out in every episode: measure them together
            current([env.sim for env in self.envs])
            for env in self.envs:
                env._new_tick()
            self._hosts()
        obs = self._observations()
        infos, dones = [], np.zeros(self.num_envs, dtype=bool)
        for b, (env, (_, masked, _)) in enumerate(zip(self.envs, judged, strict=True)):
            info = env.info(i, masked, ended[b])
            self.returns[b] += float(rews[b])
            self.lengths[b] += 1
            dones[b] = ended[b] and env.sim.done
            info["TimeLimit.truncated"] = bool(dones[b])  # the episode's time is up
            if dones[b]:  # as Monitor and DummyVecEnv say it, then reset
                info["episode"] = {"r": round(self.returns[b], 6), "l": self.lengths[b],
                                   "t": round(time.time() - self.started, 6)}
                info["terminal_observation"] = obs[b].copy()
                obs[b], self.reset_infos[b] = env.reset()
                self.host_power[b], self.host_cpu[b] = host_state(env.snapshot.hosts)
                self.returns[b], self.lengths[b] = 0.0, 0
            infos.append(info)
        if ended[0]:
            self._next_step()
        return obs, rews.astype(np.float32), dones, infos

    def _hosts(self) -> None:
        """The hosts' power and CPU each episode observes in its tick."""
        self.host_power, self.host_cpu = map(np.array, zip(*(
            host_state(env.snapshot.hosts) for env in self.envs), strict=True))

    def _observations(self) -> np.ndarray:
        """What each episode's next service sees (GreenWiseEnv's observation), encoded at
        once."""
        views = [env.observation() for env in self.envs]
        i, n = self.envs[0].service, self.hosts
        others = np.array([v.others_cpu if len(v.others_cpu) else np.zeros(n) for v in views])
        return encode([self.envs[0].encoders[i]] * len(views), [v.service for v in views],
                      self.host_power, self.host_cpu, others)

    def close(self) -> None:
        pass

    def _targets(self, indices: VecEnvIndices) -> list[GreenWiseEnv]:
        return [self.envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(env, attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._targets(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [getattr(env, method_name)(*method_args, **method_kwargs)
                for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._targets(indices)]

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices
