"""The simulated continuum's models: workload patterns, queueing latency, power sharing."""

import numpy as np
import pytest

from orchestrator.config import PAPER, load_scenario
from orchestrator.control.loop import Loop
from orchestrator.errors import GreenwiseError
from orchestrator.model import Move, Observation, Snapshot
from orchestrator.performance import Backend, PerformanceModel, curve_fraction, erlang_c
from orchestrator.sim.continuum import SimulatedContinuum
from orchestrator.workload import day, episode_users, ramp, read_trace
from strategies.prediction import Predictor

MODEL = PerformanceModel(PAPER)
HOST = {h.name: i for i, h in enumerate(PAPER.hosts)}
SLA = PAPER.service.sla_latency_ms


def test_training_pattern_is_the_papers_ramp():
    assert ramp(60) == [float(u) for u in range(1, 61)]


def test_test_pattern_is_smooth_and_day_like():
    d = np.array(day(60))
    assert d.max() == pytest.approx(60, rel=0.05) and d.min() >= 1
    assert np.abs(np.diff(d)).max() < 6  # smooth: no jumps
    assert d.argmax() > len(d) // 2  # afternoon peak


def test_episode_users_are_seeded():
    a = episode_users(ramp(60), 26, 0.1, np.random.default_rng(3))
    b = episode_users(ramp(60), 26, 0.1, np.random.default_rng(3))
    c = episode_users(ramp(60), 26, 0.1, np.random.default_rng(4))
    assert (a == b).all() and not (a == c).all()


