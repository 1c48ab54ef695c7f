"""The simulated continuum's models: workload patterns, queueing latency, power sharing."""

import re
import warnings

import numpy as np
import pytest

from orchestrator import performance
from orchestrator.config import load_scenario
from orchestrator.control.loop import Loop, step
from orchestrator.errors import GreenwiseError
from orchestrator.model import Move, Observation, Snapshot
from orchestrator.performance import (
    Backend,
    PerformanceModel,
    curve_fraction,
    erlang_c,
    grid_steps,
    on_grid,
)
from orchestrator.scenario import PAPER, ClusterSpec, InterClusterMove, Scenario
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
    with pytest.raises(GreenwiseError, match="needs a header with columns time,users"):
        read_trace(f)
    for text in ("time,users\n", ""):
        f.write_text(text)
        with pytest.raises(GreenwiseError, match="no rows; expected a header time,users"):
            read_trace(f)


def test_erlang_c_matches_mm1_and_known_value():
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_erlang_c_of_many_queue_sizes_at_once_is_each_one_alone():
    servers = np.array([[4], [12], [1], [4], [8]])
    load = np.array([[0.0, 0.5, 3.9], [0.0, 6.0, 11.5], [0.0, 0.3, 0.99], [1.0, 2.0, 3.0],
                     [0.0, 7.0, 7.9]])
    together = erlang_c(servers, load)
    assert together.shape == load.shape
    for (r, c), value in np.ndenumerate(together):
        assert value == erlang_c(int(servers[r, 0]), load[r, c])


def test_shares_on_the_grid_stay_within_it():
    # a measured share may read above 1 (or below 0): the tables hold 0 .. 100 %
    shares = [-0.2, 0.0, 0.014, 0.015, 0.5, 1.0, 1.3]
    assert [on_grid(s) for s in shares] == [0, 0, 1, 2, 50, 100, 100]
    assert grid_steps(np.array(shares)).tolist() == [0, 0, 1, 2, 50, 100, 100]


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


def test_the_throughput_converges_in_a_few_evaluations_however_full_the_host(monkeypatch):
    """The root finder interpolates up to capacity (no pole there) and stops once f is within
    its rounding, on continuum's hosts from empty to 95 % taken by others, 1 to 200 users: 5.6
    evaluations a point, 11 rounds at most (bisecting towards the pole and narrowing the bracket
    from one side past f's rounding took 12.1 and 70; stopping within 4 ulps of the users, 6.2
    and 25)."""
    calls: list[list[int]] = []  # per solve, the points evaluated in each round
    real = performance.increasing_root

    def counting(f, *args):
        rounds: list[int] = []
        calls.append(rounds)

        def counted(x, at):
            rounds.append(len(at))
            return f(x, at)
        return real(counted, *args)

    monkeypatch.setattr(performance, "increasing_root", counting)
    sc = load_scenario("continuum")
    points = 0
    for host in sc.hosts:
        taken = np.linspace(0.0, 0.95, 20)[:, None]
        _, back = Backend(sc.fleet[0], host, taken).solve(np.arange(1, 201))
        points += back.size
        assert np.isfinite(back).all() and (back > 0).all()
    assert len(calls) == len(sc.hosts) and max(len(r) for r in calls) <= 15
    assert sum(map(sum, calls)) <= 7 * points


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


# `paper`'s hosts as two clusters (edge: edge0-2, cloud), so that moves there are inter-cluster
TWO_CLUSTERS = PAPER.model_copy(update={"clusters": (
    ClusterSpec(name="edge", tier="edge", hosts=PAPER.hosts[:3]),
    ClusterSpec(name="cloud", tier="cloud", hosts=PAPER.hosts[3:]))})


def _steady(scenario: Scenario, start: str) -> SimulatedContinuum:
    """One service at 30 users on `start`, no latency noise."""
    sim = SimulatedContinuum(scenario, "test", seed=1)
    sim.reset(seed=1, start_host=HOST[start])
    sim.episode.users[:] = 30
    sim.episode.jitter[:] = 1.0
    return sim


