"""Policy mode's gates, as pure logic: a fake Kubernetes continuum (readings made here,
migrations that only record themselves, the real worker machinery) under the real Controller,
Loop, Gates, strategies and Predictor."""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from orchestrator.config import ControllerConfig, ManagedService, load_scenario
from orchestrator.control.controller import Controller, EventLog, Metrics, serve
from orchestrator.control.gates import Gates
from orchestrator.control.loop import Loop
from orchestrator.kube.continuum import KubePlan, KubernetesContinuum
from orchestrator.migration.executor import MigrationFailed, MigrationPlan
from orchestrator.migration.journal import MigrationRecord
from orchestrator.migration.plan import Target
from orchestrator.model import Location, Move, Snapshot
from orchestrator.monitoring import (
    HostReading,
    PrometheusUnavailable,
    Readings,
    Sample,
    ServiceReading,
)
from orchestrator.scenario import ClusterSpec
from orchestrator.topology import Topology
from strategies.env import Encoder
from strategies.online import OnlineLearner, ReplayEnv, Transition
from strategies.prediction import Predictor

PAPER = load_scenario("paper")  # as two clusters: edge0, edge1, edge2 (edge), cloud (cloud)
SCENARIO = PAPER.model_copy(update={"clusters": (
    ClusterSpec(name="edge", tier="edge", hosts=PAPER.hosts[:3]),
    ClusterSpec(name="cloud", tier="cloud", hosts=PAPER.hosts[3:]))})
FRESH = 1.0


def sample(v: float) -> Sample:
    return Sample(v, FRESH)


class FakeConfig:
    def __init__(self, keys: list[str], settings: ControllerConfig) -> None:
        self.services = tuple(ManagedService(namespace=k.split("/")[0], name=k.split("/")[1],
                                             hostname=f"{k.split('/')[1]}.x.test") for k in keys)
        self.controller = settings


class FakeContinuum(KubernetesContinuum):
    """Services at host indices; Prometheus up or down; stale services; migrations recorded
    and held in flight until `finish` is set. Snapshots, masks and the migration workers are
    the real KubernetesContinuum's."""

    def __init__(self, services: dict[str, int]) -> None:
        settings = ControllerConfig()
        self.topology = Topology(SCENARIO.clusters)
        self.hosts, self.locations = self.topology.hosts, self.topology.locations
        self.services = tuple(services)
        self.scenario = SCENARIO.model_copy(update={"services": tuple(
            SCENARIO.service.model_copy(update={"name": k}) for k in services)})
        self.specs = self.scenario.fleet
        self.config = FakeConfig(list(services), settings)  # type: ignore[assignment]
        self.where = dict(services)
        self.up = True
        self.stale: set[str] = set()
        self.users = 30
        self.step = 0
        self.readings: Readings | None = None
        self._fits = {}
        self.migrated: list[MigrationPlan] = []
        self.interrupted: list[bool] = []
        self.finish = threading.Event()
        self.finish.set()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(settings.max_concurrent_migrations)
        self.futures = []
        self.report = lambda key, event, step, detail: None
        self.on_outcome = lambda key, kind, outcome, error, seconds: None
        self.fence_asked = 0

    def refresh(self) -> Readings:
        if not self.up:
            raise PrometheusUnavailable("cannot query Prometheus at http://prom:9090 "
                                        "(ConnectionError)")
        self.step += 1
        hosts = tuple(HostReading(loc.cluster, loc.node, sample(50.0), sample(0.2), ())
                      for loc in self.locations)
        services = tuple(ServiceReading(
            key, self.locations[h], sample(8.0), sample(0.3), sample(120.0), sample(20.0),
            sample(self.users),
            (f"service latency for service {key} is 95 s old (limit 30 s)",)
            if key in self.stale else ()) for key, h in self.where.items())
        self.readings = Readings(hosts, services)
        return self.readings

    def can_host(self, key: str, host: int, claimed: object = None) -> bool:
        return True

    def _deployment(self, key: str) -> str:  # no Deployments to read: moves claim no room
        return "no Deployments in the fake"

    def plan(self, move: Move) -> KubePlan:
        key = self.services[move.service]
        src, dst = self.locations[self.where[key]], self.locations[move.host]
        kind = "intra" if src.cluster == dst.cluster else "inter"
        return KubePlan(move, MigrationPlan(key, kind, src.cluster, (src.node,),
                                            Target(dst.cluster, dst.node),
                                            ("check", "patch", "rollout")))

    def migrate(self, plan: MigrationPlan, report=None, interrupted=None) -> None:
        self.migrated.append(plan)
        self.finish.wait(10)
        self.interrupted.append(bool(interrupted and interrupted()))
        self.where[plan.service] = next(i for i, loc in enumerate(self.locations)
                                        if loc.node == plan.target_node)

    def unfinished(self) -> list:
        return []

    def fence_in_worker(self) -> None:  # the real one reads the journal's fences
        self.fence_asked += 1

    def close(self) -> None:
        pass


