"""The evaluation's arithmetic on hand-built cases: fleet energy and SLA-violation minutes per
simulated day, the mean ± sd over training seeds, energy saved, and which rows an evaluation
has."""

from pathlib import Path

import pytest

from orchestrator.config import PAPER
from orchestrator.workload import TICK_S
from strategies.base import StrategyContext, create
from strategies.evaluation import StrategyResult, comparison, run_episodes, summarize
from strategies.experiment import Setup, row_name


def result(rewards: list[float], energy: list[float], late: list[int], moves: list[int],
           ticks: int = 4) -> StrategyResult:
    n = len(rewards)
    return StrategyResult(ticks, rewards, [20.0] * n, [300.0] * n, energy, late, moves,
                          {"a": 3 * n, "b": n})


def test_energy_and_sla_minutes_per_simulated_day():
    """Two episodes of 4 ticks of 15 minutes: 2 simulated hours. A fleet drawing 1 kW uses
    1 kWh per episode, 24 kWh per day; 3 service-ticks over the SLA are 45 minutes in 2 h,
    540 minutes per day; 6 moves in 2 h are 72 per day."""
    assert TICK_S == 900
    r = result([10.0, 12.0], [1.0, 1.0], [1, 2], [4, 2])
    assert r.episode_sla_minutes == [15.0, 30.0]
    f = r.figures()
    assert f["energy_kwh_per_day"] == pytest.approx(24.0)
    assert f["sla_minutes_per_day"] == pytest.approx(540.0)
    assert f["migrations_per_day"] == pytest.approx(72.0)
    assert (f["reward"], f["sla_violations"], f["migrations"]) == (11.0, 3, 6)


def test_fleet_energy_counts_every_host_idle_or_not():
    """`stay` keeps the one service on one host: the others idle, still paid for."""
    f = run_episodes(create("stay", StrategyContext(PAPER)), PAPER, 2, seed=0).figures()
    idle = sum(h.idle_watts for h in PAPER.hosts) * 24 / 1000
    most = sum(h.max_watts for h in PAPER.hosts) * 24 / 1000
    assert idle < f["energy_kwh_per_day"] < most


def test_a_row_is_the_mean_and_sd_over_its_seeds():
    runs = [result([10.0, 12.0], [1.0, 1.0], [0, 0], [0, 0]),  # reward 11, 24 kWh/day
            result([14.0, 14.0], [2.0, 2.0], [1, 1], [2, 0]),  # reward 14, 48 kWh/day
            result([17.0, 17.0], [1.5, 1.5], [2, 0], [0, 1])]  # reward 17, 36 kWh/day
    s = summarize(runs)
    assert s["mean_reward"] == pytest.approx(14.0)
    assert s["sd_over_runs"]["reward"] == pytest.approx(3.0)  # sample sd of 11, 14, 17
    assert s["energy_kwh_per_day"] == pytest.approx(36.0)
    assert s["sd_over_runs"]["energy_kwh_per_day"] == pytest.approx(12.0)
    assert s["sla_violations"] == pytest.approx(4 / 3) and s["migrations"] == 1.0
    assert s["host_time_share"] == {"a": 0.75, "b": 0.25}
    one = summarize(runs[:1])
    assert one["sd_over_runs"]["reward"] is None and one["sla_violations"] == 0


def test_energy_saved_against_the_best_baseline_and_stay():
    rows = {r["strategy"]: r for r in comparison({
        "stay": {"mean_reward": 10.0, "energy_kwh_per_day": 8.0},
        "threshold": {"mean_reward": 12.0, "energy_kwh_per_day": 6.0},
        "cloud": {"mean_reward": 11.0, "energy_kwh_per_day": 4.0},
        "maskppo": {"mean_reward": 13.0, "energy_kwh_per_day": 5.0}})}
    saved = rows["maskppo"]["energy_saved_vs_best_baseline"]  # threshold: the best reward
    assert saved == {"kwh_per_day": pytest.approx(1.0), "pct": pytest.approx(100 / 6)}
    assert rows["maskppo"]["energy_saved_vs_stay"]["pct"] == pytest.approx(37.5)
    assert rows["cloud"]["energy_saved_vs_best_baseline"]["kwh_per_day"] == pytest.approx(2.0)


def test_rows_one_per_reward_variant_for_trained_strategies_only():
    setup = Setup(PAPER, ("stay", "maskppo", "a2c"), Path("."), reward="power",
                  variants=("power-latency", "power"), train_seeds=(0, 1),
                  models={"a2c": Path("a2c.zip")})
    rows = [(r.name, r.variant, r.seeds) for r in setup.rows()]
    assert rows == [("stay", None, ()), ("maskppo[power-latency]", "power-latency", (0, 1)),
                    ("maskppo", "power", (0, 1)), ("a2c", None, ())]
    assert row_name("a2c", "latency", "power-latency") == "a2c[latency]"
