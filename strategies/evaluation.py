"""Run strategies over the same test episodes of the simulated continuum and compare them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config import ControllerConfig
from orchestrator.control.gates import Gates
from orchestrator.control.loop import Loop, step
from orchestrator.scenario import Scenario
from orchestrator.sim.continuum import SimulatedContinuum
from orchestrator.workload import TICK_S
from strategies.base import Strategy
from strategies.prediction import Predictor


@dataclass
class StrategyResult:
    episode_rewards: list[float] = field(default_factory=list)
    episode_power: list[float] = field(default_factory=list)
    episode_latency: list[float] = field(default_factory=list)
    sla_violations: int = 0
    migrations: int = 0
    host_steps: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        total = sum(self.host_steps.values()) or 1
        return {
            "mean_reward": float(np.mean(self.episode_rewards)),
            "std_reward": float(np.std(self.episode_rewards)),
            "mean_power_w": float(np.mean(self.episode_power)),
            "mean_latency_ms": float(np.mean(self.episode_latency)),
            "sla_violations": self.sla_violations,
            "migrations": self.migrations,
            "host_time_share": {h: n / total for h, n in self.host_steps.items()},
        }


def run_episodes(strategy: Strategy, scenario: Scenario, episodes: int, seed: int,
                 reward_kind: str = "power-latency", phase: str = "test",
                 on_episode: Callable[[], None] | None = None,
                 gates: ControllerConfig | None = None) -> StrategyResult:
    """Episode e uses seed + e, so every strategy meets the same workloads and start hosts.
    Every tick goes through the control loop; `gates` (None: off, the paper's setting) run on
    the simulated clock. Rewards, power and latency are summed over the services."""
    sim = SimulatedContinuum(scenario, phase)
    predictor = Predictor(scenario, reward_kind, sim.model)
    result = StrategyResult(host_steps={h.name: 0 for h in scenario.hosts})
    for e in range(episodes):
        sim.reset(seed=seed + e)
        strategy.reset(sim)
        clock = Gates(gates, clock=lambda: sim.t * TICK_S) if gates else None
        loop = Loop(sim, strategy, predictor, clock, explain=False)
        total, power, latency = 0.0, [], []
        while not sim.done:
            st = step(loop)
            total += sum(st.rewards)
            power.append(sum(s.power_w for s in st.after.services))
            latency.append(float(np.mean([s.latency_ms for s in st.after.services])))
            result.migrations += len(st.tick.plans)
            for i, s in enumerate(st.after.services):
                result.sla_violations += s.latency_ms > predictor.sla(i)
                result.host_steps[scenario.hosts[s.host].name] += 1
        result.episode_rewards.append(total)
        result.episode_power.append(float(np.mean(power)))
        result.episode_latency.append(float(np.mean(latency)))
        if on_episode:
            on_episode()
    return result


def improvement(r: float, base: float) -> float | None:
    """The paper's relative improvement (R - R_base) / |R_base|."""
    return None if base == 0 else (r - base) / abs(base)


# What an operator would run without greenwise-mc: the bar a strategy must clear.
OPERATOR_BASELINES = ("stay", "cloud", "threshold", "descheduler", "rules")


def comparison(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy: its figures, improvement over random / round-robin, % of oracle,
    and its share of the oracle's headroom over the best operator baseline evaluated,
    (R - R_best) / (R_oracle - R_best) (None without both, or without headroom)."""
    def ref(name: str) -> float | None:
        return summaries[name]["mean_reward"] if name in summaries else None

    baselines = [summaries[b]["mean_reward"] for b in OPERATOR_BASELINES if b in summaries]
    best, oracle = (max(baselines) if baselines else None), ref("oracle")
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
        rows.append(row)
    return rows


def plot(results: dict[str, StrategyResult], out_dir: Path) -> list[Path]:
    """Fig. 5/6-like distributions (reward, power, latency) and Fig. 9-like time per host."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, attr, title in zip(
            axes, ("episode_rewards", "episode_power", "episode_latency"),
            ("accumulated reward per episode", "mean service power (W)", "mean latency (ms)"),
            strict=True):
        ax.boxplot([getattr(results[n], attr) for n in names], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    dist = out_dir / "distributions.png"
    fig.savefig(dist, dpi=120)
    plt.close(fig)

    hosts = list(next(iter(results.values())).host_steps)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4.5))
    bottom = np.zeros(len(names))
    for h in hosts:
        share = np.array([results[n].summary()["host_time_share"][h] for n in names])
        ax.bar(names, share, bottom=bottom, label=h)
        bottom += share
    ax.set_ylabel("share of time on host")
    ax.set_title("time per host")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    share_png = out_dir / "host_time.png"
    fig.savefig(share_png, dpi=120)
    plt.close(fig)
    return [dist, share_png]
