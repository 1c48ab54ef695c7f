"""The `greenwise-mc` command as a user runs it (a subprocess, exit codes, files)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCS = Path(__file__).parent.parent / "docs" / "scenarios"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_on_every_command():
    for cmd in ([], ["train"], ["evaluate"], ["run"], ["plan"]):
        r = cli(*cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, cmd


def test_evaluate_writes_results_and_plots(tmp_path):
    out = tmp_path / "res"
    r = cli("evaluate", "--episodes", "3", "--strategies", "random,round-robin,oracle,maskppo",
            "--train-steps", "250", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["scenario"] == "paper" and data["episodes"] == 3
    assert list(data["strategies"]) == ["random", "round-robin", "oracle", "maskppo"]
    for s in data["strategies"].values():
        assert set(s) == {"mean_reward", "std_reward", "mean_power_w", "mean_latency_ms",
                          "sla_violations", "migrations", "host_time_share",
                          "energy_kwh_per_day", "sla_minutes_per_day", "migrations_per_day",
                          "sd_over_runs", "vs_random", "vs_round-robin", "of_oracle",
                          "of_headroom", "energy_saved_vs_best_baseline",
                          "energy_saved_vs_stay", "strategy", "reward_variant", "train_seeds",
                          "runs"}
        assert set(s["host_time_share"]) == {"edge0", "edge1", "edge2", "cloud"}
    oracle = data["strategies"]["oracle"]["mean_reward"]
    assert all(s["mean_reward"] <= oracle + 1e-9 for s in data["strategies"].values())
    for png in ("distributions.png", "host_time.png", "training.png", "training_cdf.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vs random" in r.stdout and "of oracle" in r.stdout


def test_evaluate_trains_per_reward_variant_and_seed_and_keeps_every_figure(tmp_path):
    """Two reward variants x two training seeds: a row per variant, a run per seed with its
    per-episode data, a training run per agent with its curve; each row's figures follow
    from the per-episode data."""
    out = tmp_path / "res"
    r = cli("evaluate", "--episodes", "2", "--strategies", "stay,a2c", "--train-steps",
            "250", "--train-seeds", "0,1", "--rewards", "power-latency,latency",
            "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "results.json").read_text())
    assert (data["scenario"], data["seed"], data["train_seeds"], data["reward"],
            data["reward_variants"], data["gates"], data["episodes"]) == (
        "paper", 0, [0, 1], "power-latency", ["power-latency", "latency"], False, 2)
    rows = data["strategies"]
    assert list(rows) == ["stay", "a2c", "a2c[latency]"]
    assert rows["a2c[latency]"]["reward_variant"] == "latency"
    assert [run["train_seed"] for run in rows["a2c[latency]"]["runs"]] == [0, 1]
    assert [run["train_seed"] for run in rows["stay"]["runs"]] == [None]
    day = 24 * 3600 / (2 * data["episode_ticks"] * data["tick_s"])  # 2 episodes -> a day
    for row in rows.values():
        for run in row["runs"]:
            ep = run["episodes"]
            assert all(len(v) == 2 for v in ep.values())
            assert run["reward"] == pytest.approx(sum(ep["reward"]) / 2)
            assert run["energy_kwh_per_day"] == pytest.approx(sum(ep["energy_kwh"]) * day)
            assert run["sla_minutes_per_day"] == pytest.approx(sum(ep["sla_minutes"]) * day)
            assert run["migrations"] == sum(ep["migrations"])
            assert all(m % (data["tick_s"] / 60) == 0 for m in ep["sla_minutes"])
        seeds = [run["reward"] for run in row["runs"]]
        assert row["mean_reward"] == pytest.approx(sum(seeds) / len(seeds))
    sd = rows["a2c"]["sd_over_runs"]["reward"]
    a, b = (run["reward"] for run in rows["a2c"]["runs"])
    assert sd == pytest.approx(abs(a - b) / 2 ** 0.5)  # sample sd of two
    assert [(t["row"], t["reward"], t["seed"]) for t in data["training"]] == [
        ("a2c", "power-latency", 0), ("a2c", "power-latency", 1),
        ("a2c[latency]", "latency", 0), ("a2c[latency]", "latency", 1)]
    for t in data["training"]:
        curve = t["curve"]
        assert curve["timesteps"] == [25 * (k + 1) for k in range(10)]  # 25-tick episodes
        assert len(curve["episode_rewards"]) == 10 and Path(t["model"]).is_file()
    for png in ("training.png", "training_cdf.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "a2c[latency]" in r.stdout and "saved vs stay" in r.stdout


def test_evaluate_generalizes_to_another_scenario_with_a_given_model(tmp_path):
    scenario = str(DOCS / "edge-fog-cloud.yaml")
    model = tmp_path / "m.zip"
    r = cli("train", "--scenario", scenario, "--steps", "250", "--out", str(model), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == str(model)
    r = cli("evaluate", "--scenario", scenario, "--episodes", "2", "--strategies",
            "greedy,maskppo", "--model", f"maskppo={model}", "--output-dir", str(tmp_path / "o"),
            "-o", "json")
    assert r.returncode == 0, r.stderr
    shares = json.loads(r.stdout)["strategies"]["maskppo"]["host_time_share"]
    assert set(shares) == {"edge-a", "edge-b", "fog-a", "fog-b", "cloud-a"}


def test_run_prints_a_summary(tmp_path):
    r = cli("run", "--ticks", "10", "--interval", "0", "--strategy", "rules", "-o", "json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["ticks"] == 10 and s["strategy"] == "rules"
    assert sum(s["host_time_share"].values()) == pytest.approx(1.0, abs=1e-3)
    r = cli("run", "--ticks", "5", "--interval", "0")
    assert r.returncode == 0 and "summary" in r.stdout and "tick 5/5" in r.stderr


def test_run_exempts_what_it_keeps_from_full_garbage_collections_after_its_first_tick():
    # `run` in a process of its own, then how many objects that process froze (gc.freeze)
    script = ("import gc, sys\n"
              "from orchestrator.cli import main\n"
              "sys.argv = ['greenwise-mc', 'run', '--ticks', '2', '--interval', '0', '-o', "
              "'json']\n"
              "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "print('frozen', gc.get_freeze_count(), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ticks"] == 2
    frozen = int(r.stderr.split("frozen ")[1])
    assert frozen > 10_000, frozen  # the scenario, models and modules: ~10^5 objects


def test_run_on_a_large_fleet_lists_forty_hosts_and_sums_up_the_rest(tmp_path):
    from bench.sim_bench import repeated
    from orchestrator.config import load_scenario

    big = tmp_path / "big.yaml"  # continuum four times over: 44 hosts
    big.write_text(yaml.safe_dump(repeated(load_scenario("continuum"), 4).model_dump(
        mode="json", exclude_defaults=True)))
    run = ("run", "--scenario", str(big), "--ticks", "4", "--interval", "0")
    r, j = cli(*run), cli(*run, "-o", "json")
    assert r.returncode == 0 and j.returncode == 0, r.stderr + j.stderr
    shares = json.loads(j.stdout)["host_time_share"]
    assert len(shares) == 44
    listed = [line.split()[2] for line in r.stdout.splitlines() if line.startswith("time on ")]
    assert listed[-1] == "4" and "time on 4 more hosts" in r.stdout
    top = sorted(shares.values(), reverse=True)
    assert sorted((shares[h] for h in listed[:-1]), reverse=True) == top[:40]
    assert "4 more hosts" in r.stderr  # the placement view's last row


def test_strategy_options_change_what_it_decides(tmp_path):
    def moves(*options: str) -> int:
        r = cli("run", "--strategy", "rules", "--no-gates", "--ticks", "48", "--interval", "0",
                "-o", "json", *options)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["migrations"]

    # consolidating only where the host's CPU would stay under 1 %: nowhere, so it never moves
    assert moves("--option", "safe_cpu=0.01") < moves()


def test_plan_changes_nothing_and_predicts(tmp_path):
    r = cli("plan", "--step", "55", "--strategy", "greedy", "-o", "yaml")
    assert r.returncode == 0, r.stderr
    p = yaml.safe_load(r.stdout)
    [d] = p["services"]  # the same decision record as `plan --config` on clusters
    assert set(d["predicted"]) == {"power_w", "latency_ms", "reward"}
    assert d["predicted"]["reward"]["chosen"] >= d["predicted"]["reward"]["stay"]
    assert d["state"]["users"] > 0 and len(p["hosts"]) == 4 and p["step"] == 55


@pytest.mark.parametrize("args, message", [
    (["run", "--strategy", "nope"], "unknown strategy 'nope'"),
    (["evaluate", "--strategies", "random,foo"], "unknown strategy foo"),
    (["run", "--scenario", "/does/not/exist.yaml"], "neither a built-in"),
    (["run", "--strategy", "maskppo", "--model", "/does/not/exist.zip"], "does not exist"),
    (["train", "--strategy", "rules"], "cannot train 'rules'"),
    (["run", "--ticks", "abc"], "--ticks"),
    (["evaluate", "--model", "maskppo"], "NAME=PATH"),
    (["plan", "--reward", "speed"], "unknown reward"),
    (["run", "--strategy", "rules", "--option", "safe_cpu=3"], "safe_cpu"),
    (["run", "--strategy", "greedy", "--option", "foo=1"], "'greedy': foo"),
    (["plan", "--option", "bad"], "KEY=VALUE"),
    (["evaluate", "--rewards", "power,speed"], "--rewards: unknown reward 'speed'"),
    (["evaluate", "--rewards", "power,power"], "a reward is given twice"),
    (["evaluate", "--train-seeds", "0,x"], "--train-seeds must be comma-separated whole"),
    (["evaluate", "--train-seeds", "1.5"], "--train-seeds must be comma-separated whole"),
    (["evaluate", "--train-seeds", "-1"], "--train-seeds must be comma-separated whole"),
    (["evaluate", "--strategies", "stay,greedy", "--rewards", "power"], "none is trained"),
    (["evaluate", "--strategies", "oracle", "--train-seeds", "0,1"], "none is trained"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_scenario_file_exit_2(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("clusters:\n  - {name: c, tier: cloud, hosts: [{name: h, cores: 4, "
                 "idle_watts: 50, max_watts: 40, network_latency_ms: 1}]}\n")
    r = cli("evaluate", "--scenario", str(f), "--output-dir", str(tmp_path / "out"))
    assert r.returncode == 2 and "max_watts" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_training_budget_is_the_papers_for_one_service_else_500_episodes():
    from orchestrator.cli.common import train_steps_for
    from orchestrator.config import load_scenario
    from orchestrator.errors import BadInput
    from orchestrator.scenario import PAPER

    assert train_steps_for(PAPER, None) == 5500
    assert train_steps_for(load_scenario("continuum"), None) == 500 * 12 * 25
    assert train_steps_for(load_scenario("bursty"), 300) == 300
    with pytest.raises(BadInput, match="--train-steps must be"):
        train_steps_for(PAPER, 0)