@pytest.mark.parametrize("to, source_s, forward_s", [
    ("cloud", 5.09 + 15, 30.0),  # inter: copy [lab] + cold start [assume], then the DNS TTL
    ("edge2", 0.73 + 15, 0.0),  # intra: copy [lab] + cold start, no DNS
])
def test_a_moves_step_is_the_time_weighted_mix_of_its_phases(to, source_s, forward_s):
    sim = _steady(TWO_CLUSTERS, "edge0")
    edge0, dst = HOST["edge0"], HOST[to]
    src_w, src_ms = sim.on_host(edge0, [0], 1)[0]
    dst_w, dst_ms = sim.on_host(dst, [0], 1)[0]
    h = PAPER.hosts[dst]  # the new copy loading: its idle share, one core busy (linear curve)
    loading_w = h.idle_watts * (1 + h.cores) / (h.base_processes + 1 + h.cores) + (
        h.max_watts - h.idle_watts) / h.cores
    sim.apply([sim.plan(Move(0, dst))])
    assert sim.moved == ["inter" if forward_s else "intra"] and sim.host == dst
    moved = sim.snapshot().services[0]
    target_s = 900 - source_s - forward_s
    assert moved.power_w == pytest.approx(
        (source_s * (src_w + loading_w) + (forward_s + target_s) * dst_w) / 900)
    assert moved.latency_ms == pytest.approx(
        (source_s * src_ms + forward_s * (dst_ms + 14.0) + target_s * dst_ms) / 900)
    sim.apply([])  # the step after: settled, nothing left of the move
    assert sim.moving == {} and sim.moved == [None]
    assert (sim.snapshot().services[0].power_w, sim.snapshot().services[0].latency_ms) == \
        pytest.approx(sim.on_host(dst, [0], 2)[0])


def test_predictions_and_the_simulator_cost_a_move_alike():
    """One definition of a move's cost: what the predictor expects of the step is what the
    simulator reports (users steady, no noise)."""
    predictor = Predictor(TWO_CLUSTERS)
    for to in ("cloud", "edge2"):
        sim = _steady(TWO_CLUSTERS, "edge1")
        predicted = predictor.predict(sim.snapshot().view(0), 1 + HOST[to])
        sim.apply([sim.plan(Move(0, HOST[to]))])
        seen = sim.snapshot().services[0]
        assert (predicted.power_w, predicted.latency_ms) == pytest.approx(
            (seen.power_w, seen.latency_ms))
        assert predicted.settled["latency_ms"] == pytest.approx(sim.on_host(HOST[to], [0], 1)[0][1])


def test_old_flat_move_costs_are_refused_with_what_to_write(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, idle_watts: 5, "
                 "max_watts: 40, network_latency_ms: 1}]}\n"
                 "migration: {inter_cluster: {latency_ms: 80, watts: 8}}\n")
    with pytest.raises(GreenwiseError) as e:
        load_scenario(f)
    assert "migration.inter_cluster: latency_ms and watts are no longer used" in str(e.value)
    assert "give copy_s (seconds until the copy is Ready) and dns_s" in str(e.value)
    assert "\n" not in str(e.value)


def test_observation_reflects_the_service_host():
    sim = SimulatedContinuum(PAPER, "test", seed=2)
    sim.reset(seed=2, start_host=HOST["edge2"])
    obs = sim.snapshot().view(0)
    assert obs.service.host == HOST["edge2"] and str(obs.location) == "testbed/edge2"
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


