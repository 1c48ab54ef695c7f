from pathlib import Path

import pytest

from orchestrator.config import load_scenario
from orchestrator.errors import GreenwiseError
from orchestrator.performance import TABLES, PerformanceModel, fleet_models
from orchestrator.scenario import PAPER
from orchestrator.topology import Topology

DOCS = Path(__file__).parent.parent / "docs" / "scenarios"


def test_paper_scenario_has_the_papers_hosts():
    hosts = {h.name: h for h in load_scenario("paper").hosts}
    assert set(hosts) == {"cloud", "edge0", "edge1", "edge2"}
    assert (hosts["cloud"].cores, hosts["cloud"].idle_watts, hosts["cloud"].max_watts) == (
        12, 162.0, 280.0)
    # Table 4: the clients in area-1, at these latencies from each host
    assert dict(zip(hosts, PAPER.network_ms(PAPER.service), strict=True)) == {
        "edge0": 14.0, "edge1": 5.0, "edge2": 3.0, "cloud": 30.9}
    assert hosts["edge1"].max_watts == 69.7
    assert PAPER.episode_steps == 25


def test_paper_is_one_cluster_of_four_nodes_with_edge_and_cloud_tiers():
    """Section 5.1: one Kubernetes cluster (12-core control plane, three 4-core edge nodes);
    every move there is intra-cluster, and the cloud tier is the control-plane node."""
    assert len(PAPER.clusters) == 1 and len(PAPER.hosts) == 4
    topology = Topology(PAPER.clusters)
    assert topology.tiers == ("edge", "edge", "edge", "cloud")
    assert {topology.move_kind(a, b) for a in range(4) for b in range(4) if a != b} == {"intra"}
    assert {h.name: h.memory_gib for h in PAPER.hosts} == {
        "edge0": 8.0, "edge1": 8.0, "edge2": 8.0, "cloud": 48.0}


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


@pytest.mark.parametrize("name", ["two-sites", "plant-depot", "stores"])
def test_the_held_out_scenarios_load_with_every_service_placed(name):
    """The held-out contended scenarios: every service's users in one of its regions, every
    host in every region's row, and the services together fitting their hosts' memory."""
    s = load_scenario(DOCS / f"{name}.yaml")
    hosts = {h.name for h in s.hosts}
    assert all(set(row) == hosts for row in s.regions.values())
    assert {f.region for f in s.fleet} == set(s.regions)
    assert sum(f.memory_gib for f in s.fleet) <= sum(h.memory_gib for h in s.hosts)
    assert len(s.fleet) >= 10 and {c.tier for c in s.clusters} == {"edge", "fog", "cloud"}


HOSTS = ("clusters:\n  - {name: c, tier: edge, hosts: [{name: a, cores: 2, idle_watts: 5, "
         "max_watts: 40}, {name: b, cores: 2, idle_watts: 5, max_watts: 40}]}\n")


