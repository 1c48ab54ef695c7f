"""`greenwise-mc plan`: what the strategy would do now, and what it predicts; changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import (
    ModelOpt,
    OutputOpt,
    PatternOpt,
    PolicyConfigOpt,
    RewardOpt,
    ScenarioOpt,
    SeedOpt,
    StrategyOpt,
    TrainStepsOpt,
    policy_setup,
    sim_setup,
)
from orchestrator.errors import BadInput
from orchestrator.output import Format, emit


def plan(
    config: PolicyConfigOpt = None,
    scenario: ScenarioOpt = "paper",
    strategy: StrategyOpt = "greedy",
    model: ModelOpt = None,
    step: Annotated[int, typer.Option(
        "--step", help="Simulated: advance the workload this many ticks (staying) first.")] = 0,
    pattern: PatternOpt = "test",
    seed: SeedOpt = 0,
    reward: RewardOpt = "power-latency",
    train_steps: TrainStepsOpt = 5500,
    output: OutputOpt = Format.table,
) -> None:
    """Show the current state, what the strategy would do, the predicted change in power,
    latency and reward, and (real clusters) the migration steps it would run. Changes nothing.

    Example: greenwise-mc plan --step 55 --strategy greedy"""
    from orchestrator.views import plan_report

    if config is not None:
        _policy_plan(config, strategy, model, seed, reward, train_steps, output)
        return
    if step < 0:
        raise BadInput(f"--step must be >= 0, got {step}")
    sim, controller = sim_setup(scenario, strategy, model, seed, reward, train_steps,
                                max(step, 1) + 1, pattern)
    for _ in range(step):
        sim.apply(None)
    obs = sim.observe()
    action, prediction = controller.decide(obs)
    current = controller.predictor.predict(obs, 0)
    data, tables = plan_report(sim, obs, strategy, action, current, prediction)
    emit(data, output, tables)


def _policy_plan(config: Path, strategy: str, model: Path | None, seed: int, reward: str,
                 train_steps: int, output: Format) -> None:
    from orchestrator.kube.continuum import finite
    from orchestrator.policy import EventLog, Guard, PolicyLoop
    from orchestrator.views import policy_plan_tables

    cfg, continuum, agent, predictor = policy_setup(config, strategy, model, seed, reward,
                                                    train_steps)
    readings = continuum.refresh()  # Prometheus down: one line, exit 1
    loop = PolicyLoop(continuum, agent, strategy, predictor, Guard(cfg.controller), EventLog(),
                      dry_run=True)
    decisions = loop.decide_all(readings)
    data = {"strategy": strategy, "min_predicted_gain": cfg.controller.min_predicted_gain,
            "hosts": [{"cluster": h.cluster, "name": h.name, "power_w": finite(h.power_w, 2),
                       "cpu": finite(h.cpu, 3), "problems": list(h.problems)}
                      for h in readings.hosts],
            "services": [d.to_dict() for d in decisions],
            "unfinished_migrations": [r.id for r in continuum.unfinished()]}
    emit(data, output, policy_plan_tables(data))