def test_a_move_longer_than_a_step_completes_later():
    """A copy that takes 20 minutes: for the first step the source serves, the loading copy
    draws its part; the service may only stay and its target is reserved; it switches in the
    next step (and only then is the move done)."""
    slow = TWO_CLUSTERS.model_copy(update={"migration": TWO_CLUSTERS.migration.model_copy(
        update={"inter_cluster": InterClusterMove(copy_s=1200.0 - 15.0, dns_s=30.0)})})
    fleet = slow.model_copy(update={"services": tuple(
        PAPER.service.model_copy(update={"name": n, "cpu_request": r})
        for n, r in (("a", 4.0), ("b", 4.0), ("c", 6.0)))})
    sim = _steady(fleet, "edge0")
    edge0, cloud = HOST["edge0"], HOST["cloud"]
    sim.placement = [edge0, HOST["edge1"], cloud]
    done = []
    sim.apply([sim.plan(Move(0, cloud))], lambda p, outcome: done.append(outcome))
    first = sim.snapshot()
    assert sim.placement[0] == edge0 and done == []  # still served at the source
    src_w, src_ms = sim.on_host(edge0, [0], 1)[0]  # the copy loads all the step:
    assert (first.services[0].power_w, first.services[0].latency_ms) == pytest.approx(
        (src_w + sim.move_cost.loading_w[0][cloud], src_ms))
    masks = sim.masks(first)
    assert masks[0].tolist() == [True, False, False, False, False]  # may only stay
    assert not masks[1][1 + cloud]  # c's 6 cores and a's 4 reserved: 2 left of 12
    sim.apply([], lambda p, outcome: done.append(outcome))
    assert sim.placement[0] == cloud and done == ["done"]
    second = sim.snapshot().services[0]  # 300 s on the source (loading), 30 forwarded
    dst_w, dst_ms = sim.on_host(cloud, [0, 2], 2)[0]  # beside c
    src_w, src_ms = sim.on_host(edge0, [0], 2)[0]
    assert second.latency_ms == pytest.approx(
        (300 * src_ms + 30 * (dst_ms + 14.0) + 570 * dst_ms) / 900)
    assert second.power_w == pytest.approx(
        (300 * (src_w + sim.move_cost.loading_w[0][cloud]) + 600 * dst_w) / 900)


