"""Reinforcement-learning strategies: MaskablePPO (sb3-contrib) and A2C (stable-baselines3),
trained on the simulated continuum's training pattern and run on any continuum."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from orchestrator.config import ControllerConfig
from orchestrator.continuum import Continuum
from orchestrator.errors import BadInput
from orchestrator.model import STAY, Load, Move, Snapshot, target_host
from orchestrator.scenario import Scenario
from strategies.base import NoOptions, StrategyContext
from strategies.env import Encoder, GreenWiseEnv, encoders, first_layer, seen
from strategies.gated import Proposals
from strategies.policy_net import PolicyNet
from strategies.prediction import Predictor
from strategies.vec_env import GreenWiseVecEnv

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"maskppo": MaskablePPO, "a2c": A2C}
# Tuned for the paper's small budget (5500 steps = 220 episodes of 25 steps): short rollouts so
# the policy updates often, a small network, and gamma that looks a few steps ahead.
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "maskppo": {"n_steps": 250, "batch_size": 50, "n_epochs": 20, "learning_rate": 1e-3,
                "gamma": 0.9, "ent_coef": 0.0, "policy_kwargs": {"net_arch": [64, 64]}},
    "a2c": {"n_steps": 25, "learning_rate": 3e-3, "gamma": 0.9, "ent_coef": 0.01,
            "policy_kwargs": {"net_arch": [64, 64]}},
}


def hyperparameters(algorithm: str, services: int, envs: int = 1) -> dict[str, Any]:
    """The paper's settings, per tick: with N services a tick is N decisions (steps), so a
    rollout holds N times the steps and gamma discounts one tick as much as on the paper.
    With several episodes stepped at once (`envs`), each gives its share of a rollout."""
    hp = dict(HYPERPARAMETERS[algorithm])
    hp["n_steps"] = max(1, round(hp["n_steps"] * services / envs))
    hp["gamma"] **= 1.0 / services
    if "batch_size" in hp:
        hp["batch_size"] *= services
    return hp


def _most_probable(model: BaseAlgorithm, vec: np.ndarray, mask: np.ndarray) -> int:
    """MaskablePPO's deterministic action within the mask."""
    action, _ = model.predict(vec, action_masks=mask, deterministic=True)
    return int(action)


def _most_probable_valid(model: BaseAlgorithm, vec: np.ndarray, mask: np.ndarray) -> int:
    """A2C learns without masks (the -1 penalty teaches it); a controller still never commands
    a masked action, so take the most probable valid one."""
    obs, _ = model.policy.obs_to_tensor(vec)
    with torch.no_grad():
        probs = model.policy.get_distribution(obs).distribution.probs.numpy()[0]
    return int(np.argmax(np.where(mask, probs, -1.0)))


# How a trained model decides: its most probable action that the mask allows.
CHOOSE: dict[str, Callable[[BaseAlgorithm, np.ndarray, np.ndarray], int]] = {
    "maskppo": _most_probable, "a2c": _most_probable_valid}

# The fixed training-pattern episodes a policy is checked on while it trains (their seeds):
# a training curve without the noise of each training episode's own draw and exploration.
CHECK_SEEDS = tuple(range(10**6, 10**6 + 5))
CHECKS = 10  # checks over a training run


def check(algorithm: str, model: BaseAlgorithm, env: GreenWiseEnv) -> float:
    """The policy's mean episode reward (as the env sums it: the fleet's) on CHECK_SEEDS'
    training-pattern episodes, deciding as it would in a strategy."""
    total = 0.0
    for seed in CHECK_SEEDS:
        vec, _ = env.reset(seed=seed)
        done = False
        while not done:
            vec, r, _, done, _ = env.step(CHOOSE[algorithm](model, vec, env.action_masks()))
            total += float(r)
    return total / len(CHECK_SEEDS)


