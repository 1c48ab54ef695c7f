import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import strategies  # noqa: F401  (registers GreenWise-v0)
from orchestrator.config import load_scenario
from orchestrator.scenario import PAPER
from strategies.env import ENV_ID, GreenWiseEnv
from strategies.reward import reward

HOST = {h.name: i for i, h in enumerate(PAPER.hosts)}


def test_registered_and_passes_both_checkers():
    env = gym.make(ENV_ID)
    gym_check_env(env.unwrapped)
    sb3_check_env(GreenWiseEnv(), warn=True)
    assert env.unwrapped.action_space.n == len(PAPER.hosts) + 1


def test_observation_is_normalized_and_encodes_the_host():
    env = GreenWiseEnv()
    obs, _ = env.reset(seed=0, options={"start_host": HOST["cloud"]})
    n = len(PAPER.hosts)
    assert obs.shape == (5 * n + 4,) and obs.min() >= 0 and obs.max() <= 1
    assert obs[:n].tolist() == [0, 0, 0, 1]
    # last: its users' network latency to each host (Table 4), over the farthest (30.9 ms)
    assert obs[-n:] == pytest.approx(np.array([14.0, 5.0, 3.0, 30.9]) / 30.9)


def test_services_in_different_regions_see_which_hosts_are_near():
    sc = load_scenario("continuum")
    env = GreenWiseEnv(sc)
    env.reset(seed=0)
    n, near = len(sc.hosts), {}
    for i, spec in enumerate(sc.fleet):
        vec = env.encoders[i](env.load.view(i))
        near[spec.region] = int(np.argmin(vec[-n:]))
    assert [sc.hosts[near[r]].name for r in ("area-1", "area-2", "area-3")] == \
        ["edge2", "edge0", "edge1"]


@pytest.mark.parametrize("name", ["paper", "continuum"])
def test_first_layer_of_a_ticks_observations_is_theirs_encoded(name):
    """first_layer sums what every service sees alike once: it must equal the observations
    as each service sees them (the moves decided so far counted) times the layer's columns,
    and say what each sees of the others' CPU on its own host."""
    from orchestrator.model import Load
    from strategies.env import first_layer

    sc = load_scenario(name)
    env = GreenWiseEnv(sc)
    env.reset(seed=0)
    n, rng = len(sc.hosts), np.random.default_rng(0)
    load = Load(env.snapshot, sc.capacity)
    for i in range(0, len(sc.fleet), 3):  # some of the tick's moves decided
        load.move(i, (load.where[i] + 1) % n)
    rows = list(range(len(sc.fleet)))
    columns = rng.normal(size=(env.encoders[0].size, 16))
    pre, here = first_layer(env.encoders, load, rows, columns)
    seen = np.stack([env.encoders[i](load.view(i)) for i in rows])
    assert pre == pytest.approx(seen.astype(np.float64) @ columns, rel=1e-9, abs=1e-9)
    at = [3 * n + 4 + h for h in load.where]
    assert here.tolist() == seen[np.arange(len(rows)), at].tolist()


def test_with_gates_the_masks_hide_what_the_gates_would_hold():
    """bursty (3 services) within the default gates: one migration a tick (later services may
    only stay once one moved), none below the minimum predicted gain, and a service that just
    moved stays in the next tick (cooldown)."""
    from orchestrator.config import ControllerConfig
    from strategies.prediction import Predictor

    sc, gates = load_scenario("bursty"), ControllerConfig()
    env = GreenWiseEnv(sc, "test", gates=gates)
    predictor = Predictor(sc)
    for seed in range(20):
        env.reset(seed=seed)
        free = GreenWiseEnv(sc, "test")  # the same episode without gates
        free.reset(seed=seed)
        obs = env.snapshot.view(0)
        stay = predictor.predict(obs, 0, 0).reward
        allowed = [a for a in range(1, len(env.mask)) if free.action_masks()[a]
                   and round(predictor.predict(obs, a, 0).reward - stay, 4) >= 0.02]
        assert np.flatnonzero(env.action_masks()[1:]).tolist() == [a - 1 for a in allowed]
        if allowed:
            break
    else:
        pytest.fail("no episode whose first service may move")
    mover = allowed[0]
    env.step(mover)  # service 0 moves: the one migration of the tick
    assert env.action_masks()[1:].sum() == 0
    env.step(0)
    assert env.action_masks()[1:].sum() == 0
    env.step(0)  # the tick is carried out
    assert env.sim.placement[0] == mover - 1
    assert env.action_masks()[1:].sum() == 0  # service 0 cools down for one tick


def test_mask_hides_the_current_host_only():
    env = GreenWiseEnv()
    env.reset(seed=0, options={"start_host": HOST["edge1"]})
    assert env.action_masks().tolist() == [True, True, False, True, True]


def test_mask_hides_hosts_that_cannot_take_the_service():
    small = PAPER.model_copy(update={"service": PAPER.service.model_copy(
        update={"memory_gib": 16.0})})  # only the 128 GiB cloud host fits
    env = GreenWiseEnv(small)
    env.reset(seed=0)
    assert env.action_masks().tolist() == [True, False, False, False, False]