class MoveTo:
    """A strategy that always wants host `host` (0-based) for every service."""

    name = "move-to"

    def __init__(self, host: int) -> None:
        self.host = host

    def reset(self, continuum: object) -> None:
        pass

    def decide(self, snapshot: Snapshot, masks: np.ndarray) -> list[int]:
        return [self.host + 1] * len(snapshot.services)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_loop(c: FakeContinuum, strategy=None, dry_run: bool = False,
              **gates: float) -> tuple[Controller, io.StringIO, Clock]:
    # No gain gate unless a test sets one.
    settings = ControllerConfig(**{"cooldown_s": 60.0, "min_predicted_gain": None, **gates})
    c.config = FakeConfig(list(c.services), settings)  # type: ignore[assignment]
    c.pool = ThreadPoolExecutor(settings.max_concurrent_migrations)
    clock = Clock()
    out = io.StringIO()
    loop = Loop(c, strategy or MoveTo(3), Predictor(c.scenario), Gates(settings, clock),
                dry_run=dry_run)
    return Controller(c, loop, "move-to", EventLog(out), Metrics()), out, clock


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in out.getvalue().splitlines()]


def settle(controller: Controller) -> None:
    for f in controller.continuum.futures:
        f.result(timeout=10)


def test_a_wanted_move_starts_a_migration_and_logs_one_line_per_decision() -> None:
    c = FakeContinuum({"ml/a": 0})
    loop, out, _ = make_loop(c)
    [d] = loop.tick()
    settle(loop)
    assert (d.action, d.target, d.kind, d.outcome) == ("move", "cloud/cloud", "inter",
                                                        "migration started")
    assert d.predicted is not None and set(d.predicted) == {"power_w", "latency_ms", "reward"}
    assert d.predicted_gain == pytest.approx(d.predicted["reward"]["change"])
    assert [str(p.target) for p in c.migrated] == ["cloud/cloud"]
    [decision] = [x for x in lines(out) if x["event"] == "decision"]
    assert decision["service"] == "ml/a" and decision["state"]["location"] == "edge/edge0"
    assert decision["state"]["users"] == 30 and decision["action"] == "move"
    [migration] = [x for x in lines(out) if x["event"] == "migration"]
    assert (migration["outcome"], migration["kind"]) == ("done", "inter")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for m in loop.metrics.registry.collect() for s in m.samples}
    assert samples["greenwise_ticks_total", ()] == 1
    assert samples["greenwise_decisions_total", (("action", "move"),
                                                  ("strategy", "move-to"))] == 1
    assert samples["greenwise_migrations_total", (("kind", "inter"), ("outcome", "done"))] == 1
    assert samples["greenwise_tick_seconds_count", ()] == 1


def test_stale_observation_means_no_action_and_says_why() -> None:
    c = FakeContinuum({"ml/a": 0})
    c.stale.add("ml/a")
    loop, out, _ = make_loop(c)
    [d] = loop.tick()
    assert d.action == "none" and "95 s old" in d.reason and d.predicted is None
    assert c.migrated == []
    assert "95 s old" in lines(out)[0]["reason"]


