import numpy as np
import pytest

from orchestrator.config import PAPER
from orchestrator.errors import GreenwiseError
from orchestrator.model import HostState, Observation, ServiceState, Snapshot
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.base import StrategyContext, create, names
from strategies.env import GreenWiseEnv
from strategies.evaluation import comparison, improvement, run_episodes
from strategies.prediction import Predictor

HOST = {h.name: i for i, h in enumerate(PAPER.hosts)}
OPTS = StrategyContext(PAPER, seed=0)


def decide(strategy, obs: Observation, mask: np.ndarray) -> int:
    """A fleet strategy's action for the one service of `obs`."""
    return strategy.decide(Snapshot(obs.step, (obs.service,), obs.hosts), mask[None, :])[0]


def obs_on(host: str, users: int, latency: float = 150.0, cpu: float = 0.1) -> Observation:
    hosts = tuple(HostState(h.name, PAPER.cluster_of(h.name), h.idle_watts,
                            cpu if h.name == host else 0.0) for h in PAPER.hosts)
    return Observation(0, ServiceState("svc", HOST[host], 5.0, cpu, latency, users, 10.0), hosts)


def mask_for(host: str) -> np.ndarray:
    m = np.ones(len(PAPER.hosts) + 1, dtype=bool)
    m[HOST[host] + 1] = False
    return m


def test_registry_lists_every_strategy():
    assert names() == ["random", "round-robin", "rules", "greedy", "oracle", "maskppo", "a2c"]
    with pytest.raises(GreenwiseError, match="unknown strategy 'nope'"):
        create("nope", OPTS)


def test_random_picks_hosts_including_the_current_one():
    s = create("random", OPTS)
    picks = {decide(s, obs_on("edge0", 10), mask_for("edge0")) for _ in range(200)}
    assert picks == {1, 2, 3, 4}  # never "stay", sometimes the (masked) current host


def test_round_robin_cycles_to_the_next_host():
    s = create("round-robin", OPTS)
    assert decide(s, obs_on("edge0", 10), mask_for("edge0")) == 1 + HOST["edge1"]
    assert decide(s, obs_on("cloud", 10), mask_for("cloud")) == 1 + HOST["edge0"]


def test_rules_evacuate_a_host_about_to_break_the_sla():
    s = create("rules", OPTS)
    action = decide(s, obs_on("edge1", 60, latency=450.0, cpu=0.75), mask_for("edge1"))
    assert action == 1 + HOST["cloud"]  # most spare capacity


def test_rules_consolidate_onto_a_lower_power_host_when_safe():
    s = create("rules", OPTS)
    action = decide(s, obs_on("cloud", 3, latency=180.0, cpu=0.01), mask_for("cloud"))
    assert action in (1 + HOST["edge0"], 1 + HOST["edge1"])
    # already on a low-power safe host: stay
    assert decide(s, obs_on("edge0", 3, latency=170.0, cpu=0.03), mask_for("edge0")) == 0


def test_greedy_takes_the_best_predicted_action():
    s = create("greedy", OPTS)
    p = Predictor(PAPER)
    obs, mask = obs_on("edge1", 64, latency=520.0, cpu=0.78), mask_for("edge1")
    a = decide(s, obs, mask)
    assert all(p.predict(obs, a).reward >= p.predict(obs, b).reward
               for b in range(len(mask)) if mask[b])
    assert a == 1 + HOST["cloud"]


def test_oracle_is_an_upper_bound_on_every_episode():
    """Per episode, no strategy beats the oracle (which plans with the future known)."""
    oracle = run_episodes(create("oracle", OPTS), PAPER, 8, seed=5)
    for name in ("random", "round-robin", "rules", "greedy"):
        other = run_episodes(create(name, OPTS), PAPER, 8, seed=5)
        for o, r in zip(oracle.episode_rewards, other.episode_rewards, strict=True):
            assert o >= r - 1e-9, name


def test_oracle_needs_the_simulator():
    with pytest.raises(GreenwiseError, match="simulated continuum"):
        create("oracle", OPTS).reset(object())  # type: ignore[arg-type]
    with pytest.raises(GreenwiseError, match="needs the simulated continuum"):
        create("oracle", StrategyContext(PAPER, on_clusters=True))


def test_options_are_typed_and_checked_at_creation():
    rules = create("rules", OPTS, {"safe_cpu": 0.5})
    assert rules.parts[0].safe_cpu == 0.5
    with pytest.raises(GreenwiseError, match="safe_cpu"):
        create("rules", OPTS, {"safe_cpu": 2.0})
    with pytest.raises(GreenwiseError, match=r"greedy.*model"):
        create("greedy", OPTS, {"model": "m.zip"})
    with pytest.raises(GreenwiseError, match=r"maskppo.*needs a trained model"):
        create("maskppo", OPTS)


def test_every_service_gets_its_own_decision_and_sla():
    fleet = PAPER.model_copy(update={"services": (
        PAPER.service.model_copy(update={"name": "a"}),
        PAPER.service.model_copy(update={"name": "b", "sla_latency_ms": 200.0}))})
    sim = SimulatedContinuum(fleet, "test", seed=3)
    s = create("greedy", StrategyContext(fleet))
    assert [p.predictor.sla(p.service) for p in s.parts] == [500.0, 200.0]
    snap = sim.snapshot()
    actions = s.decide(snap, sim.masks(snap))
    assert len(actions) == 2 and all(sim.masks(snap)[i][a] for i, a in enumerate(actions))


def test_strategies_never_command_masked_moves_except_random():
    env = GreenWiseEnv(PAPER, "test")
    for name in ("round-robin", "rules", "greedy", "oracle"):
        s = create(name, OPTS)
        env.reset(seed=11)
        s.reset(env.sim)
        for _ in range(25):
            mask = env.action_masks()
            a = decide(s, env.observation(), mask)
            assert mask[a], name
            env.step(a)


def test_evaluation_summary_and_comparison():
    res = run_episodes(create("round-robin", OPTS), PAPER, 3, seed=0).summary()
    assert res["migrations"] == 75  # moves every step
    assert sum(res["host_time_share"].values()) == pytest.approx(1.0)
    rows = comparison({"random": {**res, "mean_reward": 5.0},
                       "round-robin": {**res, "mean_reward": 10.0},
                       "oracle": {**res, "mean_reward": 20.0}})
    rr = next(r for r in rows if r["strategy"] == "round-robin")
    assert rr["vs_random"] == pytest.approx(1.0) and rr["of_oracle"] == pytest.approx(0.5)
    assert improvement(-5.0, -10.0) == pytest.approx(0.5)
