"""Migrations on real clusters: plan, execute step by step (journaled), roll back, resume.

The executor is a state machine over the plan's steps (steps.py) that knows none of them: it
journals what undoing a step needs before the step acts and marks it done after; a failure rolls
back in reverse order, also the step that was under way. The point of no return is the step that
`commits` (traffic moved): a migration interrupted or resumed after it is finished, one before
it rolled back. A failure in a step that is not `reversible` leaves the migration to `resume`,
which finishes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import cached_property, partial
from typing import NoReturn, TypeVar

from orchestrator.config import ContinuumConfig
from orchestrator.errors import GreenwiseError, OperationalError, Outage
from orchestrator.kube.clusters import Clusters
from orchestrator.migration.context import MigrationContext, Reporter
from orchestrator.migration.dns import DnsProvider, provider_from_config
from orchestrator.migration.journal import Journal, MigrationRecord
from orchestrator.migration.plan import MigrationPlan, Target
from orchestrator.migration.planner import Placement, locate, plan_migration
from orchestrator.migration.steps import STEPS, Step
from orchestrator.migration.transfer import fence, manifests_of

T = TypeVar("T")
RETRY_S = 1.0  # between tries of a step whose cluster or DNS server did not answer

__all__ = ["Executor", "Failpoints", "MigrationFailed", "MigrationPlan", "Migrator", "Placement",
           "Reporter", "locate"]


class MigrationFailed(OperationalError):
    """A migration did not complete; `rolled_back` says whether the source was restored."""

    def __init__(self, message: str, rolled_back: bool) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


class Failpoints:
    """Where tests break a migration on purpose: the executor calls these at its journaled
    points. This one, production's, does nothing; tests subclass it (tests/crash_after.py kills
    the process right after a step is journaled done)."""

    def begun(self, step: str) -> None:
        """The step's undo record is journaled; it acts next."""

    def done(self, step: str) -> None:
        """The step is journaled done."""

    def undoing(self, step: str) -> None:
        """Rollback undoes the step next."""


class Executor:
    """The journaled state machine that runs, finishes or rolls back one migration."""

    def __init__(self, journal: Journal, steps: Mapping[str, Step] = STEPS,
                 failpoints: Failpoints | None = None) -> None:
        self.journal = journal
        self.steps = steps
        self.failpoints = failpoints or Failpoints()

    def run(self, ctx: MigrationContext) -> MigrationRecord:
        """Run the journaled migration `ctx.id` from where its journal says it is."""
        rec = self.journal.get(ctx.id)
        if rec.state == "rolling_back":
            self._rollback(ctx, rec.error or "resumed an interrupted rollback")
        if rec.steps and not self._committed(rec):
            self._rollback(ctx, "resumed a migration interrupted before traffic moved")
        try:
            for name in ctx.plan.steps:
                rec = self.journal.get(ctx.id)
                if rec.done(name):
                    continue
                if ctx.interrupted() and not self._committed(rec):
                    raise OperationalError("interrupted (shutting down) before traffic moved")
                self._step(ctx, rec, self.steps[name])
        except Exception as e:  # any failure: roll back and say why
            reason = str(e) if isinstance(e, GreenwiseError) else f"{type(e).__name__}: {e}"
            rec = self.journal.get(ctx.id)
            final = next((s.name for s in rec.steps if not self.steps[s.name].reversible), None)
            if final is not None:
                self.journal.set_state(ctx.id, "running", reason)
                raise MigrationFailed(
                    f"{self.steps[final].describe(ctx.plan)}: failed ({reason}); past the point "
                    "of no return, so it is not rolled back: run `greenwise-mc migrate "
                    "--resume` to finish it", rolled_back=False) from e
            self._rollback(ctx, reason, cause=e)
        self.journal.set_state(ctx.id, "done")
        return self.journal.get(ctx.id)

    def _committed(self, rec: MigrationRecord) -> bool:
        """Past the point of no return: the step that moves traffic is done."""
        return any(rec.done(name) for name in rec.plan.steps if self.steps[name].commits)

    def _step(self, ctx: MigrationContext, rec: MigrationRecord, step: Step) -> None:
        begun = rec.step(step.name)
        if begun is None:
            undo = _ride_out(ctx, step.name, partial(step.capture_undo, ctx))
            self.journal.begin(ctx.id, step.name, undo)
        else:  # resumed: undo with what was captured before it first acted
            undo = begun.undo
        self.failpoints.begun(step.name)
        start = time.monotonic()
        ctx.report("start", step.name, step.describe(ctx.plan))
        _ride_out(ctx, step.name, partial(step.do, ctx, undo))
        self.journal.mark(ctx.id, step.name, "done")
        ctx.report("done", step.name, f"{time.monotonic() - start:.2f}s")
        self.failpoints.done(step.name)

    def _rollback(self, ctx: MigrationContext, reason: str,
                  cause: Exception | None = None) -> NoReturn:
        self.journal.set_state(ctx.id, "rolling_back", reason)
        ctx.report("fail", "rollback", reason)
        try:
            for record in reversed(self.journal.get(ctx.id).steps):
                if record.state == "undone":
                    continue
                step = self.steps[record.name]
                self.failpoints.undoing(step.name)
                ctx.report("undo", step.name, step.describe(ctx.plan))
                _ride_out(ctx, step.name, partial(step.undo, ctx, record.undo))
                self.journal.mark(ctx.id, step.name, "undone")
        except Exception as e:  # the journal keeps it rolling_back, for --resume; say so
            raise MigrationFailed(
                f"{reason}; rollback incomplete ({type(e).__name__}: {e}); the journal keeps "
                "it: run `greenwise-mc migrate --resume` when the cluster is reachable",
                rolled_back=False) from cause or e
        self.journal.set_state(ctx.id, "rolled_back", reason)
        raise MigrationFailed(f"{reason}; rolled back, the service stays on "
                              f"{ctx.plan.source_cluster}", rolled_back=True) from cause


