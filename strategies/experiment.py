"""An evaluation as `greenwise-mc evaluate` and bench/decision_quality.py run it.

Every RL strategy is trained once per reward variant (Power-Aware, Latency-Aware,
Power-Latency-Aware: the paper's Fig. 5) and per training seed (Fig. 6 is over 10 runs), its
training curve kept (Fig. 4). Every row is evaluated on the same test episodes with the same
evaluation reward; an RL row is the mean (± sd) over its seeds' agents. `document` is
results.json: the setup, each row's figures and per-episode data per run, each training run's
curve: enough to redraw every plot (strategies/plots.py draws them from it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import ControllerConfig, Scenario
from orchestrator.workload import TICK_S
from strategies.base import RL, StrategyContext, create
from strategies.evaluation import (
    StrategyResult,
    best_baseline,
    comparison,
    run_episodes,
    summarize,
)

Track = Callable[[str, int], Callable[[int], None]]
"""Starts a unit of work (what, how many steps or episodes) and returns what to call with how
many are done: the CLI's progress bar."""


def _untracked(what: str, total: int) -> Callable[[int], None]:
    return lambda done: None


def row_name(strategy: str, variant: str | None, reward: str) -> str:
    """An RL agent trained on the evaluation reward keeps its name; one trained on another
    reward is named after it: maskppo[power]."""
    return strategy if variant in (None, reward) else f"{strategy}[{variant}]"


@dataclass
class Row:
    """One row of the comparison: a strategy, for an RL one the reward it was trained on and
    its training seeds, and one run of the test episodes per seed (one run otherwise)."""

    name: str
    strategy: str
    variant: str | None = None  # the reward it was trained on (None: not trained here)
    seeds: tuple[int, ...] = ()
    runs: list[StrategyResult] = field(default_factory=list)


@dataclass
class TrainingRun:
    """One agent's training: what, on which reward and seed, and its curves: the reward of
    each training episode against the steps done at its end, and the policy's checks (its
    mean reward on fixed training-pattern episodes, strategies.rl.check) against steps."""

    row: str
    algorithm: str
    reward: str
    seed: int
    steps: int
    model: Path
    seconds: float = 0.0
    timesteps: list[int] = field(default_factory=list)
    episode_rewards: list[float] = field(default_factory=list)
    check_timesteps: list[int] = field(default_factory=list)
    check_rewards: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "algorithm": self.algorithm, "reward": self.reward,
                "seed": self.seed, "steps": self.steps, "model": str(self.model),
                "train_seconds": round(self.seconds, 2),
                "curve": {"timesteps": self.timesteps, "episode_rewards": self.episode_rewards,
                          "check_timesteps": self.check_timesteps,
                          "check_rewards": self.check_rewards}}


@dataclass(frozen=True)
class Setup:
    """What to evaluate: the strategies (RL ones without a given model are trained per reward
    variant and seed, into `work_dir`), on which episodes, with which evaluation reward."""

    scenario: Scenario
    strategies: tuple[str, ...]
    work_dir: Path
    reward: str = "power-latency"  # the evaluation reward: every row is scored with it
    variants: tuple[str, ...] = ("power-latency",)  # the rewards RL agents are trained on
    train_seeds: tuple[int, ...] = (0,)
    seed: int = 0  # the test episodes' seed (episode e: seed + e) and random's
    episodes: int = 40
    train_steps: int = 5500
    train_envs: int = 1  # training episodes stepped at once (rl.train's envs)
    gates: ControllerConfig | None = None
    models: Mapping[str, Path] = field(default_factory=dict)  # given: used, not trained

    def to_train(self) -> list[str]:
        return [s for s in self.strategies if s in RL and s not in self.models]

    def rows(self) -> list[Row]:
        trained = self.to_train()
        return [Row(row_name(s, v, self.reward), s, v, self.train_seeds)
                if s in trained else Row(s, s)
                for s in self.strategies for v in (self.variants if s in trained else [None])]


