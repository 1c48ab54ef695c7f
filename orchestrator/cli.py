"""`greenwise-mc`: move ML services across an edge / fog / cloud continuum.

With no kubeconfig everything runs on the simulated continuum built from a scenario
(`paper` by default: the GreenWise paper's testbed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.config import Scenario, load_scenario
from orchestrator.errors import GreenwiseError
from orchestrator.output import Format, emit, err_console, pct, table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False, help=__doc__)

ScenarioOpt = Annotated[str, typer.Option(
    "--scenario", help="Built-in scenario name (paper) or a scenario YAML file.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (workload noise, RL).")]
RewardOpt = Annotated[str, typer.Option(
    "--reward", help="Objective: power-latency (alpha = beta = 0.5), power, or latency.")]
OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="How to print results.")]
TrainStepsOpt = Annotated[int, typer.Option(
    "--train-steps", help="Training steps for RL strategies given without a model.")]
RL = ("maskppo", "a2c")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=False)


def _check_reward(kind: str) -> None:
    from strategies.reward import REWARDS

    if kind not in REWARDS:
        raise GreenwiseError(f"unknown reward {kind!r}; choose one of: {', '.join(REWARDS)}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise GreenwiseError(f"{name} must be > 0, got {value}")


def _train_with_progress(algorithm: str, scenario: Scenario, reward: str, steps: int, seed: int,
                         out: Path | None) -> float:
    from strategies import rl

    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(f"training {algorithm}", total=steps)
        rl.train(algorithm, scenario, reward, steps, seed, out,
                 on_step=lambda n: progress.update(task, completed=min(n, steps)))
    return time.perf_counter() - start


def _strategy(name: str, scenario: Scenario, model: Path | None, seed: int, reward: str,
              train_steps: int, work_dir: Path) -> Any:
    """Create a strategy; an RL strategy without a model is trained first."""
    from strategies.base import StrategyOptions, create, names

    if name not in names():
        raise GreenwiseError(f"unknown strategy {name!r}; choose one of: {', '.join(names())}")
    if name in RL and model is None:
        model = work_dir / f"{name}.zip"
        _train_with_progress(name, scenario, reward, train_steps, seed, model)
    return create(name, StrategyOptions(scenario, seed=seed, model_path=model, reward=reward))


@app.command()
def train(
    strategy: Annotated[str, typer.Option("--strategy", help="maskppo or a2c.")] = "maskppo",
    reward: RewardOpt = "power-latency",
    steps: Annotated[int, typer.Option("--steps", help="Environment steps to train for.")] = 5500,
    scenario: ScenarioOpt = "paper",
    seed: SeedOpt = 0,
    out: Annotated[Path, typer.Option("--out", help="Where to save the model (.zip).")] = Path(
        "model.zip"),
    output: OutputOpt = Format.table,
) -> None:
    """Train an RL agent on the simulated continuum's training pattern (ramp 1..peak users)."""
    from strategies.evaluation import run_episodes

    if strategy not in RL:
        raise GreenwiseError(f"cannot train {strategy!r}; trainable strategies: {', '.join(RL)}")
    _check_reward(reward)
    _positive("--steps", steps)
    sc = load_scenario(scenario)
    seconds = _train_with_progress(strategy, sc, reward, steps, seed, out)
    agent = _strategy(strategy, sc, out, seed, reward, steps, out.parent)
    check = run_episodes(agent, sc, 10, seed, reward).summary()
    data = {"strategy": strategy, "reward": reward, "scenario": sc.name, "steps": steps,
            "seed": seed, "model": str(out), "train_seconds": round(seconds, 2),
            "test_mean_reward_10_episodes": round(check["mean_reward"], 3)}
    emit(data, output, [table(f"trained {strategy}", ["field", "value"], list(data.items()))])


def _parse_models(pairs: list[str]) -> dict[str, Path]:
    models = {}
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise GreenwiseError(f"--model expects NAME=PATH (e.g. maskppo=model.zip), got {p!r}")
        models[name] = Path(path)
    return models


