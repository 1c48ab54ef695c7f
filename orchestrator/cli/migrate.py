"""`greenwise-mc migrate`: move one service now, journaled; `--resume` finishes a crash."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from orchestrator.cli.common import (
    ConfigOpt,
    OutputOpt,
    check_users,
    doing,
    positive,
    say,
)
from orchestrator.errors import BadInput, Interrupted, OperationalError
from orchestrator.output import Format, emit, err_console, table

MARKS = {"start": ("…", ""), "done": ("✓", "green"), "undo": ("↶", "yellow"),
         "fail": ("✗", "red"), "resume": ("↻", ""), "retry": ("…", "yellow"),
         "note": ("!", "yellow")}


def migrate(
    service: Annotated[str | None, typer.Argument(
        help="NAMESPACE/SERVICE as listed under services: in the config.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="CLUSTER/NODE (a node in the same cluster: intra-cluster move) or "
                     "CLUSTER[/NODE] (another cluster: inter-cluster migration).")] = None,
    config: ConfigOpt = Path("continuum.yaml"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan and the predicted change; change nothing.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Complete or roll back migrations a crash left unfinished; fence the "
                        "stale copies failovers left where a cluster answers again.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for the copy / rollout to become Ready.")] = 120.0,
    users: Annotated[int | None, typer.Option(
        "--users", help="With --dry-run: load at which to predict power and latency "
                        "(default 30).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Move one service: within a cluster (rolling update onto a node) or to another cluster
    (make-before-break: copy, wait Ready, route, DNS, forward, drain, delete the old copy).
    Every step is journaled; a failure rolls back, a crash is finished by --resume.

    Example: greenwise-mc migrate ml/resnet --to cloud --config continuum.yaml"""
    from orchestrator.migration.executor import MigrationFailed
    from orchestrator.migration.steps import plan_dict

    positive("--timeout", timeout)
    if resume and (service or to or dry_run):
        raise BadInput("--resume finishes the migrations a crash left unfinished: give it "
                       "without a service, --to or --dry-run")
    if not resume and (not service or not to):
        raise BadInput("give NAMESPACE/SERVICE and --to CLUSTER[/NODE] (or --resume)")
    if users is not None and not dry_run:
        raise BadInput("--users sets the load of --dry-run's prediction: add --dry-run or drop "
                       "--users")
    users = 30 if users is None else users
    check_users("--users", users)
    stop = threading.Event()
    m = _migrator(config, timeout, read_only=dry_run, interrupted=stop.is_set)
    if resume:
        with _finish_on_signal(stop):
            _resume(m, output)
        if stop.is_set():
            raise Interrupted("interrupted: each migration resumed was finished or rolled back "
                              "first (shown above)")
        return
    assert service is not None and to is not None
    if dry_run:
        plan = m.plan(service, to)
        data = {"dry_run": True, "plan": plan_dict(plan),
                "predicted": _predict_move(m.config, plan, users)}
        emit(data, output, _plan_tables(data))
        return
    doing(f"migrating {service} to {to} (journaled: `greenwise-mc migrate --resume` finishes "
          "or rolls it back)")
    try:
        # Planned under the lock: a migration of it under way elsewhere is said so, not
        # mistaken for one left unfinished.
        with m.journal.lock(m.config.service(service).key), _finish_on_signal(stop):
            plan = m.plan(service, to)
            rec = m.execute(plan)
    except MigrationFailed as e:
        if stop.is_set() and e.rolled_back:
            raise Interrupted(f"interrupted before traffic moved: rolled back, {service} stays "
                              f"on {plan.source_cluster}") from e
        raise OperationalError(f"migration failed: {e}") from e
    data = _record_dict(rec)
    emit(data, output, [_records_table(f"{rec.service} -> {rec.target}: {rec.state}", [data])])
    if stop.is_set():
        raise Interrupted(f"interrupted after traffic moved: the migration was finished, "
                          f"{service} runs on {rec.target}")


