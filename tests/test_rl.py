"""RL strategies train on the simulator, save, load, and act within the mask."""

from pathlib import Path

import numpy as np
import pytest

from orchestrator.config import load_scenario
from orchestrator.control.loop import Loop, step
from orchestrator.errors import GreenwiseError
from orchestrator.model import Snapshot
from orchestrator.scenario import PAPER
from orchestrator.sim.continuum import SimulatedContinuum
from strategies import rl
from strategies.base import StrategyContext, create
from strategies.env import GreenWiseEnv
from strategies.evaluation import run_episodes
from strategies.prediction import Predictor

DOCS = Path(__file__).parent.parent / "docs" / "scenarios"


@pytest.mark.parametrize("algorithm", ["maskppo", "a2c"])
def test_train_save_load_and_act_within_the_mask(tmp_path, algorithm):
    out = tmp_path / f"{algorithm}.zip"
    rl.train(algorithm, PAPER, "power-latency", 300, seed=0, out=out)
    assert out.is_file()
    agent = create(algorithm, StrategyContext(PAPER), {"model": out})
    env = GreenWiseEnv(PAPER, "test")
    env.reset(seed=3)
    for _ in range(25):
        mask = env.action_masks()
        obs = env.observation()
        a = agent.decide(Snapshot(obs.step, (obs.service,), obs.hosts), mask[None, :])[0]
        assert mask[a]
        env.step(a)


def test_trained_maskppo_beats_random_and_round_robin():
    """The paper's budget (5500 steps) on the paper's scenario, judged on the test pattern: the
    paper's Fig. 6 ordering. (The operator rules, once they stopped flapping, beat it here:
    16.38 against 16.16 on these episodes; `paper` is nearly myopic.)"""
    model = rl.train("maskppo", PAPER, "power-latency", 5500, seed=0)
    path = Path("/tmp") / f"greenwise-test-maskppo-{np.random.default_rng().integers(1e9)}.zip"
    model.save(path)
    try:
        agent = create("maskppo", StrategyContext(PAPER), {"model": path})
        ppo = run_episodes(agent, PAPER, 20, seed=100).summary()["mean_reward"]
    finally:
        path.unlink()
    for name in ("random", "round-robin"):
        base = run_episodes(create(name, StrategyContext(PAPER)), PAPER, 20, seed=100)
        assert ppo > base.summary()["mean_reward"], name


@pytest.mark.parametrize("algorithm", ["maskppo", "a2c"])
def test_training_reports_each_episode_summed_over_its_services(algorithm):
    """On `bursty` (3 services) an episode of 25 ticks is 75 decisions: each reported episode
    ends on a multiple of 75 steps, its reward the sum of those steps' rewards (at most 1
    per decision)."""
    sc = load_scenario("bursty")
    episodes: list[tuple[int, float]] = []
    rl.train(algorithm, sc, "power-latency", 150, seed=0,
             on_episode=lambda steps, r: episodes.append((steps, r)))
    per = len(sc.fleet) * sc.episode_steps
    assert per == 75 and [s for s, _ in episodes][:2] == [75, 150]
    assert all(-per <= r <= per for _, r in episodes)
    assert any(r > sc.episode_steps for _, r in episodes)  # more than one service's worth


def test_model_for_another_host_count_is_refused(tmp_path):
    out = tmp_path / "m.zip"
    rl.train("maskppo", PAPER, "power-latency", 250, seed=0, out=out)
    other = load_scenario(DOCS / "edge-fog-cloud.yaml")
    with pytest.raises(GreenwiseError, match="different number of hosts"):
        create("maskppo", StrategyContext(other), {"model": out})


def test_missing_or_corrupt_model_is_a_clear_error(tmp_path):
    with pytest.raises(GreenwiseError, match="does not exist"):
        create("maskppo", StrategyContext(PAPER), {"model": tmp_path / "none.zip"})
    bad = tmp_path / "bad.zip"
    bad.write_text("not a model")
    with pytest.raises(GreenwiseError, match=r"not a model saved by `greenwise-mc train "
                                              r"--strategy maskppo`"):
        create("maskppo", StrategyContext(PAPER), {"model": bad})
    with pytest.raises(GreenwiseError, match="needs a trained model"):
        create("a2c", StrategyContext(PAPER))
    # one algorithm's model given to the other
    for trained, other in (("maskppo", "a2c"), ("a2c", "maskppo")):
        out = tmp_path / f"{trained}.zip"
        rl.train(trained, PAPER, "power-latency", 16, seed=0, out=out)
        with pytest.raises(GreenwiseError, match=f"--strategy {other}`"):
            create(other, StrategyContext(PAPER), {"model": out})


