from pathlib import Path

import pytest

from orchestrator.config import PAPER, load_scenario
from orchestrator.errors import GreenwiseError

DOCS = Path(__file__).parent.parent / "docs" / "scenarios"


def test_paper_scenario_has_the_papers_hosts():
    hosts = {h.name: h for h in load_scenario("paper").hosts}
    assert set(hosts) == {"cloud", "edge0", "edge1", "edge2"}
    assert (hosts["cloud"].cores, hosts["cloud"].idle_watts, hosts["cloud"].max_watts) == (
        12, 162.0, 280.0)
    assert hosts["edge2"].network_latency_ms == 3.0
    assert hosts["edge1"].max_watts == 69.7
    assert PAPER.cluster_of("edge0") == "edge"
    assert PAPER.episode_steps == 25


def test_yaml_scenario_loads_with_defaults(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("""
clusters:
  - name: cloud
    tier: cloud
    hosts:
      - {name: cloud, cores: 12, idle_watts: 162, max_watts: 280, network_latency_ms: 30.9}
  - name: edge
    tier: edge
    hosts:
      - {name: edge0, cores: 4, idle_watts: 19.0, max_watts: 58.5, network_latency_ms: 14}
""")
    s = load_scenario(f)
    assert s.name == "s"
    assert [h.name for h in s.hosts] == ["cloud", "edge0"]
    assert s.service.sla_latency_ms == 500.0


@pytest.mark.parametrize("body, message", [
    ("clusters:\n  - {name: c, tier: cloud, hosts: [{name: h, cores: 4, idle_watts: 50, "
     "max_watts: 40, network_latency_ms: 1}]}\n", "max_watts (40.0) is below idle_watts"),
    ("clusters: [\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("clusters:\n  - {name: c, tier: moon, hosts: [{name: h, cores: 4, idle_watts: 5, "
     "max_watts: 40, network_latency_ms: 1}]}\n", "clusters.0.tier"),
    ("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 0, idle_watts: 5, "
     "max_watts: 40, network_latency_ms: 1}]}\n", "cores"),
    ("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, idle_watts: 5, "
     "max_watts: 40, network_latency_ms: 1}, {name: h, cores: 2, idle_watts: 5, "
     "max_watts: 40, network_latency_ms: 1}]}\n", "repeated: h"),
    ("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, idle_watts: 5, "
     "max_watts: 40, network_latency_ms: 1}]}\nworkload: {test: nope.csv}\n",
     "neither built-in"),
    ("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, idle_watts: 5, "
     "max_watts: 40, network_latency_ms: 1, typo: 3}]}\n", "typo"),
])
def test_bad_scenarios_say_what_is_wrong(tmp_path, body, message):
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(GreenwiseError) as e:
        load_scenario(f)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_scenario_name():
    with pytest.raises(GreenwiseError, match="neither a built-in"):
        load_scenario("nowhere")


def test_trace_path_is_relative_to_the_scenario_file(tmp_path):
    (tmp_path / "t.csv").write_text("time,users\n0,3\n60,9\n")
    f = tmp_path / "s.yaml"
    f.write_text("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, "
                 "idle_watts: 5, max_watts: 40, network_latency_ms: 1}]}\n"
                 "workload: {test: t.csv}\n")
    s = load_scenario(f)
    assert Path(s.workload.test) == tmp_path / "t.csv"


def test_shipped_example_scenario_loads():
    s = load_scenario(DOCS / "edge-fog-cloud.yaml")
    assert len(s.hosts) == 5 and {c.tier for c in s.clusters} == {"edge", "fog", "cloud"}
