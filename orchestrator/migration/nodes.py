"""Can this node take the service? The checks an intra- or inter-cluster move makes first: the
node and the pods bound to it read from the API, judged by orchestrator.kube.feasibility."""

from __future__ import annotations

from typing import Any

from orchestrator.errors import BadInput
from orchestrator.kube.clusters import Cluster
from orchestrator.kube.feasibility import requested, unfit


def check_node(cluster: Cluster, node_name: str, pod_spec: dict[str, Any],
               replicas: int = 1) -> dict[str, Any]:
    """Raise a BadInput saying why `node_name` cannot take `replicas` pods like
    `pod_spec`; return the node."""
    nodes = {n["metadata"]["name"]: n for n in cluster.nodes()}
    where = f"{cluster.name}/{node_name}"
    node = nodes.get(node_name)
    if node is None:
        raise BadInput(f"node {where} does not exist; nodes in {cluster.name}: "
                             f"{', '.join(sorted(nodes))}")
    problem = unfit(where, node, requested(_pods_on(cluster, node_name)), pod_spec, replicas)
    if problem:
        raise BadInput(problem)
    return node


def _pods_on(cluster: Cluster, node_name: str) -> list[dict[str, Any]]:
    def do() -> list[dict[str, Any]]:
        r = cluster.api.get(url="pods", params={
            "fieldSelector": f"spec.nodeName={node_name},status.phase!=Succeeded,"
                             "status.phase!=Failed"})
        cluster.api.raise_for_status(r)
        return [p["spec"] for p in r.json().get("items") or []]
    return cluster.call(do)