@app.command()
def evaluate(
    scenario: ScenarioOpt = "paper",
    episodes: Annotated[int, typer.Option("--episodes", help="Test episodes per strategy.")] = 40,
    seed: SeedOpt = 0,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated strategies to compare.")] =
        "random,round-robin,rules,greedy,oracle,maskppo,a2c",
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", help="Where results.json and the plots go.")] = Path("results"),
    train_steps: TrainStepsOpt = 5500,
    model: Annotated[list[str], typer.Option(
        "--model", help="NAME=PATH: use a trained model instead of training (repeatable).")] = [],  # noqa: B006
    reward: RewardOpt = "power-latency",
    output: OutputOpt = Format.table,
) -> None:
    """Compare strategies on the test pattern; RL strategies without --model are trained first.

    Writes OUTPUT_DIR/results.json, distributions.png (reward, power, latency per strategy) and
    host_time.png (time per host), and prints each strategy's improvement over random and
    round-robin ((R - R_base) / |R_base|) and its fraction of the oracle."""
    from strategies.base import names
    from strategies.evaluation import comparison, plot, run_episodes

    _check_reward(reward)
    _positive("--episodes", episodes)
    _positive("--train-steps", train_steps)
    chosen = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in names()]
    if unknown or not chosen:
        raise GreenwiseError(f"unknown strategy {', '.join(unknown) or '(none given)'}; "
                             f"choose from: {', '.join(names())}")
    models = _parse_models(model)
    for name, path in models.items():
        if name not in RL:
            raise GreenwiseError(f"--model {name}=...: only {', '.join(RL)} take a model")
        if not path.is_file():
            raise GreenwiseError(f"model file {path} does not exist")
    sc = load_scenario(scenario)
    output_dir.mkdir(parents=True, exist_ok=True)
    agents = {n: _strategy(n, sc, models.get(n), seed, reward, train_steps, output_dir)
              for n in chosen}
    results = {}
    with _progress() as progress:
        for name, agent in agents.items():
            task = progress.add_task(f"evaluating {name}", total=episodes)
            results[name] = run_episodes(agent, sc, episodes, seed, reward,
                                         on_episode=lambda t=task: progress.advance(t))
    summaries = {n: r.summary() for n, r in results.items()}
    data = {"scenario": sc.name, "episodes": episodes, "strategies": summaries}
    (output_dir / "results.json").write_text(json.dumps(data, indent=2))
    plots = plot(results, output_dir)
    rows = comparison(summaries)
    cols = ["strategy", "mean reward", "std", "power W", "latency ms", "SLA viol.",
            "migrations", "vs random", "vs round-robin", "of oracle"]
    emit(data, output, [table(
        f"{sc.name}: {episodes} test episodes, seed {seed}, reward {reward}", cols,
        [[r["strategy"], r["mean_reward"], r["std_reward"], r["mean_power_w"],
          r["mean_latency_ms"], r["sla_violations"], r["migrations"], pct(r["vs_random"]),
          pct(r["vs_round-robin"]),
          "-" if r["of_oracle"] is None else f"{100 * r['of_oracle']:.1f}%"]
         for r in rows])])
    if output is Format.table:
        err_console.print(f"wrote {output_dir / 'results.json'}, "
                          + ", ".join(str(p) for p in plots))


def _sim_setup(scenario: str, strategy: str, model: Path | None, seed: int, reward: str,
               train_steps: int, steps: int, phase: str) -> tuple[Any, Any]:
    from orchestrator.controller import Controller
    from orchestrator.sim.continuum import SimulatedContinuum
    from strategies.prediction import Predictor

    _check_reward(reward)
    if phase not in ("train", "test"):
        raise GreenwiseError(f"--pattern must be train or test, not {phase!r}")
    if model is not None and not model.is_file():
        raise GreenwiseError(f"model file {model} does not exist")
    sc = load_scenario(scenario)
    agent = _strategy(strategy, sc, model, seed, reward, train_steps, Path(".greenwise"))
    sim = SimulatedContinuum(sc.model_copy(update={"episode_steps": steps}), phase, seed=seed)
    sim.reset(seed=seed)
    agent.reset(sim)
    return sim, Controller(sim, agent, Predictor(sc, reward, sim.model))


PolicyConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", envvar="GREENWISE_CONFIG",
    help="continuum.yaml: run on those real clusters (observed through Prometheus, changed "
         "through the migrators). Without it: the simulated continuum of --scenario.")]


def _seconds(text: str, option: str) -> float:
    """A duration: 10s, 500ms, 2m or plain seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = text.strip(), "s"
    for u in ("ms", "s", "m", "h"):
        if number.endswith(u):
            number, unit = number[: -len(u)], u
            break
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise GreenwiseError(f"{option} must be a duration like 10s, 500ms or 2m, "
                             f"got {text!r}") from None
    if value < 0:
        raise GreenwiseError(f"{option} must be >= 0, got {text!r}")
    return value


def _policy_setup(config: Path, strategy: str, model: Path | None, seed: int, reward: str,
                  train_steps: int) -> tuple[Any, Any, Any, Any]:
    """(config, Kubernetes continuum, strategy, predictor) for policy mode on real clusters."""
    from orchestrator.config import load_continuum
    from orchestrator.kube.continuum import KubernetesContinuum
    from strategies.prediction import Predictor

    _check_reward(reward)
    if model is not None and not model.is_file():
        raise GreenwiseError(f"model file {model} does not exist")
    cfg = load_continuum(config)
    continuum = KubernetesContinuum(cfg)
    scenario = cfg.scenario()  # the clusters' hosts, in the order the observations use
    agent = _strategy(strategy, scenario, model, seed, reward, train_steps,
                      cfg.state_dir / "models")
    agent.reset(None)  # the oracle refuses here: it needs the simulated continuum
    return cfg, continuum, agent, Predictor(scenario, reward)


@app.command()
def run(
    config: PolicyConfigOpt = None,
    scenario: ScenarioOpt = "paper",
    strategy: Annotated[str, typer.Option("--strategy", help="Strategy that decides.")] = "greedy",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Trained model for maskppo/a2c (else one is trained first).")] = None,
    ticks: Annotated[int | None, typer.Option(
        "--ticks", help="Control ticks to run (simulated: 96; real clusters: until SIGTERM).")] =
        None,
    interval: Annotated[str | None, typer.Option(
        "--interval", help="Time between ticks, e.g. 10s (real clusters, default 10s), or the "
                           "pause per simulated tick so the view can be watched (default "
                           "0.05s).")] = None,
    pattern: Annotated[str, typer.Option(
        "--pattern", help="Simulated workload: test (day-like) or train (ramp).")] = "test",
    seed: SeedOpt = 0,
    reward: RewardOpt = "power-latency",
    train_steps: TrainStepsOpt = 5500,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Real clusters: observe and decide every tick, migrate nothing.")] =
        False,
    online_training: Annotated[bool, typer.Option(
        "--online-training", help="Real clusters, maskppo: keep training the model on live "
                                  "transitions and checkpoint it (state_dir/models).")] = False,
    metrics_address: Annotated[str | None, typer.Option(
        "--metrics-address", help="Real clusters: serve the controller's /metrics on HOST:PORT "
                                  "(default 127.0.0.1:9400; port 0: any free port).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Policy mode: observe, decide, migrate, every tick.

    With --config (or $GREENWISE_CONFIG): on real clusters, behind the safety gates of the
    config's `controller:` section (cooldown, concurrent migrations, minimum predicted gain,
    no action on stale data, one active controller via a Lease); one JSON line per decision on
    stderr. Without: on the simulated continuum, with a live view and a summary at the end."""
    from orchestrator.views import live_view, run_summary

    if ticks is not None:
        _positive("--ticks", ticks)
    if config is not None:
        _policy_run(config, strategy, model, seed, reward, train_steps, ticks,
                    _seconds(interval or "10s", "--interval"), dry_run, online_training,
                    metrics_address or "127.0.0.1:9400", output)
        return
    for flag, given in (("--dry-run", dry_run), ("--online-training", online_training),
                        ("--metrics-address", metrics_address is not None)):
        if given:
            raise GreenwiseError(f"{flag} is for real clusters: give --config continuum.yaml "
                                 "(or set GREENWISE_CONFIG)")
    ticks = ticks or 96
    pause = _seconds(interval or "0.05", "--interval")
    sim, controller = _sim_setup(scenario, strategy, model, seed, reward, train_steps, ticks,
                                 pattern)
    history = []
    with Live(console=err_console, refresh_per_second=10,
              transient=False) if output is Format.table else _Quiet() as live:
        for _ in range(ticks):
            history.append(controller.tick())
            if output is Format.table:
                live.update(live_view(sim, history, strategy))
            if pause:
                time.sleep(pause)
    if output is Format.table:
        err_console.print()
    summary, tables = run_summary(sim, history, strategy)
    emit(summary, output, tables)


