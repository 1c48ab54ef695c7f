"""The migration executor's state machine, on in-memory steps of its own step interface (the
steps that touch real clusters are tested on the lab: test_migrate.py); and the typed plan."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import BadInput, OperationalError
from orchestrator.kube.clusters import ClusterUnavailable
from orchestrator.migration import executor as executor_module
from orchestrator.migration.executor import Executor, Failpoints, MigrationFailed
from orchestrator.migration.journal import Journal, MigrationBusy
from orchestrator.migration.plan import MigrationPlan, Target
from orchestrator.migration.steps import INTER_STEPS, INTRA_STEPS, STEPS, Step, plan_dict

COMMIT = "dns"  # the fakes take the real steps' names (the journal checks them) and flags
BEFORE_COMMIT = INTER_STEPS[:INTER_STEPS.index(COMMIT)]


class Crash(BaseException):
    """The process dies here: nothing after it runs, the journal stays as it is."""


class World:
    """What the fake steps change: one value per step, and the order things happened in."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"route": "someone else's"}  # restored, not deleted
        self.log: list[tuple[str, str]] = []


class FakeStep(Step):
    def __init__(self, world: World, real: Step, fail_do: bool = False,
                 fail_undo: bool = False, outages: int = 0) -> None:
        self.world, self.name = world, real.name
        self.commits, self.reversible = real.commits, real.reversible
        self.fail_do, self.fail_undo = fail_do, fail_undo
        self.outages = outages  # its cluster does not answer the first tries
        self.captured = 0

    def describe(self, plan: MigrationPlan) -> str:
        return f"fake {self.name}"

    def capture_undo(self, ctx: Any) -> dict[str, Any]:
        self.captured += 1
        return {"prior": self.world.values.get(self.name)}

    def do(self, ctx: Any, undo: dict[str, Any]) -> None:
        self.world.log.append(("do", self.name))
        if self.outages:
            self.outages -= 1
            raise ClusterUnavailable(f"cluster of {self.name} is unreachable")
        self.world.values[self.name] = ctx.id  # acts, then fails: undo must still clean up
        if self.fail_do:
            raise OperationalError(f"{self.name} broke")

    def undo(self, ctx: Any, undo: dict[str, Any]) -> None:
        self.world.log.append(("undo", self.name))
        if self.fail_undo:
            raise RuntimeError(f"undoing {self.name} broke")
        if undo["prior"] is None:
            self.world.values.pop(self.name, None)
        else:
            self.world.values[self.name] = undo["prior"]


@dataclass
class Ctx:
    """The part of MigrationContext the executor itself uses."""

    id: str
    plan: MigrationPlan
    stop_after: str | None = None  # shutting down once this step is done
    timeout: float = 5.0  # a step's: an outage within it is ridden out
    events: list[tuple[str, str]] = field(default_factory=list)

    def report(self, event: str, step: str, detail: str) -> None:
        self.events.append((event, step))

    def interrupted(self) -> bool:
        return self.stop_after is not None and ("done", self.stop_after) in self.events


class At(Failpoints):
    """Crash at one journaled point."""

    def __init__(self, point: str, step: str) -> None:
        self.point, self.step = point, step

    def begun(self, step: str) -> None:
        self.hit("begun", step)

    def done(self, step: str) -> None:
        self.hit("done", step)

    def undoing(self, step: str) -> None:
        self.hit("undoing", step)

    def hit(self, point: str, step: str) -> None:
        if (point, step) == (self.point, self.step):
            raise Crash(f"{point} {step}")


PLAN = MigrationPlan("ns/svc", "inter", "edge", ("edge0",), Target("cloud"), INTER_STEPS,
                     creates=("cloud: Deployment ns/svc",), changes=("DNS svc -> cloud",),
                     deletes=("edge: Deployment ns/svc",))


class Rig:
    """A journal on disk, a world, and an executor over fake steps; `restart` is a new
    process: a new journal connection and executor over the same world."""

    def __init__(self, tmp_path: Path, **faults: dict[str, bool]) -> None:
        self.tmp_path, self.world = tmp_path, World()
        self.initial = dict(self.world.values)
        self.restart(**faults)

    def restart(self, failpoints: Failpoints | None = None,
                **faults: dict[str, bool]) -> None:
        self.journal = Journal(self.tmp_path)
        self.steps = {name: FakeStep(self.world, real, **faults.get(name, {}))
                      for name, real in STEPS.items()}
        self.executor = Executor(self.journal, self.steps, failpoints)

    def start(self, stop_after: str | None = None) -> Ctx:
        return Ctx(self.journal.start(PLAN), PLAN, stop_after)

    def states(self, mid: str) -> dict[str, str]:
        return {s.name: s.state for s in self.journal.get(mid).steps}


