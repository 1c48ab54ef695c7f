"""Can this node take the service? The checks an intra- or inter-cluster move makes first."""

from __future__ import annotations

import re
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.kube.clusters import Cluster, node_ready

_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
           "Gi": 2**30, "Ti": 2**40}


def quantity(q: str | int | float | None) -> float:
    """A Kubernetes resource quantity ("500m", "2", "1Gi") as a number."""
    if q is None:
        return 0.0
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"unrecognized quantity {q!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def pod_requests(pod_spec: dict[str, Any]) -> dict[str, float]:
    total = {"cpu": 0.0, "memory": 0.0}
    for c in pod_spec.get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        for r in total:
            total[r] += quantity(req.get(r))
    return total


def tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def check_node(cluster: Cluster, node_name: str, pod_spec: dict[str, Any],
               moving_from_node: str | None = None) -> dict[str, Any]:
    """Raise a BadInput saying why `node_name` cannot take a pod like `pod_spec`."""
    nodes = {n["metadata"]["name"]: n for n in cluster.nodes()}
    where = f"{cluster.name}/{node_name}"
    node = nodes.get(node_name)
    if node is None:
        raise BadInput(f"node {where} does not exist; nodes in {cluster.name}: "
                       f"{', '.join(sorted(nodes))}")
    if not node_ready(node):
        raise BadInput(f"node {where} is not Ready")
    if node.get("spec", {}).get("unschedulable"):
        raise BadInput(f"node {where} is cordoned (unschedulable)")
    tolerations = pod_spec.get("tolerations") or []
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(taint,
                                                                                tolerations):
            raise BadInput(f"node {where} has taint {taint.get('key')}:"
                           f"{taint.get('effect')} that the service does not tolerate")
    labels = node["metadata"].get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if k != "kubernetes.io/hostname" and labels.get(k) != v:
            raise BadInput(f"node {where} lacks label {k}={v} the service selects")
    allocatable = node.get("status", {}).get("allocatable") or {}
    used = {"cpu": 0.0, "memory": 0.0}
    for ns_pods in _pods_on(cluster, node_name):
        for r, v in pod_requests(ns_pods).items():
            used[r] += v
    need = pod_requests(pod_spec)
    for r in ("cpu", "memory"):
        free = quantity(allocatable.get(r)) - used[r]
        if need[r] > free:
            raise BadInput(f"node {where} has {free:g} {r} allocatable left, the service "
                           f"requests {need[r]:g}")
    return node


def _pods_on(cluster: Cluster, node_name: str) -> list[dict[str, Any]]:
    def do() -> list[dict[str, Any]]:
        r = cluster.api.get(url="pods", params={
            "fieldSelector": f"spec.nodeName={node_name},status.phase!=Succeeded,"
                             "status.phase!=Failed"})
        cluster.api.raise_for_status(r)
        return [p["spec"] for p in r.json().get("items") or []]
    return cluster.call(do)
