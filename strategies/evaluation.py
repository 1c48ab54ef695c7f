"""Run a strategy over the test episodes of the simulated continuum, and the figures an
operator reads from them: reward, fleet energy, SLA-violation minutes and migrations, per
simulated day; then compare strategies (against random, round-robin, the oracle and the best
operator baseline)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.config import ControllerConfig
from orchestrator.control.loop import simulated, step
from orchestrator.scenario import Scenario
from orchestrator.sim.continuum import SimulatedContinuum
from orchestrator.workload import TICK_S
from strategies.base import Strategy
from strategies.prediction import Predictor

DAY_S = 24 * 3600.0
J_PER_KWH = 3.6e6


@dataclass
class StrategyResult:
    """One agent's test episodes, per episode (what results.json keeps), and its time per host.
    Power and latency are the paper's metrics (the services' summed power, their mean latency,
    averaged over the episode's ticks); energy is the fleet's: every host's power, idle ones
    included (what the operator pays), over the episode."""

    ticks_per_episode: int
    episode_rewards: list[float] = field(default_factory=list)
    episode_power: list[float] = field(default_factory=list)
    episode_latency: list[float] = field(default_factory=list)
    episode_energy_kwh: list[float] = field(default_factory=list)
    episode_sla_violations: list[int] = field(default_factory=list)  # service-ticks over SLA
    episode_migrations: list[int] = field(default_factory=list)
    host_steps: dict[str, int] = field(default_factory=dict)

    @property
    def episode_sla_minutes(self) -> list[float]:
        return [n * TICK_S / 60 for n in self.episode_sla_violations]

    def per_day(self, per_episode: Sequence[float]) -> float:
        """A total over the episodes as a rate per simulated day (24 h of ticks)."""
        simulated_s = len(per_episode) * self.ticks_per_episode * TICK_S
        return float(sum(per_episode)) * DAY_S / simulated_s

    def figures(self) -> dict[str, float]:
        """The headline figures of these episodes."""
        return {
            "reward": float(np.mean(self.episode_rewards)),
            "power_w": float(np.mean(self.episode_power)),
            "latency_ms": float(np.mean(self.episode_latency)),
            "energy_kwh_per_day": self.per_day(self.episode_energy_kwh),
            "sla_minutes_per_day": self.per_day(self.episode_sla_minutes),
            "migrations_per_day": self.per_day(self.episode_migrations),
            "sla_violations": sum(self.episode_sla_violations),
            "migrations": sum(self.episode_migrations),
        }

    def episodes(self) -> dict[str, list[Any]]:
        """Per-episode data, as results.json keeps it."""
        return {"reward": self.episode_rewards, "power_w": self.episode_power,
                "latency_ms": self.episode_latency, "energy_kwh": self.episode_energy_kwh,
                "sla_minutes": self.episode_sla_minutes, "migrations": self.episode_migrations}

    def summary(self) -> dict[str, Any]:
        return summarize([self])


def _sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation over runs (None for one run)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def summarize(runs: Sequence[StrategyResult]) -> dict[str, Any]:
    """One strategy's figures over its runs (an RL strategy: one run per training seed, each
    on the same test episodes): each figure's mean over the runs, its sd over them in
    `sd_over_runs` (None for one run); `std_reward` is the spread of episode rewards, all
    runs' episodes together; counts (SLA violations, migrations) are per run."""
    figures = [r.figures() for r in runs]
    host_steps: dict[str, int] = {}
    for r in runs:
        for h, n in r.host_steps.items():
            host_steps[h] = host_steps.get(h, 0) + n
    total = sum(host_steps.values()) or 1
    mean = {k: float(np.mean([f[k] for f in figures])) for k in figures[0]}
    if len(runs) == 1:  # counts stay whole numbers
        mean.update(sla_violations=figures[0]["sla_violations"],
                    migrations=figures[0]["migrations"])
    return {
        "mean_reward": mean["reward"],
        "std_reward": float(np.std([x for r in runs for x in r.episode_rewards])),
        "mean_power_w": mean["power_w"],
        "mean_latency_ms": mean["latency_ms"],
        "sla_violations": mean["sla_violations"],
        "migrations": mean["migrations"],
        "energy_kwh_per_day": mean["energy_kwh_per_day"],
        "sla_minutes_per_day": mean["sla_minutes_per_day"],
        "migrations_per_day": mean["migrations_per_day"],
        "sd_over_runs": {k: _sd([f[k] for f in figures]) for k in figures[0]},
        "host_time_share": {h: n / total for h, n in host_steps.items()},
    }


