"""The migration journal: SQLite in the state directory, every step written before and after it
runs, so a migration interrupted at any point can be completed or rolled back (`--resume`).

A step is journaled as `begun` together with what undoing it needs (the objects it will touch
and how they were before), then `done`; rollback marks steps `undone`. Writes are synchronous
(WAL + synchronous=FULL): when a step is reported done, the record is on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, OperationalError
from orchestrator.migration.plan import MigrationPlan

SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
  id TEXT PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
  target TEXT NOT NULL, state TEXT NOT NULL, plan TEXT NOT NULL, error TEXT,
  started REAL NOT NULL, finished REAL);
CREATE TABLE IF NOT EXISTS steps (
  migration TEXT NOT NULL REFERENCES migrations(id), seq INTEGER NOT NULL, name TEXT NOT NULL,
  state TEXT NOT NULL, undo TEXT NOT NULL, began REAL NOT NULL, ended REAL,
  PRIMARY KEY (migration, name));
CREATE TABLE IF NOT EXISTS locks (
  service TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS manifests (
  service TEXT PRIMARY KEY, cluster TEXT NOT NULL, objects TEXT NOT NULL, saved REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fences (
  service TEXT NOT NULL, cluster TEXT NOT NULL, migration TEXT NOT NULL, target TEXT NOT NULL,
  since REAL NOT NULL, PRIMARY KEY (service, cluster));
"""
# migration states: running -> done | rolling_back -> rolled_back
UNFINISHED = ("running", "rolling_back")


class MigrationBusy(OperationalError):
    """Another process is migrating the service now."""


@dataclass
class StepRecord:
    name: str
    state: str  # begun | done | undone
    undo: dict[str, Any]
    began: float
    ended: float | None


@dataclass
class MigrationRecord:
    id: str
    service: str
    kind: str  # intra | inter
    source: str
    target: str
    state: str
    plan: MigrationPlan
    error: str | None
    started: float
    finished: float | None
    steps: list[StepRecord] = field(default_factory=list)

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    def done(self, name: str) -> bool:
        s = self.step(name)
        return s is not None and s.state == "done"


