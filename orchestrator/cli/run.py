"""`greenwise-mc run`: policy mode, on the simulated continuum or on real clusters."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

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
    check_metrics_address,
    doing,
    parse_options,
    policy_setup,
    positive,
    seconds,
    sim_setup,
)
from orchestrator.errors import BadInput
from orchestrator.output import Format, emit, err_console, table


def run(
    config: PolicyConfigOpt = None,
    scenario: ScenarioOpt = "paper",
    strategy: StrategyOpt = "greedy",
    model: ModelOpt = None,
    option: OptionOpt = [],  # noqa: B006
    ticks: Annotated[int | None, typer.Option(
        "--ticks", help="Control ticks to run (simulated: 96; real clusters: until SIGTERM).")] =
        None,
    interval: Annotated[str | None, typer.Option(
        "--interval", help="Time between ticks, e.g. 10s (real clusters, default 10s), or the "
                           "pause per simulated tick so the view can be watched (default "
                           "0.05s).")] = None,
    pattern: PatternOpt = "test",
    seed: SeedOpt = 0,
    reward: RewardOpt = "power-latency",
    train_steps: TrainStepsOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Real clusters: observe and decide every tick, migrate nothing.")] =
        False,
    online_training: Annotated[bool, typer.Option(
        "--online-training", help="Real clusters, maskppo: keep training the model on live "
                                  "transitions and checkpoint it (state_dir/models).")] = False,
    gates: Annotated[bool, typer.Option(
        "--gates/--no-gates", help="Simulated: run the policy gates of the default controller "
                                   "settings (cooldown, minimum predicted gain, concurrency) on "
                                   "the simulated clock, as production would.")] = True,
    metrics_address: Annotated[str | None, typer.Option(
        "--metrics-address", help="Real clusters: serve the controller's /metrics on HOST:PORT "
                                  "(default 127.0.0.1:9400; port 0: any free port).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Policy mode: observe, decide, migrate, every tick.

    With --config (or $GREENWISE_CONFIG): on real clusters, behind the safety gates of the
    config's `controller:` section (cooldown, concurrent migrations, minimum predicted gain,
    no action on stale data, one active controller via a Lease); one JSON line per decision on
    stderr. Without: on the simulated continuum, with a live view and a summary at the end.

    Example: greenwise-mc run --strategy rules --ticks 96 --interval 0"""
    from orchestrator.control.controller import EventLog
    from orchestrator.control.loop import keep_long_lived, step
    from orchestrator.views import live_view, run_summary

    if ticks is not None:
        positive("--ticks", ticks)
    options = parse_options(option)
    if config is not None:
        if not gates:
            raise BadInput("--no-gates is for the simulated continuum: on real clusters the "
                           "gates are the config's controller: section")
        _policy_run(config, strategy, model, seed, reward, train_steps, ticks,
                    seconds(interval or "10s", "--interval"), dry_run, online_training,
                    check_metrics_address(metrics_address or "127.0.0.1:9400"), output, options)
        return
    for flag, given in (("--dry-run", dry_run), ("--online-training", online_training),
                        ("--metrics-address", metrics_address is not None)):
        if given:
            raise BadInput(f"{flag} is for real clusters: give --config continuum.yaml "
                           "(or set GREENWISE_CONFIG)")
    ticks = ticks or 96
    pause = seconds(interval or "0.05", "--interval")
    sim, loop = sim_setup(scenario, strategy, model, seed, reward, train_steps, ticks,
                          pattern, gates, options=options)
    history = []
    log = EventLog()  # with -o json/yaml: one JSON line per decision, as on clusters
    # Ctrl-C is taken between ticks: raised inside the live view's refresh it could leave its
    # lock held and the exit waiting on it forever (seen once under load).
    interrupted = threading.Event()
    before = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.set())
    try:
        with Live(console=err_console, refresh_per_second=10,
                  transient=False) if output is Format.table else _Quiet() as live:
            for n in range(ticks):
                doing(f"the simulated run at tick {n + 1} of {ticks} (no cluster is touched)")
                history.append(step(loop))
                if n == 0:
                    keep_long_lived()
                if output is Format.table:
                    live.update(live_view(sim.topology, sim.specs, history, strategy, ticks))
                else:
                    for d in history[-1].tick.decisions:
                        log.write("info", "decision", **d.to_dict())
                if interrupted.wait(pause) if pause else interrupted.is_set():
                    break
    finally:
        signal.signal(signal.SIGINT, before)
    if interrupted.is_set():
        raise KeyboardInterrupt
    if output is Format.table:
        err_console.print()
    summary, tables = run_summary(sim.scenario.name, sim.topology, sim.specs, history,
                                  strategy)
    emit(summary, output, tables)


def _policy_run(config: Path, strategy: str, model: Path | None, seed: int, reward: str,
                train_steps: int | None, ticks: int | None, interval: float, dry_run: bool,
                online_training: bool, address: str, output: Format,
                options: dict[str, Any]) -> None:
    from orchestrator.control.controller import Controller, EventLog, Metrics, identity, serve
    from orchestrator.control.lease import Lease

    if interval <= 0:
        raise BadInput("--interval must be > 0 on real clusters")
    if online_training and strategy != "maskppo":
        raise BadInput("--online-training trains MaskablePPO: use --strategy maskppo")
    cfg, continuum, loop = policy_setup(config, strategy, model, seed, reward, train_steps,
                                        dry_run, options)
    ctl = cfg.controller
    log = EventLog()
    if online_training:
        from strategies.online import OnlineLearner

        agent = loop.strategy  # one model decides for every service
        loop.learner = OnlineLearner(agent.model, agent.encoders, loop.predictor,
                                     cfg.state_dir / "models" / "maskppo-online.zip",
                                     on_round=lambda info: log.write("info", "training", **info))
    metrics = Metrics()
    bound = metrics.serve(address)
    lease = None if dry_run else Lease(
        continuum.clusters[ctl.lease_cluster or cfg.clusters[0].name], ctl.lease_namespace,
        ctl.lease_name, identity(), ctl.lease_duration_s)
    controller = Controller(continuum, loop, strategy, log, metrics)
    log.write("info", "start", strategy=strategy, dry_run=dry_run, interval_s=interval,
              services=list(continuum.services), metrics=f"http://{bound}/metrics",
              lease=lease.where if lease else None, identity=lease.identity if lease else None,
              online_training=online_training, gates=ctl.model_dump(
                  include={"cooldown_s", "max_concurrent_migrations", "min_predicted_gain"}))
    doing("policy mode on real clusters")
    try:
        serve(controller, interval, ticks, lease)
    finally:
        metrics.close()
    data = {"strategy": strategy, "dry_run": dry_run, "ticks": controller.ticks,
            "migrations": dict(controller.outcomes)}
    emit(data, output, [table("policy mode", ["", ""], [
        ["ticks", controller.ticks],
        *[[f"migrations {k}", v] for k, v in controller.outcomes.items()]])])


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
