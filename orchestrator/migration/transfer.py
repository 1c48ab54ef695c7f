"""What a migration moves and reads: the service's objects between clusters (which ones, captured
as they were and put back, copied or recreated from the manifests kept), and what a cluster and
its ingress say about the copy (rolled out, listed by its Service, routed); the fence a
failover leaves on a stale copy. The steps (steps.py) are made of these.
"""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator.config import ManagedService
from orchestrator.errors import BadInput, OperationalError
from orchestrator.kube.clusters import Cluster, is_ready
from orchestrator.migration import objects as O
from orchestrator.migration.context import MigrationContext

Undo = dict[str, Any]  # JSON: what undoing a step needs, captured before it acts
TRAEFIK_NO_ROUTE = "404 page not found\n"  # what Traefik answers for a host it has no route for


def capture_objects(cluster: Cluster, namespace: str, refs: list[tuple[str, str]]) -> Undo:
    return {"cluster": cluster.name, "objects": [
        {"kind": kind, "name": name,
         "prior": as_prior(cluster, kind, cluster.get(kind, namespace, name))}
        for kind, name in refs]}


def as_prior(cluster: Cluster, kind: str, obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """What undoing needs of an object as it was: the object less its cluster's fields
    (managedFields, status, ...). Of a Secret only a digest: the journal never holds Secret
    data, and a Secret that was there is never changed (Copy leaves an equal one as it is)."""
    if obj is None:
        return None
    if kind == "Secret":
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return {"kind": kind, "digest": O.secret_digest(obj), "metadata": {"labels": {
            k: v for k, v in labels.items() if k == O.OWNER_LABEL}}}
    return O.portable(obj, kind, cluster.api_version(kind))


def restore_objects(ctx: MigrationContext, undo: Undo) -> Cluster:
    """Put back each object as it was; delete those that did not exist (if ours)."""
    cluster = ctx.clusters[undo["cluster"]]
    ns = ctx.service.namespace
    for entry in reversed(undo["objects"]):
        current = cluster.get(entry["kind"], ns, entry["name"])
        before = entry["prior"]
        if before is None:
            if current is not None and owned(current, ctx.id):
                cluster.delete(entry["kind"], ns, entry["name"])
        elif entry["kind"] != "Secret":  # a Secret that was there was left as it was
            put(cluster, O.restorable(before, current))
    return cluster


def owned(obj: dict[str, Any], migration: str) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(O.OWNER_LABEL) == migration


def put(cluster: Cluster, obj: dict[str, Any]) -> None:
    """Create, or replace what is there (keeping its resourceVersion)."""
    m = obj["metadata"]
    current = cluster.get(obj["kind"], m["namespace"], m["name"])
    if current is None:
        m.pop("resourceVersion", None)
        cluster.create(obj)
        return
    m["resourceVersion"] = current["metadata"]["resourceVersion"]
    if obj["kind"] == "Service" and obj["spec"].get("type") != "ExternalName" and \
            current["spec"].get("type") != "ExternalName":
        obj["spec"]["clusterIP"] = current["spec"].get("clusterIP")
    cluster.replace(obj)


def copied(ctx: MigrationContext) -> list[tuple[str, str]]:
    """(kind, name) of what the copy step copies: the Deployment, its Service, the ConfigMaps
    and Secrets it refers to and the budgets that select its pods; checked copyable."""
    svc, ns = ctx.service, ctx.service.namespace
    dep = ctx.source_object("Deployment", svc.deployment_name)
    if dep is None:
        raise OperationalError(f"source Deployment {ns}/{svc.deployment_name} vanished")
    cms, secrets = O.references(dep)
    for name in sorted(secrets):
        if ctx.recorded is None:
            secret_copyable(ctx.source.get("Secret", ns, name), ctx.target, ns, name)
        elif ctx.target.get("Secret", ns, name) is None:
            raise BadInput(f"Secret {ns}/{name} cannot be copied out of cluster "
                           f"{ctx.plan.source_cluster}, which does not answer (greenwise-mc "
                           f"keeps no Secret data): create it in {ctx.target.name}, then "
                           "migrate again")
    budgets = O.budgets_for(dep, [o for o in ctx.recorded if o["kind"] == "PodDisruptionBudget"]
                            if ctx.recorded is not None
                            else ctx.source.list("PodDisruptionBudget", ns))
    return [("Deployment", svc.deployment_name), ("Service", svc.name),
            *(("ConfigMap", c) for c in sorted(cms)), *(("Secret", s) for s in sorted(secrets)),
            *(("PodDisruptionBudget", b) for b in budgets)]


def manifests_of(cluster: Cluster, svc: ManagedService) -> list[dict[str, Any]]:
    """What a failover recreates the service from: its objects in `cluster` less the cluster's
    own fields; Secrets by name only (their data is never kept)."""
    ns = svc.namespace
    dep = cluster.get("Deployment", ns, svc.deployment_name)
    if dep is None:
        return []
    cms, secrets = O.references(dep)
    budgets = O.budgets_for(dep, cluster.list("PodDisruptionBudget", ns))
    refs = [("Service", svc.name), ("IngressRoute", svc.name),
            *(("ConfigMap", c) for c in sorted(cms)),
            *(("PodDisruptionBudget", b) for b in budgets)]
    found = [("Deployment", dep), *((kind, o) for kind, name in refs
                                    if (o := cluster.get(kind, ns, name)) is not None)]
    return [*(O.portable(o, kind, cluster.api_version(kind)) for kind, o in found),
            *({"kind": "Secret", "metadata": {"name": s, "namespace": ns}}
              for s in sorted(secrets))]


def secret_copyable(here: dict[str, Any] | None, dst: Cluster, namespace: str,
                    name: str) -> None:
    """A Secret (`here`, the source's) may be copied where there is none, an equal one, or one
    a migration made (an earlier visit's copy); one of another content that greenwise-mc did not
    create is someone else's: refuse before anything changes."""
    there = dst.get("Secret", namespace, name)
    if there is None or O.is_owned(there):
        return
    if here is not None and O.secret_digest(here) != O.secret_digest(there):
        raise BadInput(f"cluster {dst.name} has a different Secret {namespace}/{name} that "
                       "greenwise-mc did not create; make it equal to the source's or delete "
                       "it, then migrate again")


def running_pods(cluster: Cluster, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's pods that are not being deleted."""
    selector = ",".join(f"{k}={v}" for k, v in
                        deployment["spec"]["selector"].get("matchLabels", {}).items())
    return [p for p in cluster.list("Pod", deployment["metadata"]["namespace"], selector)
            if not p["metadata"].get("deletionTimestamp")]


def lists_only_the_copy(cluster: Cluster, svc: ManagedService) -> bool:
    """The Service's Endpoints list ready pods of the copy, and nothing else: while the Service
    forwarded (no selector) no controller kept them, so they may still name pods long gone."""
    endpoints = cluster.get("Endpoints", svc.namespace, svc.name) or {}
    listed = {a.get("ip") for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []}
    dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
    ready = {p.get("status", {}).get("podIP") for p in running_pods(cluster, dep)
             if is_ready(p)} if dep else set()
    return bool(listed) and listed <= ready


def rolled_out(dep: dict[str, Any] | None) -> bool:
    if not dep:
        return False
    spec, status = dep.get("spec", {}), dep.get("status") or {}
    want = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
            and status.get("availableReplicas", 0) >= want)


def route_live(ingress: str, hostname: str, path: str) -> bool:
    """The ingress has a working route for `hostname`: not its own 404, not a 5xx."""
    try:
        r = httpx.get(f"http://{ingress}{path}", headers={"Host": hostname}, timeout=2,
                      trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code < 500 and not (r.status_code == 404 and r.text == TRAEFIK_NO_ROUTE)


FENCED = "greenwise.io/fenced-by"  # on a stale copy: the failover that replaced it


def fence(cluster: Cluster, svc: ManagedService, migration: str) -> None:
    """A failover's stale copy, in a cluster that answers again: its Deployment scaled to 0 and
    marked (so the service runs in exactly one place), its Service a forwarder."""
    ns = svc.namespace
    if cluster.get("Deployment", ns, svc.deployment_name) is not None:
        cluster.patch("Deployment", ns, svc.deployment_name, {
            "metadata": {"annotations": {FENCED: migration}}, "spec": {"replicas": 0}})
    service = cluster.get("Service", ns, svc.name)
    if service is not None and not O.is_forwarder(service):
        cluster.replace(O.forwarder(service, svc.hostname, migration))
