"""A migration plan: what moving one service will do, as one typed value.

The journal stores `to_dict()` and reads it back with `from_dict()`; the pair round-trips
exactly, so a resumed migration runs on the plan it started with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.errors import BadInput

# The steps of each kind of move, in order (their classes: steps.py). The commit point of an
# inter-cluster migration is `dns`: traffic moves there.
INTER_STEPS = ("copy", "wait_ready", "route", "dns", "forward", "drain", "delete_old")
INTRA_STEPS = ("check", "patch", "rollout")
# Failover: the source cluster does not answer; the copy is made from the manifests kept at the
# service's last migration, and the stale copy is fenced once its cluster answers again.
FAILOVER_STEPS = ("copy", "wait_ready", "route", "dns")
STEPS_OF = {"intra": INTRA_STEPS, "inter": INTER_STEPS, "failover": FAILOVER_STEPS}

# Within one cluster, to another cluster, or out of a cluster that does not answer.
Kind = Literal["intra", "inter", "failover"]


@dataclass(frozen=True)
class Target:
    """Where a service moves: a cluster, and a node in it (None: wherever it schedules)."""

    cluster: str
    node: str | None = None

    @staticmethod
    def parse(to: str) -> Target:
        """The user's `--to CLUSTER[/NODE]`."""
        cluster, slash, node = to.partition("/")
        if not cluster or (slash and not node) or "/" in node:
            raise BadInput(f"--to expects CLUSTER or CLUSTER/NODE, got {to!r}")
        return Target(cluster, node or None)

    def __str__(self) -> str:
        return self.cluster + (f"/{self.node}" if self.node else "")


@dataclass(frozen=True)
class MigrationPlan:
    service: str  # NAMESPACE/NAME
    kind: Kind
    source_cluster: str
    source_nodes: tuple[str, ...]
    target: Target
    steps: tuple[str, ...]  # step names, in order (see steps.py)
    creates: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()

    @property
    def target_cluster(self) -> str:
        return self.target.cluster

    @property
    def target_node(self) -> str | None:
        return self.target.node

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: what the journal stores (steps.plan_dict adds the steps' descriptions,
        for `migrate --dry-run`)."""
        return {"service": self.service, "kind": self.kind,
                "source_cluster": self.source_cluster, "source_nodes": list(self.source_nodes),
                "target_cluster": self.target.cluster, "target_node": self.target.node,
                "target": str(self.target),
                "steps": [{"name": s} for s in self.steps],
                "creates": list(self.creates), "changes": list(self.changes),
                "deletes": list(self.deletes)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> MigrationPlan:
        """The inverse of `to_dict` (derived entries, `target` and descriptions, are ignored)."""
        if d["kind"] not in STEPS_OF:
            raise ValueError(f"unknown migration kind {d['kind']!r}")
        steps = tuple(s["name"] for s in d["steps"])
        unknown = [s for s in steps if s not in (*INTER_STEPS, *INTRA_STEPS)]
        if unknown:
            raise ValueError(f"unknown migration steps {unknown}")
        return MigrationPlan(d["service"], d["kind"], d["source_cluster"],
                             tuple(d["source_nodes"]),
                             Target(d["target_cluster"], d["target_node"]), steps,
                             tuple(d["creates"]), tuple(d["changes"]), tuple(d["deletes"]))
