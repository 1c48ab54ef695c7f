"""`greenwise-mc status`: where each managed service runs (reads only, creates nothing)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.cli.clusters import raise_first
from orchestrator.cli.common import ConfigOpt, OutputOpt
from orchestrator.errors import GreenwiseError, Outage
from orchestrator.output import Format, emit, table


def status(config: ConfigOpt = Path("continuum.yaml"), output: OutputOpt = Format.table) -> None:
    """Each managed service: where it runs (cluster/node), readiness, unfinished migrations.
    With a cluster down, a service is still located where DNS sends its users; exits 1 after
    printing what it could.

    Example: greenwise-mc status --config continuum.yaml -o json"""
    from orchestrator.config import load_continuum
    from orchestrator.kube.clusters import Clusters
    from orchestrator.migration.dns import provider_from_config
    from orchestrator.migration.executor import locate
    from orchestrator.migration.journal import Journal

    cfg = load_continuum(config)
    cl = Clusters(cfg, timeout=5.0, retry_seconds=3.0)
    dns = cache(lambda: provider_from_config(cfg.dns.model_dump()))
    pending = {r.service: r.id for r in Journal.read_only(cfg.state_dir).unfinished()}
    down: GreenwiseError | None = None  # a cluster that is not a reachable Kubernetes API
    for c in cfg.clusters:
        try:
            cl[c.name].version()
        except GreenwiseError as e:
            down = down or e
    out = []
    errors: list[GreenwiseError] = []
    for svc in cfg.services:
        entry: dict[str, Any] = {"service": svc.key, "hostname": svc.hostname,
                                 "unfinished_migration": pending.get(svc.key)}
        try:
            if down is not None and not isinstance(down, Outage):
                raise down  # a kubeconfig to fix: no service is located without it
            p = locate(cl, svc, dns)
            entry.update(cluster=p.cluster, nodes=p.nodes, ready=p.ready, replicas=p.replicas)
        except GreenwiseError as e:
            entry.update(cluster=None, nodes=[], ready=0, replicas=0, error=str(e))
            errors.append(e)
        out.append(entry)
    rows = [[e["service"], e["cluster"] or "-", ",".join(e["nodes"]) or "-",
             f"{e['ready']}/{e['replicas']}", e["unfinished_migration"] or "",
             e.get("error", "")] for e in out]
    emit({"services": out}, output, [table(
        "services", ["service", "cluster", "nodes", "ready", "unfinished", "error"], rows)])
    raise_first(errors, "service", len(cfg.services))
    if down is not None:  # no service to show it on
        raise down
