"""Speed of the simulated continuum: raw simulator steps/s, Gymnasium env steps/s, the control
tick (the loop: observe + decide + gate + plan + apply) on 4 hosts, and MaskablePPO training
time for the paper's 5500 steps; on `continuum`, simulator service-steps/s and the policy tick
for about 1,000 services (continuum's clusters and services repeated, names numbered).

    python bench/sim_bench.py            # all figures
Goals (issue 2): raw simulator >= 50,000 steps/s; 5500 MaskablePPO steps <= 10 s on 2 cores;
control tick <= 5 ms for 4 hosts. Issue 13: >= 200,000 service-steps/s on `continuum`; a policy
tick for 1,000 services <= 50 ms.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from sb3_contrib import MaskablePPO

from orchestrator.config import ControllerConfig, load_scenario
from orchestrator.control.gates import Gates
from orchestrator.control.loop import Loop
from orchestrator.model import Move
from orchestrator.scenario import PAPER, Scenario
from orchestrator.sim.continuum import SimulatedContinuum
from strategies import rl
from strategies.base import StrategyContext, create
from strategies.env import GreenWiseEnv
from strategies.prediction import Predictor


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def raw_sim(n: int) -> None:
    sim = SimulatedContinuum(PAPER, "train", seed=0)
    for i in range(n):
        move = i % 7 == 0 and i % 4 != sim.host
        sim.apply([sim.plan(Move(0, i % 4))] if move else [])
        sim.snapshot()
        if sim.done:
            sim.reset()


def env_steps(n: int) -> None:
    env = GreenWiseEnv(PAPER)
    env.reset(seed=0)
    for i in range(n):
        if env.step(i % 5)[3]:
            env.reset()


def service_steps(n: int) -> None:
    """n service-steps of `continuum` (every service observed each step; staying)."""
    sim = SimulatedContinuum(load_scenario("continuum"), "train", seed=0)
    for _ in range(n // len(sim.specs)):
        sim.apply([])
        sim.snapshot()
        if sim.done:
            sim.reset()


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


def tick_ms(strategy: str, model_path: Path | None = None, n: int = 500,
            scenario: Scenario = PAPER) -> float:
    sim = SimulatedContinuum(scenario.model_copy(update={"episode_steps": n + 1}), "test", seed=0)
    agent = create(strategy, StrategyContext(scenario),
                   {"model": model_path} if model_path else None)
    agent.reset(sim)
    loop = Loop(sim, agent, Predictor(scenario, model=sim.model),
                Gates(ControllerConfig(), clock=lambda: sim.t * 900.0))
    times = []
    for _ in range(n):
        start = time.perf_counter()
        loop.tick()  # observe, decide, gate, plan, apply (the simulator advances)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def model(algorithm: str) -> Path:
    return Path(f"/tmp/greenwise-bench-{algorithm}.zip")


def main() -> None:
    print(f"raw simulator:        {rate(raw_sim, 200_000):10,.0f} steps/s   (goal >= 50,000)")
    print(f"GreenWise-v0 env:     {rate(env_steps, 50_000):10,.0f} steps/s")
    for algo in ("maskppo", "a2c"):
        start = time.perf_counter()
        rl.train(algo, PAPER, "power-latency", 5500, seed=0, out=model(algo))
        print(f"train {algo:8s} 5500:  {time.perf_counter() - start:10.2f} s       "
              f"{'(goal <= 10 s)' if algo == 'maskppo' else ''}")
    for name in ("greedy", "rules", "maskppo", "a2c"):
        path = model(name) if name in ("maskppo", "a2c") else None
        print(f"control tick {name:8s} {tick_ms(name, path):8.3f} ms median  (goal <= 5 ms)")
    print(f"continuum simulator:  {rate(service_steps, 120_000):10,.0f} service-steps/s "
          "(goal >= 200,000)")
    big = repeated(load_scenario("continuum"), 84)
    print(f"{len(big.fleet)} services on {len(big.hosts)} hosts: the policy tick, median of 3")
    # An untrained network of the right shape: the tick's cost does not depend on the weights.
    MaskablePPO("MlpPolicy", GreenWiseEnv(big), seed=0).save(model("big"))
    # Not greedy or lookahead: they predict every host for every service (about a million
    # predictions a tick here, minutes).
    for name in ("stay", "descheduler", "threshold", "maskppo"):
        path = model("big") if name == "maskppo" else None
        print(f"  {name:12s} {tick_ms(name, path, 3, big):10.1f} ms  (goal <= 50 ms)")


if __name__ == "__main__":
    main()