class Journal:
    def __init__(self, state_dir: Path, db: sqlite3.Connection | None = None) -> None:
        self.path = state_dir / "journal.sqlite"
        self._held: set[str] = set()  # services whose lock this journal holds
        if db is not None:
            self.db = db
            return
        try:
            # Only its owner may read the state: the journal holds what undoing needs, and the
            # models and records say where services run. SQLite gives its -wal and -shm files
            # the database file's mode.
            state_dir.mkdir(parents=True, exist_ok=True)
            state_dir.chmod(0o700)
            if not self.path.exists():
                _create(self.path)
            self.path.chmod(0o600)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)  # journals of earlier versions
        except (OSError, sqlite3.Error) as e:
            raise BadInput(f"state_dir {state_dir}: cannot keep the migration journal there "
                           f"({_reason(e)}); set state_dir in the config to a writable "
                           "directory") from e

    @classmethod
    def read_only(cls, state_dir: Path) -> Journal:
        """The journal for reading (status, dry runs), creating nothing: when there is none,
        an empty one in memory. Without a -wal file no writer is active and everything is in
        the main file, so it is opened immutable (read-only mode would leave -wal and -shm
        files behind)."""
        path = state_dir / "journal.sqlite"
        if not path.is_file():
            db = sqlite3.connect(":memory:", isolation_level=None)
            db.executescript(SCHEMA)
            return cls(state_dir, db)
        mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"
        try:
            db = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True,
                                 isolation_level=None, timeout=30)
            db.execute("SELECT 1 FROM migrations LIMIT 1")
        except sqlite3.Error as e:
            raise BadInput(f"{path} is not a greenwise-mc migration journal ({e})") from e
        return cls(state_dir, db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def lock(self, service: str) -> Iterator[None]:
        """One migration of `service` at a time, across processes sharing this state: a row
        held while it runs. A holder that died (a crash, SIGKILL) holds nothing: its row is
        taken over, and the journal says how far its migration got (`--resume`). Nested
        (planning, then executing, under one lock) it holds the row once."""
        if service in self._held:
            yield
            return
        host, pid = socket.gethostname(), os.getpid()
        self.db.execute("BEGIN IMMEDIATE")  # one process at a time between read and write
        try:
            row = self.db.execute("SELECT host, pid, since FROM locks WHERE service=?",
                                  (service,)).fetchone()
            if row is not None and _alive(row[0], row[1]):
                raise MigrationBusy(
                    f"{service} is being migrated now by process {row[1]} on {row[0]} (since "
                    f"{time.strftime('%H:%M:%S', time.localtime(row[2]))}); wait for it to "
                    "finish, then try again")
            self.db.execute("INSERT OR REPLACE INTO locks VALUES (?,?,?,?)",
                            (service, host, pid, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._held.add(service)
        try:
            yield
        finally:
            self._held.discard(service)
            self.db.execute("DELETE FROM locks WHERE service=? AND host=? AND pid=?",
                            (service, host, pid))

    def start(self, plan: MigrationPlan) -> str:
        mid = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.db.execute("INSERT INTO migrations VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (mid, plan.service, plan.kind, plan.source_cluster, str(plan.target),
                         "running", json.dumps(plan.to_dict()), None, time.time(), None))
        return mid

    def begin(self, mid: str, name: str, undo: dict[str, Any]) -> None:
        seq = self.db.execute("SELECT COUNT(*) FROM steps WHERE migration=?", (mid,)).fetchone()[0]
        self.db.execute(
            "INSERT INTO steps VALUES (?,?,?,?,?,?,?) ON CONFLICT(migration, name) DO UPDATE "
            "SET state='begun', undo=excluded.undo, ended=NULL",
            (mid, seq, name, "begun", json.dumps(undo), time.time(), None))

    def mark(self, mid: str, name: str, state: str) -> None:
        self.db.execute("UPDATE steps SET state=?, ended=? WHERE migration=? AND name=?",
                        (state, time.time(), mid, name))

    def set_state(self, mid: str, state: str, error: str | None = None) -> None:
        finished = None if state in UNFINISHED else time.time()
        self.db.execute("UPDATE migrations SET state=?, error=COALESCE(?, error), finished=? "
                        "WHERE id=?", (state, error, finished, mid))

    def get(self, mid: str) -> MigrationRecord:
        row = self.db.execute("SELECT * FROM migrations WHERE id=?", (mid,)).fetchone()
        if row is None:
            raise KeyError(mid)
        rec = MigrationRecord(row[0], row[1], row[2], row[3], row[4], row[5],
                              MigrationPlan.from_dict(json.loads(row[6])), row[7], row[8], row[9])
        for s in self.db.execute("SELECT name, state, undo, began, ended FROM steps "
                                 "WHERE migration=? ORDER BY seq", (mid,)):
            rec.steps.append(StepRecord(s[0], s[1], json.loads(s[2]), s[3], s[4]))
        return rec

    def keep_manifests(self, service: str, cluster: str, objects: list[dict[str, Any]]) -> None:
        """The service's objects where it runs (Secrets by name only), for a failover."""
        self.db.execute("INSERT OR REPLACE INTO manifests VALUES (?,?,?,?)",
                        (service, cluster, json.dumps(objects), time.time()))

    def manifests(self, service: str) -> tuple[str, list[dict[str, Any]]] | None:
        """(cluster, objects) as kept at the service's last migration, or None."""
        row = self.db.execute("SELECT cluster, objects FROM manifests WHERE service=?",
                              (service,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def fence_later(self, service: str, cluster: str, migration: str, target: str) -> None:
        """The stale copy of a failover, in a cluster that did not answer: fenced when it does."""
        self.db.execute("INSERT OR REPLACE INTO fences VALUES (?,?,?,?,?)",
                        (service, cluster, migration, target, time.time()))

    def fences(self) -> list[tuple[str, str, str, str]]:
        """(service, cluster, migration, target) of the stale copies not fenced yet."""
        return [tuple(r) for r in self.db.execute(
            "SELECT service, cluster, migration, target FROM fences ORDER BY since")]

    def fenced(self, service: str, cluster: str) -> None:
        self.db.execute("DELETE FROM fences WHERE service=? AND cluster=?", (service, cluster))

    def unfinished(self, service: str | None = None) -> list[MigrationRecord]:
        q = "SELECT id FROM migrations WHERE state IN (?, ?)"
        args: tuple[str, ...] = UNFINISHED
        if service:
            q, args = q + " AND service=?", (*UNFINISHED, service)
        return [self.get(r[0]) for r in self.db.execute(q + " ORDER BY started", args)]


def _create(path: Path) -> None:
    """A new journal appears whole: built under a temporary name, then linked into place, so a
    reader (status, a second migrate) never opens a file without its tables, and of two
    processes creating it at once one wins and neither overwrites the other's records."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        db = sqlite3.connect(tmp, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")  # kept in the file's header
        db.executescript(SCHEMA)
        db.close()
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(host: str, pid: int) -> bool:
    """Whether the lock's holder still runs; one on another host is taken to."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _reason(e: Exception) -> str:
    return (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