class _Report(BaseCallback):
    """Reports the steps done and each finished training episode (the steps at its end, its
    reward): the Monitor stable-baselines3 wraps the env in sums an episode's rewards over its
    steps (with N services a tick is N steps), as Fig. 4 counts an episode's reward."""

    def __init__(self, on_step: Callable[[int], None] | None,
                 on_episode: Callable[[int, float], None] | None,
                 on_check: Callable[[int, float], None] | None, every: int,
                 checker: Callable[[BaseAlgorithm], float]) -> None:
        super().__init__()
        self.step_done = on_step  # (BaseCallback's own on_step must not be shadowed)
        self.episode_done = on_episode
        self.check_done, self.every, self.checker = on_check, every, checker

        self.checked: int | None = None  # the steps done at the last check

    def _check(self) -> None:
        if self.check_done and self.checked != self.num_timesteps:
            self.checked = self.num_timesteps
            self.check_done(self.num_timesteps, self.checker(self.model))

    # Checked between updates (a rollout starts after the policy was trained on the last one),
    # so each check is of a policy as it was saved or could be.
    def _on_rollout_start(self) -> None:
        if self.checked is None or self.num_timesteps >= self.checked + self.every:
            self._check()

    def _on_training_end(self) -> None:
        self._check()

    def _on_step(self) -> bool:
        if self.step_done:
            self.step_done(self.num_timesteps)
        if self.episode_done:
            for info in self.locals.get("infos", ()):
                if "episode" in info:
                    self.episode_done(self.num_timesteps, float(info["episode"]["r"]))
        return True