def run_episodes(strategy: Strategy, scenario: Scenario, episodes: int, seed: int,
                 reward_kind: str = "power-latency", phase: str = "test",
                 on_episode: Callable[[int], None] | None = None,
                 gates: ControllerConfig | None = None) -> StrategyResult:
    """Episode e uses seed + e, so every strategy meets the same workloads and start hosts.
    Every tick goes through the control loop; `gates` (None: off, the paper's setting) run on
    the simulated clock (the strategy's context should name the same gates: the oracle plans
    under them). Rewards and power are summed over the services; each tick is scored
    on the snapshot that follows it (as the reward is). `on_episode` gets the episodes done."""
    sim = SimulatedContinuum(scenario, phase)
    predictor = Predictor(scenario, reward_kind, sim.model)
    result = StrategyResult(sim.steps, host_steps={h.name: 0 for h in scenario.hosts})
    for e in range(episodes):
        sim.reset(seed=seed + e)
        strategy.reset(sim)
        loop = simulated(sim, strategy, predictor, gates)
        total, power, latency, fleet_j, late, moves = 0.0, [], [], 0.0, 0, 0
        while not sim.done:
            st = step(loop)
            total += sum(st.rewards)
            power.append(sum(s.power_w for s in st.after.services))
            latency.append(float(np.mean([s.latency_ms for s in st.after.services])))
            fleet_j += sum(h.power_w for h in st.after.hosts) * TICK_S
            moves += len(st.tick.plans)
            for i, s in enumerate(st.after.services):
                late += s.latency_ms > predictor.sla(i)
                result.host_steps[scenario.hosts[s.host].name] += 1
        result.episode_rewards.append(total)
        result.episode_power.append(float(np.mean(power)))
        result.episode_latency.append(float(np.mean(latency)))
        result.episode_energy_kwh.append(fleet_j / J_PER_KWH)
        result.episode_sla_violations.append(late)
        result.episode_migrations.append(moves)
        if on_episode:
            on_episode(e + 1)
    return result


def improvement(r: float, base: float) -> float | None:
    """The paper's relative improvement (R - R_base) / |R_base|."""
    return None if base == 0 else (r - base) / abs(base)


# What an operator would run without greenwise-mc: the bar a strategy must clear.
OPERATOR_BASELINES = ("stay", "cloud", "threshold", "descheduler", "rules")


def best_baseline(summaries: dict[str, dict[str, Any]]) -> str | None:
    """The operator baseline evaluated with the highest mean reward (None if none was)."""
    baselines = [b for b in OPERATOR_BASELINES if b in summaries]
    return max(baselines, key=lambda b: summaries[b]["mean_reward"]) if baselines else None


def energy_saved(s: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, float] | None:
    """Fleet energy saved against `ref`: kWh per simulated day and its share of ref's."""
    if ref is None or "energy_kwh_per_day" not in s:
        return None
    saved = ref["energy_kwh_per_day"] - s["energy_kwh_per_day"]
    return {"kwh_per_day": saved, "pct": 100 * saved / ref["energy_kwh_per_day"]}


def comparison(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy: its figures, improvement over random / round-robin, % of oracle,
    its share of the oracle's headroom over the best operator baseline evaluated,
    (R - R_best) / (R_oracle - R_best) (None without both, or without headroom), and the fleet
    energy it saves against that baseline and against `stay`."""
    def ref(name: str) -> float | None:
        return summaries[name]["mean_reward"] if name in summaries else None

    best_name = best_baseline(summaries)
    best, oracle = (None if best_name is None else ref(best_name)), ref("oracle")
    headroom = None if best is None or oracle is None or oracle <= best else oracle - best
    rows = []
    for name, s in summaries.items():
        r = s["mean_reward"]
        row = {"strategy": name, **{k: v for k, v in s.items() if k != "host_time_share"}}
        for base in ("random", "round-robin"):
            b = ref(base)
            row[f"vs_{base}"] = None if b is None else improvement(r, b)
        row["of_oracle"] = None if not oracle else r / oracle
        row["of_headroom"] = None if headroom is None or best is None else (r - best) / headroom
        row["energy_saved_vs_best_baseline"] = energy_saved(
            s, summaries[best_name] if best_name else None)
        row["energy_saved_vs_stay"] = energy_saved(s, summaries.get("stay"))
        rows.append(row)
    return rows
