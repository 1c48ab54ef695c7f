"""`greenwise-mc power-model fit`: per-host regressors, Table 7 scores, the fitted power curve
in the simulator and the lab's node exporter."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator import power_model as pm
from orchestrator.config import load_scenario
from orchestrator.errors import GreenwiseError
from orchestrator.performance import PerformanceModel, curve_fraction
from orchestrator.scenario import HostProfile

EXAMPLE = Path(__file__).parent.parent / "docs" / "power" / "measurements-example.csv"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, timeout=300)


def synthetic(shape, idle=20.0, top=100.0, rows=200, noise=0.5, seed=1, host="h"):
    rng = np.random.default_rng(seed)
    u = rng.uniform(0, 1, rows)
    return pm.HostData(host, u, idle + (top - idle) * shape(u) + rng.normal(0, noise, rows))


def write_csv(path: Path, rows: list, header="host,cpu_utilization,watts"):
    path.write_text(header + "\n" + "".join(f"{h},{u},{w}\n" for h, u, w in rows))
    return path


def test_mae_and_mape_on_a_hand_example():
    actual, predicted = np.array([10.0, 20.0, 40.0]), np.array([12.0, 18.0, 40.0])
    assert pm.mae(actual, predicted) == pytest.approx(4 / 3)  # (2 + 2 + 0) / 3 W
    assert pm.mape(actual, predicted) == pytest.approx(10.0)  # (20 % + 10 % + 0 %) / 3


def test_fit_recovers_a_strongly_curved_host():
    fit = pm.fit_host(synthetic(lambda u: u**3))
    best = fit.scores[fit.model]
    assert set(fit.scores) == set(pm.MODELS)
    assert best.mae_w < 1.0  # noise alone gives ~0.4 W
    assert fit.scores["linear"].mae_w > 3 * best.mae_w
    assert best.mae_w == min(s.mae_w for s in fit.scores.values())
    assert fit.idle_watts == pytest.approx(20.0, abs=1.5)
    assert fit.max_watts == pytest.approx(100.0, abs=1.5)
    us = [u for u, _ in fit.power_curve]
    assert us == [round(0.1 * i, 4) for i in range(11)]
    for u, f in fit.power_curve:
        assert f == pytest.approx(u**3, abs=0.03), u
    assert pm.fit_host(synthetic(lambda u: u**3)) == fit  # seeded: same data, same result


def test_fit_keeps_linear_model_for_a_linear_host_and_curve_never_falls():
    fit = pm.fit_host(synthetic(lambda u: u, noise=0.2))
    assert fit.scores[fit.model].mae_w < 0.4
    fractions = [f for _, f in fit.power_curve]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert curve_fraction(fit.power_curve, 0.5) == pytest.approx(0.5, abs=0.02)


def test_sampled_curve_never_falls():
    def dips(x):  # 10 + 20u W with a 5 W dip at u = 0.3
        u = x.ravel()
        return 10 + 20 * u - 5 * (np.abs(u - 0.3) < 0.05)

    idle, top, curve = pm.sample_curve(dips)
    assert (idle, top) == (10.0, 30.0)
    assert dict(curve)[0.2] == pytest.approx(0.2) and dict(curve)[0.3] == pytest.approx(0.2)
    assert dict(curve)[0.4] == pytest.approx(0.4)
    assert pm.sample_curve(lambda x: np.full(len(x), 7.0)) == (7.0, 7.0, ((0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(GreenwiseError, match=r"predicts -1\.00 W at zero utilization"):
        pm.sample_curve(lambda x: x.ravel() * 10 - 1)


def test_percent_input_and_extra_columns(tmp_path):
    rows = [("a", 5 * i, 10 + i) for i in range(21)]
    path = tmp_path / "m.csv"
    path.write_text("time,host,cpu_utilization,watts\n"
                    + "".join(f"{i},{h},{u},{w}\n" for i, (h, u, w) in enumerate(rows)))
    data = pm.load_measurements(path, percent=True)["a"]
    assert data.utilization.max() == 1.0 and data.utilization[1] == pytest.approx(0.05)
    with pytest.raises(GreenwiseError, match=r"line 3, column cpu_utilization: 5 is outside "
                       r"\[0, 1\]; if the file is in percent, pass --percent"):
        pm.load_measurements(path)
    # fractions read as percent: refused (a fit over 0-1 % would extrapolate 100 times over)
    path.write_text("host,cpu_utilization,watts\n"
                    + "".join(f"a,{i / 20},{10 + i}\n" for i in range(21)))
    assert pm.load_measurements(path)["a"].utilization.max() == 1.0
    with pytest.raises(GreenwiseError, match=r"with --percent every cpu_utilization is at most "
                       r"1 \(the highest is 1\): these look like fractions"):
        pm.load_measurements(path, percent=True)


GOOD = [("a", i / 24, 10 + i) for i in range(25)]


@pytest.mark.parametrize(("rows", "header", "message"), [
    (GOOD, "host,cpu,watts", "line 1: missing column(s) cpu_utilization"),
    ([*GOOD[:5], ("a", "x", 3), *GOOD[5:]], None, "line 7, column cpu_utilization: 'x' is not"),
    ([*GOOD[:5], ("a", 0.5, "nan"), *GOOD[5:]], None, "line 7, column watts: 'nan' is not"),
    ([*GOOD[:5], ("a", 0.5, -1), *GOOD[5:]], None, "line 7, column watts: -1 must be > 0"),
    ([*GOOD[:5], ("", 0.5, 3), *GOOD[5:]], None, "line 7, column host: empty host name"),
    (GOOD + [("b", 0.5, 3)] * 3, None, "host 'b' has 3 rows; need at least 20"),
    ([("a", 0.5, 10)] * 30, None, "1 distinct cpu_utilization values"),
    ([], None, "no measurements"),
])
def test_bad_measurements_name_the_problem(tmp_path, rows, header, message):
    path = write_csv(tmp_path / "m.csv", rows, header or "host,cpu_utilization,watts")
    with pytest.raises(GreenwiseError) as e:
        pm.load_measurements(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_short_row_is_a_missing_value(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("host,cpu_utilization,watts\n" + "a,0.5\n")
    with pytest.raises(GreenwiseError, match="line 2, column watts: missing value"):
        pm.load_measurements(path)


def test_bad_csv_exits_2_with_one_line_and_writes_nothing(tmp_path):
    path = write_csv(tmp_path / "m.csv", [*GOOD[:3], ("a", 1.7, 20), *GOOD[3:]])
    scenario = tmp_path / "s.yaml"
    scenario.write_text("clusters: []\n")
    r = cli("power-model", "fit", str(path), "--out", str(tmp_path / "pm.yaml"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [
        f"error: {path}: line 5, column cpu_utilization: 1.7 is outside [0, 1]; if the file is "
        "in percent, pass --percent"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "s.yaml"]
    r = cli("power-model", "fit", str(EXAMPLE), "--out", str(tmp_path / "pm.yaml"),
            "--apply", str(scenario))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "has no clusters[*].hosts" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "s.yaml"]


def test_json_output_and_written_file(tmp_path):
    out = tmp_path / "pm.yaml"
    r = cli("power-model", "fit", str(EXAMPLE), "--out", str(out), "-o", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) == {"source", "out", "seed", "test_fraction", "applied", "hosts"}
    assert data["out"] == str(out) and data["applied"] is None and data["seed"] == 0
    assert list(data["hosts"]) == ["edge0", "edge1", "edge2", "cloud"]
    written = yaml.safe_load(out.read_text())
    for host, h in data["hosts"].items():
        assert set(h) == {"model", "mae_w", "mape_pct", "idle_watts", "max_watts",
                          "power_curve", "rows", "test_rows", "utilization_range", "models"}
        assert list(h["models"]) == list(pm.MODELS)
        assert h["model"] == min(pm.MODELS, key=lambda m: h["models"][m]["mae_w"])
        assert h["mae_w"] == h["models"][h["model"]]["mae_w"]
        assert h["rows"] == 150 and h["test_rows"] == 38
        assert written[host] == {k: h[k] for k in ("model", "mae_w", "mape_pct", "idle_watts",
                                                    "max_watts", "power_curve")}
        HostProfile(name=host, cores=4, network_latency_ms=1, idle_watts=h["idle_watts"],
                    max_watts=h["max_watts"], power_curve=h["power_curve"])
    # The example's edge0, edge1 and cloud are smooth cubic-like curves: linear loses clearly.
    for host in ("edge0", "edge1", "cloud"):
        models = data["hosts"][host]["models"]
        assert models["linear"]["mae_w"] > 2 * data["hosts"][host]["mae_w"], host
    assert data["hosts"]["edge0"]["idle_watts"] == pytest.approx(19.0, abs=1.0)
    assert data["hosts"]["cloud"]["max_watts"] == pytest.approx(280.0, abs=3.0)


def test_fitted_curve_changes_simulated_power(tmp_path):
    hosts = pm.load_measurements(EXAMPLE)
    fit = pm.fit_host(hosts["edge0"])
    paper = load_scenario("paper")
    fitted_host = paper.hosts[0].model_copy(update=fit.profile() | {
        "power_curve": tuple(map(tuple, fit.power_curve))})
    linear_host = paper.hosts[0].model_copy(update={"idle_watts": fit.idle_watts,
                                                    "max_watts": fit.max_watts})
    for host, curve in ((fitted_host, fit.power_curve), (linear_host, ((0, 0), (1, 1)))):
        cluster = paper.clusters[0].model_copy(update={"hosts": (host,)})
        model = PerformanceModel(paper.model_copy(update={"clusters": (cluster,)}))
        o = model.outcome(0, 20)
        assert 0.1 < o.host_cpu < 0.9
        assert o.host_watts == pytest.approx(
            fit.idle_watts + (fit.max_watts - fit.idle_watts) * curve_fraction(curve, o.host_cpu))
        if host is fitted_host:
            fitted_watts, cpu = o.host_watts, o.host_cpu
    # edge0 is concave: at the same load the fitted host draws more than the linear model says.
    linear_watts = fit.idle_watts + (fit.max_watts - fit.idle_watts) * cpu
    assert fitted_watts > linear_watts + 3.0


def test_apply_updates_the_scenario_hosts(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({"clusters": [
        {"name": "edge", "tier": "edge", "hosts": [
            {"name": "edge2", "cores": 4, "idle_watts": 21.4, "max_watts": 102,
             "network_latency_ms": 3},
            {"name": "other", "cores": 4, "idle_watts": 5, "max_watts": 10,
             "network_latency_ms": 3}]}],
        "workload": {"peak_users": 40}}))
    r = cli("power-model", "fit", str(EXAMPLE), "--out", str(tmp_path / "pm.yaml"),
            "--apply", str(scenario), "-o", "yaml")
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(r.stdout)
    assert data["applied"] == {"file": str(scenario), "hosts": ["edge2"]}
    sc = load_scenario(scenario)
    edge2, other = sc.hosts
    expected = data["hosts"]["edge2"]
    assert edge2.idle_watts == expected["idle_watts"] and edge2.max_watts == expected["max_watts"]
    assert [list(p) for p in edge2.power_curve] == expected["power_curve"]
    assert edge2.power_curve != ((0.0, 0.0), (1.0, 1.0))
    assert other.power_curve == ((0.0, 0.0), (1.0, 1.0)) and other.max_watts == 10
    assert sc.workload.peak_users == 40


def test_lab_node_power_follows_the_fitted_curve(tmp_path):
    from tests.lab.cluster import DEFAULT_CLUSTERS, with_power_models
    from tests.lab.kubelet import node_watts

    models = tmp_path / "pm.yaml"
    models.write_text(yaml.safe_dump({"edge1": {
        "model": "polynomial", "mae_w": 1.0, "mape_pct": 1.0, "idle_watts": 30.0,
        "max_watts": 70.0, "power_curve": [[0.0, 0.0], [0.5, 0.8], [1.0, 1.0]]}}))
    clusters = with_power_models(DEFAULT_CLUSTERS, str(models))
    hosts = {h.name: h for c in clusters for h in c.hosts}
    assert node_watts(hosts["edge1"], 0.25) == pytest.approx(30.0 + 40.0 * 0.4)
    assert node_watts(hosts["edge1"], 1.0) == pytest.approx(70.0)
    assert node_watts(hosts["edge0"], 0.25) == pytest.approx(19.0 + 39.5 * 0.25)  # unchanged
    assert hosts["edge1"].profile()["power_curve"] == [[0.0, 0.0], [0.5, 0.8], [1.0, 1.0]]
    assert "power_curve" not in hosts["edge0"].profile()
    assert with_power_models(DEFAULT_CLUSTERS, None) == DEFAULT_CLUSTERS


def test_lab_kubelet_integrates_curve_power_and_shares_it_by_cpu():
    from tests.lab import kubelet as k
    from tests.lab.cluster import HostSpec

    host = HostSpec("edge1", 4, 30.0, 70.0, 5, "edge-b", 1.0, ((0, 0), (0.5, 0.8), (1, 1)))
    # CPU seconds used in the step (by processes that already exited: no /proc reading)
    a = k.Container("a", [], {}, [], Path("a.log"), cpu_prev=k.CpuTimes(1.0, 0.0))
    b = k.Container("b", [], {}, [], Path("b.log"), cpu_prev=k.CpuTimes(2.0, 1.0))
    node = k.NodeInfo(host, "127.0.0.1", {}, {})
    k.Kubelet.sample_node(node, [a, b], 2.0)  # 4 CPU s in 2 s on 4 cores: 50 %
    assert node.cpu.total == pytest.approx(4.0)
    assert node.idle_seconds == pytest.approx(4.0)
    assert node.joules == pytest.approx(2 * (30 + 40 * 0.8))  # the curve, not 30 + 40 * 0.5
    # the 64 J above idle go by CPU share; idle power is shared by process count
    assert (a.joules_dynamic, b.joules_dynamic) == (pytest.approx(16.0), pytest.approx(48.0))
    assert a.joules_idle == pytest.approx(60.0 / (k.BASE_PROCESSES + 2))


def test_help():
    r = cli("power-model", "fit", "--help")
    assert r.returncode == 0 and "--apply" in r.stdout and "--out" in r.stdout
