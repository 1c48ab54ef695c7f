"""Speed of the simulated continuum, printed figure by figure (asserts nothing).

    python -m bench.sim_bench                       # every part (about 15 minutes)
    python -m bench.sim_bench --parts sim,tick      # some: tick, paper, sim, env, train
    python -m bench.sim_bench --parts train --train-seconds 300 --out bench-out

- paper (issue 2): raw simulator steps/s (goal >= 50,000), GreenWise-v0 env steps/s, 5500
  training steps of MaskablePPO (goal <= 10 s) and A2C, the control tick on 4 hosts (<= 5 ms).
- sim (issue 13): `continuum` service-steps/s, one episode (SimulatedContinuum) and many at
  once (orchestrator.sim.continuum.measure), in one process and in two (goal >= 200,000 on 2
  cores); from empty outcome tables (the first steps solve them) and once they hold what the
  workload asks; before them, the time to solve blocks of the tables cold (µs a point).
- tick (issue 13): the policy tick (observe, masks, decide, gates, explain, plan, apply) for
  1008 services on 924 hosts (`continuum` 84 times over), per strategy (goal <= 50 ms):
  lookahead's first two simulated days from empty tables, per quarter day; the first tick of
  all (tables empty); greedy's 50 ticks with and without what lives after the first tick
  exempt from full garbage collections (as `run` and the controller exempt it); then each
  strategy's median tick (and slowest, and full collections) in the simulated day that
  `stay` ran first (its tables solved), and again if it solved blocks that day had not (a
  planner reads other hosts and loads). maskppo's network is untrained: it ranks hosts at
  random and, knowing the gates, proposes the first move they let through (one a tick).
  greedy and lookahead also at 12 and 96 services.
- env: GreenWise-v0 steps/s on `continuum`, one episode and 24 at once (strategies/vec_env.py).
- train (issue 13): MaskablePPO on `continuum`, 24 episodes at once, for --train-seconds of
  wall clock, checkpointed every tenth of it; each checkpoint's test reward (the test pattern,
  gates on, as `evaluate`) beside the operator baselines' on the same episodes; the training
  curve against wall-clock seconds and steps in OUT/training.png (goal: its final quality
  within 5 minutes on 2 cores).
Wall-clock figures depend on what else runs on the machine: each also says the CPU time.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from orchestrator.config import ControllerConfig, load_scenario
from orchestrator.control.loop import Loop, keep_long_lived, simulated
from orchestrator.model import Move
from orchestrator.performance import GRID, TABLES, TAKEN_BLOCK, USERS_BLOCK, OutcomeTables
from orchestrator.scenario import PAPER, Scenario
from orchestrator.sim.continuum import SimulatedContinuum, measure
from orchestrator.workload import DAY_STEPS
from strategies import rl
from strategies.base import StrategyContext, create
from strategies.env import GreenWiseEnv
from strategies.evaluation import OPERATOR_BASELINES, run_episodes
from strategies.prediction import Predictor
from strategies.vec_env import GreenWiseVecEnv

CONTINUUM = "continuum"
EPISODES = 64  # episodes measured at once
ENVS = 24  # training episodes stepped at once


def rate(fn: Callable[[int], Any], n: int) -> tuple[float, float]:
    """(per wall-clock second, per CPU second) of fn(n)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(n)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def show(what: str, per_s: tuple[float, float], unit: str, goal: str = "") -> None:
    print(f"{what:34s} {per_s[0]:10,.0f} {unit} (CPU: {per_s[1]:,.0f}) {goal}")


# --- paper ------------------------------------------------------------------------------------
def raw_sim(n: int) -> None:
    sim = SimulatedContinuum(PAPER, "train", seed=0)
    for i in range(n):
        move = i % 7 == 0 and i % 4 != sim.host
        sim.apply([sim.plan(Move(0, i % 4))] if move else [])
        sim.snapshot()
        if sim.done:
            sim.reset()


def env_steps(scenario: Scenario, n: int) -> None:
    env = GreenWiseEnv(scenario)
    env.reset(seed=0)
    for i in range(n):
        if env.step(i % 5)[3]:
            env.reset()