def test_a_model_trained_on_some_services_decides_for_more_within_their_masks(tmp_path):
    """The observation's size depends on the hosts only: a model trained with 4 of
    `continuum`'s services decides for all 12, each within its mask (capacity left after the
    decisions before it in the tick)."""
    full = load_scenario("continuum")
    few = full.model_copy(update={"services": full.services[:4]})
    out = tmp_path / "few.zip"
    rl.train("maskppo", few, "power-latency", 400, seed=0, out=out)
    agent = create("maskppo", StrategyContext(full), {"model": out})
    sim = SimulatedContinuum(full, "test", seed=0)
    agent.reset(sim)
    loop = Loop(sim, agent, Predictor(full), explain=False)
    moved = 0
    while not sim.done:
        tick = step(loop).tick
        assert not any(tick.masked(i) for i in range(len(full.services)))
        moved += len(tick.plans)
    assert sim.t > 0


@pytest.mark.parametrize("algorithm", ["maskppo", "a2c"])
def test_training_checks_the_policy_as_the_strategy_decides(tmp_path, algorithm):
    """The checks come before training, between its updates and at its end; the last one is
    the saved model's mean reward, as evaluation scores it, on the fixed training-pattern
    episodes (bursty, within the gates)."""
    from orchestrator.config import ControllerConfig

    sc, gates, out = load_scenario("bursty"), ControllerConfig(), tmp_path / "m.zip"
    checks: list[tuple[int, float]] = []
    rl.train(algorithm, sc, "power-latency", 750, seed=0, out=out, gates=gates,
             on_check=lambda steps, r: checks.append((steps, r)))
    steps = [s for s, _ in checks]
    assert steps[0] == 0 and steps[-1] == 750 and steps == sorted(set(steps))
    if algorithm == "a2c":  # rollouts of 25 ticks x 3 services: a check after each
        assert steps == list(range(0, 751, 75))
    agent = create(algorithm, StrategyContext(sc, gates=gates), {"model": out})
    scored = run_episodes(agent, sc, len(rl.CHECK_SEEDS), rl.CHECK_SEEDS[0], phase="train",
                          gates=gates)
    assert checks[-1][1] == pytest.approx(scored.summary()["mean_reward"])


@pytest.mark.parametrize("algorithm", ["maskppo", "a2c"])
@pytest.mark.parametrize(("trained", "gated"), [(True, False), (False, False), (False, True)])
def test_decisions_of_a_tick_are_the_models_one_service_at_a_time(tmp_path, algorithm,
                                                                   trained, gated):
    """The fast path (a tick's observations encoded at once, the network's first layer
    following the moves) decides as asking the model for each service in turn does: a model
    trained briefly on `continuum`, and an untrained one (most services move, each move
    changing what the next ones see) on `continuum` three times over, from a crowded start;
    and within the default gates (their masks hide what they would hold)."""
    import copy

    from bench.sim_bench import repeated
    from orchestrator.config import ControllerConfig
    from tests import reference

    sc = load_scenario("continuum")
    out = tmp_path / "m.zip"
    if trained:
        rl.train(algorithm, sc, "power-latency", 1200, seed=0, out=out)
    else:
        sc = repeated(sc, 3)
        rl.ALGORITHMS[algorithm]("MlpPolicy", GreenWiseEnv(sc), seed=0).save(out)
    gates = ControllerConfig() if gated else None
    agent = create(algorithm, StrategyContext(sc, gates=gates), {"model": out})
    sim = SimulatedContinuum(sc.model_copy(update={"episode_steps": 6}), "test", seed=1)
    sim.placement = [s % 3 for s in range(len(sc.fleet))]  # crowded: hosts full, then not
    agent.reset(sim)
    moves = 0
    while not sim.done:
        snap = sim.snapshot()
        masks = sim.masks(snap)
        before = copy.deepcopy(agent.proposals)
        actions = agent.decide(snap, masks)
        assert actions == reference.rl_actions(agent, snap, masks, before)
        moves += sum(a != 0 for a in actions)
        Loop(sim, None, Predictor(sc), explain=False).act(snap, masks, actions)
    assert moves > (0 if trained or gated else 3 * len(sc.fleet))


def test_training_on_episodes_stepped_together_keeps_the_rollout():
    """With 6 episodes at once on `bursty` (3 services), a rollout still holds 250 ticks'
    decisions (125 steps of each episode), and each episode is reported at its end."""
    sc = load_scenario("bursty")
    episodes: list[tuple[int, float]] = []
    model = rl.train("maskppo", sc, "power-latency", 900, seed=0, envs=6,
                     on_episode=lambda steps, r: episodes.append((steps, r)))
    assert model.n_envs == 6 and model.n_steps * model.n_envs == 250 * 3
    assert [s for s, _ in episodes][:6] == [75 * 6] * 6  # all six end at their 75th step