def _ride_out(ctx: MigrationContext, step: str, act: Callable[[], T]) -> T:
    """Run a step's capture, do or undo again while a cluster or DNS server does not answer,
    until the step's timeout: steps are idempotent, so an outage shorter than that costs only
    time."""
    deadline = time.monotonic() + ctx.timeout
    while True:
        try:
            return act()
        except Outage as e:
            if time.monotonic() >= deadline or ctx.interrupted():
                raise
            ctx.report("retry", step, f"{e}; trying again until {ctx.timeout:g}s after it began")
            time.sleep(RETRY_S)


class Migrator:
    """Plans, executes and resumes the migrations of a continuum.yaml's services."""

    failpoints = Failpoints()  # tests swap in theirs before the CLI builds a Migrator

    def __init__(self, config: ContinuumConfig, clusters: Clusters | None = None,
                 journal: Journal | None = None, report: Reporter | None = None,
                 timeout: float = 120.0, drain_seconds: float = 2.0,
                 interrupted: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.clusters = clusters or Clusters(config)
        self.journal = journal or Journal(config.state_dir)
        self.report = report or (lambda event, step, detail: None)
        self.timeout = timeout
        self.drain_seconds = drain_seconds
        self.interrupted = interrupted or (lambda: False)
        self.executor = Executor(self.journal, failpoints=self.failpoints)

    @cached_property
    def dns(self) -> DnsProvider:
        return provider_from_config(self.config.dns.model_dump())

    def plan(self, service: str, to: str | Target) -> MigrationPlan:
        """The plan that moves `service` to `to` (the user's CLUSTER[/NODE]); reads only."""
        target = Target.parse(to) if isinstance(to, str) else to
        return plan_migration(self.config, self.clusters, service, target, lambda: self.dns,
                              self.journal.manifests)

    def execute(self, plan: MigrationPlan) -> MigrationRecord:
        with self.journal.lock(plan.service):
            pending = self.journal.unfinished(plan.service)
            if pending:
                raise OperationalError(
                    f"migration {pending[0].id} of {plan.service} was left unfinished (its "
                    "process ended); run `greenwise-mc migrate --resume` first")
            if plan.kind != "failover":
                self._keep(plan.service, plan.source_cluster)
            return self._run(self.journal.start(plan), plan)

    def resume_one(self, mid: str) -> MigrationRecord:
        """Finish or roll back one unfinished migration of the journal."""
        rec = self.journal.get(mid)
        with self.journal.lock(rec.service):
            rec = self.journal.get(mid)  # as its last holder left it
            self.report("resume", rec.id, f"{rec.service} {rec.source} -> {rec.target} "
                                          f"({rec.state})")
            return self._run(mid, rec.plan)

    def fence_returned(self) -> list[dict[str, str]]:
        """Fence the stale copies failovers left in clusters that answer again: the Deployment
        scaled to 0 and marked, its Service a forwarder to where the service runs now."""
        out = []
        for service, cluster, mid, target in self.journal.fences():
            svc, c = self.config.service(service), self.clusters[cluster]
            try:
                fence(c, svc, mid)
            except Outage as e:
                out.append({"service": service, "cluster": cluster, "state": f"not yet: {e}"})
                continue
            self.journal.fenced(service, cluster)
            self.report("done", "fence", f"{service} in {cluster}: scaled to 0 (it runs in "
                                         f"{target})")
            out.append({"service": service, "cluster": cluster, "state": "fenced"})
        return out

    def _run(self, mid: str, plan: MigrationPlan) -> MigrationRecord:
        kept = self.journal.manifests(plan.service) if plan.kind == "failover" else None
        ctx = MigrationContext(mid, plan, self.config.service(plan.service), self.config,
                               self.clusters, lambda: self.dns, self.report, self.interrupted,
                               self.timeout, self.drain_seconds,
                               recorded=kept[1] if kept else None)
        rec = self.executor.run(ctx)
        if rec.state == "done":
            if plan.kind == "failover":
                self.journal.fence_later(plan.service, plan.source_cluster, mid,
                                         plan.target.cluster)
            try:
                self._keep(plan.service, plan.target.cluster)
            except OperationalError as e:  # the migration is done all the same
                self.report("note", "keep", f"manifests for a failover not kept ({e}); the "
                                            "next migration keeps them")
        return rec

    def _keep(self, service: str, cluster: str) -> None:
        """The manifests a failover out of `cluster` would recreate the service from."""
        objects = manifests_of(self.clusters[cluster], self.config.service(service))
        if objects:
            self.journal.keep_manifests(service, cluster, objects)