def test_a_services_latency_comes_from_its_regions_row(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(HOSTS + "regions: {north: {a: 2, b: 20}, south: {a: 30, b: 4}}\n"
                 "services: [{name: n, region: north}, {name: s, region: south}, {name: x}]\n")
    s = load_scenario(f)
    assert [s.network_ms(v) for v in s.fleet] == [(2.0, 20.0), (30.0, 4.0), (2.0, 20.0)]
    north, south = (PerformanceModel(s, v) for v in s.fleet[:2])
    for host in (0, 1):  # the same backend; the network differs by the rows' difference
        assert south.outcome(host, 5).latency_ms - north.outcome(host, 5).latency_ms == \
            pytest.approx(s.network_ms(s.fleet[1])[host] - s.network_ms(s.fleet[0])[host])


def test_a_fleets_models_read_each_kind_of_host_once_and_each_host_as_its_kind(tmp_path):
    """fleet_models finds the hosts' kinds once for every service: hosts alike but for their
    names, places and co-tenants share a table; a host of other cores, speed or power does
    not; each model's tables, workers and p_max are the service's on each host one by one."""
    f = tmp_path / "s.yaml"
    f.write_text("clusters:\n  - {name: e, tier: edge, hosts: [\n"
                 "    {name: a, cores: 2, idle_watts: 5, max_watts: 40, network_latency_ms: 2},\n"
                 "    {name: b, cores: 2, idle_watts: 5, max_watts: 40, network_latency_ms: 9,"
                 " background_utilization: 0.2},\n"
                 "    {name: c, cores: 2, idle_watts: 5, max_watts: 40, network_latency_ms: 2,"
                 " speed: 2},\n"
                 "    {name: d, cores: 4, idle_watts: 5, max_watts: 40, network_latency_ms: 2},\n"
                 "    {name: g, cores: 2, idle_watts: 5, max_watts: 90, network_latency_ms: 2}]}\n"
                 "services: [{name: x}, {name: y, workers: 3, inference_ms_per_image: 10}]\n")
    s = load_scenario(f)
    models = fleet_models(s)
    for m, service in zip(models, s.fleet, strict=True):
        assert m.tables == [TABLES.id(service, h) for h in s.hosts]
        assert m.processes == [1 + service.workers_on(h) for h in s.hosts]
        assert m.p_max == 90.0
        a, b, c, d, g = m.tables
        assert a == b and len({a, c, d, g}) == 4
    assert not set(models[0].tables) & set(models[1].tables)
    assert models[0].processes == [3, 3, 3, 5, 3]  # a worker per core: d's are its own


@pytest.mark.parametrize("body, message", [
    ("regions: {north: {a: 2}}\n", "region 'north' must give the latency of every host and "
     "only hosts: missing: b"),
    ("regions: {north: {a: 2, b: 3, c: 4}}\n", "unknown: c"),
    ("regions: {north: {a: 2, b: -3}}\n", "latencies must be >= 0 ms"),
    ("regions: {north: {a: 2, b: 3}}\nservices: [{name: s, region: south}]\n",
     "region 'south' is not one of the scenario's regions (north)"),
    ("services: [{name: s, region: south}]\n", "needs the scenario's regions"),
    ("", "host 'a': give its network_latency_ms, or declare regions"),
])
def test_bad_regions_say_what_is_wrong(tmp_path, body, message):
    f = tmp_path / "bad.yaml"
    f.write_text(HOSTS + body)
    with pytest.raises(GreenwiseError) as e:
        load_scenario(f)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_regions_and_per_host_latency_do_not_mix(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(HOSTS.replace("name: a, cores: 2", "name: a, network_latency_ms: 1, cores: 2")
                 + "regions: {north: {a: 2, b: 3}}\n")
    with pytest.raises(GreenwiseError, match="host 'a': network_latency_ms is not used when "
                       "the scenario declares regions"):
        load_scenario(f)


def test_continuum_spreads_its_services_over_three_regions():
    s = load_scenario("continuum")
    assert set(s.regions) == {"area-1", "area-2", "area-3"}
    assert {v.region for v in s.fleet} == set(s.regions)
    # each area's nearest host differs; area-1 is the paper's clients (Table 4)
    nearest = {r: min(row, key=row.__getitem__) for r, row in s.regions.items()}
    assert len(set(nearest.values())) == 3 and nearest["area-1"] == "edge2"


DNS = {"provider": "rfc2136", "server": "127.0.0.1", "zone": "z.", "tsig_key_file": "k"}


def test_hosts_of_real_clusters_need_their_network_latency():
    from pydantic import ValidationError

    from orchestrator.config import ContinuumConfig
    cluster = {"name": "c", "tier": "edge", "ingress": "127.0.0.1:80",
               "hosts": [{"name": "n", "cores": 2, "idle_watts": 5, "max_watts": 40}]}
    with pytest.raises(ValidationError, match="host 'n': give its network_latency_ms"):
        ContinuumConfig.model_validate({"clusters": [cluster], "dns": DNS})


def test_real_clusters_predict_dns_convergence_from_their_ttl():
    from orchestrator.config import ContinuumConfig
    cluster = {"name": "c", "tier": "edge", "ingress": "127.0.0.1:80", "hosts": [
        {"name": "n", "cores": 2, "idle_watts": 5, "max_watts": 40, "network_latency_ms": 3}]}
    cfg = ContinuumConfig.model_validate({"clusters": [cluster], "dns": {**DNS, "ttl": 120}})
    scenario = cfg.scenario()
    assert scenario.migration.inter_cluster.dns_s == 120
    assert scenario.network_ms(scenario.fleet[0]) == (3.0,)
