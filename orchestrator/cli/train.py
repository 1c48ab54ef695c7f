"""`greenwise-mc train`: train an RL agent on the simulated continuum."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import (
    RL,
    EnvsOpt,
    OutputOpt,
    RewardOpt,
    ScenarioOpt,
    SeedOpt,
    check_output_file,
    check_reward,
    doing,
    make_strategy,
    positive,
    train_with_progress,
)
from orchestrator.config import load_scenario
from orchestrator.errors import BadInput
from orchestrator.output import Format, emit, table


def train(
    strategy: Annotated[str, typer.Option("--strategy", help="maskppo or a2c.")] = "maskppo",
    reward: RewardOpt = "power-latency",
    steps: Annotated[int, typer.Option("--steps", help="Environment steps to train for.")] = 5500,
    scenario: ScenarioOpt = "paper",
    seed: SeedOpt = 0,
    out: Annotated[Path, typer.Option("--out", help="Where to save the model (.zip).")] = Path(
        "model.zip"),
    envs: EnvsOpt = 1,
    output: OutputOpt = Format.table,
) -> None:
    """Train an RL agent on the simulated continuum's training pattern (ramp 1..peak users).

    Example: greenwise-mc train --strategy maskppo --steps 5500 --out model.zip"""
    from strategies.evaluation import run_episodes

    if strategy not in RL:
        raise BadInput(f"cannot train {strategy!r}; trainable strategies: {', '.join(RL)}")
    check_reward(reward)
    positive("--steps", steps)
    positive("--envs", envs)
    if out.suffix != ".zip":  # the RL library would add .zip to a name without it
        raise BadInput(f"--out {out}: a model file ends in .zip (e.g. --out {out.stem}.zip)")
    check_output_file(out, "--out", "model.zip")
    sc = load_scenario(scenario)
    seconds = train_with_progress(strategy, sc, reward, steps, seed, out, envs)
    agent = make_strategy(strategy, sc, out, seed, reward, steps, out.parent)
    doing("testing the trained model on 10 episodes (the model is saved)")
    check = run_episodes(agent, sc, 10, seed, reward).summary()
    data = {"strategy": strategy, "reward": reward, "scenario": sc.name, "steps": steps,
            "envs": envs, "seed": seed, "model": str(out), "train_seconds": round(seconds, 2),
            "test_mean_reward_10_episodes": round(check["mean_reward"], 3)}
    emit(data, output, [table(f"trained {strategy}", ["field", "value"], list(data.items()))])
