"""What the commands share: their options, the checks every argument gets before any work
starts (so bad input costs no training and writes nothing), strategy creation (an RL strategy
without a model is trained first) and the simulated setup of `run` and `plan`."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.config import BUILTIN, load_scenario, parse_yaml
from orchestrator.errors import BadInput
from orchestrator.output import Format, err_console
from orchestrator.scenario import Scenario
from orchestrator.workload import MAX_USERS
from strategies.base import RL

ScenarioOpt = Annotated[str, typer.Option(
    "--scenario",
    help=f"Built-in scenario name ({', '.join(BUILTIN)}) or a scenario YAML file.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (workload noise, RL).")]
RewardOpt = Annotated[str, typer.Option(
    "--reward", help="Objective: power-latency (alpha = beta = 0.5), power, or latency.")]
OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="How to print results.")]
TrainStepsOpt = Annotated[int | None, typer.Option(
    "--train-steps", help="Training steps for RL strategies given without a model. Default: "
                          "5500 for one service (the paper's), else 500 training episodes.")]
EnvsOpt = Annotated[int, typer.Option(
    "--envs", help="Training episodes stepped at once (their rewards computed together; a "
                   "rollout holds as many steps): 1 as the paper, e.g. 24 for a fleet.")]
StrategyOpt = Annotated[str, typer.Option("--strategy", help="Strategy that decides.")]
ModelOpt = Annotated[Path | None, typer.Option(
    "--model", help="Trained model for maskppo/a2c (else one is trained first).")]
OptionOpt = Annotated[list[str], typer.Option(
    "--option", help="KEY=VALUE: one of the strategy's options, checked before it runs "
                     "(rules: evacuate_at, safe_cpu, min_saving); repeatable.")]
PatternOpt = Annotated[str, typer.Option(
    "--pattern", help="Simulated workload: test (day-like) or train (ramp).")]
PolicyConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", envvar="GREENWISE_CONFIG",
    help="continuum.yaml: run on those real clusters (observed through Prometheus, changed "
         "through the migrators). Without it: the simulated continuum of --scenario.")]
ConfigOpt = Annotated[Path, typer.Option(
    "--config", "-c", envvar="GREENWISE_CONFIG",
    help="continuum.yaml: clusters (kubeconfig, context, ingress, hosts), services, DNS. "
         "Clusters without a kubeconfig use $KUBECONFIG.")]


class Activity:
    """What the running command is doing now: an interrupt (Ctrl-C) says what it stopped."""

    now = "starting"


def doing(what: str) -> None:
    Activity.now = what


def say(text: str) -> None:
    """A line on stderr, printed as it is (never read as rich markup)."""
    err_console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=False)


@contextmanager
def tracking() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A progress bar per unit of work (strategies.experiment.Track): `track(what, total)`
    starts one, says what is being done (for an interrupt) and returns its update."""
    with progress() as bar:
        def track(what: str, total: int) -> Callable[[int], None]:
            doing(what)
            task = bar.add_task(escape(what), total=total)  # maskppo[power] is no markup
            return lambda done: bar.update(task, completed=min(done, total))

        yield track


# --- argument checks ---------------------------------------------------------------------------


def check_reward(kind: str) -> None:
    from strategies.reward import REWARDS

    if kind not in REWARDS:
        raise BadInput(f"unknown reward {kind!r}; choose one of: {', '.join(REWARDS)}")


def parse_rewards(text: str, option: str) -> tuple[str, ...]:
    """Comma-separated reward kinds, each known and given once."""
    from strategies.reward import REWARDS

    kinds = tuple(k.strip() for k in text.split(","))
    unknown = [k for k in kinds if k not in REWARDS]
    if unknown:
        raise BadInput(f"{option}: unknown reward {', '.join(map(repr, unknown))}; give a "
                       f"comma-separated list of: {', '.join(REWARDS)}")
    if len(set(kinds)) < len(kinds):
        raise BadInput(f"{option} {text}: a reward is given twice; give each once")
    return kinds


