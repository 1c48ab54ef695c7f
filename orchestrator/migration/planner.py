"""Where a service runs, and the plan that moves it: reads the clusters, changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from orchestrator.config import ContinuumConfig, ManagedService
from orchestrator.errors import BadInput
from orchestrator.kube.clusters import Cluster, Clusters, ClusterUnavailable, is_ready
from orchestrator.migration import objects as O
from orchestrator.migration.dns import DnsProvider
from orchestrator.migration.dns import registry as R
from orchestrator.migration.nodes import check_node
from orchestrator.migration.plan import (
    FAILOVER_STEPS,
    INTER_STEPS,
    INTRA_STEPS,
    MigrationPlan,
    Target,
)
from orchestrator.migration.transfer import running_pods, secret_copyable


@dataclass
class Placement:
    cluster: str
    nodes: list[str]
    replicas: int
    ready: int


def placement_in(cluster: Cluster, svc: ManagedService) -> Placement | None:
    """The service in this cluster: its Deployment with replicas, its Service no forwarder."""
    dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
    if not dep or not dep.get("spec", {}).get("replicas"):
        return None
    if O.is_forwarder(cluster.get("Service", svc.namespace, svc.name)):
        return None
    pods = running_pods(cluster, dep)
    return Placement(cluster.name, sorted({p["spec"].get("nodeName") or "?" for p in pods}),
                     dep["spec"]["replicas"], sum(is_ready(p) for p in pods))


class Unlocated(ClusterUnavailable):
    """The service runs in none of the clusters that answer: in one of `down`, perhaps."""

    def __init__(self, message: str, down: list[str]) -> None:
        super().__init__(message)
        self.down = down


Kept = Callable[[str], tuple[str, list[dict[str, Any]]] | None]  # Journal.manifests


def locate(clusters: Clusters, svc: ManagedService,
           dns: Callable[[], DnsProvider] | None = None) -> Placement:
    """Where the service runs, asking every cluster at once. A cluster that does not answer
    is passed over when the service runs in exactly one that does and its DNS record sends the
    users there: the clusters are independent, one down holds up no move between the others."""
    with ThreadPoolExecutor(max_workers=len(clusters.config.clusters)) as pool:
        asked = [(c.name, pool.submit(placement_in, c, svc)) for c in clusters]
    found, down = [], []
    for name, answer in asked:
        try:
            if (p := answer.result()) is not None:
                found.append(p)
        except ClusterUnavailable as e:
            down.append((name, e))
    if down:
        names = ", ".join(n for n, _ in down)
        record = dns().get(svc.hostname) if dns is not None and len(found) == 1 else None
        if record is not None and clusters[found[0].cluster].cfg.ingress_host in record.values:
            return found[0]
        if not found:
            raise Unlocated(f"{svc.key} runs in none of the clusters that answer; {names} did "
                            f"not ({down[0][1]})", [n for n, _ in down])
        raise down[0][1]
    if not found:
        raise BadInput(f"service {svc.key} runs in no cluster (no Deployment "
                       f"{svc.deployment_name} with replicas); deploy it first")
    if len(found) > 1:
        raise BadInput(f"service {svc.key} runs in {', '.join(p.cluster for p in found)}: "
                       "an unfinished migration? run `greenwise-mc migrate --resume`")
    return found[0]


def plan_migration(config: ContinuumConfig, clusters: Clusters, service: str, to: Target,
                   dns: Callable[[], DnsProvider], kept: Kept | None = None) -> MigrationPlan:
    """The plan that moves `service` to `to`; raises BadInput when it cannot go there. Out of
    a cluster that does not answer, a failover from the manifests `kept` (the journal's)."""
    svc = config.service(service)
    target = clusters[config.cluster(to.cluster).name]
    if config.dns.provider == "rfc2136":
        dns()  # a missing or malformed TSIG key is bad input: fail before acting
    try:
        here = locate(clusters, svc, dns)
    except Unlocated as e:
        return plan_failover(config, target, svc, to, dns, kept, e)
    dep = clusters[here.cluster].get("Deployment", svc.namespace, svc.deployment_name)
    if dep is None:
        raise BadInput(f"Deployment {svc.namespace}/{svc.deployment_name} vanished from "
                       f"{here.cluster} while planning; try again")
    pod_spec, replicas = dep["spec"]["template"]["spec"], dep["spec"].get("replicas", 1)
    ns, name, depname = svc.namespace, svc.name, svc.deployment_name
    if here.cluster == target.name:
        if not to.node:
            raise BadInput(f"{svc.key} already runs in cluster {target.name}; give a node to "
                           f"move it within the cluster: --to {target.name}/NODE")
        if here.nodes == [to.node]:
            raise BadInput(f"{svc.key} already runs on {to}")
        check_node(target, to.node, pod_spec, replicas)
        return MigrationPlan(svc.key, "intra", here.cluster, tuple(here.nodes), to, INTRA_STEPS,
                             changes=(
                                 f"{here.cluster}: Deployment {ns}/{depname} "
                                 f"(nodeSelector -> {to.node}, rolling update)",))
    if to.node:
        check_node(target, to.node, pod_spec, replicas)
    else:
        target.nodes()  # reachable?
    existing = target.get("Deployment", ns, depname)
    if existing and existing.get("spec", {}).get("replicas"):
        raise BadInput(f"cluster {target.name} already has a Deployment {ns}/{depname} with "
                       "replicas; refusing to overwrite it")
    cms, secrets = O.references(dep)
    for secret in sorted(secrets):
        secret_copyable(clusters[here.cluster].get("Secret", ns, secret), target, ns, secret)
    budgets = O.budgets_for(dep, clusters[here.cluster].list("PodDisruptionBudget", ns))
    return MigrationPlan(
        svc.key, "inter", here.cluster, tuple(here.nodes), to, INTER_STEPS,
        creates=(f"{target.name}: Deployment {ns}/{depname}",
                 f"{target.name}: Service {ns}/{name}",
                 *(f"{target.name}: ConfigMap {ns}/{c}" for c in sorted(cms)),
                 *(f"{target.name}: Secret {ns}/{s}" for s in sorted(secrets)),
                 *(f"{target.name}: PodDisruptionBudget {ns}/{b}" for b in budgets),
                 f"{target.name}: IngressRoute {ns}/{name} Host({svc.hostname}) and the "
                 "in-cluster names"),
        changes=(dns_change(config, svc, target, dns),
                 f"{here.cluster}: Service {ns}/{name} -> ExternalName "
                 f"{svc.hostname.rstrip('.')}"),
        deletes=(f"{here.cluster}: Deployment {ns}/{depname}",
                 *(f"{here.cluster}: {kind} {ns}/{n} (copied there by a migration)"
                   for kind, names in (("ConfigMap", cms), ("Secret", secrets),
                                       ("PodDisruptionBudget", budgets))
                   for n in sorted(names)
                   if O.is_owned(clusters[here.cluster].get(kind, ns, n)))))


def dns_change(config: ContinuumConfig, svc: ManagedService, target: Cluster,
               dns: Callable[[], DnsProvider]) -> str:
    """The DNS change a move to `target` makes, as the dry run shows it; refuses (BadInput) a
    name greenwise-mc does not own unless the service adopts it."""
    ingress = target.cfg.ingress_host
    record = dns().get(svc.hostname)
    adopting = R.may_change(svc.hostname, record, dns().get_txt(R.registry_name(svc.hostname)),
                            config.dns.owner_id, svc.adopt_dns)
    rtype, values = R.desired(record, ingress, {c.ingress_host for c in config.clusters})
    return (f"DNS {svc.hostname} ({config.dns.provider}): {R.describe(record)} -> {rtype} "
            f"{' '.join(values)}" + (" (adopted: greenwise-mc did not own it)" if adopting else ""))


def plan_failover(config: ContinuumConfig, target: Cluster, svc: ManagedService, to: Target,
                  dns: Callable[[], DnsProvider], kept: Kept | None,
                  unlocated: Unlocated) -> MigrationPlan:
    """Recreate the service in `to` from the manifests kept at its last migration, when the
    cluster it ran in does not answer and its DNS record still sends the users there."""
    found = kept(svc.key) if kept is not None else None
    if found is None or found[0] not in unlocated.down:
        raise Unlocated(f"{unlocated}; no manifests of it were kept in that cluster (they are "
                        "kept at each migration), so it cannot be failed over", unlocated.down)
    source, objects = found
    if to.cluster == source:
        raise BadInput(f"{svc.key} runs in {source}, which does not answer: fail it over to "
                       "another cluster")
    record = dns().get(svc.hostname)
    if record is None or config.cluster(source).ingress_host not in record.values:
        raise Unlocated(f"{unlocated}; its DNS record ({R.describe(record)}) does not send "
                        f"users to {source}, so greenwise-mc cannot tell where it runs",
                        unlocated.down)
    ns = svc.namespace
    dep = next(o for o in objects if o["kind"] == "Deployment")
    if to.node:
        check_node(target, to.node, dep["spec"]["template"]["spec"],
                   dep["spec"].get("replicas", 1))
    else:
        target.nodes()  # reachable?
    missing = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"
               and target.get("Secret", ns, o["metadata"]["name"]) is None]
    if missing:
        raise BadInput(f"Secret {ns}/{missing[0]} cannot be copied out of cluster {source}, "
                       f"which does not answer (greenwise-mc keeps no Secret data): create it "
                       f"in {target.name}, then fail over again")
    return MigrationPlan(
        svc.key, "failover", source, (), to, FAILOVER_STEPS,
        creates=tuple(f"{target.name}: {o['kind']} {ns}/{o['metadata']['name']}"
                      for o in objects if o["kind"] not in ("Secret", "IngressRoute")),
        changes=(dns_change(config, svc, target, dns),
                 f"{source} (does not answer): its copy is fenced (scaled to 0) when it does: "
                 "`greenwise-mc migrate --resume`"))