def test_trace_replay(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("time,users\n60,5\n0,2\n120,7\n")
    assert read_trace(f) == [2.0, 5.0, 7.0]
    f.write_text("when,who\n1,2\n")
    with pytest.raises(GreenwiseError, match="time,users"):
        read_trace(f)


def test_erlang_c_matches_mm1_and_known_value():
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_curve_fraction_interpolates():
    assert curve_fraction(((0, 0), (0.5, 0.7), (1, 1)), 0.25) == pytest.approx(0.35)
    assert curve_fraction(((0, 0), (1, 1)), 2.0) == 1.0


def test_latency_grows_with_users_and_edges_break_the_sla_at_peak():
    for name in ("edge0", "edge1", "edge2"):
        lat = [MODEL.outcome(HOST[name], u).latency_ms for u in (1, 20, 40, 66)]
        assert lat == sorted(lat)
        assert lat[0] < SLA < lat[-1]
    assert MODEL.outcome(HOST["cloud"], 66).latency_ms < SLA


def test_latency_is_backend_plus_network():
    edge2, cloud = MODEL.outcome(HOST["edge2"], 1), MODEL.outcome(HOST["cloud"], 1)
    # same backend at one user (same speed), the difference is the network (Eq. 3)
    assert cloud.latency_ms - edge2.latency_ms == pytest.approx(30.9 - 3.0, abs=0.5)


def test_small_hosts_saturate():
    edge = Backend(PAPER.service, PAPER.hosts[HOST["edge0"]])
    x60, _ = edge.solve(60)
    x120, _ = edge.solve(120)
    assert x120 < 1.2 * x60  # throughput stops growing
    assert edge.busy_workers(x120) < edge.servers


def test_service_power_shares_idle_by_processes_and_stays_below_host_power():
    cloud = PAPER.hosts[HOST["cloud"]]
    o = MODEL.outcome(HOST["cloud"], 0)
    processes = 1 + cloud.cores
    assert o.service_watts == pytest.approx(
        cloud.idle_watts * processes / (cloud.base_processes + processes))
    for i in range(len(PAPER.hosts)):
        for u in (1, 30, 60):
            o = MODEL.outcome(i, u)
            assert 0 < o.service_watts < o.host_watts <= PAPER.hosts[i].max_watts


def test_moves_cost_more_across_clusters():
    sim = SimulatedContinuum(PAPER, "test", seed=1)
    sim.reset(seed=1, start_host=HOST["edge0"])
    (base_w, base_l), (intra_w, intra_l), (inter_w, inter_l) = (
        sim.move_cost(kind) for kind in (None, "intra", "inter"))
    assert base_l < intra_l < inter_l and base_w < intra_w < inter_w
    alone = sim.on_host(HOST["cloud"], [0], 1)[0]
    sim.apply([sim.plan(Move(0, HOST["cloud"]))])
    assert sim.moved == ["inter"] and sim.host == HOST["cloud"] and sim.t == 1
    moved = sim.snapshot().services[0]
    assert (moved.power_w, moved.latency_ms) == pytest.approx(
        (alone[0] + inter_w, alone[1] + inter_l))
    sim.apply([])
    assert sim.moved == [None]


def test_observation_reflects_the_service_host():
    sim = SimulatedContinuum(PAPER, "test", seed=2)
    sim.reset(seed=2, start_host=HOST["edge2"])
    obs = sim.snapshot().view(0)
    assert obs.service.host == HOST["edge2"] and str(obs.location) == "edge/edge2"
    busy = obs.hosts[HOST["edge2"]]
    assert busy.cpu == pytest.approx(obs.service.cpu) and busy.power_w > 21.4
    assert obs.hosts[HOST["edge0"]].power_w == 19.0


def test_services_share_hosts_and_are_counted_in_the_masks():
    """Several services: their CPU adds up on a shared host, and a host full of the others'
    CPU requests is masked for the next one (capacity counted for all services)."""
    fleet = PAPER.model_copy(update={"services": tuple(
        PAPER.service.model_copy(update={"name": f"s{i}", "cpu_request": 2.0})
        for i in range(3))})
    sim = SimulatedContinuum(fleet, "test", seed=4)
    edge0 = HOST["edge0"]
    sim.placement = [edge0, edge0, HOST["cloud"]]
    snap = sim.snapshot()
    both = snap.services[0].cpu + snap.services[1].cpu
    assert snap.hosts[edge0].cpu == pytest.approx(both)
    masks = sim.masks(snap)
    assert not masks[2][1 + edge0]  # 4 cores, 4 requested by the two already there
    assert masks[2][1 + HOST["edge1"]] and masks[0][1 + HOST["cloud"]]


def _pair(users_b: int, **service: object) -> tuple[SimulatedContinuum, int]:
    """Two services, a at 30 users and b at `users_b`, both on edge0 (4 cores)."""
    fleet = PAPER.model_copy(update={"services": (
        PAPER.service.model_copy(update={"name": "a", **service}),
        PAPER.service.model_copy(update={"name": "b", **service}))})
    sim = SimulatedContinuum(fleet, "test", seed=4)
    edge0 = HOST["edge0"]
    sim.placement = [edge0, edge0]
    sim.episode.users[0, :] = 30
    sim.episode.users[1, :] = users_b
    sim.episode.jitter[:] = 1.0
    return sim, edge0


def test_services_on_one_host_slow_each_other_down():
    alone = MODEL.outcome(HOST["edge0"], 30)
    latencies = []
    for users_b in (0, 10, 30, 60):
        sim, edge0 = _pair(users_b)
        snap = sim.snapshot()
        a, b = snap.services
        latencies.append(a.latency_ms)
        host = snap.hosts[edge0]
        assert host.cpu == pytest.approx(a.cpu + b.cpu)
        assert a.power_w + b.power_w < host.power_w <= PAPER.hosts[edge0].max_watts
    assert latencies[0] == pytest.approx(alone.latency_ms, rel=0.02)
    assert latencies == sorted(latencies) and latencies[-1] > 1.5 * latencies[0], latencies


def test_a_busy_neighbour_leaves_a_service_its_fair_share():
    sim, edge0 = _pair(1000)  # b alone would take the whole host
    a, _ = sim.snapshot().services
    half = MODEL.outcome(edge0, 30, taken=0.5)  # same process count: half the host each
    assert a.latency_ms <= half.latency_ms * 1.01


def test_the_prediction_counts_the_services_a_move_would_join():
    sim, edge0 = _pair(60)
    sim.placement = [HOST["cloud"], edge0]
    obs = sim.snapshot().view(0)
    assert obs.neighbours(edge0) == (pytest.approx(obs.hosts[edge0].cpu), 1)
    crowded = Predictor(sim.scenario).predict(obs, 1 + edge0, 0)
    empty = Predictor(sim.scenario).predict(Observation(obs.step, obs.service, obs.hosts),
                                            1 + edge0, 0)
    assert crowded.latency_ms > empty.latency_ms
    _, latency = sim.on_host(edge0, [0, 1], 0)[0]
    assert crowded.latency_ms - crowded.move_cost_ms == pytest.approx(latency, rel=0.1)


def test_moves_in_one_tick_count_each_others_capacity():
    """Two services ask for the one host that has room for one: the first moves, the second
    is refused (its mask counts the first's request)."""
    sim, edge0 = _pair(10, cpu_request=3.0)
    sim.placement = [HOST["edge1"], HOST["edge2"]]

    class BothTo:
        name = "both-to-edge0"

        def reset(self, continuum: object) -> None: ...

        def decide(self, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
            return [1 + edge0, 1 + edge0]

    tick = Loop(sim, BothTo(), Predictor(sim.scenario)).tick()
    assert [d.action for d in tick.decisions] == ["move", "refused"]
    assert sim.placement == [edge0, HOST["edge2"]] and tick.masked(1) and not tick.masked(0)


def _with_background(**host: object) -> SimulatedContinuum:
    """`paper` with co-tenants on edge0 (`host` fields), users fixed at 30, no noise."""
    clusters = tuple(c.model_copy(update={"hosts": tuple(
        h.model_copy(update=host) if h.name == "edge0" else h for h in c.hosts)})
        for c in PAPER.clusters)
    sc = PAPER.model_copy(update={"clusters": clusters, "workload": PAPER.workload.model_copy(
        update={"noise": 0.0, "latency_jitter": 0.0})})
    sim = SimulatedContinuum(sc, "test", seed=3)
    sim.reset(seed=3, start_host=HOST["edge0"])
    sim.episode.users[:] = 30
    return sim


def test_a_background_pattern_changes_latency_over_the_steps():
    sim = _with_background(background="ramp", background_utilization=0.5)
    level = sim.episode.background[HOST["edge0"]]
    assert len(set(level)) > 5 and level.max() <= 0.5 and level.min() >= 0  # ramp, peak 50 %
    assert np.allclose(level, np.round(level, 2))  # on the 1 % grid
    latencies, cpus = [], []
    for _ in range(sim.steps):
        snap = sim.snapshot()
        latencies.append(snap.services[0].latency_ms)
        cpus.append(snap.hosts[HOST["edge0"]].cpu - snap.services[0].cpu)
        sim.apply([])
    assert cpus == pytest.approx(list(level[:sim.steps]))  # the host shows its co-tenants
    order = np.argsort(level[:sim.steps], kind="stable")
    assert np.all(np.diff(np.array(latencies)[order]) >= -1e-9)  # busier co-tenants: slower
    assert max(latencies) > min(latencies) + 10
    # other hosts stay constant: their profile's level (0)
    assert not sim.episode.background[HOST["edge1"]].any()


def test_without_a_pattern_the_background_is_the_constant_level():
    sim = _with_background(background_utilization=0.25)
    assert (sim.episode.background[HOST["edge0"]] == 0.25).all()


def test_the_performance_model_keys_on_the_background():
    busy, quiet = MODEL.outcome(HOST["edge0"], 30, 0.0, 0.4), MODEL.outcome(HOST["edge0"], 30)
    assert busy.latency_ms > quiet.latency_ms and busy.host_cpu > quiet.host_cpu
    assert MODEL.outcome(HOST["edge0"], 30, 0.0, 0.401) is busy  # the same 1 % step


def test_predictions_use_the_background_observed_now():
    """Co-tenants at their peak (40 %) but observed at a quiet step: the prediction follows
    what the snapshot shows (host CPU minus the service's), not the profile's level."""
    sim = _with_background(background="day", background_utilization=0.4)
    edge0 = HOST["edge0"]
    sim.placement = [HOST["cloud"]]
    t = int(np.argmin(sim.episode.background[edge0]))
    sim.t = t
    obs = sim.snapshot().view(0)
    assert obs.background[edge0] == pytest.approx(sim.episode.background[edge0, t])
    predicted = Predictor(sim.scenario).predict(obs, 1 + edge0)
    _, latency = sim.on_host(edge0, [0], t)[0]
    assert predicted.latency_ms - predicted.move_cost_ms == pytest.approx(latency)
    profile = Predictor(sim.scenario).predict(
        Observation(obs.step, obs.service, obs.hosts), 1 + edge0)  # nothing observed
    assert profile.latency_ms > predicted.latency_ms


def test_a_background_needs_its_peak_level(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, "
                 "idle_watts: 5, max_watts: 40, network_latency_ms: 1, background: day}]}\n")
    with pytest.raises(GreenwiseError, match="background 'day' needs background_utilization"):
        load_scenario(f)
    (tmp_path / "cpu.csv").write_text("time,users\n0,1\n60,4\n")
    f.write_text("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, idle_watts: 5,"
                 " max_watts: 40, network_latency_ms: 1, background: cpu.csv, "
                 "background_utilization: 0.2}]}\n")
    s = load_scenario(f)
    assert s.hosts[0].background == str(tmp_path / "cpu.csv")
    sim = SimulatedContinuum(s, "test", seed=0)
    assert set(np.round(sim.episode.background[0], 2)) == {0.05, 0.2}  # 1/4 and 4/4 of 20 %
