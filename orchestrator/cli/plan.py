"""`greenwise-mc plan`: what the strategy would do now, and what it predicts; changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.common import (
    ModelOpt,
    OptionOpt,
    OutputOpt,
    PatternOpt,
    PolicyConfigOpt,
    RewardOpt,
    ScenarioOpt,
    SeedOpt,
    StrategyOpt,
    TrainStepsOpt,
    parse_options,
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
    option: OptionOpt = [],  # noqa: B006
    step: Annotated[int, typer.Option(
        "--step", help="Simulated: advance the workload this many ticks (staying) first.")] = 0,
    pattern: PatternOpt = "test",
    seed: SeedOpt = 0,
    reward: RewardOpt = "power-latency",
    train_steps: TrainStepsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Show the current state, what the strategy would do, the predicted change in power,
    latency and reward, and (real clusters) the migration steps it would run. Changes nothing.

    Example: greenwise-mc plan --step 55 --strategy greedy"""
    from orchestrator.views import plan_tables

    options = parse_options(option)
    if config is not None:
        _policy_plan(config, strategy, model, seed, reward, train_steps, output, options)
        return
    if step < 0:
        raise BadInput(f"--step must be >= 0, got {step}")
    sim, loop = sim_setup(scenario, strategy, model, seed, reward, train_steps,
                          max(step, 1) + 1, pattern, dry_run=True, options=options)
    for _ in range(step):
        sim.apply([])  # everything stays while the workload moves on
    tick = loop.tick()
    data = plan_data(strategy, loop, tick.decisions, [
        {"cluster": h.cluster, "name": h.name, "power_w": round(h.power_w, 2),
         "cpu": round(h.cpu, 3), "problems": []} for h in tick.snapshot.hosts])
    data.update(scenario=sim.scenario.name, step=tick.snapshot.step)
    emit(data, output, plan_tables(data))


def plan_data(strategy: str, loop: Any, decisions: Any,
              hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """What `plan` prints, simulated or real: hosts, and each service's decision."""
    gates = loop.gates
    return {"strategy": strategy,
            "min_predicted_gain": gates.settings.min_predicted_gain if gates else None,
            "hosts": hosts, "services": [d.to_dict() for d in decisions]}


def _policy_plan(config: Path, strategy: str, model: Path | None, seed: int, reward: str,
                 train_steps: int | None, output: Format, options: dict[str, Any]) -> None:
    from orchestrator.kube.continuum import finite
    from orchestrator.views import plan_tables

    _, continuum, loop = policy_setup(config, strategy, model, seed, reward, train_steps,
                                      dry_run=True, options=options)
    try:
        tick = loop.tick()  # Prometheus down: one line, exit 1
    finally:
        continuum.close()
    assert continuum.readings is not None
    data = plan_data(strategy, loop, tick.decisions, [
        {"cluster": h.cluster, "name": h.name, "power_w": finite(h.power_w, 2),
         "cpu": finite(h.cpu, 3), "problems": list(h.problems)}
        for h in continuum.readings.hosts])
    data["unfinished_migrations"] = [r.id for r in continuum.unfinished()]
    emit(data, output, plan_tables(data))