def parse_seeds(text: str, option: str) -> tuple[int, ...]:
    """Comma-separated seeds: whole numbers 0 .. 2^32 - 1 (numpy's range), each given once."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() and int(p) < 2**32 for p in parts):
        raise BadInput(f"{option} must be comma-separated whole numbers from 0 to 2^32 - 1 "
                       f"(e.g. 0,1,2), got {text!r}")
    seeds = tuple(int(p) for p in parts)
    if len(set(seeds)) < len(seeds):
        raise BadInput(f"{option} {text}: a seed is given twice; give each once")
    return seeds


def positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise BadInput(f"{name} must be a number > 0, got {value}")


def check_users(name: str, value: int) -> None:
    if not 0 <= value <= MAX_USERS:
        raise BadInput(f"{name} must be between 0 and {MAX_USERS} users, got {value}")


def seconds(text: str, option: str) -> float:
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
        raise BadInput(f"{option} must be a duration like 10s, 500ms or 2m, "
                       f"got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"{option} must be a finite duration >= 0, got {text!r}")
    return value


def check_metrics_address(text: str) -> str:
    """HOST:PORT with a port in 0-65535 (0: any free port)."""
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BadInput(f"--metrics-address must be HOST:PORT with a port in 0-65535, "
                       f"got {text!r}")
    return text


def check_model(strategy: str, model: Path | None) -> None:
    """--model only for the RL strategies, and then a file that exists."""
    if model is None:
        return
    if strategy not in RL:
        raise BadInput(f"--model is for {' and '.join(RL)}; --strategy {strategy} takes no "
                       "model (drop --model)")
    if not model.is_file():
        raise BadInput(f"model file {model} does not exist")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """--option KEY=VALUE pairs; values read as YAML scalars (0.5, true, text)."""
    options: dict[str, Any] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--option expects KEY=VALUE (e.g. safe_cpu=0.5), got {p!r}")
        try:
            options[key.strip()] = parse_yaml(value)
        except yaml.YAMLError:
            options[key.strip()] = value
    if "model" in options:
        raise BadInput("give a model with --model PATH, not --option model=...")
    return options


def parse_models(pairs: list[str]) -> dict[str, Path]:
    models = {}
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise BadInput(f"--model expects NAME=PATH (e.g. maskppo=model.zip), got {p!r}")
        models[name] = Path(path)
    return models


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not (p.exists() or p.is_symlink()):  # a dangling or looping link stops here too
        p = p.parent
    return p


def _writable_dir(directory: Path, what: str) -> None:
    """`directory` (made later if missing) can take files: its nearest existing ancestor is a
    directory we may write in. Probed with an unnamed temporary file, so nothing is left."""
    base = _existing_ancestor(directory)
    if not base.is_dir():
        raise BadInput(f"{what}: {base} is not a directory; choose another place")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise BadInput(f"{what}: cannot write in {base} ({e.strerror}); choose another "
                       "place") from None


def check_output_dir(directory: Path, option: str) -> None:
    """A directory the command will write into: refused now, before any work, if it cannot."""
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"{option} {directory} is a file; give a directory")
    _writable_dir(directory, f"{option} {directory}")


def check_output_file(path: Path, option: str, example: str) -> None:
    """A file the command will write: refused now, before any work, if it cannot be."""
    if path.is_dir():
        raise BadInput(f"{option} {path} is a directory; give a file path such as "
                       f"{path / example}")
    if path.exists():
        try:
            with path.open("ab"):  # opened for appending, nothing written
                pass
        except OSError as e:
            raise BadInput(f"{option} {path}: cannot write it ({e.strerror})") from None
    _writable_dir(path.parent, f"{option} {path}")


# --- strategies and the simulated setup --------------------------------------------------------


def train_with_progress(algorithm: str, scenario: Scenario, reward: str, steps: int, seed: int,
                        out: Path | None, gates: Any = None, envs: int = 1) -> float:
    from strategies import rl

    start = time.perf_counter()
    with tracking() as track:
        rl.train(algorithm, scenario, reward, steps, seed, out,
                 on_step=track(f"training {algorithm} ({steps} steps)", steps), gates=gates,
                 envs=envs)
    return time.perf_counter() - start


# [paper] The training budget for one service: 5500 steps (220 episodes of 25 steps).
PAPER_TRAIN_STEPS = 5500
# Several services: 500 training episodes (each services x episode_steps decisions): on
# `continuum` the policy's checks rise slowly until about 400 episodes (120,000 steps) and stay
# within 0.5 after that, over three seeds (README, "Strategies").
TRAIN_EPISODES = 500


def train_steps_for(scenario: Scenario, given: int | None, flag: str = "--train-steps") -> int:
    """The RL training budget: `given` (checked), else the default for the scenario."""
    if given is not None:
        positive(flag, given)
        return given
    if len(scenario.fleet) == 1:
        return PAPER_TRAIN_STEPS
    return TRAIN_EPISODES * len(scenario.fleet) * scenario.episode_steps


def make_strategy(name: str, scenario: Scenario, model: Path | None, seed: int, reward: str,
                  train_steps: int | None, work_dir: Path, on_clusters: bool = False,
                  options: dict[str, Any] | None = None, gates: Any = None) -> Any:
    """Create a strategy for every service, its options checked first; an RL strategy without
    a model is trained first (into work_dir). `gates`: the controller's settings it runs
    under (None: none)."""
    from strategies.base import StrategyContext, check, create

    context = StrategyContext(scenario, seed=seed, reward=reward, on_clusters=on_clusters,
                              gates=gates)
    given = {**(options or {}), **({"model": model} if model is not None else {})}
    check(name, context, given)  # bad input: one line, before any training
    if name in RL and model is None:
        steps = train_steps_for(scenario, train_steps)
        check_output_dir(work_dir, "the directory for trained models")
        model = work_dir / f"{name}.zip"
        train_with_progress(name, scenario, reward, steps, seed, model, gates)
        given["model"] = model
    return create(name, context, given)


def gates_for(scenario: Scenario, gates: bool | None) -> Any:
    """The gates' settings for a simulated evaluation (None: off). By default on, except on
    the paper's scenario, whose figures are reproduced without them (as the paper has none)."""
    from orchestrator.config import ControllerConfig

    if gates is None:
        gates = scenario.name != "paper"
    return ControllerConfig() if gates else None