def test_masked_action_keeps_the_service_and_costs_minus_one():
    env = GreenWiseEnv()
    env.reset(seed=0, options={"start_host": HOST["edge1"]})
    _, r, _, _, info = env.step(1 + HOST["edge1"])
    assert r == -1.0 and info["invalid"] and info["host"] == HOST["edge1"]
    _, r, _, _, info = env.step(1 + HOST["cloud"])
    assert info["host"] == HOST["cloud"] and info["moved"] == "intra" and r > -1  # one cluster


def test_episodes_are_25_steps():
    env = GreenWiseEnv()
    env.reset(seed=0)
    for t in range(25):
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated and truncated == (t == 24)


def test_reward_variants_follow_eq_9_to_11():
    p_max, l_max = 280.0, 500.0
    assert reward("power-latency", 28.0, 100.0, p_max, l_max) == pytest.approx(
        0.5 * 0.9 + 0.5 * 0.8)
    assert reward("power", 28.0, 400.0, p_max, l_max) == pytest.approx(0.9)
    assert reward("latency", 250.0, 100.0, p_max, l_max) == pytest.approx(0.8)
    for kind in ("power-latency", "power", "latency"):
        assert reward(kind, 1.0, 501.0, p_max, l_max) == -1.0


def test_reward_kinds_pull_in_opposite_directions():
    """At light load Power-Aware prefers a frugal edge host, Latency-Aware the nearest one."""
    from orchestrator.performance import PerformanceModel

    model = PerformanceModel(PAPER)
    best = {}
    for kind in ("power", "latency", "power-latency"):
        scores = {h.name: reward(kind, model.outcome(i, 5).service_watts,
                                 model.outcome(i, 5).latency_ms, 280.0, 500.0)
                  for i, h in enumerate(PAPER.hosts)}
        best[kind] = max(scores, key=scores.get)
    assert best["latency"] == "edge2"
    assert best["power"] in ("edge0", "edge1")
    assert best["power-latency"] != "cloud"


def test_a_ticks_decision_rewards_add_up_to_the_fleets_reward():
    """On a contended continuum, one step per service: the rewards of a tick's decisions sum
    to the fleet's reward of the step that follows (any valid actions, moves included)."""
    sc = load_scenario("continuum")
    env = GreenWiseEnv(sc, "train", seed=0)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    n, moves = len(sc.services), 0
    for _ in range(6):
        total = 0.0
        for _ in range(n):
            valid = np.flatnonzero(env.action_masks())
            a = int(rng.choice(valid)) if rng.random() < 0.3 else 0
            moves += a != 0
            _, r, _, _, info = env.step(a)
            assert not info["invalid"]
            total += r
        fleet = sum(env.predictor.reward(s.power_w, s.latency_ms, i)
                    for i, s in enumerate(env.sim.current().services))
        assert total == pytest.approx(fleet, rel=1e-9, abs=1e-9)
    assert moves > 0


def test_with_observation_lag_the_agent_sees_the_step_before_and_is_told_the_truth():
    env = GreenWiseEnv(PAPER.model_copy(update={"observation_lag_steps": 1}), "test")
    env.reset(seed=2)
    users = env.sim.episode.users[0]
    u_max = env.encode.u_max
    n = len(PAPER.hosts)
    for t in range(1, 4):
        obs, _, _, _, info = env.step(0)
        assert obs[n + 3] * u_max == pytest.approx(users[t - 1])  # seen: a step late
        truth = env.sim.current().services[0]
        assert (info["power_w"], info["latency_ms"]) == (truth.power_w, truth.latency_ms)
        assert truth.users == users[t]


def _same(a, b, path=""):
    """Equal, a Monitor's wall-clock time ("t") aside."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k != "t":
                _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize(("name", "gated"), [("paper", False), ("bursty", False),
                                             ("continuum", False), ("continuum", True)])
def test_episodes_stepped_together_are_each_greenwise_env(name, gated):
    """GreenWiseVecEnv (rewards of all episodes computed together) gives what a DummyVecEnv
    of Monitor-wrapped GreenWiseEnvs gives: observations, masks, rewards, episode ends and
    infos, over two episodes and into a third, with masked actions among them; also within
    the default gates."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from orchestrator.config import ControllerConfig
    from strategies.vec_env import GreenWiseVecEnv

    sc, gates = load_scenario(name), ControllerConfig() if gated else None
    one_by_one = DummyVecEnv([lambda b=b: Monitor(GreenWiseEnv(sc, gates=gates))
                              for b in range(4)])
    together = GreenWiseVecEnv(sc, 4, gates=gates)
    for venv in (one_by_one, together):
        venv.seed(7)
    assert np.array_equal(one_by_one.reset(), together.reset())
    rng = np.random.default_rng(0)
    for _ in range(len(sc.fleet) * sc.episode_steps * 2 + 5):
        masks = np.stack(one_by_one.env_method("action_masks"))
        assert np.array_equal(masks, np.stack(together.env_method("action_masks")))
        actions = np.array([rng.choice(np.flatnonzero(m)) if rng.random() < 0.9 else
                            rng.integers(len(m)) for m in masks])
        _same(one_by_one.step(actions), together.step(actions))