def train(setup: Setup, row: Row, seed: int, track: Track = _untracked) -> TrainingRun:
    """Train `row`'s agent with `seed`; the model is saved in the setup's work_dir."""
    from strategies import rl

    assert row.variant is not None, "only a trained row has a reward variant"
    model = setup.work_dir / f"{row.strategy}-{row.variant}-seed{seed}.zip"
    run = TrainingRun(row.name, row.strategy, row.variant, seed, setup.train_steps, model)

    def episode(steps: int, reward: float) -> None:
        run.timesteps.append(steps)
        run.episode_rewards.append(reward)

    def checked(steps: int, reward: float) -> None:
        run.check_timesteps.append(steps)
        run.check_rewards.append(reward)

    update = track(f"training {row.strategy}, {row.variant} reward, seed {seed}",
                   setup.train_steps)
    start = time.perf_counter()
    rl.train(row.strategy, setup.scenario, row.variant, setup.train_steps, seed, model,
             on_step=update, on_episode=episode, gates=setup.gates, on_check=checked,
             envs=setup.train_envs)
    run.seconds = time.perf_counter() - start
    return run


def run(setup: Setup, track: Track = _untracked) -> tuple[list[Row], list[TrainingRun]]:
    """Create the strategies (their options checked before any training), train the RL
    agents, then evaluate every row on the same test episodes."""
    sc = setup.scenario
    context = StrategyContext(sc, seed=setup.seed, reward=setup.reward, gates=setup.gates)
    rows = setup.rows()
    fixed = {r.name: create(r.strategy, context, {"model": setup.models[r.strategy]}
                            if r.strategy in setup.models else None)
             for r in rows if r.variant is None}
    training = [train(setup, r, seed, track) for r in rows if r.variant for seed in r.seeds]
    for r in rows:
        agents = [fixed[r.name]] if r.variant is None else [
            create(r.strategy, context, {"model": t.model}) for t in training if t.row == r.name]
        for i, agent in enumerate(agents):
            what = f"evaluating {r.name}" + (f", seed {r.seeds[i]}" if r.variant else "")
            r.runs.append(run_episodes(agent, sc, setup.episodes, setup.seed, setup.reward,
                                       on_episode=track(what, setup.episodes),
                                       gates=setup.gates))
    return rows, training


def document(setup: Setup, rows: list[Row], training: list[TrainingRun]) -> dict[str, Any]:
    """results.json: the setup; per row its summary over runs (the fields `summarize` and
    `comparison` give), what it is, and each run's figures and per-episode data; per training
    run its curve."""
    sc = setup.scenario
    summaries = {r.name: summarize(r.runs) for r in rows}
    compared = {c.pop("strategy"): c for c in comparison(summaries)}
    return {
        "scenario": sc.name,
        "seed": setup.seed,
        "train_seeds": list(setup.train_seeds) if setup.to_train() else [],
        "reward": setup.reward,
        "reward_variants": list(setup.variants) if setup.to_train() else [],
        "gates": setup.gates is not None,
        "episodes": setup.episodes,
        "episode_ticks": sc.episode_steps,
        "tick_s": TICK_S,
        "services": len(sc.fleet),
        "train_steps": setup.train_steps if setup.to_train() else None,
        "train_envs": setup.train_envs if setup.to_train() else None,
        "best_baseline": best_baseline(summaries),
        "strategies": {r.name: {
            **compared[r.name], "host_time_share": summaries[r.name]["host_time_share"],
            "strategy": r.strategy, "reward_variant": r.variant, "train_seeds": list(r.seeds),
            "runs": [{"train_seed": r.seeds[i] if r.variant else None, **res.figures(),
                      "episodes": res.episodes()} for i, res in enumerate(r.runs)],
        } for r in rows},
        "training": [t.to_dict() for t in training],
    }
