"""The plots of `greenwise-mc evaluate`, drawn from results.json alone (strategies/experiment.py
`document`), so anyone can redraw them: distributions.png (the paper's Fig. 5/6), host_time.png
(Fig. 9), training.png (training reward against steps) and training_cdf.png (Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strategies.evaluation import DAY_S


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pooled(row: dict[str, Any], key: str) -> list[float]:
    """One per-episode figure of a row, all its runs' episodes together."""
    return [x for run in row["runs"] for x in run["episodes"][key]]


def _save(fig: Any, path: Path, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def distributions(data: dict[str, Any], out: Path) -> Path:
    """Per row, box plots over the test episodes (all training seeds' agents together) of the
    reward, the services' power and latency, and the fleet's energy."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _pyplot()
    rows = data["strategies"]
    names = list(rows)
    day = DAY_S / (data["episode_ticks"] * data["tick_s"])  # an episode's share of a day
    panels = (
        ("reward", 1.0, f"reward per episode ({data['reward']})", "reward"),
        ("power_w", 1.0, "services' mean power", "power (W)"),
        ("latency_ms", 1.0, "services' mean latency", "latency (ms)"),
        ("energy_kwh", day, "fleet energy, all hosts", "energy (kWh per simulated day)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(max(10, 0.9 * len(names) + 4), 9))
    for ax, (key, scale, title, label) in zip(axes.flat, panels, strict=True):
        ax.boxplot([np.array(_pooled(rows[n], key)) * scale for n in names], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=35, ha="right")
        ax.set_title(title)
        ax.set_xlabel("strategy")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=[
        Patch(facecolor="white", edgecolor="black", label="middle 50 % of episodes"),
        Line2D([], [], color="C1", label="median"),
        Line2D([], [], color="green", marker="^", linestyle="", label="mean"),
        Line2D([], [], color="black", label="whiskers: 1.5 x box, circles beyond")],
        loc="upper right", ncols=2, fontsize="small")
    fig.suptitle(f"{data['scenario']}: {data['episodes']} test episodes per agent "
                 f"(seed {data['seed']}; RL: all training seeds' agents)", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, out / "distributions.png", layout=False)


def host_time(data: dict[str, Any], out: Path) -> Path:
    """Per row, the share of service-ticks spent on each host."""
    plt = _pyplot()
    rows = data["strategies"]
    names = list(rows)
    hosts = list(next(iter(rows.values()))["host_time_share"])
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(names) + 3), 4.8))
    bottom = np.zeros(len(names))
    for h in hosts:
        share = np.array([rows[n]["host_time_share"][h] for n in names])
        ax.bar(names, share, bottom=bottom, label=h)
        bottom += share
    ax.set_xlabel("strategy")
    ax.set_ylabel("share of service time on host")
    ax.set_title(f"{data['scenario']}: where the services ran (test episodes)")
    ax.legend(title="host", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    return _save(fig, out / "host_time.png")


def _curves(data: dict[str, Any]) -> dict[str, list[dict[str, list[float]]]]:
    """Training curves grouped by row, in row order."""
    out: dict[str, list[dict[str, list[float]]]] = {}
    for t in data["training"]:
        out.setdefault(t["row"], []).append(t["curve"])
    return out


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to `window` values (the first ones over what there is)."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def _band(ax: Any, steps: Sequence[int], ys: np.ndarray, label: str,
          marker: str | None = None) -> None:
    """The mean over seeds as a line, their range as a band."""
    line, = ax.plot(steps, ys.mean(axis=0), label=label, marker=marker)
    if len(ys) > 1:
        ax.fill_between(steps, ys.min(axis=0), ys.max(axis=0), color=line.get_color(),
                        alpha=0.15)


def training(data: dict[str, Any], out: Path, window: int = 10) -> Path | None:
    """Per row, against steps: the training episodes' reward, smoothed over `window`
    episodes, and the policy's checks (its mean reward on fixed training-pattern episodes,
    acting as it will); each the mean over its seeds, their range as a band."""
    curves = _curves(data)
    if not curves:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    for row, runs in curves.items():
        n = min(len(c["episode_rewards"]) for c in runs)
        if n:
            _band(left, runs[0]["timesteps"][:n],
                  np.array([smooth(c["episode_rewards"][:n], window) for c in runs]),
                  f"{row} ({len(runs)} seeds)")
        k = min(len(c.get("check_rewards", [])) for c in runs)
        if k:
            _band(right, runs[0]["check_timesteps"][:k],
                  np.array([c["check_rewards"][:k] for c in runs]),
                  f"{row} ({len(runs)} seeds)", marker="o")
    left.set_ylabel(f"episode reward (mean of last {window} training episodes)")
    left.set_title("training episodes (exploring)")
    right.set_ylabel("mean reward on the fixed check episodes")
    right.set_title("the policy, checked on fixed training-pattern episodes")
    for ax in (left, right):
        ax.set_xlabel("training steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{data['scenario']}: training, each agent on its own reward (line: mean over "
                 "seeds; band: min-max)", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _save(fig, out / "training.png", layout=False)


def training_cdf(data: dict[str, Any], out: Path) -> Path | None:
    """Per row, the CDF of its training episodes' rewards, all seeds together (Fig. 4)."""
    curves = _curves(data)
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for row, runs in curves.items():
        r = np.sort([x for c in runs for x in c["episode_rewards"]])
        ax.step(r, np.arange(1, len(r) + 1) / len(r), where="post",
                label=f"{row} ({len(r)} episodes)")
    ax.set_xlabel("training episode reward (each agent's own reward)")
    ax.set_ylabel("fraction of training episodes")
    ax.set_title(f"{data['scenario']}: CDF of training episode rewards")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return _save(fig, out / "training_cdf.png")


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    """Every plot of an evaluation's results.json into `out`."""
    drawn = [distributions(data, out), host_time(data, out), training(data, out),
             training_cdf(data, out)]
    return [p for p in drawn if p is not None]