def sim_setup(scenario: str, strategy_name: str, model: Path | None, seed: int, reward: str,
              train_steps: int | None, steps: int, phase: str, gates: bool = True,
              dry_run: bool = False, options: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(simulated continuum, control loop) for `run` and `plan` without --config."""
    from orchestrator.config import ControllerConfig
    from orchestrator.control.loop import simulated
    from orchestrator.sim.continuum import SimulatedContinuum
    from strategies.prediction import Predictor

    check_reward(reward)
    if phase not in ("train", "test"):
        raise BadInput(f"--pattern must be train or test, not {phase!r}")
    check_model(strategy_name, model)
    sc = load_scenario(scenario)
    settings = ControllerConfig() if gates else None
    agent = make_strategy(strategy_name, sc, model, seed, reward, train_steps,
                          Path(".greenwise"), options=options, gates=settings)
    sim = SimulatedContinuum(sc.model_copy(update={"episode_steps": steps}), phase, seed=seed)
    sim.reset(seed=seed)
    agent.reset(sim)
    return sim, simulated(sim, agent, Predictor(sc, reward, sim.model), settings,
                          dry_run=dry_run, explain=True)


def policy_setup(config: Path, strategy_name: str, model: Path | None, seed: int, reward: str,
                 train_steps: int | None, dry_run: bool = False,
                 options: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """(config, Kubernetes continuum, control loop) for policy mode on real clusters."""
    from orchestrator.config import load_continuum
    from orchestrator.control.gates import Gates
    from orchestrator.control.loop import Loop
    from orchestrator.kube.continuum import KubernetesContinuum
    from strategies.prediction import Predictor

    check_reward(reward)
    check_model(strategy_name, model)
    cfg = load_continuum(config)
    continuum = KubernetesContinuum(cfg)
    scenario = continuum.scenario  # the clusters' hosts, in the order the observations use
    agent = make_strategy(strategy_name, scenario, model, seed, reward, train_steps,
                          cfg.state_dir / "models", on_clusters=True, options=options,
                          gates=cfg.controller)
    agent.reset(continuum)
    return cfg, continuum, Loop(continuum, agent, Predictor(scenario, reward),
                                Gates(cfg.controller), dry_run=dry_run)