@contextmanager
def _finish_on_signal(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM as in policy mode: the migration under way is finished if its
    traffic has moved, else rolled back, before the command exits (130). A second signal stops
    at once; the journal keeps the migration for `--resume`."""
    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say(f"{signal.Signals(signum).name}: finishing the migration if its traffic has moved, "
            "else rolling it back (again to stop at once: `greenwise-mc migrate --resume` "
            "then finishes it)")

    before = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _resume(m: Any, output: Format) -> None:
    from orchestrator.migration.executor import MigrationFailed
    from orchestrator.migration.journal import MigrationBusy

    doing("resuming unfinished migrations and fencing failovers' stale copies")
    records = []
    for rec in m.journal.unfinished():
        try:
            records.append(_record_dict(m.resume_one(rec.id)))
        except (MigrationFailed, MigrationBusy) as e:
            records.append({**_record_dict(m.journal.get(rec.id)), "error": str(e)})
    fenced = m.fence_returned()  # failovers' stale copies, where their cluster answers again
    emit({"resumed": records, "fenced": fenced}, output, [
        _records_table("resumed migrations", records),
        table("stale copies of failovers", ["service", "cluster", "state"],
              [[f["service"], f["cluster"], f["state"]] for f in fenced])])
    left = [r["id"] for r in records if r["state"] in ("running", "rolling_back")]
    if left:
        raise OperationalError(f"{len(left)} migration(s) still unfinished ({', '.join(left)}); "
                               "fix the cause shown above and run --resume again")


def _migrator(config: Path, timeout: float, read_only: bool,
              interrupted: Callable[[], bool]) -> Any:
    """The migrator; a dry run reads the journal without creating it."""
    from orchestrator.config import load_continuum
    from orchestrator.migration.executor import Migrator
    from orchestrator.migration.journal import Journal

    def report(event: str, step: str, detail: str) -> None:
        mark, style = MARKS[event]
        err_console.print(Text.assemble((mark, style), f" {step:10s} {detail}"),
                          highlight=False)

    cfg = load_continuum(config)
    return Migrator(cfg, journal=Journal.read_only(cfg.state_dir) if read_only else None,
                    report=report, timeout=timeout, interrupted=interrupted)


def _record_dict(rec: Any) -> dict[str, Any]:
    return {"id": rec.id, "service": rec.service, "kind": rec.kind, "source": rec.source,
            "target": rec.target, "state": rec.state, "error": rec.error,
            "seconds": None if rec.finished is None else round(rec.finished - rec.started, 3),
            "steps": [{"name": st.name, "state": st.state,
                       "seconds": None if st.ended is None else round(st.ended - st.began, 3)}
                      for st in rec.steps]}


def _records_table(title: str, records: list[dict[str, Any]]) -> Any:
    rows = [[r["id"], r["service"], f"{r['source']} -> {r['target']}", r["state"],
             " ".join(f"{st['name']}:{st['seconds']}s" for st in r["steps"]), r["error"] or ""]
            for r in records]
    return table(title, ["id", "service", "move", "state", "steps", "error"], rows)


def _predict_move(config: Any, plan: Any, users: int) -> dict[str, Any]:
    """What the performance model predicts of the move at `users` (strategies.prediction, as
    policy mode predicts): staying vs where it settles, and the move's own cost."""
    from orchestrator.model import STAY, Location, Observation, ServiceState
    from orchestrator.topology import Topology
    from strategies.prediction import Predictor, compare

    topology = Topology(config.clusters)
    target = plan.target_node or config.cluster(plan.target_cluster).hosts[0].name
    try:
        src = topology.index(Location(plan.source_cluster, plan.source_nodes[0]))
        dst = topology.index(Location(plan.target_cluster, target))
    except (BadInput, IndexError):
        return {"users": users, "note": "source or target node not among the configured hosts"}
    predictor = Predictor(config.scenario())
    service = predictor.index(plan.service)
    obs = Observation(0, ServiceState(plan.service, src, 0.0, 0.0, 0.0, users, 0.0), ())
    chosen = predictor.predict(obs, dst + 1, service)
    return {"users": users, "host": {"from": str(topology.locations[src]),
                                     "to": str(topology.locations[dst])},
            **compare(predictor.predict(obs, STAY, service), chosen)}


def _plan_tables(data: dict[str, Any]) -> list[Any]:
    plan = data["plan"]
    tables = [table(f"plan (dry run, nothing changed): {plan['service']} "
                    f"{plan['source_cluster']}/{','.join(plan['source_nodes'])} -> "
                    f"{plan['target']} ({plan['kind']}-cluster)", ["#", "step"],
                    [[i + 1, st["description"]] for i, st in enumerate(plan["steps"])])]
    objs = [["create", o] for o in plan["creates"]] + [["change", o] for o in plan["changes"]] + [
        ["delete", o] for o in plan["deletes"]]
    tables.append(table("objects", ["action", "object"], objs))
    pred = data["predicted"]
    if "power_w" in pred:
        from orchestrator.views import predicted_table

        tables.append(predicted_table(
            f"predicted at {pred['users']} users ({pred['host']['from']} -> "
            f"{pred['host']['to']})", {k: pred[k] for k in ("power_w", "latency_ms", "reward")}))
    return tables