def test_decisions_see_the_lagged_metrics_and_rewards_the_true_ones():
    """Lag 1: a decision sees the users and latency of the step before (measured where the
    service ran then) but where it runs now; the step's reward is scored on the truth."""
    sim = _steady(TWO_CLUSTERS.model_copy(update={"observation_lag_steps": 1}), "edge0")
    sim.episode.users[0, :] = np.arange(sim.steps + 1) + 10  # 10, 11, 12, ...
    assert sim.snapshot().services[0].users == 10  # nothing older at the start

    class ToCloud:
        name = "to-cloud"

        def reset(self, continuum: object) -> None: ...

        def decide(self, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
            return [1 + HOST["cloud"]] if snapshot.step == 0 else [0]

    predictor = Predictor(sim.scenario)
    loop = Loop(sim, ToCloud(), predictor)
    first = step(loop)
    assert first.after.services[0].users == 11 and first.after.services[0].host == HOST["cloud"]
    truth = sim.current().services[0]
    assert first.rewards[0] == predictor.reward(truth.power_w, truth.latency_ms)
    seen = sim.snapshot()
    assert seen.services[0].users == 10 and seen.step == 1  # measured a step ago ...
    assert seen.services[0].host == HOST["cloud"]  # ... but it is known to run on cloud now
    edge0 = sim.on_host(HOST["edge0"], [0], 0)[0]  # ... and its latency is edge0's then
    assert seen.services[0].latency_ms == pytest.approx(edge0[1])
    assert seen.hosts[HOST["cloud"]].cpu == 0.0  # the hosts as they were then
    second = step(loop)  # decided on step 0's users, scored on step 2's
    assert second.tick.snapshot.services[0].users == 10 and second.after.services[0].users == 12
    assert sim.snapshot().services[0].users == 11


def _sleepy(wake_s: float) -> SimulatedContinuum:
    """`paper` (intra-cluster moves on edge) with edge1 a host that sleeps at 2 W."""
    clusters = tuple(c.model_copy(update={"hosts": tuple(
        h.model_copy(update={"sleep_watts": 2.0, "wake_s": wake_s}) if h.name == "edge1" else h
        for h in c.hosts)}) for c in TWO_CLUSTERS.clusters)
    return _steady(TWO_CLUSTERS.model_copy(update={"clusters": clusters}), "edge0")


def test_an_empty_host_sleeps_and_one_just_emptied_sleeps_after_the_autoscalers_delay():
    sim = _sleepy(20.0)
    edge0, edge1 = HOST["edge0"], HOST["edge1"]
    host = sim.snapshot().hosts[edge1]
    assert host.asleep and host.power_w == 2.0  # empty since the start
    assert not sim.snapshot().hosts[edge0].asleep  # a host without sleep_watts never sleeps
    sim.placement = [edge1]
    sim.apply([sim.plan(Move(0, edge0))])  # edge1 empties in this step
    host = sim.snapshot().hosts[edge1]
    idle = PAPER.hosts[edge1].idle_watts  # 10 minutes idle (scale-down-unneeded-time), then 2 W
    assert host.asleep and host.power_w == pytest.approx((600 * idle + 300 * 2.0) / 900)
    sim.apply([])
    assert sim.snapshot().hosts[edge1].power_w == 2.0


def test_a_move_onto_a_sleeping_host_waits_for_it_to_wake_while_the_source_serves():
    sim = _sleepy(100.0)
    edge0, edge1 = HOST["edge0"], HOST["edge1"]
    src_w, src_ms = sim.on_host(edge0, [0], 1)[0]
    dst_w, dst_ms = sim.on_host(edge1, [0], 1)[0]
    loading_w = sim.move_cost.loading_w[0][edge1]
    sim.apply([sim.plan(Move(0, edge1))])
    moved = sim.snapshot().services[0]
    load_s = 0.73 + 15  # intra copy [lab] + cold start, after 100 s of waking
    assert sim.placement == [edge1]
    assert moved.latency_ms == pytest.approx(((100 + load_s) * src_ms
                                              + (800 - load_s) * dst_ms) / 900)
    assert moved.power_w == pytest.approx(((100 + load_s) * src_w + load_s * loading_w
                                           + (800 - load_s) * dst_w) / 900)
    assert not sim.snapshot().hosts[edge1].asleep


def test_a_wake_longer_than_a_step_spans_steps():
    """Waking takes 1000 s: in the first step the source serves and the waking host draws its
    idle power; the service may only stay and the host is reserved; it moves in the next."""
    sim = _sleepy(1000.0)
    edge0, edge1 = HOST["edge0"], HOST["edge1"]
    done = []
    sim.apply([sim.plan(Move(0, edge1))], lambda p, outcome: done.append(outcome))
    snap = sim.snapshot()
    assert sim.placement == [edge0] and done == []
    assert (snap.services[0].power_w, snap.services[0].latency_ms) == pytest.approx(
        sim.on_host(edge0, [0], 1)[0])  # nothing loads yet: the host is waking
    assert not snap.hosts[edge1].asleep
    assert snap.hosts[edge1].power_w == PAPER.hosts[edge1].idle_watts
    assert sim.masks(snap)[0].tolist() == [True, False, False, False, False]
    assert sim.wake_wait(edge1) == 100.0  # a move onto it now would wait what is left
    sim.apply([], lambda p, outcome: done.append(outcome))
    assert sim.placement == [edge1] and done == ["done"]
    src_ms, dst_ms = sim.on_host(edge0, [0], 2)[0][1], sim.on_host(edge1, [0], 2)[0][1]
    load_s = 0.73 + 15
    assert sim.snapshot().services[0].latency_ms == pytest.approx(
        ((100 + load_s) * src_ms + (800 - load_s) * dst_ms) / 900)


def test_predictions_wait_for_a_sleeping_host():
    sim = _sleepy(300.0)
    obs = sim.snapshot().view(0)
    assert obs.hosts[HOST["edge1"]].asleep
    predicted = Predictor(sim.scenario).predict(obs, 1 + HOST["edge1"])
    sim.apply([sim.plan(Move(0, HOST["edge1"]))])
    seen = sim.snapshot().services[0]
    assert (predicted.power_w, predicted.latency_ms) == pytest.approx(
        (seen.power_w, seen.latency_ms))


def test_sleep_needs_a_wake_time_and_less_than_idle(tmp_path):
    f = tmp_path / "s.yaml"
    for extra, message in (("sleep_watts: 2", "give both sleep_watts and wake_s"),
                           ("sleep_watts: 9, wake_s: 20", "sleep_watts (9.0) is above idle")):
        f.write_text("clusters:\n  - {name: c, tier: edge, hosts: [{name: h, cores: 2, "
                     f"idle_watts: 5, max_watts: 40, network_latency_ms: 1, {extra}}}]}}\n")
        with pytest.raises(GreenwiseError, match=re.escape(message)):
            load_scenario(f)


def test_a_fork_replays_the_same_episode_and_leaves_the_original_alone():
    sc = load_scenario("bursty")
    sim = SimulatedContinuum(sc, "test", seed=3)
    sim.reset(seed=3)
    first = sim.snapshot()
    sim.apply([sim.plan(Move(0, (sim.placement[0] + 1) % len(sc.hosts)))])
    twin = sim.fork()
    assert twin.t == 0 and twin.snapshot() == first and sim.t == 1
    twin.apply([twin.plan(Move(0, (twin.placement[0] + 1) % len(sc.hosts)))])
    assert twin.snapshot() == sim.snapshot()


def test_services_the_hosts_cannot_hold_are_bad_input_not_a_crash():
    """Two hosts of 3 GiB. Services needing more than both together, or more than either
    alone: refused before any episode. 1 + 1 + 2 + 2 GiB fit (one of each size per host),
    but a start placement drawn at random can put both small ones on one host and leave a
    large one nowhere: that episode is refused, saying so; the others start."""
    hosts = tuple(PAPER.hosts[0].model_copy(update={"name": f"h{i}", "memory_gib": 3.0,
                                                    "network_latency_ms": 5.0})
                  for i in range(2))
    base = PAPER.model_copy(update={"regions": {}, "clusters": (
        ClusterSpec(name="c", tier="edge", hosts=hosts),)})

    def fleet(*gib: float) -> Scenario:
        return base.model_copy(update={"services": tuple(
            PAPER.service.model_copy(update={"name": f"s{i}", "memory_gib": g})
            for i, g in enumerate(gib))})

    for gib, problem in (((2, 2, 2, 1), "the services need 7 GiB of memory, the hosts have 6"),
                         ((4,), "service 's0' (4 GiB, 1 CPU requested) fits no host")):
        assert problem in fleet(*gib).crowded()
        with pytest.raises(GreenwiseError, match=re.escape(problem)):
            SimulatedContinuum(fleet(*gib), "test", seed=0)
    tight = fleet(1, 1, 2, 2)
    assert tight.crowded() is None
    refused = 0
    for seed in range(40):
        try:
            sim = SimulatedContinuum(tight, "test", seed=seed)
        except GreenwiseError as e:
            assert "fits no host beside the services placed at random before it" in str(e)
            refused += 1
        else:
            assert sorted(np.bincount(sim.placement, [1, 1, 2, 2])) == [3, 3]
    assert 0 < refused < 40


def test_clients_that_do_not_think_keep_every_worker_busy_without_a_warning():
    """Think time 0 (clients that send their next request at once): the throughput is the
    workers' capacity, each user always waiting (x * R = users), and nothing warns."""
    sc = PAPER.model_copy(update={"service": PAPER.service.model_copy(update={
        "think_time_s": (0.0, 0.0), "batch_size": 1, "max_batch_delay_ms": 0.0, "workers": 1})})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = PerformanceModel(sc)
        idle, busy = model.outcome(HOST["edge0"], 0), model.outcome(HOST["edge0"], 5)
    assert idle.throughput_rps == 0.0
    network = sc.network_ms(sc.service)[HOST["edge0"]]
    backend_s = (busy.latency_ms - network) / 1000
    assert busy.throughput_rps * backend_s == pytest.approx(5.0, rel=1e-9)
