"""`greenwise-mc evaluate`: compare strategies on the simulated continuum's test pattern."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli.common import (
    RL,
    EnvsOpt,
    OutputOpt,
    RewardOpt,
    ScenarioOpt,
    SeedOpt,
    TrainStepsOpt,
    check_output_dir,
    check_reward,
    gates_for,
    parse_models,
    parse_rewards,
    parse_seeds,
    positive,
    say,
    tracking,
    train_steps_for,
)
from orchestrator.config import load_scenario
from orchestrator.errors import BadInput
from orchestrator.output import Format, emit, pct, table


def evaluate(
    scenario: ScenarioOpt = "paper",
    episodes: Annotated[int, typer.Option("--episodes", help="Test episodes per agent.")] = 40,
    seed: SeedOpt = 0,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated strategies to compare.")] =
        "stay,cloud,threshold,descheduler,rules,random,round-robin,greedy,lookahead,oracle,maskppo,a2c",
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", help="Where results.json, the plots and trained models go.")] =
        Path("results"),
    train_steps: TrainStepsOpt = None,
    envs: EnvsOpt = 1,
    model: Annotated[list[str], typer.Option(
        "--model", help="NAME=PATH: use a trained model instead of training (repeatable).")] = [],  # noqa: B006
    reward: RewardOpt = "power-latency",
    rewards: Annotated[str | None, typer.Option(
        "--rewards", help="Comma-separated rewards the RL strategies are trained on, one agent "
                          "each (e.g. power-latency,power,latency: the paper's Fig. 5); all "
                          "are scored with --reward. Default: --reward.")] = None,
    train_seeds: Annotated[str | None, typer.Option(
        "--train-seeds", help="Comma-separated training seeds (e.g. 0,1,2): one agent each, "
                              "an RL row is their mean ± sd. Default: --seed.")] = None,
    gates: Annotated[bool | None, typer.Option(
        "--gates/--no-gates", help="Run the policy gates (cooldown, minimum predicted gain, "
                                   "concurrency) on the simulated clock, as production would. "
                                   "Default: off for the paper's scenario (to reproduce it), "
                                   "on otherwise.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Compare strategies on the test pattern; RL strategies without --model are trained first,
    once per reward in --rewards and seed in --train-seeds.

    Prints per strategy the reward, its share of the oracle's headroom over the best operator
    baseline (stay, cloud, threshold, descheduler, rules), (R - R_best) / (R_oracle - R_best),
    the fleet's energy (kWh per simulated day, all hosts) and what it saves against that
    baseline and `stay`, SLA-violation minutes and migrations per simulated day; then the
    paper's figures (power, latency, improvement over random and round-robin, fraction of the
    oracle) and each trained agent. Writes OUTPUT_DIR/results.json (every figure, per episode
    and per training run: enough to redraw every plot), distributions.png, host_time.png,
    training.png and training_cdf.png.

    Example: greenwise-mc evaluate --train-seeds 0,1,2 --rewards power-latency,power,latency"""
    from strategies import experiment, plots
    from strategies.base import names

    check_reward(reward)
    positive("--episodes", episodes)
    positive("--envs", envs)
    chosen = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in names()]
    if unknown or not chosen:
        raise BadInput(f"unknown strategy {', '.join(unknown) or '(none given)'}; "
                       f"choose from: {', '.join(names())}")
    if len(set(chosen)) < len(chosen):
        raise BadInput(f"--strategies {strategies}: a strategy is given twice; give each once")
    models = parse_models(model)
    for name, path in models.items():
        if name not in RL:
            raise BadInput(f"--model {name}=...: only {', '.join(RL)} take a model")
        if name not in chosen:
            raise BadInput(f"--model {name}=...: {name} is not among --strategies "
                           f"{','.join(chosen)}; add it or drop --model")
        if not path.is_file():
            raise BadInput(f"model file {path} does not exist")
    variants = (reward,) if rewards is None else parse_rewards(rewards, "--rewards")
    seeds = (seed,) if train_seeds is None else parse_seeds(train_seeds, "--train-seeds")
    check_output_dir(output_dir, "--output-dir")
    sc = load_scenario(scenario)
    setup = experiment.Setup(sc, tuple(chosen), output_dir, reward=reward, variants=variants,
                             train_seeds=seeds, seed=seed, episodes=episodes,
                             train_steps=train_steps_for(sc, train_steps), train_envs=envs,
                             gates=gates_for(sc, gates), models=models)
    if not setup.to_train() and (rewards is not None or train_seeds is not None):
        given = " and ".join(o for o, v in (("--rewards", rewards), ("--train-seeds",
                                                                     train_seeds)) if v)
        raise BadInput(f"{given} choose how RL strategies are trained, but none is trained "
                       f"here: add {' or '.join(RL)} to --strategies (without --model)")
    with tracking() as track:
        rows, training = experiment.run(setup, track)
    data = experiment.document(setup, rows, training)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(data, indent=2))
    drawn = plots.draw(data, output_dir)
    emit(data, output, tables(data))
    if output is Format.table:
        say(f"wrote {output_dir / 'results.json'}, " + ", ".join(str(p) for p in drawn))