def test_prometheus_down_warns_every_tick_then_recovers() -> None:
    c = FakeContinuum({"ml/a": 0, "ml/b": 1})
    loop, out, _ = make_loop(c)
    c.up = False
    for _ in range(3):
        assert {d.action for d in loop.tick()} == {"none"}
    assert c.migrated == []
    warnings = [x for x in lines(out) if x["level"] == "warning"]
    assert len(warnings) == 3 and all("cannot query Prometheus" in w["message"]
                                      for w in warnings)
    assert "3 tick(s) without observations" in warnings[-1]["message"]
    c.up = True
    c.finish.clear()  # the first migration stays in flight while the second service decides
    decisions = loop.tick()
    c.finish.set()
    settle(loop)
    assert any(x["message"].startswith("Prometheus answers again") for x in lines(out)
               if x["event"] == "observe" and x["level"] == "info")
    assert [d.action for d in decisions] == ["move", "held"]  # one at a time (see below)


def test_cooldown_holds_a_service_that_just_moved() -> None:
    c = FakeContinuum({"ml/a": 0})
    loop, _, clock = make_loop(c, cooldown_s=60)
    assert loop.tick()[0].outcome == "migration started"
    settle(loop)
    loop.loop.strategy = MoveTo(1)
    clock.now += 59
    d = loop.tick()[0]
    assert d.action == "held" and d.reason.startswith("cooldown: it last moved 59 s ago")
    clock.now += 2
    assert loop.tick()[0].outcome == "migration started"
    settle(loop)
    assert [str(p.target) for p in c.migrated] == ["cloud/cloud", "edge/edge1"]


def test_a_moved_service_is_not_decided_on_until_observed_at_its_new_place() -> None:
    c = FakeContinuum({"ml/a": 0})
    loop, out, _ = make_loop(c, cooldown_s=0)
    assert loop.tick()[0].outcome == "migration started"
    settle(loop)
    c.where["ml/a"] = 0  # Prometheus still answers with the old pod's samples
    d = loop.tick()[0]
    assert d.action == "none" and d.predicted is None
    assert d.reason.startswith("observed at edge/edge0, but it moved to cloud/cloud")
    assert "waiting until the old pod" in lines(out)[-1]["reason"]
    c.where["ml/a"] = 3
    assert loop.tick()[0].action == "stay"  # MoveTo(3): it is there now
    assert [str(p.target) for p in c.migrated] == ["cloud/cloud"]


def test_at_most_k_migrations_at_once_and_a_moving_service_is_left_alone() -> None:
    c = FakeContinuum({"ml/a": 0, "ml/b": 1, "ml/c": 2})
    c.finish.clear()  # migrations stay in flight
    loop, _, _ = make_loop(c, max_concurrent_migrations=2)
    first = loop.tick()
    assert [d.action for d in first] == ["move", "move", "held"]
    assert "2 migration(s) in progress (at most 2)" in first[2].reason
    second = loop.tick()
    assert [d.reason for d in second[:2]] == ["a migration of it is in progress"] * 2
    assert second[2].action == "held"
    c.finish.set()
    settle(loop)
    assert len(c.migrated) == 2


def test_a_move_below_the_minimum_predicted_gain_is_held() -> None:
    c = FakeContinuum({"ml/a": 0})
    loop, _, _ = make_loop(c, min_predicted_gain=0.5)
    d = loop.tick()[0]
    assert d.action == "held" and "below the minimum 0.5" in d.reason
    assert d.predicted_gain is not None and d.predicted_gain < 0.5
    assert c.migrated == []


def test_serving_exempts_what_it_keeps_from_full_garbage_collections_after_its_first_tick(
        ) -> None:
    c = FakeContinuum({"ml/a": 0})
    loop, _, _ = make_loop(c)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    assert gc.get_freeze_count() == 0
    try:
        serve(loop, 0.0, 2, None)
        assert loop.ticks == 2 and gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        for s, h in handlers.items():
            signal.signal(s, h)


def test_staying_is_not_a_migration() -> None:
    c = FakeContinuum({"ml/a": 3})
    loop, _, _ = make_loop(c)  # MoveTo(3): where it already is
    assert (loop.tick()[0].action, c.migrated) == ("stay", [])