def policy_loop(sim: SimulatedContinuum, strategy: str, scenario: Scenario,
                model_path: Path | None = None) -> Loop:
    """`strategy` ticking on `sim` as `run` ticks it: under the default gates, on the
    simulated clock, the strategy knowing the gates it runs under."""
    gates = ControllerConfig()
    agent = create(strategy, StrategyContext(scenario, gates=gates),
                   {"model": model_path} if model_path else None)
    agent.reset(sim)
    return simulated(sim, agent, Predictor(scenario, model=sim.model), gates)


def tick_ms(strategy: str, model_path: Path | None = None, n: int = 500,
            scenario: Scenario = PAPER, warm: int = 0, steps: int | None = None,
            keep: bool = True) -> tuple[float, float, float]:
    """Median (wall, CPU) ms of n policy ticks after `warm` ones, as `run` ticks (`keep`: what
    lives after the first tick exempt from full garbage collections), in the test episode of
    `steps` steps (seed 0; the draws differ with the length) or just long enough; and the
    set-up in s of the strategy and the loop (before the first tick). Prints the slowest tick
    and the full collections, if any, in the n ticks."""
    steps = steps or warm + n + 1
    assert warm + n < steps, "the ticks measured must be in the episode"
    sim = SimulatedContinuum(scenario.model_copy(update={"episode_steps": steps}),
                             "test", seed=0)
    start = time.perf_counter()
    loop = policy_loop(sim, strategy, scenario, model_path)
    setup = time.perf_counter() - start
    full: list[float] = []  # ms of each full collection in the ticks measured
    measuring = False

    def collected(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2 and measuring:
            full.append(time.perf_counter() if phase == "start" else
                        (time.perf_counter() - full.pop()) * 1000)

    gc.callbacks.append(collected)
    wall, cpu = [], []
    for k in range(warm + n):
        measuring = k >= warm
        w, c = time.perf_counter(), time.process_time()
        loop.tick()  # observe, decide, gate, plan, apply (the simulator advances)
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        measuring = False
        if k == 0 and keep:
            keep_long_lived()
    gc.callbacks.remove(collected)
    gc.unfreeze()
    wall, cpu = wall[warm:], cpu[warm:]
    if full:
        print(f"    {strategy}: slowest tick {max(wall):.1f} ms; {len(full)} full garbage "
              f"collection(s) in the {n} ticks, {statistics.median(full):.1f} ms median")
    return statistics.median(wall), statistics.median(cpu), setup


def model(name: str) -> Path:
    return Path(f"/tmp/greenwise-bench-{name}.zip")


def paper() -> None:
    show("raw simulator (paper)", rate(raw_sim, 200_000), "steps/s", "(goal >= 50,000)")
    show("GreenWise-v0 env (paper)", rate(lambda n: env_steps(PAPER, n), 50_000), "steps/s")
    for algo in ("maskppo", "a2c"):
        start = time.perf_counter()
        rl.train(algo, PAPER, "power-latency", 5500, seed=0, out=model(algo))
        print(f"train {algo:8s} 5500 steps (paper)      {time.perf_counter() - start:10.2f} s "
              f"{'(goal <= 10 s)' if algo == 'maskppo' else ''}")
    for name in ("greedy", "rules", "maskppo", "a2c"):
        path = model(name) if name in rl.ALGORITHMS else None
        wall, cpu, _ = tick_ms(name, path)
        print(f"control tick {name:8s} (paper)       {wall:10.3f} ms median (CPU: {cpu:.3f}) "
              "(goal <= 5 ms)")


# --- sim --------------------------------------------------------------------------------------
def one_episode(n: int) -> None:
    """n service-steps of one `continuum` episode after another (every service observed each
    step; staying)."""
    sim = SimulatedContinuum(load_scenario(CONTINUUM), "train", seed=0)
    for _ in range(n // len(sim.specs)):
        sim.apply([])
        sim.snapshot()
        if sim.done:
            sim.reset()


def many_episodes(n: int, seed: int = 0) -> None:
    """n service-steps of EPISODES `continuum` episodes measured at once."""
    sc = load_scenario(CONTINUUM)
    sims = [SimulatedContinuum(sc, "train", seed=seed + b) for b in range(EPISODES)]
    for _ in range(n // (EPISODES * len(sc.fleet))):
        for sim in sims:
            sim.apply([])
        measure(sims)
        if sims[0].done:
            for sim in sims:
                sim.reset()


def _worker(args: tuple[int, int]) -> tuple[float, float]:
    n, seed = args
    cpu = time.process_time()
    many_episodes(n, seed)
    return time.perf_counter(), time.process_time() - cpu


def two_processes(n: int) -> tuple[float, float]:
    """n service-steps in each of two processes (forked: the tables as filled here)."""
    with multiprocessing.get_context("fork").Pool(2) as pool:
        start = time.perf_counter()
        done = pool.map(_worker, [(n, 0), (n, 1000)])
    return 2 * n / (max(end for end, _ in done) - start), 2 * n / max(c for _, c in done)


def solve_tables(points: int) -> int:
    """Solve, cold, the blocks of `points` random points (background up to 60 %, up to 96
    users) of `continuum`'s outcome tables, all at once; the blocks solved."""
    sc = load_scenario(CONTINUUM)
    tables = OutcomeTables()
    ids = sorted({tables.id(s, h) for s in sc.fleet for h in sc.hosts})
    rng = np.random.default_rng(0)
    tables.lookup(rng.choice(ids, points), rng.integers(0, 61, points),
                  rng.integers(0, GRID, points), rng.integers(0, 97, points))
    return tables.solved


def sim() -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    blocks = solve_tables(2_000)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    points = blocks * TAKEN_BLOCK * USERS_BLOCK
    print(f"outcome tables solved cold: {blocks} blocks, {points:,} points in {wall:.2f} s, "
          f"{1e6 * wall / points:.2f} us a point (CPU: {cpu:.2f} s)")
    show("continuum, one episode, from empty", rate(one_episode, 120_000), "service-steps/s")
    many_episodes(2_000_000)  # the tables as the workload fills them
    show("continuum, one episode", rate(one_episode, 120_000), "service-steps/s")
    show(f"continuum, {EPISODES} episodes at once", rate(many_episodes, 1_000_000),
         "service-steps/s")
    show(f"continuum, {EPISODES} x 2 processes", two_processes(1_000_000), "service-steps/s",
         "(goal >= 200,000)")


# --- tick -------------------------------------------------------------------------------------
def repeated(scenario: Scenario, k: int) -> Scenario:
    """`scenario`'s clusters and services k times over, names numbered."""
    clusters = tuple(c.model_copy(update={
        "name": f"{c.name}-{j}",
        "hosts": tuple(h.model_copy(update={"name": f"{h.name}-{j}"}) for h in c.hosts)})
        for j in range(k) for c in scenario.clusters)
    services = tuple(s.model_copy(update={"name": f"{s.name}-{j}",
                                          "workload": scenario.workload_of(i)})
                     for j in range(k) for i, s in enumerate(scenario.fleet))
    regions = {r: {f"{h}-{j}": ms for j in range(k) for h, ms in row.items()}
               for r, row in scenario.regions.items()}
    return scenario.model_copy(update={"clusters": clusters, "services": services,
                                       "regions": regions})


def days(strategy: str, ticks: int) -> list[tuple[float, int, int]]:
    """`strategy`'s first `ticks` policy ticks at 1008 services (`continuum` 84 times over,
    tables empty), as `run` ticks: per quarter day, the median ms, ticks over 50 ms and blocks
    of the tables solved."""
    big = repeated(load_scenario(CONTINUUM), 84)
    sim = SimulatedContinuum(big.model_copy(update={"episode_steps": ticks + 1}), "test",
                             seed=0)
    loop = policy_loop(sim, strategy, big)
    wall, solved = [], []
    for k in range(ticks):
        before, start = TABLES.solved, time.perf_counter()
        loop.tick()
        wall.append((time.perf_counter() - start) * 1000)
        solved.append(TABLES.solved - before)
        if k == 0:
            keep_long_lived()
    quarter = DAY_STEPS // 4
    return [(statistics.median(wall[q:q + quarter]), sum(w > 50 for w in wall[q:q + quarter]),
             sum(solved[q:q + quarter])) for q in range(0, ticks, quarter)]


def tick() -> None:
    continuum = load_scenario(CONTINUUM)
    big = repeated(continuum, 84)
    # A planner's tables fill as it runs: its first two simulated days from empty tables (in
    # a process of their own: this one's are filled below)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        quarters = pool.apply(days, ("lookahead", 2 * DAY_STEPS))
    print(f"{len(big.fleet)} services, lookahead's first two simulated days from empty tables, "
          "per quarter day (goal <= 50 ms):")
    for q, (median, slow, solved) in enumerate(quarters):
        print(f"  ticks {q * DAY_STEPS // 4 + 1:3d}-{(q + 1) * DAY_STEPS // 4:3d}: {median:5.1f} "
              f"ms median, {slow:2d} over 50 ms, {solved:5d} blocks solved")
    print(f"{len(big.fleet)} services on {len(big.hosts)} hosts, the policy tick "
          "(goal <= 50 ms):")
    # Every tick is measured in one episode (a simulated day and two steps): the day of
    # `stay` solves the tables its snapshots read, and every strategy's ticks then read the
    # same users, background and start placement.
    day = DAY_STEPS + 2
    solved = TABLES.solved
    wall, cpu, _ = tick_ms("stay", n=1, scenario=big, steps=day)
    print(f"  first tick (stay; {solved} blocks of the tables solved before) {wall:.1f} ms "
          f"(CPU: {cpu:.1f})")
    # An untrained network of the right shape
    rl.ALGORITHMS["maskppo"]("MlpPolicy", GreenWiseEnv(big), seed=0).save(model("big"))
    start = time.perf_counter()
    tick_ms("stay", n=1, scenario=big, warm=DAY_STEPS, steps=day)
    print(f"  a simulated day of stay fills the tables: {time.perf_counter() - start:.0f} s")
    # What `run` and the controller keep for their whole run (scenario, models, caches) is
    # exempt from full garbage collections after their first tick: side by side, the default
    # strategy's 50 ticks with and without
    for keep in (False, True):
        print(f"  greedy, {'with' if keep else 'without'} the exemption:")
        wall, cpu, _ = tick_ms("greedy", n=50, scenario=big, steps=day, keep=keep)
        print(f"    greedy: {wall:.1f} ms median of ticks 1-50 (CPU: {cpu:.1f})")
    for name in ("stay", "descheduler", "threshold", "maskppo", "greedy", "lookahead"):
        path = model("big") if name == "maskppo" else None
        before = TABLES.solved
        wall, cpu, setup = tick_ms(name, path, 20, big, warm=3, steps=day)
        solved = TABLES.solved - before
        print(f"  {name:12s} {wall:10.1f} ms median of ticks 4-23 (CPU: {cpu:.1f}; "
              f"{solved} blocks solved in ticks 1-23; set-up {setup:.1f} s)")
        if solved:  # a planner reads blocks the day of stay did not: once they are solved
            wall, cpu, _ = tick_ms(name, path, 20, big, warm=3, steps=day)
            print(f"  {name:12s} {wall:10.1f} ms again, the blocks it reads solved "
                  f"(CPU: {cpu:.1f})")
    # The model-based planners predict services on every host (each a service's hosts at
    # once, lookahead over its horizon; not those whose ceiling is below a gain found, and
    # again one by one only those that could be the best): their tick as the fleet grows
    for k, n, warm in ((1, 20, 3), (8, 20, 3)):
        sc = repeated(continuum, k)
        for name in ("greedy", "lookahead"):
            wall, cpu, _ = tick_ms(name, n=n, scenario=sc, warm=warm, steps=day)
            print(f"  {name:12s} {wall:10.1f} ms median of {n} tick(s) after {warm}, "
                  f"{len(sc.fleet)} services on {len(sc.hosts)} hosts (CPU: {cpu:.1f})")


# --- env --------------------------------------------------------------------------------------
def vec_env_steps(scenario: Scenario, n: int) -> None:
    venv = GreenWiseVecEnv(scenario, ENVS)
    venv.seed(0)
    venv.reset()
    actions = np.zeros(ENVS, dtype=np.int64)
    for i in range(n // ENVS):
        actions[:] = i % 5
        venv.step(actions)


def env() -> None:
    sc = load_scenario(CONTINUUM)
    show("GreenWise-v0 env (continuum)", rate(lambda n: env_steps(sc, n), 50_000), "steps/s")
    show(f"  {ENVS} episodes at once", rate(lambda n: vec_env_steps(sc, n), 200_000),
         "steps/s")


# --- train ------------------------------------------------------------------------------------
class Checkpoints(BaseCallback):
    """Episodes' rewards, a checkpoint every `every` seconds, a stop after `seconds`."""

    def __init__(self, seconds: float, every: float, out: Path) -> None:
        super().__init__()
        self.seconds, self.every, self.out = seconds, every, out
        self.start = time.perf_counter()
        self.episodes: list[tuple[float, int, float]] = []  # (seconds, steps, reward)
        self.saved: list[tuple[float, int, Path]] = []

    def _on_step(self) -> bool:
        now = time.perf_counter() - self.start
        for info in self.locals.get("infos", ()):
            if "episode" in info:
                self.episodes.append((now, self.num_timesteps, float(info["episode"]["r"])))
        if now >= self.every * (len(self.saved) + 1):
            path = self.out / f"maskppo-{len(self.saved) + 1}.zip"
            self.model.save(path)
            self.saved.append((now, self.num_timesteps, path))
        return now < self.seconds


def test_reward(strategy: str, scenario: Scenario, path: Path | None, episodes: int) -> float:
    gates = ControllerConfig()
    agent = create(strategy, StrategyContext(scenario, gates=gates),
                   {"model": path} if path else None)
    return run_episodes(agent, scenario, episodes, seed=0, gates=gates).summary()["mean_reward"]


def train(seconds: float, out: Path, episodes: int = 10) -> None:
    sc = load_scenario(CONTINUUM)
    out.mkdir(parents=True, exist_ok=True)
    agent = rl.agent("maskppo", sc, "power-latency", seed=0, envs=ENVS,
                     gates=ControllerConfig())  # trained within the gates, as evaluate does
    run = Checkpoints(seconds, seconds / 10, out)
    cpu = time.process_time()
    agent.learn(total_timesteps=10**9, callback=run)
    wall, cpu = time.perf_counter() - run.start, time.process_time() - cpu
    print(f"MaskablePPO on continuum, {ENVS} episodes at once: {agent.num_timesteps:,} steps "
          f"in {wall:.0f} s ({agent.num_timesteps / wall:,.0f} steps/s; CPU {cpu:.0f} s)")
    baselines = {b: test_reward(b, sc, None, episodes) for b in OPERATOR_BASELINES}
    print(f"  test reward ({episodes} episodes, gates on): " + ", ".join(
        f"{b} {r:.2f}" for b, r in baselines.items()))
    tests = []
    for s, steps, path in run.saved:
        tests.append((s, steps, test_reward("maskppo", sc, path, episodes)))
        print(f"  after {s:5.0f} s ({steps:9,} steps): maskppo {tests[-1][2]:.2f}")
    print(f"  wrote {plot(run.episodes, tests, baselines, out / 'training.png')}")


def plot(episodes: list[tuple[float, int, float]], tests: list[tuple[float, int, float]],
         baselines: dict[str, float], path: Path) -> Path:
    """Training reward per episode (and its moving mean) and the checkpoints' test reward,
    against wall-clock seconds and against steps; the baselines' test reward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    reward = np.array([r for *_, r in episodes])
    mean = np.convolve(reward, np.ones(50) / 50, mode="valid") if len(reward) >= 50 else reward
    for ax, k, label in ((axes[0], 0, "wall-clock seconds of training"),
                         (axes[1], 1, "training steps (decisions)")):
        x = np.array([e[k] for e in episodes])
        ax.plot(x, reward, ".", ms=2, alpha=0.3, color="tab:blue",
                label="training episode reward")
        ax.plot(x[len(x) - len(mean):], mean, color="tab:blue", label="moving mean (50)")
        ax.plot([t[k] for t in tests], [t[2] for t in tests], "o-", color="tab:red",
                label="maskppo test reward")
        for (name, r), style in zip(baselines.items(), ("--", ":", "-.", "--", ":"),
                                    strict=True):
            ax.axhline(r, ls=style, lw=1, color="gray")
            ax.annotate(name, (ax.get_xlim()[0], r), fontsize=7, va="bottom", color="gray")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("episode reward (12 services x 25 ticks)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"MaskablePPO on continuum, {ENVS} episodes at once; test reward on the test "
                 "pattern (gates on) vs the operator baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="tick,paper,sim,env,train")
    parser.add_argument("--train-seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/greenwise-bench"))
    args = parser.parse_args()
    parts = {"paper": paper, "sim": sim, "tick": tick, "env": env,
             "train": lambda: train(args.train_seconds, args.out)}
    for name in args.parts.split(","):
        parts[name]()


if __name__ == "__main__":
    main()
