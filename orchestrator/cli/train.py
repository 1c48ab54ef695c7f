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
    gates_for,
    make_strategy,
    positive,
    train_steps_for,
    train_with_progress,
)
from orchestrator.config import load_scenario
from orchestrator.errors import BadInput
from orchestrator.output import Format, emit, table


def train(
    strategy: Annotated[str, typer.Option("--strategy", help="maskppo or a2c.")] = "maskppo",
    reward: RewardOpt = "power-latency",
    steps: Annotated[int | None, typer.Option(
        "--steps", help="Environment steps to train for. Default: 5500 for one service (the "
                        "paper's), else 500 training episodes.")] = None,
    scenario: ScenarioOpt = "paper",
    seed: SeedOpt = 0,
    out: Annotated[Path, typer.Option("--out", help="Where to save the model (.zip).")] = Path(
        "model.zip"),
    gates: Annotated[bool | None, typer.Option(
        "--gates/--no-gates", help="Train within the default controller's policy gates (the "
                                   "agent's masks hide the moves they would hold), as `run` "
                                   "and `evaluate` decide. Default: as evaluate (off for the "
                                   "paper's scenario, on otherwise).")] = None,
    envs: EnvsOpt = 1,
    output: OutputOpt = Format.table,
) -> None:
    """Train an RL agent on the simulated continuum's training pattern (ramp 1..peak users).

    Example: greenwise-mc train --strategy maskppo --steps 5500 --out model.zip"""
    from strategies.evaluation import run_episodes

    if strategy not in RL:
        raise BadInput(f"cannot train {strategy!r}; trainable strategies: {', '.join(RL)}")
    check_reward(reward)
    positive("--envs", envs)
    if out.suffix != ".zip":  # the RL library would add .zip to a name without it
        raise BadInput(f"--out {out}: a model file ends in .zip (e.g. --out {out.stem}.zip)")
    check_output_file(out, "--out", "model.zip")
    sc = load_scenario(scenario)
    steps = train_steps_for(sc, steps, "--steps")
    settings = gates_for(sc, gates)
    seconds = train_with_progress(strategy, sc, reward, steps, seed, out, settings, envs)
    agent = make_strategy(strategy, sc, out, seed, reward, steps, out.parent, gates=settings)
    doing("testing the trained model on 10 episodes (the model is saved)")
    check = run_episodes(agent, sc, 10, seed, reward, gates=settings).summary()
    data = {"strategy": strategy, "reward": reward, "scenario": sc.name, "steps": steps,
            "envs": envs, "seed": seed, "gates": settings is not None, "model": str(out),
            "train_seconds": round(seconds, 2),
            "test_mean_reward_10_episodes": round(check["mean_reward"], 3)}
    emit(data, output, [table(f"trained {strategy}", ["field", "value"], list(data.items()))])