def _policy_run(config: Path, strategy: str, model: Path | None, seed: int, reward: str,
                train_steps: int, ticks: int | None, interval: float, dry_run: bool,
                online_training: bool, metrics_address: str, output: Format) -> None:
    from orchestrator.control.lease import Lease
    from orchestrator.policy import EventLog, Guard, Metrics, PolicyLoop, identity, serve

    if interval <= 0:
        raise GreenwiseError("--interval must be > 0 on real clusters")
    if online_training and strategy != "maskppo":
        raise GreenwiseError("--online-training trains MaskablePPO: use --strategy maskppo")
    cfg, continuum, agent, predictor = _policy_setup(config, strategy, model, seed, reward,
                                                     train_steps)
    ctl = cfg.controller
    log = EventLog()
    learner = None
    if online_training:
        from strategies.online import OnlineLearner

        learner = OnlineLearner(agent.model, agent.encode, predictor,
                                cfg.state_dir / "models" / "maskppo-online.zip",
                                on_round=lambda info: log.write("info", "training", **info))
    metrics = Metrics()
    bound = metrics.serve(metrics_address)
    lease = None if dry_run else Lease(
        continuum.clusters[ctl.lease_cluster or cfg.clusters[0].name], ctl.lease_namespace,
        ctl.lease_name, identity(), ctl.lease_duration_s)
    loop = PolicyLoop(continuum, agent, strategy, predictor, Guard(ctl), log, metrics, dry_run,
                      learner)
    log.write("info", "start", strategy=strategy, dry_run=dry_run, interval_s=interval,
              services=list(continuum.services), metrics=f"http://{bound}/metrics",
              lease=lease.where if lease else None, identity=lease.identity if lease else None,
              online_training=online_training, gates=ctl.model_dump(
                  include={"cooldown_s", "max_concurrent_migrations", "min_predicted_gain"}))
    try:
        serve(loop, interval, ticks, lease)
    finally:
        metrics.close()
    data = {"strategy": strategy, "dry_run": dry_run, "ticks": loop.ticks,
            "migrations": dict(loop.outcomes)}
    emit(data, output, [table("policy mode", ["", ""], [
        ["ticks", loop.ticks], *[[f"migrations {k}", v] for k, v in loop.outcomes.items()]])])


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@app.command()
def plan(
    config: PolicyConfigOpt = None,
    scenario: ScenarioOpt = "paper",
    strategy: Annotated[str, typer.Option("--strategy", help="Strategy that decides.")] = "greedy",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Trained model for maskppo/a2c (else one is trained first).")] = None,
    step: Annotated[int, typer.Option(
        "--step", help="Simulated: advance the workload this many ticks (staying) first.")] = 0,
    pattern: Annotated[str, typer.Option(
        "--pattern", help="Simulated workload: test (day-like) or train (ramp).")] = "test",
    seed: SeedOpt = 0,
    reward: RewardOpt = "power-latency",
    train_steps: TrainStepsOpt = 5500,
    output: OutputOpt = Format.table,
) -> None:
    """Show the current state, what the strategy would do, the predicted change in power,
    latency and reward, and (real clusters) the migration steps it would run. Changes nothing."""
    from orchestrator.views import plan_report

    if config is not None:
        _policy_plan(config, strategy, model, seed, reward, train_steps, output)
        return
    if step < 0:
        raise GreenwiseError(f"--step must be >= 0, got {step}")
    sim, controller = _sim_setup(scenario, strategy, model, seed, reward, train_steps,
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

    cfg, continuum, agent, predictor = _policy_setup(config, strategy, model, seed, reward,
                                                     train_steps)
    readings = continuum.refresh()  # Prometheus down: one line, exit 2
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


ConfigOpt = Annotated[Path, typer.Option(
    "--config", "-c", envvar="GREENWISE_CONFIG",
    help="continuum.yaml: clusters (kubeconfig, context, ingress, hosts), services, DNS. "
         "Clusters without a kubeconfig use $KUBECONFIG.")]


def _migrator(config: Path, timeout: float = 120.0) -> Any:
    from orchestrator.config import load_continuum
    from orchestrator.migration.executor import Migrator

    def report(event: str, step: str, detail: str) -> None:
        mark = {"start": "…", "done": "✓", "undo": "↶", "fail": "✗", "resume": "↻"}[event]
        style = {"done": "green", "fail": "red", "undo": "yellow"}.get(event, "")
        err_console.print(f"[{style}]{mark}[/] {step:10s} {detail}" if style else
                          f"{mark} {step:10s} {detail}", highlight=False)

    return Migrator(load_continuum(config), report=report, timeout=timeout)


def _record_dict(rec: Any) -> dict[str, Any]:
    return {"id": rec.id, "service": rec.service, "kind": rec.kind, "source": rec.source,
            "target": rec.target, "state": rec.state, "error": rec.error,
            "seconds": None if rec.finished is None else round(rec.finished - rec.started, 3),
            "steps": [{"name": st.name, "state": st.state,
                       "seconds": None if st.ended is None else round(st.ended - st.began, 3)}
                      for st in rec.steps]}


@app.command()
def migrate(
    service: Annotated[str | None, typer.Argument(
        help="NAMESPACE/SERVICE as listed under services: in the config.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="CLUSTER/NODE (a node in the same cluster: intra-cluster move) or "
                     "CLUSTER[/NODE] (another cluster: inter-cluster migration).")] = None,
    config: ConfigOpt = Path("continuum.yaml"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan and the predicted change; change nothing.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Complete or roll back migrations a crash left unfinished.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for the copy / rollout to become Ready.")] = 120.0,
    users: Annotated[int, typer.Option(
        "--users", help="Load at which --dry-run predicts power and latency.")] = 30,
    output: OutputOpt = Format.table,
) -> None:
    """Move one service: within a cluster (rolling update onto a node) or to another cluster
    (make-before-break: copy, wait Ready, route, DNS, forward, drain, delete the old copy).
    Every step is journaled; a failure rolls back, a crash is finished by --resume."""
    from orchestrator.migration.executor import MigrationFailed

    _positive("--timeout", timeout)
    m = _migrator(config, timeout)
    if resume:
        records = []
        for rec in m.journal.unfinished():
            try:
                records.append(_record_dict(m.resume_one(rec.id)))
            except MigrationFailed as e:
                records.append({**_record_dict(m.journal.get(rec.id)), "error": str(e)})
        emit({"resumed": records}, output, [_records_table("resumed migrations", records)])
        if any(r["state"] in ("running", "rolling_back") for r in records):
            sys.exit(1)
        return
    if not service or not to:
        raise GreenwiseError("give NAMESPACE/SERVICE and --to CLUSTER[/NODE] (or --resume)")
    unfinished = m.journal.unfinished()
    if unfinished:
        raise GreenwiseError(f"migration {unfinished[0].id} of {unfinished[0].service} is "
                             "unfinished; run `greenwise-mc migrate --resume` first")
    plan = m.plan(service, to)
    if dry_run:
        data = {"dry_run": True, "plan": plan.to_dict(),
                "predicted": _predict_move(m.config, plan, users)}
        emit(data, output, _plan_tables(data))
        return
    try:
        rec = m.execute(plan)
    except MigrationFailed as e:
        err_console.print(f"error: migration failed: {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    data = _record_dict(rec)
    emit(data, output, [_records_table(f"{rec.service} -> {rec.target}: {rec.state}", [data])])


def _records_table(title: str, records: list[dict[str, Any]]) -> Any:
    rows = [[r["id"], r["service"], f"{r['source']} -> {r['target']}", r["state"],
             " ".join(f"{st['name']}:{st['seconds']}s" for st in r["steps"]), r["error"] or ""]
            for r in records]
    return table(title, ["id", "service", "move", "state", "steps", "error"], rows)


def _predict_move(config: Any, plan: Any, users: int) -> dict[str, Any]:
    """The model's power/latency at `users` on the source host vs the target host."""
    from orchestrator.performance import PerformanceModel

    scenario = config.scenario()
    model = PerformanceModel(scenario)
    names = [h.name for h in scenario.hosts]
    cluster_hosts = [h.name for h in config.cluster(plan.target_cluster).hosts]
    src = plan.source_nodes[0] if plan.source_nodes and plan.source_nodes[0] in names else None
    dst = plan.target_node or cluster_hosts[0]
    if src is None:
        return {"users": users, "note": "source node not among the configured hosts"}
    a, b = model.outcome(names.index(src), users), model.outcome(names.index(dst), users)
    return {"users": users, "host": {"from": src, "to": dst},
            "power_w": {"from": round(a.service_watts, 2), "to": round(b.service_watts, 2),
                        "change": round(b.service_watts - a.service_watts, 2)},
            "latency_ms": {"from": round(a.latency_ms, 1), "to": round(b.latency_ms, 1),
                           "change": round(b.latency_ms - a.latency_ms, 1)}}


def _plan_tables(data: dict[str, Any]) -> list[Any]:
    plan = data["plan"]
    tables = [table(f"plan (dry run, nothing changed): {plan['service']} "
                    f"{plan['source_cluster']}/{','.join(plan['source_nodes'])} -> "
                    f"{plan['target']} ({plan['kind']}-cluster)", ["#", "step"],
                    [[i + 1, st["description"]] for i, st in enumerate(plan["steps"])])]
    objs = [["create", o] for o in plan["creates"]] + [["change", o] for o in plan["changes"]] + [
        ["delete", o] for o in plan["deletes"]]
    tables.append(table("objects", ["action", "object"], objs))
    pred = data["predicted"]
    if "power_w" in pred:
        tables.append(table(f"predicted at {pred['users']} users ({pred['host']['from']} -> "
                            f"{pred['host']['to']})", ["", "from", "to", "change"],
                            [[k, pred[k]["from"], pred[k]["to"], f"{pred[k]['change']:+g}"]
                             for k in ("power_w", "latency_ms")]))
    return tables


@app.command()
def clusters(config: ConfigOpt = Path("continuum.yaml"), output: OutputOpt = Format.table) -> None:
    """Each cluster's reachability, server version and nodes (Ready, capacity, tier)."""
    from orchestrator.config import load_continuum
    from orchestrator.kube.clusters import Clusters, node_ready

    cfg = load_continuum(config)
    registry = Clusters(cfg, timeout=5.0, retry_seconds=3.0)
    out = []
    for cc in cfg.clusters:
        entry: dict[str, Any] = {"name": cc.name, "tier": cc.tier, "ingress": cc.ingress}
        try:
            c = registry[cc.name]
            entry["version"] = c.version()
            entry["reachable"] = True
            entry["nodes"] = [{
                "name": n["metadata"]["name"], "ready": node_ready(n),
                "cpu": n.get("status", {}).get("capacity", {}).get("cpu"),
                "memory": n.get("status", {}).get("capacity", {}).get("memory"),
                "tier": (n["metadata"].get("labels") or {}).get("greenwise.io/tier"),
            } for n in c.nodes()]
        except GreenwiseError as e:
            entry.update(reachable=False, error=str(e), nodes=[])
        out.append(entry)
    rows = [[e["name"], e["tier"], "yes" if e["reachable"] else "NO", e.get("version", "-"),
             ", ".join(f"{n['name']}({'Ready' if n['ready'] else 'NotReady'}, {n['cpu']} cpu)"
                       for n in e["nodes"]) or e.get("error", "")] for e in out]
    emit({"clusters": out}, output,
         [table("clusters", ["cluster", "tier", "reachable", "version", "nodes"], rows)])


@app.command()
def status(config: ConfigOpt = Path("continuum.yaml"), output: OutputOpt = Format.table) -> None:
    """Each managed service: where it runs (cluster/node), readiness, unfinished migrations."""
    from orchestrator.config import load_continuum
    from orchestrator.kube.clusters import Clusters
    from orchestrator.migration.executor import locate
    from orchestrator.migration.journal import Journal

    cfg = load_continuum(config)
    cl = Clusters(cfg, timeout=5.0, retry_seconds=3.0)
    pending = {r.service: r.id for r in Journal(cfg.state_dir).unfinished()}
    out = []
    for svc in cfg.services:
        entry: dict[str, Any] = {"service": svc.key, "hostname": svc.hostname,
                                 "unfinished_migration": pending.get(svc.key)}
        try:
            p = locate(cl, svc)
            entry.update(cluster=p.cluster, nodes=p.nodes, ready=p.ready, replicas=p.replicas)
        except GreenwiseError as e:
            entry.update(cluster=None, nodes=[], ready=0, replicas=0, error=str(e))
        out.append(entry)
    rows = [[e["service"], e["cluster"] or "-", ",".join(e["nodes"]) or "-",
             f"{e['ready']}/{e['replicas']}", e["unfinished_migration"] or "",
             e.get("error", "")] for e in out]
    emit({"services": out}, output, [table(
        "services", ["service", "cluster", "nodes", "ready", "unfinished", "error"], rows)])


power_app = typer.Typer(rich_markup_mode=None, help=(
    "Per-host power models from measurements (GreenWise paper section 5.2, Table 7)."))
app.add_typer(power_app, name="power-model")


@power_app.command("fit")
def power_model_fit(
    measurements: Annotated[Path, typer.Argument(
        help="CSV with columns host, cpu_utilization (fraction 0-1 of the host's cores), watts; "
             "at least 20 rows per host; other columns are ignored.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the models (host -> model, mae_w, mape_pct, idle_watts, "
                      "max_watts, power_curve); default: power-models.yaml next to the CSV.")] =
        None,
    apply: Annotated[Path | None, typer.Option(
        "--apply", help="Also set idle_watts, max_watts and power_curve of the measured hosts "
                        "in this scenario YAML or continuum.yaml, in place (its comments are "
                        "not kept).")] = None,
    percent: Annotated[bool, typer.Option(
        "--percent", help="cpu_utilization is in percent (0-100).")] = False,
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", help="Share of each host's rows held out for MAE / MAPE.")] = 0.25,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out split.")] = 0,
    output: OutputOpt = Format.table,
) -> None:
    """Fit linear, polynomial, logarithmic, k-neighbours, gradient-boosting, SVR and SGD
    regressors of watts on CPU utilization per host, report their held-out MAE (W) and MAPE (%),
    and write the best (lowest MAE) per host as idle_watts, max_watts and an 11-point
    power_curve: the form the simulator and the lab's node exporter use."""
    from orchestrator import power_model as pm

    hosts = pm.load_measurements(measurements, percent=percent)
    pm.check_split(hosts, test_fraction)
    target = pm.read_target(apply, hosts) if apply else None
    out = out or measurements.parent / "power-models.yaml"
    with _progress() as progress:
        task = progress.add_task("fitting power models", total=len(hosts) * len(pm.MODELS))
        fits = pm.fit_all(hosts, seed, test_fraction, on_model=lambda: progress.advance(task))
    updated = pm.apply_to(target, fits, apply) if apply and target is not None else []
    pm.write_models(fits, out, measurements, seed, test_fraction)
    if apply and target is not None:
        pm.write_target(target, apply)
    data = {"source": str(measurements), "out": str(out), "seed": seed,
            "test_fraction": test_fraction,
            "applied": {"file": str(apply), "hosts": updated} if apply else None,
            "hosts": {h: f.to_dict() for h, f in fits.items()}}
    emit(data, output, pm.tables(data))


def main() -> None:
    """Entry point: bad input -> one line on stderr and exit code 2."""
    try:
        app(args=sys.argv[1:] or ["--help"], standalone_mode=False)
    except GreenwiseError as e:
        err_console.print(f"error: {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.TyperException as e:  # click's usage errors: unknown option, bad value, ...
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        err_console.print(f"error: {message} (see --help)", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
