"""`greenwise-mc clusters`: each cluster's reachability, version and nodes (reads only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.cli.common import ConfigOpt, OutputOpt
from orchestrator.errors import BadInput, GreenwiseError, OperationalError
from orchestrator.output import Format, emit, table


def clusters(config: ConfigOpt = Path("continuum.yaml"), output: OutputOpt = Format.table) -> None:
    """Each cluster's reachability, server version and nodes (Ready, capacity, tier). Exits 1
    when a cluster cannot be read (2 when its kubeconfig is wrong), after printing the rest.

    Example: greenwise-mc clusters --config continuum.yaml"""
    from orchestrator.config import load_continuum
    from orchestrator.kube.clusters import Clusters, node_ready

    cfg = load_continuum(config)
    registry = Clusters(cfg, timeout=5.0, retry_seconds=3.0)
    out = []
    errors: list[GreenwiseError] = []
    for cc in cfg.clusters:
        entry: dict[str, Any] = {"name": cc.name, "tier": cc.tier, "ingress": cc.ingress}
        try:
            c = registry[cc.name]
            entry["version"] = c.version()
            entry["reachable"] = True
            entry["nodes"] = [{
                "name": n["metadata"]["name"], "ready": node_ready(n),
                "cpu": n.get("status", {}).get("capacity", {}).get("cpu"),
                "memory": n.get("status", {}).get("capacity", {}).get("memory"),
                "tier": (n["metadata"].get("labels") or {}).get("greenwise.io/tier"),
            } for n in c.nodes()]
        except GreenwiseError as e:
            entry.update(reachable=False, error=str(e), nodes=[])
            errors.append(e)
        out.append(entry)
    rows = [[e["name"], e["tier"], "yes" if e["reachable"] else "NO", e.get("version", "-"),
             "\n".join(f"{n['name']} {'Ready' if n['ready'] else 'NotReady'} {n['cpu']} cpu"
                       for n in e["nodes"]) or e.get("error", "")] for e in out]
    emit({"clusters": out}, output,
         [table("clusters", ["cluster", "tier", "reachable", "version", "nodes"], rows)])
    raise_first(errors, "cluster", len(cfg.clusters))


def raise_first(errors: list[GreenwiseError], what: str, total: int) -> None:
    """After a report that went on past failures: its exit status, as kubectl's (bad input 2
    before an outage 1), with the first failure as the one line."""
    if not errors:
        return
    first = next((e for e in errors if isinstance(e, BadInput)), errors[0])
    kind = BadInput if isinstance(first, BadInput) else OperationalError
    raise kind(f"{len(errors)} of {total} {what}s could not be read; first: {first}")