def test_all_steps_done_in_order(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rec = rig.executor.run(rig.start())
    assert rec.state == "done" and rec.finished is not None
    assert rig.world.log == [("do", s) for s in INTER_STEPS]
    assert rig.states(rec.id) == dict.fromkeys(INTER_STEPS, "done")
    assert all(rig.steps[s].captured == 1 for s in INTER_STEPS)


@pytest.mark.parametrize("failing", [*INTER_STEPS[:-1]])
def test_failure_at_do_rolls_back_in_reverse_including_the_failed_step(
        tmp_path: Path, failing: str) -> None:
    rig = Rig(tmp_path, **{failing: {"fail_do": True}})
    ctx = rig.start()
    with pytest.raises(MigrationFailed, match=f"{failing} broke; rolled back") as e:
        rig.executor.run(ctx)
    assert e.value.rolled_back and isinstance(e.value, OperationalError)
    ran = INTER_STEPS[:INTER_STEPS.index(failing) + 1]
    assert rig.world.log == [("do", s) for s in ran] + [("undo", s) for s in reversed(ran)]
    assert rig.world.values == rig.initial  # the prior value put back, what was new removed
    rec = rig.journal.get(ctx.id)
    assert rec.state == "rolled_back" and rec.error == f"{failing} broke"
    assert rig.states(ctx.id) == dict.fromkeys(ran, "undone")


def test_failure_in_a_step_that_cannot_be_undone_is_left_to_resume(tmp_path: Path) -> None:
    final = next(s for s in INTER_STEPS if not STEPS[s].reversible)
    rig = Rig(tmp_path, **{final: {"fail_do": True}})
    ctx = rig.start()
    with pytest.raises(MigrationFailed, match="--resume") as e:
        rig.executor.run(ctx)
    assert not e.value.rolled_back
    assert not any(event == "undo" for event, _ in rig.world.log)
    assert rig.journal.get(ctx.id).state == "running"
    rig.restart()
    assert rig.executor.run(ctx).state == "done"
    assert rig.steps[final].captured == 0  # its journaled undo record is reused
    assert rig.states(ctx.id) == dict.fromkeys(INTER_STEPS, "done")


def test_failed_undo_keeps_the_rollback_for_resume(tmp_path: Path) -> None:
    rig = Rig(tmp_path, forward={"fail_do": True}, route={"fail_undo": True})
    ctx = rig.start()
    with pytest.raises(MigrationFailed, match=r"rollback incomplete.*--resume") as e:
        rig.executor.run(ctx)
    assert not e.value.rolled_back
    rec = rig.journal.get(ctx.id)
    assert rec.state == "rolling_back"
    assert rig.states(ctx.id) == {"copy": "done", "wait_ready": "done", "route": "done",
                                  "dns": "undone", "forward": "undone"}
    rig.world.log.clear()
    rig.restart()  # the cluster is back
    with pytest.raises(MigrationFailed, match="forward broke; rolled back") as e:
        rig.executor.run(ctx)
    assert e.value.rolled_back
    assert rig.world.log == [("undo", "route"), ("undo", "wait_ready"), ("undo", "copy")]
    assert rig.world.values == rig.initial
    assert rig.journal.get(ctx.id).state == "rolled_back"


@pytest.mark.parametrize("step", INTER_STEPS)
def test_crash_after_each_step_then_resume(tmp_path: Path, step: str) -> None:
    rig = Rig(tmp_path)
    rig.restart(At("done", step))
    ctx = rig.start()
    with pytest.raises(Crash):
        rig.executor.run(ctx)
    assert rig.journal.get(ctx.id).state == "running"
    rig.restart()
    [rec] = rig.journal.unfinished()
    committed = step not in BEFORE_COMMIT
    if committed:
        assert rig.executor.run(Ctx(rec.id, rec.plan)).state == "done"
        assert rig.world.values == dict.fromkeys(INTER_STEPS, ctx.id)
        assert rig.world.log == [("do", s) for s in INTER_STEPS]  # none twice
    else:
        with pytest.raises(MigrationFailed, match="before traffic moved; rolled back"):
            rig.executor.run(Ctx(rec.id, rec.plan))
        assert rig.world.values == rig.initial
    assert rig.journal.unfinished() == []


@pytest.mark.parametrize("step", INTER_STEPS)
def test_crash_inside_a_step_then_resume(tmp_path: Path, step: str) -> None:
    """Killed after the undo record is journaled, before the step acts (or while it does)."""
    rig = Rig(tmp_path)
    rig.restart(At("begun", step))
    ctx = rig.start()
    with pytest.raises(Crash):
        rig.executor.run(ctx)
    assert rig.states(ctx.id)[step] == "begun"
    rig.restart()
    if step in BEFORE_COMMIT or step == COMMIT:  # traffic may not have moved: undo all begun
        with pytest.raises(MigrationFailed, match="rolled back"):
            rig.executor.run(Ctx(ctx.id, PLAN))
        assert rig.world.log[-1] == ("undo", INTER_STEPS[0])
        assert ("undo", step) in rig.world.log
        assert rig.world.values == rig.initial
    else:  # finished, the interrupted step redone with the undo record captured first
        assert rig.executor.run(Ctx(ctx.id, PLAN)).state == "done"
        assert rig.steps[step].captured == 0
        assert rig.world.values == dict.fromkeys(INTER_STEPS, ctx.id)


def test_crash_during_rollback_then_resume_finishes_the_rollback(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.restart(At("undoing", "wait_ready"), forward={"fail_do": True})
    ctx = rig.start()
    with pytest.raises(Crash):
        rig.executor.run(ctx)
    assert rig.journal.get(ctx.id).state == "rolling_back"
    rig.world.log.clear()
    rig.restart()
    with pytest.raises(MigrationFailed, match="forward broke; rolled back"):
        rig.executor.run(Ctx(ctx.id, PLAN))
    assert rig.world.log == [("undo", "wait_ready"), ("undo", "copy")]
    assert rig.world.values == rig.initial


@pytest.mark.parametrize("step", INTER_STEPS[:-1])
def test_interrupted_before_traffic_moved_rolls_back_after_finishes(tmp_path: Path,
                                                                     step: str) -> None:
    rig = Rig(tmp_path)
    ctx = rig.start(stop_after=step)
    if step in BEFORE_COMMIT:
        with pytest.raises(MigrationFailed, match="interrupted") as e:
            rig.executor.run(ctx)
        assert e.value.rolled_back
        assert ("do", INTER_STEPS[INTER_STEPS.index(step) + 1]) not in rig.world.log
        assert rig.world.values == rig.initial
    else:
        assert rig.executor.run(ctx).state == "done"
        assert rig.world.values == dict.fromkeys(INTER_STEPS, ctx.id)


def test_intra_commits_at_its_own_step(tmp_path: Path) -> None:
    [commit] = [s for s in INTRA_STEPS if STEPS[s].commits]
    assert [s for s in INTER_STEPS if STEPS[s].commits] == [COMMIT]
    rig = Rig(tmp_path)
    plan = MigrationPlan("ns/svc", "intra", "edge", ("edge0",), Target("edge", "edge1"),
                         INTRA_STEPS)
    ctx = Ctx(rig.journal.start(plan), plan, stop_after=commit)
    assert rig.executor.run(ctx).state == "done"


# --- the plan --------------------------------------------------------------------------------

def test_plan_round_trips_through_json_and_the_journal(tmp_path: Path) -> None:
    assert MigrationPlan.from_dict(json.loads(json.dumps(PLAN.to_dict()))) == PLAN
    journal = Journal(tmp_path)
    for plan in (PLAN, MigrationPlan("a/b", "intra", "fog", ("fog0", "fog1"),
                                     Target("fog", "fog2"), INTRA_STEPS)):
        rec = journal.get(journal.start(plan))
        assert rec.plan == plan
        assert (rec.service, rec.kind, rec.source, rec.target) == (
            plan.service, plan.kind, plan.source_cluster, str(plan.target))


def test_plan_reads_what_the_previous_executor_journaled() -> None:
    old = {"service": "ns/svc", "kind": "intra", "source_cluster": "edge",
           "source_nodes": ["edge0"], "target_cluster": "edge", "target_node": "edge1",
           "steps": [{"name": "check", "description": "check the target node"},
                     {"name": "patch", "description": "move the Deployment to the node"},
                     {"name": "rollout", "description": "wait for the rollout"}],
           "creates": [], "changes": ["edge: Deployment ns/svc"], "deletes": [],
           "target": "edge/edge1"}
    plan = MigrationPlan.from_dict(old)
    assert plan.target == Target("edge", "edge1") and plan.steps == INTRA_STEPS
    assert {k: v for k, v in plan.to_dict().items() if k != "steps"} == {
        k: v for k, v in old.items() if k != "steps"}


def test_plan_dict_describes_its_steps_for_the_dry_run() -> None:
    d = plan_dict(PLAN)
    assert d["target"] == "cloud" and d["target_node"] is None
    assert [s["name"] for s in d["steps"]] == list(INTER_STEPS)
    assert "cloud" in d["steps"][INTER_STEPS.index(COMMIT)]["description"]


@pytest.mark.parametrize("to, target", [("cloud", Target("cloud")),
                                        ("edge/edge1", Target("edge", "edge1"))])
def test_target_parses_the_users_to(to: str, target: Target) -> None:
    assert Target.parse(to) == target and str(target) == to


@pytest.mark.parametrize("to", ["", "/edge0", "edge/", "edge/edge0/x"])
def test_target_refuses_what_is_not_cluster_or_cluster_node(to: str) -> None:
    with pytest.raises(BadInput, match="CLUSTER or CLUSTER/NODE"):
        Target.parse(to)


def test_the_state_is_the_owners_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    journal = Journal(state)
    journal.start(PLAN)  # writes: the -wal and -shm files appear
    modes = {p.name: p.stat().st_mode & 0o777 for p in state.iterdir()}
    journal.close()
    assert state.stat().st_mode & 0o777 == 0o700
    assert "journal.sqlite" in modes and set(modes.values()) == {0o600}, modes


def test_a_new_journal_appears_with_its_tables(tmp_path: Path) -> None:
    """A reader (status, the second of two migrates) that finds the file finds its tables, and
    a journal opened while another process holds one overwrites none of its records."""
    first = Journal(tmp_path)
    mid = first.start(PLAN)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("journal.")) == []
    second = Journal(tmp_path)
    assert second.get(mid).state == "running"
    reader = Journal.read_only(tmp_path)
    assert [r.id for r in reader.unfinished()] == [mid]
    for j in (first, second, reader):
        j.close()


def test_one_migration_per_service_across_processes(tmp_path: Path) -> None:
    """The lock row of a live process refuses a second migration with who holds it; a dead
    holder's row is taken over; another service is not held up."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        journal = Journal(tmp_path)
        journal.db.execute("INSERT INTO locks VALUES (?,?,?,?)",
                           (PLAN.service, socket.gethostname(), holder.pid, time.time()))
        busy = f"being migrated now by process {holder.pid}"
        with pytest.raises(MigrationBusy, match=busy), journal.lock(PLAN.service):
            pass
        with journal.lock("other/service"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with journal.lock(PLAN.service), journal.lock(PLAN.service):  # nested: held once
        rows = journal.db.execute("SELECT pid FROM locks").fetchall()
        assert rows == [(os.getpid(),)]
    assert journal.db.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0
    journal.close()


def test_an_outage_shorter_than_the_steps_timeout_is_ridden_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "RETRY_S", 0.01)
    rig = Rig(tmp_path, wait_ready={"outages": 3})
    ctx = rig.start()
    assert rig.executor.run(ctx).state == "done"
    assert ctx.events.count(("retry", "wait_ready")) == 3
    assert rig.world.log.count(("do", "wait_ready")) == 4


def test_an_outage_past_the_steps_timeout_rolls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "RETRY_S", 0.01)
    rig = Rig(tmp_path, wait_ready={"outages": 10**6})
    ctx = rig.start()
    ctx.timeout = 0.2
    with pytest.raises(MigrationFailed, match="unreachable; rolled back") as e:
        rig.executor.run(ctx)
    assert e.value.rolled_back and rig.world.values == rig.initial
