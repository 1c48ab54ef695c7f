"""Migrations on real clusters: plan, execute step by step (journaled), roll back, resume.

Intra-cluster move: check the node, patch the Deployment onto it with a surge-only rolling
update, wait for the rollout; restore the previous spec if it does not complete in time.
Inter-cluster migration (make-before-break): copy, wait Ready, route, DNS, forward, drain, delete.
Every step is journaled with what undoing it needs before it acts; any failure before the old
copy is deleted rolls back in reverse, and a crashed migration is completed (DNS already moved)
or rolled back by `resume`.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from orchestrator.config import ContinuumConfig, ManagedService
from orchestrator.errors import BadInput, GreenwiseError, OperationalError
from orchestrator.kube.clusters import KINDS, Cluster, Clusters, is_ready
from orchestrator.migration import objects as O
from orchestrator.migration.dns import DnsProvider, provider_from_config
from orchestrator.migration.journal import Journal, MigrationRecord
from orchestrator.migration.nodes import check_node
from orchestrator.migration.steps import DESCRIPTIONS, INTER_STEPS, INTRA_STEPS

TRAEFIK_NO_ROUTE = "404 page not found\n"  # what Traefik answers for a host it has no route for
# Test hook (a failpoint): SIGKILL ourselves right after the named step is journaled done.
CRASH_AFTER_ENV = "GREENWISE_FAILPOINT_CRASH_AFTER"


class MigrationFailed(OperationalError):
    """A migration did not complete; `rolled_back` says whether the source was restored."""

    def __init__(self, message: str, rolled_back: bool) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


@dataclass
class Placement:
    cluster: str
    nodes: list[str]
    replicas: int
    ready: int


@dataclass
class MigrationPlan:
    service: str
    kind: str  # intra | inter
    source_cluster: str
    source_nodes: list[str]
    target_cluster: str
    target_node: str | None
    steps: list[str]
    creates: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.target_cluster + (f"/{self.target_node}" if self.target_node else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target
        d["steps"] = [{"name": s, "description": DESCRIPTIONS[s]} for s in self.steps]
        return d


Reporter = Callable[[str, str, str], None]  # (event: start|done|undo|fail, step, detail)


def locate(clusters: Clusters, svc: ManagedService) -> Placement:
    """Where the service runs: the cluster whose Deployment has replicas and whose Service is
    not a forwarder."""
    found = []
    for cluster in clusters:
        dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
        if not dep or not dep.get("spec", {}).get("replicas"):
            continue
        if O.is_forwarder(cluster.get("Service", svc.namespace, svc.name)):
            continue
        selector = ",".join(f"{k}={v}" for k, v in
                            dep["spec"]["selector"].get("matchLabels", {}).items())
        pods = [p for p in cluster.list("Pod", svc.namespace, selector)
                if not p["metadata"].get("deletionTimestamp")]
        found.append(Placement(cluster.name, sorted({p["spec"].get("nodeName") or "?"
                                                     for p in pods}),
                               dep["spec"]["replicas"], sum(is_ready(p) for p in pods)))
    if not found:
        raise BadInput(f"service {svc.key} runs in no cluster (no Deployment "
                       f"{svc.deployment_name} with replicas); deploy it first")
    if len(found) > 1:
        raise OperationalError(f"service {svc.key} runs in {', '.join(p.cluster for p in found)}: "
                               "an unfinished migration? run `greenwise-mc migrate --resume`")
    return found[0]


class Migrator:
    def __init__(self, config: ContinuumConfig, clusters: Clusters | None = None,
                 journal: Journal | None = None, report: Reporter | None = None,
                 timeout: float = 120.0, drain_seconds: float = 2.0,
                 interrupted: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.clusters = clusters or Clusters(config)
        self.journal = journal or Journal(config.state_dir)
        self.report = report or (lambda event, step, detail: None)
        self.timeout = timeout
        self.drain_seconds = drain_seconds
        # Asked between steps and while waiting for the target: once it says True, a migration
        # whose traffic has not moved yet rolls back; one past that point is finished.
        self.interrupted = interrupted or (lambda: False)
        self._dns: DnsProvider | None = None

    @property
    def dns(self) -> DnsProvider:
        if self._dns is None:
            self._dns = provider_from_config(self.config.dns.model_dump())
        return self._dns

    # --- planning (reads only) ------------------------------------------------------------
    def plan(self, service: str, to: str) -> MigrationPlan:
        svc = self.config.service(service)
        cluster_name, _, node = to.partition("/")
        target = self.clusters[self.config.cluster(cluster_name).name]
        if self.config.dns.provider == "rfc2136":
            _ = self.dns  # a missing or malformed TSIG key is bad input: fail before acting
        here = locate(self.clusters, svc)
        source = self.clusters[here.cluster]
        dep = source.get("Deployment", svc.namespace, svc.deployment_name)
        assert dep is not None
        pod_spec = dep["spec"]["template"]["spec"]
        ns, name, depname = svc.namespace, svc.name, svc.deployment_name
        if here.cluster == target.name:
            if not node:
                raise BadInput(f"{svc.key} already runs in cluster {target.name}; give a "
                               f"node to move it within the cluster: --to {target.name}/NODE")
            if here.nodes == [node]:
                raise BadInput(f"{svc.key} already runs on {target.name}/{node}")
            check_node(target, node, pod_spec)
            return MigrationPlan(svc.key, "intra", here.cluster, here.nodes, target.name, node,
                                 list(INTRA_STEPS),
                                 changes=[f"{here.cluster}: Deployment {ns}/{depname} "
                                          f"(nodeSelector -> {node}, rolling update)"])
        if node:
            check_node(target, node, pod_spec)
        else:
            target.nodes()  # reachable?
        existing = target.get("Deployment", ns, depname)
        if existing and existing.get("spec", {}).get("replicas"):
            raise BadInput(f"cluster {target.name} already has a Deployment {ns}/{depname} "
                           "with replicas; refusing to overwrite it")
        cms, secrets = O.references(dep)
        creates = [f"{target.name}: Deployment {ns}/{depname}",
                   f"{target.name}: Service {ns}/{name}",
                   *(f"{target.name}: ConfigMap {ns}/{c}" for c in sorted(cms)),
                   *(f"{target.name}: Secret {ns}/{s}" for s in sorted(secrets)),
                   f"{target.name}: IngressRoute {ns}/{name} Host({svc.hostname})"]
        changes = [f"DNS {svc.hostname} -> {target.cfg.ingress_host} "
                   f"({self.config.dns.provider})",
                   f"{here.cluster}: Service {ns}/{name} -> ExternalName "
                   f"{target.cfg.ingress_host}"]
        return MigrationPlan(svc.key, "inter", here.cluster, here.nodes, target.name,
                             node or None, list(INTER_STEPS), creates=creates, changes=changes,
                             deletes=[f"{here.cluster}: Deployment {ns}/{depname}"])

    # --- execution ------------------------------------------------------------------------
    def execute(self, plan: MigrationPlan) -> MigrationRecord:
        mid = self.journal.start(plan.service, plan.kind, plan.source_cluster, plan.target,
                                 plan.to_dict())
        return self._drive(mid)

    def resume_one(self, mid: str) -> MigrationRecord:
        """Finish or roll back one unfinished migration of the journal."""
        rec = self.journal.get(mid)
        self.report("resume", rec.id, f"{rec.service} {rec.source} -> {rec.target} "
                                      f"({rec.state})")
        return self._drive(mid)

    def _drive(self, mid: str) -> MigrationRecord:
        rec = self.journal.get(mid)
        steps = INTER_STEPS if rec.kind == "inter" else INTRA_STEPS
        if rec.state == "rolling_back":
            return self._rollback(mid, rec.error or "resumed an interrupted rollback")
        # Resuming: past the point of no return (traffic already moved) finish, else undo.
        if rec.steps and not _committed(rec):
            return self._rollback(mid, "resumed a migration interrupted before traffic moved")
        try:
            for name in steps:
                rec = self.journal.get(mid)
                if rec.done(name):
                    continue
                if self.interrupted() and not _committed(rec):
                    raise OperationalError("interrupted (shutting down) before traffic moved")
                self._step(rec, name)
        except Exception as e:  # any failure: roll back and say why
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, GreenwiseError) else str(e)
            rec = self.journal.get(mid)
            if rec.kind == "inter" and rec.step("delete_old"):
                self.journal.set_state(mid, "running", reason)
                raise MigrationFailed(f"deleting the old copy failed ({reason}); the service "
                                      "runs in the target. Run --resume to finish.",
                                      rolled_back=False) from e
            return self._rollback(mid, reason, cause=e)
        self.journal.set_state(mid, "done")
        return self.journal.get(mid)

    def _step(self, rec: MigrationRecord, name: str) -> None:
        plan = rec.plan
        svc = self.config.service(plan["service"])
        begun = rec.step(name)
        undo = begun.undo if begun else getattr(self, f"_undo_data_{rec.kind}")(rec, svc, name)
        if not begun:
            self.journal.begin(rec.id, name, undo)
        start = time.monotonic()
        self.report("start", name, DESCRIPTIONS[name])
        getattr(self, f"_do_{name}")(rec, svc, undo)
        self.journal.mark(rec.id, name, "done")
        self.report("done", name, f"{time.monotonic() - start:.2f}s")
        if os.environ.get(CRASH_AFTER_ENV) == name:
            os.kill(os.getpid(), signal.SIGKILL)

    # --- what undoing needs, captured before acting ----------------------------------------
    def _undo_data_inter(self, rec: MigrationRecord, svc: ManagedService,
                         name: str) -> dict[str, Any]:
        plan = rec.plan
        src, dst = self.clusters[plan["source_cluster"]], self.clusters[plan["target_cluster"]]
        ns = svc.namespace
        if name == "copy":
            dep = src.get("Deployment", ns, svc.deployment_name)
            if dep is None:
                raise OperationalError(f"source Deployment {ns}/{svc.deployment_name} vanished")
            cms, secrets = O.references(dep)
            objs = [("Deployment", svc.deployment_name), ("Service", svc.name),
                    *(("ConfigMap", c) for c in sorted(cms)),
                    *(("Secret", s) for s in sorted(secrets))]
            return {"cluster": dst.name,
                    "objects": [{"kind": k, "name": n, "prior": dst.get(k, ns, n)}
                                for k, n in objs]}
        if name == "route":
            return {"cluster": dst.name, "objects": [
                {"kind": "IngressRoute", "name": svc.name,
                 "prior": dst.get("IngressRoute", ns, svc.name)}]}
        if name == "dns":
            prior = self.dns.get(svc.hostname)
            return {"prior": None if prior is None else asdict(prior)}
        if name == "forward":
            return {"cluster": src.name, "objects": [
                {"kind": "Service", "name": svc.name, "prior": src.get("Service", ns, svc.name)}]}
        return {}

    def _undo_data_intra(self, rec: MigrationRecord, svc: ManagedService,
                         name: str) -> dict[str, Any]:
        if name != "patch":
            return {}
        cluster = self.clusters[rec.plan["target_cluster"]]
        dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
        assert dep is not None
        return {"cluster": cluster.name, "objects": [
            {"kind": "Deployment", "name": svc.deployment_name, "prior": dep}]}

    # --- inter-cluster steps ---------------------------------------------------------------
    def _do_copy(self, rec: MigrationRecord, svc: ManagedService, undo: dict[str, Any]) -> None:
        src, dst = self.clusters[rec.plan["source_cluster"]], self.clusters[undo["cluster"]]
        ns = svc.namespace
        # A namespace made for the copy carries the migration's label: rollback removes it.
        dst.ensure_namespace(ns, {O.OWNER_LABEL: rec.id})
        for entry in undo["objects"]:
            kind, name = entry["kind"], entry["name"]
            obj = src.get(kind, ns, name)
            if obj is None:
                raise OperationalError(f"source {kind} {ns}/{name} is missing")
            desired = O.portable(obj, kind, KINDS[kind][0], owner=rec.id)
            if kind == "Deployment":
                O.pin_to_node(desired, rec.plan["target_node"])
            self._put(dst, desired)

    def _do_wait_ready(self, rec: MigrationRecord, svc: ManagedService,
                       undo: dict[str, Any]) -> None:
        dst = self.clusters[rec.plan["target_cluster"]]
        self._wait(f"Deployment {svc.namespace}/{svc.deployment_name} Ready in {dst.name}",
                   lambda: _rolled_out(dst.get("Deployment", svc.namespace,
                                               svc.deployment_name)), interruptible=True)

    def _do_route(self, rec: MigrationRecord, svc: ManagedService, undo: dict[str, Any]) -> None:
        dst = self.clusters[undo["cluster"]]
        current = dst.get("IngressRoute", svc.namespace, svc.name)
        if O.routes_host(current, svc.hostname, svc.name):
            return  # the route is already there (e.g. the service lived here before)
        service = dst.get("Service", svc.namespace, svc.name) or {}
        port = (service.get("spec", {}).get("ports") or [{"port": 80}])[0]["port"]
        self._put(dst, O.ingress_route(svc.namespace, svc.name, svc.hostname, port, rec.id))
        # Make before break: DNS may only move once the target's ingress serves the name.
        ingress = self.config.cluster(undo["cluster"]).ingress
        self._wait(f"{svc.hostname} routed by {dst.name}'s ingress {ingress}",
                   lambda: _route_live(ingress, svc.hostname, svc.probe_path),
                   interruptible=True)

    def _do_dns(self, rec: MigrationRecord, svc: ManagedService, undo: dict[str, Any]) -> None:
        host = self.config.cluster(rec.plan["target_cluster"]).ingress_host
        self.dns.replace(svc.hostname, _rtype(host), (host,), self.config.dns.ttl)

    def _do_forward(self, rec: MigrationRecord, svc: ManagedService,
                    undo: dict[str, Any]) -> None:
        src = self.clusters[undo["cluster"]]
        current = src.get("Service", svc.namespace, svc.name)
        if current is None or O.is_forwarder(current):
            return
        host = self.config.cluster(rec.plan["target_cluster"]).ingress_host
        src.replace(O.forwarder(current, host, rec.id))

    def _do_drain(self, rec: MigrationRecord, svc: ManagedService, undo: dict[str, Any]) -> None:
        time.sleep(self.config.dns.ttl + self.drain_seconds)

    def _do_delete_old(self, rec: MigrationRecord, svc: ManagedService,
                       undo: dict[str, Any]) -> None:
        self.clusters[rec.plan["source_cluster"]].delete("Deployment", svc.namespace,
                                                         svc.deployment_name)

    # --- intra-cluster steps ---------------------------------------------------------------
    def _do_check(self, rec: MigrationRecord, svc: ManagedService, undo: dict[str, Any]) -> None:
        cluster = self.clusters[rec.plan["target_cluster"]]
        dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
        assert dep is not None
        check_node(cluster, rec.plan["target_node"], dep["spec"]["template"]["spec"])

    def _do_patch(self, rec: MigrationRecord, svc: ManagedService, undo: dict[str, Any]) -> None:
        cluster = self.clusters[undo["cluster"]]
        cluster.patch("Deployment", svc.namespace, svc.deployment_name, {"spec": {
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"spec": {"nodeSelector": {O.HOSTNAME_LABEL: rec.plan["target_node"]}}},
        }})

    def _do_rollout(self, rec: MigrationRecord, svc: ManagedService,
                    undo: dict[str, Any]) -> None:
        cluster = self.clusters[rec.plan["target_cluster"]]
        node = rec.plan["target_node"]

        def moved() -> bool:
            dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
            if not _rolled_out(dep):
                return False
            assert dep is not None
            selector = ",".join(f"{k}={v}" for k, v in
                                dep["spec"]["selector"].get("matchLabels", {}).items())
            pods = [p for p in cluster.list("Pod", svc.namespace, selector)
                    if not p["metadata"].get("deletionTimestamp")]
            return bool(pods) and all(p["spec"].get("nodeName") == node and is_ready(p)
                                      for p in pods)

        self._wait(f"{svc.key} Ready on {cluster.name}/{node}", moved)

    # --- rollback ---------------------------------------------------------------------------
    def _rollback(self, mid: str, reason: str, cause: Exception | None = None) -> MigrationRecord:
        self.journal.set_state(mid, "rolling_back", reason)
        self.report("fail", "rollback", reason)
        rec = self.journal.get(mid)
        svc = self.config.service(rec.plan["service"])
        try:
            for step in reversed(rec.steps):
                if step.state == "undone":
                    continue
                self.report("undo", step.name, DESCRIPTIONS[step.name])
                self._undo(rec, svc, step.name, step.undo)
                self.journal.mark(mid, step.name, "undone")
        except Exception as e:  # leave it for --resume, say so
            msg = (f"{reason}; rollback incomplete ({type(e).__name__}: {e}); the journal keeps "
                   "it: run `greenwise-mc migrate --resume` when the cluster is reachable")
            self.journal.set_state(mid, "rolling_back", msg)
            raise MigrationFailed(msg, rolled_back=False) from cause or e
        self.journal.set_state(mid, "rolled_back", reason)
        raise MigrationFailed(f"{reason}; rolled back, the service stays on "
                              f"{rec.plan['source_cluster']}", rolled_back=True) from cause

    def _undo(self, rec: MigrationRecord, svc: ManagedService, name: str,
              undo: dict[str, Any]) -> None:
        if name == "dns":
            prior = undo.get("prior")
            if prior is None:
                self.dns.delete(svc.hostname)
            else:
                self.dns.replace(svc.hostname, prior["rtype"], tuple(prior["values"]),
                                 prior["ttl"])
            return
        if "objects" not in undo:
            return
        cluster = self.clusters[undo["cluster"]]
        for entry in reversed(undo["objects"]):
            current = cluster.get(entry["kind"], svc.namespace, entry["name"])
            prior = entry["prior"]
            if prior is None:
                owned = ((current or {}).get("metadata", {}).get("labels") or {}).get(
                    O.OWNER_LABEL) == rec.id
                if current is not None and owned:
                    cluster.delete(entry["kind"], svc.namespace, entry["name"])
            else:
                self._put(cluster, O.restorable(prior, current))
        if name == "copy" and (cluster.namespace_labels(svc.namespace) or {}).get(
                O.OWNER_LABEL) == rec.id:
            cluster.delete_namespace(svc.namespace)
            self._wait(f"namespace {svc.namespace} gone from {cluster.name}",
                       lambda: cluster.namespace_labels(svc.namespace) is None)
        if name == "patch":  # wait until the previous spec has rolled out again
            self._wait(f"{svc.key} restored", lambda: _rolled_out(
                cluster.get("Deployment", svc.namespace, svc.deployment_name)))

    # --- helpers ----------------------------------------------------------------------------
    def _put(self, cluster: Cluster, obj: dict[str, Any]) -> None:
        """Create, or replace what is there (keeping its resourceVersion)."""
        m = obj["metadata"]
        current = cluster.get(obj["kind"], m["namespace"], m["name"])
        if current is None:
            obj["metadata"].pop("resourceVersion", None)
            cluster.create(obj)
            return
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if obj["kind"] == "Service" and obj["spec"].get("type") != "ExternalName" and \
                current["spec"].get("type") != "ExternalName":
            obj["spec"]["clusterIP"] = current["spec"].get("clusterIP")
        cluster.replace(obj)

    def _wait(self, what: str, check: Callable[[], bool], interruptible: bool = False) -> None:
        deadline = time.monotonic() + self.timeout
        while not check():
            if interruptible and self.interrupted():
                raise OperationalError(f"interrupted (shutting down) while waiting for {what}")
            if time.monotonic() > deadline:
                raise OperationalError(f"timed out after {self.timeout:g}s waiting for {what}")
            time.sleep(0.2)


def _committed(rec: MigrationRecord) -> bool:
    """Past the point of no return: traffic moved (DNS), or the Deployment was patched."""
    return rec.done("dns") if rec.kind == "inter" else rec.done("patch")


def _rolled_out(dep: dict[str, Any] | None) -> bool:
    if not dep:
        return False
    spec, status = dep.get("spec", {}), dep.get("status") or {}
    want = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
            and status.get("availableReplicas", 0) >= want)


def _route_live(ingress: str, hostname: str, path: str) -> bool:
    """The ingress has a working route for `hostname`: not its own 404, not a 5xx."""
    try:
        r = httpx.get(f"http://{ingress}{path}", headers={"Host": hostname}, timeout=2,
                      trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code < 500 and not (r.status_code == 404 and r.text == TRAEFIK_NO_ROUTE)


def _rtype(host: str) -> str:
    try:
        return "A" if ipaddress.ip_address(host).version == 4 else "AAAA"
    except ValueError:
        return "CNAME"