def train(algorithm: str, scenario: Scenario, reward_kind: str, steps: int, seed: int,
          out: Path | None = None, on_step: Callable[[int], None] | None = None,
          on_episode: Callable[[int, float], None] | None = None,
          gates: ControllerConfig | None = None,
          on_check: Callable[[int, float], None] | None = None,
          envs: int = 1) -> BaseAlgorithm:
    """Train on the training pattern, within `gates` (the controller's settings it will
    decide under; None: none); save to `out` if given. `on_step` gets the steps done,
    `on_episode` (steps done, reward) at the end of each training episode, `on_check` (steps
    done, reward) the policy's `check` before training, about CHECKS times during it (at the
    first rollout boundary a tenth of the steps on) and at its end. `envs` episodes are
    stepped at once (strategies/vec_env.py; 1: one GreenWiseEnv, as the paper)."""
    model = agent(algorithm, scenario, reward_kind, seed, envs, gates)
    checks = GreenWiseEnv(scenario, "train", reward_kind, gates=gates) if on_check else None
    report = _Report(on_step, on_episode, on_check, max(1, steps // CHECKS),
                     lambda m: check(algorithm, m, checks) if checks else 0.0)
    model.learn(total_timesteps=steps, callback=report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    return model


def agent(algorithm: str, scenario: Scenario, reward_kind: str, seed: int, envs: int = 1,
          gates: ControllerConfig | None = None) -> BaseAlgorithm:
    """An untrained agent on the training pattern (within `gates`), as `train` trains it."""
    if algorithm not in ALGORITHMS:
        raise BadInput(f"cannot train {algorithm!r}; trainable: {', '.join(ALGORITHMS)}")
    torch.set_num_threads(1)  # tiny networks: threads cost more than they give
    env: GreenWiseEnv | GreenWiseVecEnv = (
        GreenWiseEnv(scenario, "train", reward_kind, seed=seed, gates=gates) if envs == 1 else
        GreenWiseVecEnv(scenario, envs, "train", reward_kind, seed=seed, gates=gates))
    return ALGORITHMS[algorithm]("MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                                 **hyperparameters(algorithm, len(scenario.fleet), envs))


_LOADED: dict[tuple[str, Path, int], BaseAlgorithm] = {}


def _loaded(algorithm: str, path: Path, scenario: Scenario) -> BaseAlgorithm:
    """One loaded model per file version, shared by the services that decide with it."""
    if not path.is_file():
        return load(algorithm, path, scenario)  # says what is missing
    key = (algorithm, path.resolve(), path.stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = load(algorithm, path, scenario)
    return _LOADED[key]


def load(algorithm: str, path: Path, scenario: Scenario) -> BaseAlgorithm:
    if not path.is_file():
        raise BadInput(f"model file {path} does not exist; train one with "
                       f"`greenwise-mc train --strategy {algorithm} --out {path}`")
    try:
        model = ALGORITHMS[algorithm].load(path, device="cpu")
    except (zipfile.BadZipFile, ValueError, KeyError, RuntimeError, EOFError, TypeError) as e:
        raise BadInput(f"{path} is not a model saved by `greenwise-mc train --strategy "
                       f"{algorithm}` ({type(e).__name__})") from e
    expected = Encoder(scenario).size
    if model.observation_space.shape != (expected,):
        raise BadInput(
            f"{path} was trained for a continuum with a different number of hosts, or by "
            f"an older greenwise-mc (observation size {model.observation_space.shape} vs "
            f"{expected}); retrain it on this scenario")
    return model


class RLOptions(NoOptions):
    model: Path | None = None  # saved by `greenwise-mc train`; required


class _RLStrategy:
    """One trained model decides for every service in turn, each seeing the moves decided
    before it in the tick (in its observation and its mask), as it was trained; its mask
    hides what the gates would hold (strategies/gated.py). The network's first layer is
    summed for the tick's observations at once (`first_layer`); a move changes what the next
    ones see on two hosts only, and that layer follows those entries."""

    name: ClassVar[str]
    fleet: ClassVar[bool] = True
    needs_future: ClassVar[bool] = False
    Options: ClassVar[type[RLOptions]] = RLOptions

    def __init__(self, context: StrategyContext, options: RLOptions) -> None:
        sc = context.scenario
        self.encoders = encoders(sc)
        self.capacity = sc.capacity
        if options.model is None:
            raise BadInput(f"strategy {self.name!r} needs a trained model: pass --model "
                           "PATH (from `greenwise-mc train`)")
        torch.set_num_threads(1)
        self.model = _loaded(self.name, options.model, sc)
        self.net = PolicyNet(self.model)
        self.continuum: Continuum | None = None
        self.proposals = Proposals(context.gates)
        self.predictor = Predictor(sc, context.reward)

    def reset(self, continuum: Continuum) -> None:
        self.continuum = continuum
        self.proposals.reset()

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
        actions = [STAY] * len(snapshot.services)
        valid = [i for i, s in enumerate(snapshot.services) if s.valid]
        self.proposals.begin(snapshot)
        if not valid:
            return actions
        net, load = self.net, Load(snapshot, self.capacity)
        net.refresh()  # online training updates the model between ticks
        gated, chosen = self.proposals.gates is not None, 0  # moves chosen so far
        claims = self.continuum.claims(snapshot) if self.continuum is not None else None
        at = 3 * len(snapshot.hosts) + 4  # where the others' CPU per host starts in one
        # the first layer of the observations as encoded now, and what they see of the others'
        # CPU on their own host: only what the moves change is added below
        first, here = first_layer(self.encoders, load, valid, net.columns)
        first += net.b1

        def seen_one(cpu: float) -> np.float32:  # `seen` of one entry: 1 us, numpy 2.8
            return np.float32(min(max(np.float32(cpu), 0.0), 1.0))

        # What the observations see of each host's managed CPU: at the tick's start, and now
        # (the first layer's change since, over the hosts, is `shift`)
        start = seen(load.cpu)
        now, shift, moved = start.copy(), np.zeros(first.shape[1]), False
        for r, i in enumerate(valid):
            if self.proposals.closed(i, chosen):
                continue  # it stays: no need to ask the network
            pre = first[r]
            if not load.alone(i):  # its own host shows the others' CPU, not all of it
                h = load.where[i]
                pre = pre + shift + net.columns[at + h] * (
                    (seen_one(load.own(i)) - here[r]) - (now[h] - start[h]))
            # the most probable action the mask allows (the mask only if the first is not)
            logits = net.logits(pre)
            a = int(np.argmax(logits))
            changed = moved and claims is not None
            if gated or not (claims.allows(i, a) if changed else masks[i][a]):
                a = self.proposals.choose(snapshot, i, claims.mask(i) if changed else masks[i],
                                          chosen, self.predictor, logits)
            actions[i] = a
            to = target_host(a)
            if to is None:
                continue
            chosen += 1
            if claims is not None:
                claims.add(Move(i, to))
            src, moved = load.where[i], True
            load.move(i, to)
            for h in (src, to):
                now_h = seen_one(load.cpu[h])
                shift += net.columns[at + h] * (now_h - now[h])
                now[h] = now_h
        return actions


class MaskPPOStrategy(_RLStrategy):
    """MaskablePPO: the most probable action the mask allows."""

    name: ClassVar[str] = "maskppo"


class A2CStrategy(_RLStrategy):
    """A2C: the most probable valid action (as `_most_probable_valid`, which says why)."""

    name: ClassVar[str] = "a2c"
