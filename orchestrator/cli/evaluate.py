"""`greenwise-mc evaluate`: compare strategies on the simulated continuum's test pattern."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import (
    RL,
    OutputOpt,
    RewardOpt,
    ScenarioOpt,
    SeedOpt,
    TrainStepsOpt,
    check_output_dir,
    check_reward,
    doing,
    gates_for,
    make_strategy,
    parse_models,
    positive,
    progress,
    say,
)
from orchestrator.config import load_scenario
from orchestrator.errors import BadInput
from orchestrator.output import Format, emit, pct, table


def evaluate(
    scenario: ScenarioOpt = "paper",
    episodes: Annotated[int, typer.Option("--episodes", help="Test episodes per strategy.")] = 40,
    seed: SeedOpt = 0,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated strategies to compare.")] =
        "stay,cloud,threshold,descheduler,rules,random,round-robin,greedy,lookahead,oracle,maskppo,a2c",
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", help="Where results.json and the plots go.")] = Path("results"),
    train_steps: TrainStepsOpt = 5500,
    model: Annotated[list[str], typer.Option(
        "--model", help="NAME=PATH: use a trained model instead of training (repeatable).")] = [],  # noqa: B006
    reward: RewardOpt = "power-latency",
    gates: Annotated[bool | None, typer.Option(
        "--gates/--no-gates", help="Run the policy gates (cooldown, minimum predicted gain, "
                                   "concurrency) on the simulated clock, as production would. "
                                   "Default: off for the paper's scenario (to reproduce it), "
                                   "on otherwise.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Compare strategies on the test pattern; RL strategies without --model are trained first.

    Writes OUTPUT_DIR/results.json, distributions.png (reward, power, latency per strategy) and
    host_time.png (time per host), and prints each strategy's improvement over random and
    round-robin ((R - R_base) / |R_base|), its fraction of the oracle, and its share of the
    oracle's headroom over the best operator baseline evaluated (stay, cloud, threshold,
    descheduler, rules): (R - R_best) / (R_oracle - R_best).

    Example: greenwise-mc evaluate --episodes 40 --strategies greedy,oracle,maskppo"""
    from strategies.base import names
    from strategies.evaluation import comparison, plot, run_episodes

    check_reward(reward)
    positive("--episodes", episodes)
    positive("--train-steps", train_steps)
    chosen = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in names()]
    if unknown or not chosen:
        raise BadInput(f"unknown strategy {', '.join(unknown) or '(none given)'}; "
                       f"choose from: {', '.join(names())}")
    models = parse_models(model)
    for name, path in models.items():
        if name not in RL:
            raise BadInput(f"--model {name}=...: only {', '.join(RL)} take a model")
        if name not in chosen:
            raise BadInput(f"--model {name}=...: {name} is not among --strategies "
                           f"{','.join(chosen)}; add it or drop --model")
        if not path.is_file():
            raise BadInput(f"model file {path} does not exist")
    check_output_dir(output_dir, "--output-dir")
    sc = load_scenario(scenario)
    settings = gates_for(sc, gates)
    agents = {n: make_strategy(n, sc, models.get(n), seed, reward, train_steps, output_dir)
              for n in chosen}
    results = {}
    with progress() as bar:
        for name, agent in agents.items():
            doing(f"evaluating {name} (nothing written yet)")
            task = bar.add_task(f"evaluating {name}", total=episodes)
            results[name] = run_episodes(agent, sc, episodes, seed, reward,
                                         on_episode=lambda t=task: bar.advance(t),
                                         gates=settings)
    summaries = {n: r.summary() for n, r in results.items()}
    data = {"scenario": sc.name, "episodes": episodes, "gates": settings is not None,
            "strategies": summaries}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(data, indent=2))
    plots = plot(results, output_dir)
    rows = comparison(summaries)
    cols = ["strategy", "reward ± std", "power W", "latency ms", "SLA viol.", "moves",
            "vs random", "vs round robin", "of oracle", "of headroom"]
    emit(data, output, [table(
        f"{sc.name}: {episodes} test episodes, seed {seed}, reward {reward}, gates "
        f"{'on' if settings else 'off'}", cols,
        [[r["strategy"], f"{r['mean_reward']:.2f} ± {r['std_reward']:.1f}", r["mean_power_w"],
          r["mean_latency_ms"], r["sla_violations"], r["migrations"], pct(r["vs_random"]),
          pct(r["vs_round-robin"]),
          "-" if r["of_oracle"] is None else f"{100 * r['of_oracle']:.1f}%",
          "-" if r["of_headroom"] is None else f"{100 * r['of_headroom']:+.0f}%"]
         for r in rows])])
    if output is Format.table:
        say(f"wrote {output_dir / 'results.json'}, " + ", ".join(str(p) for p in plots))
