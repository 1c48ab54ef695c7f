"""Can a node take a service's pods? Pure checks on API objects (plain dicts), no I/O: the
policy's action masks call them on the watch-fed caches, a migration's plan on objects it read.

A node fits when it is Ready, schedulable, every NoSchedule / NoExecute taint is tolerated, it
has the labels the pod template selects, and its allocatable CPU and memory minus the requests
of the pods already bound to it cover every replica of the service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from orchestrator.kube.clusters import node_ready

Obj = dict[str, Any]
RESOURCES = ("cpu", "memory")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
           "Gi": 2**30, "Ti": 2**40}


@lru_cache(maxsize=4096)  # a handful of distinct values, parsed for every pod every tick
def quantity(q: str | int | float | None) -> float:
    """A Kubernetes resource quantity ("500m", "2", "1Gi") as a number."""
    if q is None:
        return 0.0
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"unrecognized quantity {q!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def pod_requests(pod_spec: Obj) -> dict[str, float]:
    total = dict.fromkeys(RESOURCES, 0.0)
    for c in pod_spec.get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        for r in total:
            total[r] += quantity(req.get(r))
    return total


def requested(pod_specs: Iterable[Obj]) -> dict[str, float]:
    """What pods like these request together (e.g. those bound to a node)."""
    total = dict.fromkeys(RESOURCES, 0.0)
    for spec in pod_specs:
        for r, v in pod_requests(spec).items():
            total[r] += v
    return total


def tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def unfit(where: str, node: Obj, used: dict[str, float], pod_spec: Obj,
          replicas: int = 1) -> str | None:
    """Why `node` (named `where` in messages) cannot take `replicas` pods like `pod_spec`,
    given what the pods already bound to it request (`used`, see requested); None: it can."""
    if not node_ready(node):
        return f"node {where} is not Ready"
    if (node.get("spec") or {}).get("unschedulable"):
        return f"node {where} is cordoned (unschedulable)"
    tolerations = pod_spec.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(taint,
                                                                                tolerations):
            return (f"node {where} has taint {taint.get('key')}:{taint.get('effect')} that the "
                    "service does not tolerate")
    labels = node["metadata"].get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if k != "kubernetes.io/hostname" and labels.get(k) != v:
            return f"node {where} lacks label {k}={v} the service selects"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    need = pod_requests(pod_spec)
    for r in RESOURCES:
        free = quantity(allocatable.get(r)) - used.get(r, 0.0)
        if need[r] * replicas > free:
            each = f" ({replicas} x {need[r]:g})" if replicas > 1 else ""
            return (f"node {where} has {free:g} {r} allocatable left, the service requests "
                    f"{need[r] * replicas:g}{each}")
    return None