def _pm(mean: float, sd: float | None, digits: int) -> str:
    return f"{mean:.{digits}f}" if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _saved(s: dict[str, Any] | None) -> str:
    return "-" if s is None else f"{s['pct']:+.1f}%"


def tables(data: dict[str, Any]) -> list[Table]:
    """What an operator reads, the paper's figures, and the trained agents: each table
    readable at 80 columns (everything else is in results.json)."""
    rows = data["strategies"]
    best = data["best_baseline"]
    seeds = ",".join(map(str, data["train_seeds"]))
    headline = table(
        f"{data['scenario']}: {data['episodes']} test episodes (seed {data['seed']}), reward "
        f"{data['reward']}, gates {'on' if data['gates'] else 'off'}"
        + (f"; RL rows: mean ± sd over training seeds {seeds}" if len(data["train_seeds"]) > 1
           else "") + f". Best operator baseline: {best or '-'}. Per simulated day: fleet "
        "energy (all hosts), SLA-violation minutes, moves",
        ["strategy", "reward", "of headroom", "kWh per day", "saved vs best", "saved vs stay",
         "SLA min per day", "moves per day"],
        [[n, _pm(r["mean_reward"], r["sd_over_runs"]["reward"], 2),
          "-" if r["of_headroom"] is None else f"{100 * r['of_headroom']:+.0f}%",
          f"{r['energy_kwh_per_day']:.2f}", _saved(r["energy_saved_vs_best_baseline"]),
          _saved(r["energy_saved_vs_stay"]), f"{r['sla_minutes_per_day']:.0f}",
          f"{r['migrations_per_day']:.1f}"] for n, r in rows.items()])
    paper = table(
        "the paper's figures (Fig. 5/6): the services' power and latency, reward against the "
        "baselines",
        ["strategy", "power W", "latency ms", "vs random", "vs round robin", "of oracle"],
        [[n, f"{r['mean_power_w']:.2f}", f"{r['mean_latency_ms']:.1f}", pct(r["vs_random"]),
          pct(r["vs_round-robin"]),
          "-" if r["of_oracle"] is None else f"{100 * r['of_oracle']:.1f}%"]
         for n, r in rows.items()])
    if not data["training"]:
        return [headline, paper]
    agents = []
    for n, r in rows.items():
        for run, t in zip(r["runs"], [t for t in data["training"] if t["row"] == n],
                          strict=False):
            last = t["curve"]["episode_rewards"][-10:]
            checks = t["curve"].get("check_rewards") or ["-"]
            agents.append([n, run["train_seed"], f"{t['train_seconds']:.0f}",
                           f"{sum(last) / len(last):.2f}" if last else "-",
                           " -> ".join(f"{c:.2f}" if c != "-" else c
                                       for c in (checks[0], checks[-1])),
                           f"{run['reward']:.2f}", f"{run['power_w']:.2f}",
                           f"{run['latency_ms']:.1f}"])
    trained = table(
        f"trained agents ({data['train_steps']} steps each): training reward (the agent's "
        "own, last 10 episodes), its check (fixed training episodes) before -> after, and "
        "test figures per seed",
        ["agent", "seed", "train s", "training reward", "check", "test reward", "power W",
         "latency ms"], agents)
    return [headline, paper, trained]