def test_dry_run_decides_and_plans_but_migrates_nothing() -> None:
    c = FakeContinuum({"ml/a": 0})
    loop, _, _ = make_loop(c, dry_run=True)
    d = loop.tick()[0]
    assert (d.action, d.outcome, d.steps) == ("move", "dry run: not applied",
                                              ["check", "patch", "rollout"])
    assert c.migrated == [] and loop.loop.gates.in_flight == set()
    assert c.fence_asked == 0  # nor fences a failover's stale copy


def test_every_tick_fences_failovers_stale_copies_whose_cluster_answers_again() -> None:
    c = FakeContinuum({"ml/a": 3})
    loop, _, _ = make_loop(c)
    loop.tick()
    loop.tick()
    assert c.fence_asked == 2


def test_draining_tells_the_migration_in_flight_to_stop() -> None:
    c = FakeContinuum({"ml/a": 0})
    c.finish.clear()
    loop, _, _ = make_loop(c)
    loop.tick()
    threading.Timer(0.2, c.finish.set).start()
    loop.drain()  # what SIGTERM does: the migrator rolls back unless traffic already moved
    assert c.interrupted == [True]


def test_gates_on_their_own() -> None:
    clock = Clock()
    g = Gates(ControllerConfig(cooldown_s=10, max_concurrent_migrations=1,
                               min_predicted_gain=0.1), clock)
    def gain(value: float) -> Callable[[], float]:
        return lambda: value

    def unasked() -> float:  # a move the gates before the gain gate hold is not predicted
        raise AssertionError("its gain was asked")

    assert g.hold("a", gain(0.2)) is None
    assert "below the minimum" in g.hold("a", gain(0.05))
    g.started("a")
    assert g.hold("a", unasked) == "a migration of it is in progress"
    assert "1 migration(s) in progress" in g.hold("b", unasked)
    g.finished("a")
    assert g.hold("b", gain(0.2)) is None and g.hold("a", unasked).startswith("cooldown")
    clock.now += 10
    assert g.hold("a", gain(0.2)) is None
    # a move's target, until observed there or for SETTLE_S at most
    g.finished("a", Location("cloud", "cloud"))
    assert g.unsettled("a", Location("edge", "edge0")) is not None
    assert g.unsettled("b", Location("edge", "edge0")) is None
    clock.now += Gates.SETTLE_S + 1
    assert g.unsettled("a", Location("edge", "edge0")) is None
    g.finished("a", Location("cloud", "cloud"))
    assert g.unsettled("a", Location("cloud", "cloud")) is None
    assert g.unsettled("a", Location("edge", "edge0")) is None  # settled once: done


def _transitions(n: int) -> list[Transition]:
    c = FakeContinuum({"ml/a": 0})
    out = []
    for i in range(n):
        c.users = 5 + 3 * i
        obs = c.snapshot().view(0)
        mask = np.array([True, False, True, True, True])
        out.append(Transition(obs, Encoder(SCENARIO)(obs), mask, int(i % 2) * 4,
                              0.3 + 0.01 * i))
    return out


def test_replay_env_follows_the_gymnasium_api() -> None:
    env = ReplayEnv(_transitions(10), Predictor(SCENARIO))
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    tr = env.transitions[env.i]
    _, r, _, _, info = env.step(tr.action)
    assert r == tr.reward and info["observed"]
    _, r, _, _, _ = env.step(1)  # masked in every recorded state
    assert r == -1.0


def test_online_learner_trains_on_live_transitions_and_checkpoints(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    encoder, predictor = Encoder(SCENARIO), Predictor(SCENARIO)
    env = ReplayEnv(_transitions(4), predictor)
    model = MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=8, n_epochs=1, device="cpu",
                        seed=0)
    rounds: list[dict] = []
    learner = OnlineLearner(model, [encoder], predictor, tmp_path / "m.zip", every=5,
                            on_round=rounds.append)
    for i, tr in enumerate(_transitions(11)):
        learner.observed("ml/a", tr.obs)  # completes the previous tick's transition
        learner.acted("ml/a", tr.obs, tr.mask, 4 * (i % 2))
    assert [r["round"] for r in rounds] == [1, 2] and rounds[-1]["transitions"] == 10
    assert model.num_timesteps >= 32
    assert MaskablePPO.load(tmp_path / "m.zip").observation_space.shape == (encoder.size,)


CONFIG = """
clusters:
  - name: edge
    tier: edge
    ingress: 127.0.0.1:1
    hosts: [{name: edge0, cores: 4, idle_watts: 19, max_watts: 58.5, network_latency_ms: 14}]
dns: {provider: rfc2136, server: 127.0.0.1, zone: continuum.test., tsig_key_file: tsig.key}
prometheus: {url: "http://127.0.0.1:1", timeout_s: 1}
services: [{namespace: ml, name: resnet, hostname: resnet.continuum.test}]
"""


@pytest.mark.parametrize("args, message", [
    (["run", "--dry-run"], "--dry-run is for real clusters"),
    (["run", "--config", "{cfg}", "--online-training", "--strategy", "rules"],
     "--online-training trains MaskablePPO"),
    (["run", "--config", "{cfg}", "--interval", "10x"], "--interval must be a duration"),
    (["run", "--config", "{cfg}", "--strategy", "oracle"], "needs the simulated continuum"),
])
def test_policy_mode_bad_input_is_one_line_and_exit_2(args: list[str], message: str,
                                                       tmp_path: Path) -> None:
    r = _cli_with_config(args, tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_prometheus_down_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """An outage, not bad input: exit 1 (the error tree)."""
    r = _cli_with_config(["plan", "--config", "{cfg}", "--strategy", "rules"], tmp_path)
    assert r.returncode == 1 and "cannot query Prometheus at http://127.0.0.1:1" in r.stderr, \
        r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _cli_with_config(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "continuum.yaml"
    cfg.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "GREENWISE_CONFIG"}
    return subprocess.run([sys.executable, "-m", "orchestrator",
                           *[a.replace("{cfg}", str(cfg)) for a in args]],
                          capture_output=True, text=True, timeout=120, env=env)


def test_one_services_failure_does_not_stop_the_others() -> None:
    c = FakeContinuum({"ml/a": 0, "ml/b": 1})
    loop, out, _ = make_loop(c, max_concurrent_migrations=2)
    plan = c.plan

    def broken(move: Move) -> KubePlan:
        if c.services[move.service] == "ml/a":
            raise KeyError("spec")  # an unexpected answer while planning ml/a
        return plan(move)

    c.plan = broken  # type: ignore[method-assign]
    a, b = loop.tick()
    settle(loop)
    assert a.action == "none" and a.reason == "internal error: KeyError: 'spec'"
    assert b.outcome == "migration started" and [p.service for p in c.migrated] == ["ml/b"]
    assert [x["reason"] for x in lines(out) if x["service"] == "ml/a"] == [a.reason]


def test_unfinished_migrations_are_resumed_in_a_worker_under_the_gates() -> None:
    c = FakeContinuum({"ml/a": 0})
    plan = c.plan(Move(0, 3)).migration
    c.unfinished = lambda: [MigrationRecord("m1", "ml/a", "inter", "edge", "cloud", "running",  # type: ignore[method-assign]
                                            plan, None, 0.0, None)]
    resumed: list[str] = []

    def resume(mid: str, report=None) -> None:
        c.finish.wait(10)
        resumed.append(mid)
        raise MigrationFailed("rolled back on resume", rolled_back=True)

    c.resume = resume  # type: ignore[method-assign]
    c.finish.clear()
    loop, out, _ = make_loop(c)
    loop.resume_unfinished()
    assert loop.loop.gates.in_flight == {"ml/a"}  # no decision on it while it resumes
    assert loop.tick()[0].reason == "a migration of it is in progress"
    c.finish.set()
    settle(loop)
    assert resumed == ["m1"] and loop.loop.gates.in_flight == set()
    [migration] = [x for x in lines(out) if x["event"] == "migration"]
    assert (migration["service"], migration["kind"], migration["outcome"]) == (
        "ml/a", "inter", "rolled_back")
    assert loop.outcomes == {"rolled_back": 1}
