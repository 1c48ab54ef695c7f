"""The steps of a migration, one class each, and the step list of each kind of move.

Inter-cluster migration (make-before-break): copy, wait Ready, route, DNS, forward, drain,
delete the old copy. Failover (the source does not answer): copy from the manifests kept, wait
Ready, route, DNS. Intra-cluster move: check the node, patch the Deployment onto it with a
surge-only rolling update, wait for the rollout.

The executor journals what `capture_undo` returns before it calls `do`, and hands that same
record to `undo` when rolling back, also for a step that was begun but never finished.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, ClassVar

from orchestrator.errors import OperationalError
from orchestrator.kube.clusters import is_ready
from orchestrator.migration import objects as O
from orchestrator.migration.context import MigrationContext
from orchestrator.migration.dns import registry as R
from orchestrator.migration.dns.base import Record, make_record
from orchestrator.migration.nodes import check_node
from orchestrator.migration.plan import INTER_STEPS, INTRA_STEPS, MigrationPlan
from orchestrator.migration.transfer import (
    Undo,
    capture_objects,
    copied,
    lists_only_the_copy,
    put,
    restore_objects,
    rolled_out,
    route_live,
    running_pods,
)


class Step:
    name: ClassVar[str]
    description: ClassVar[str]  # the same for every plan; `describe` names the plan's places
    commits: ClassVar[bool] = False  # done = traffic moved: the migration finishes from here on
    reversible: ClassVar[bool] = True  # False: once begun, only finishing the migration is left

    def describe(self, plan: MigrationPlan) -> str:
        return self.description

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        return {}

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        raise NotImplementedError

    def undo(self, ctx: MigrationContext, undo: Undo) -> None:
        """Nothing to undo unless a step says otherwise."""


# --- inter-cluster migration -----------------------------------------------------------------

class Copy(Step):
    name = "copy"
    description = ("copy Deployment, Service, ConfigMaps, Secrets and PodDisruptionBudgets to "
                   "the target")

    def describe(self, plan: MigrationPlan) -> str:
        return (f"copy Deployment, Service, ConfigMaps, Secrets and PodDisruptionBudgets to "
                f"{plan.target.cluster}")

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        return capture_objects(ctx.target, ctx.service.namespace, copied(ctx))

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        dst, ns = ctx.clusters[undo["cluster"]], ctx.service.namespace
        # A namespace made for the copy carries the migration's label: rollback removes it.
        dst.ensure_namespace(ns, {O.OWNER_LABEL: ctx.id})
        for entry in undo["objects"]:
            kind, name = entry["kind"], entry["name"]
            if kind == "Secret" and ctx.recorded is not None:
                continue  # a failover: kept by name only, in the target already (copied())
            obj = ctx.source_object(kind, name)
            if obj is None:
                raise OperationalError(f"source {kind} {ns}/{name} is missing")
            before = entry["prior"]
            if kind == "Service" and O.is_forwarder(before):
                continue  # an earlier visit's forwarder forwards until the copy is Ready: Route
            if kind == "Secret" and before is not None and \
                    before["digest"] == O.secret_digest(obj):
                continue  # the target holds it already, as it is
            # Ours if this migration creates it (or an earlier one did); one found in the
            # target stays found: its content is the service's, but it is never deleted.
            desired = O.label_owner(O.portable(obj, kind, dst.api_version(kind)),
                                    ctx.id if before is None or O.is_owned(before) else None)
            if kind == "Deployment":
                O.pin_to_node(desired, ctx.plan.target.node)
            put(dst, desired)

    def undo(self, ctx: MigrationContext, undo: Undo) -> None:
        cluster, ns = restore_objects(ctx, undo), ctx.service.namespace
        if (cluster.namespace_labels(ns) or {}).get(O.OWNER_LABEL) == ctx.id:
            cluster.delete_namespace(ns)
            ctx.wait(f"namespace {ns} gone from {cluster.name}",
                     lambda: cluster.namespace_labels(ns) is None)


class WaitReady(Step):
    name = "wait_ready"
    description = "wait until the copy is Ready"

    def describe(self, plan: MigrationPlan) -> str:
        return f"wait until the copy is Ready in {plan.target.cluster}"

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        dst, svc = ctx.target, ctx.service
        ctx.wait(f"Deployment {svc.namespace}/{svc.deployment_name} Ready in {dst.name}",
                 lambda: rolled_out(dst.get("Deployment", svc.namespace, svc.deployment_name)),
                 interruptible=True)


class Route(Step):
    name = "route"
    description = ("route the target's ingress to the copy (the Traefik IngressRoute; an earlier "
                   "visit's forwarder turned back into the Service)")

    def describe(self, plan: MigrationPlan) -> str:
        return (f"route {plan.target.cluster}'s ingress to the copy (the Traefik IngressRoute; "
                "an earlier visit's forwarder turned back into the Service)")

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        return capture_objects(ctx.target, ctx.service.namespace,
                               [("Service", ctx.service.name), ("IngressRoute", ctx.service.name)])

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        dst, svc, ns = ctx.clusters[undo["cluster"]], ctx.service, ctx.service.namespace
        forwarder = dst.get("Service", ns, svc.name)
        returned = O.is_forwarder(forwarder)  # the service lived here: its forwarder is left
        real: dict[str, Any] = {}
        if returned and forwarder is not None:
            real = O.portable(ctx.source_object("Service", svc.name) or {}, "Service", "v1")
            if not real.get("spec"):
                raise OperationalError(f"source Service {ns}/{svc.name} is missing")
            # Still forwarding, it gets the copy's selector: the endpoints controller lists the
            # copy's pods, so Traefik finds them (not the pods it knew last) once it serves here.
            staged = O.portable(forwarder, "Service", "v1")
            staged["spec"].update(selector=real["spec"].get("selector"),
                                  ports=real["spec"].get("ports"))
            put(dst, staged)
        ctx.wait(f"Service {ns}/{svc.name} in {dst.name} to list the copy's pods",
                 lambda: lists_only_the_copy(dst, svc), interruptible=True)
        if returned:
            put(dst, O.label_owner(real, ctx.id))
        rule = O.route_rule(svc.hostname, ns, svc.name,
                            [c.cluster_domain for c in ctx.config.clusters])
        if not O.routes(dst.get("IngressRoute", ns, svc.name), rule, svc.name):
            service = dst.get("Service", ns, svc.name) or {}
            port = (service.get("spec", {}).get("ports") or [{"port": 80}])[0]["port"]
            put(dst, O.ingress_route(ns, svc.name, rule, port, ctx.id))
        # Make before break: DNS may only move once the target's ingress serves the name.
        ingress = dst.cfg.ingress
        ctx.wait(f"{svc.hostname} routed by {dst.name}'s ingress {ingress}",
                 lambda: route_live(ingress, svc.hostname, svc.probe_path), interruptible=True)
        if returned:
            # The ingress answered before too, through the forwarder; Traefik applies a changed
            # Service only after its providers' throttle. Until then it may still forward to
            # the source, which forwards back here once its own forwarder is in place.
            time.sleep(dst.cfg.ingress_reload_s)

    def undo(self, ctx: MigrationContext, undo: Undo) -> None:
        restore_objects(ctx, undo)


class Dns(Step):
    name = "dns"
    description = "point DNS at the target's ingress"
    commits = True

    def describe(self, plan: MigrationPlan) -> str:
        return f"point DNS at {plan.target.cluster}'s ingress"

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        prior = ctx.dns.get(ctx.service.hostname)
        registry = ctx.dns.get_txt(R.registry_name(ctx.service.hostname))
        return {"prior": None if prior is None else asdict(prior),
                "registry": None if registry is None else list(registry)}

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        svc, cfg = ctx.service, ctx.config.dns
        prior, registry = _record(undo["prior"]), _registry(undo)
        if R.may_change(svc.hostname, prior, registry, cfg.owner_id, svc.adopt_dns):
            ctx.report("note", self.name, f"adopting {svc.hostname} ({R.describe(prior)}): "
                                          "greenwise-mc did not own it (adopt_dns)")
        if R.owner_in(registry) != cfg.owner_id:
            R.claim(ctx.dns, svc.hostname, cfg.owner_id, svc.key, cfg.ttl)
        ctx.dns.replace(svc.hostname, *self.wanted(ctx, prior), cfg.ttl)

    def undo(self, ctx: MigrationContext, undo: Undo) -> None:
        """Restore the record only if it still holds what the migration wrote: a change made
        since (an operator's) is left as it is, and so is a name's ownership then."""
        svc, cfg = ctx.service, ctx.config.dns
        prior, current = _record(undo["prior"]), ctx.dns.get(svc.hostname)
        wrote = make_record(svc.hostname, ctx.dns.zone, *self.wanted(ctx, prior), cfg.ttl)
        if current is not None and (current.rtype, current.values) == (wrote.rtype, wrote.values):
            if prior is None:
                ctx.dns.delete(svc.hostname)
            else:
                ctx.dns.replace(svc.hostname, prior.rtype, prior.values, prior.ttl)
        elif current != prior:
            ctx.report("note", self.name, f"{svc.hostname} changed since the migration set it "
                                          f"(now {R.describe(current)}): left as it is")
            return
        if R.owner_in(_registry(undo)) != cfg.owner_id and \
                R.owner_in(ctx.dns.get_txt(R.registry_name(svc.hostname))) == cfg.owner_id:
            ctx.dns.replace_txt(R.registry_name(svc.hostname), undo["registry"] or [], cfg.ttl)

    @staticmethod
    def wanted(ctx: MigrationContext, prior: Record | None) -> tuple[str, tuple[str, ...]]:
        host = ctx.target.cfg.ingress_host
        return R.desired(prior, host, {c.ingress_host for c in ctx.config.clusters})


def _record(d: dict[str, Any] | None) -> Record | None:
    return None if d is None else Record(d["name"], d["rtype"], tuple(d["values"]), d["ttl"])


def _registry(undo: Undo) -> tuple[str, ...] | None:
    """The ownership record's strings before the step (journals of earlier versions: none)."""
    values = undo.get("registry")
    return None if values is None else tuple(values)


class Forward(Step):
    name = "forward"
    description = "turn the source Service into an ExternalName forwarder"

    def describe(self, plan: MigrationPlan) -> str:
        return (f"turn the Service in {plan.source_cluster} into an ExternalName forwarder for "
                f"the hostname (after the DNS TTL), which now names {plan.target.cluster}")

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        return capture_objects(ctx.source, ctx.service.namespace, [("Service", ctx.service.name)])

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        src, svc = ctx.clusters[undo["cluster"]], ctx.service
        current = src.get("Service", svc.namespace, svc.name)
        if current is not None and not O.is_forwarder(current):
            # The forwarder resolves the hostname in the source cluster: until the resolvers
            # there forget the record's old value (its TTL), it would forward to itself. The
            # old copy serves meanwhile.
            time.sleep(ctx.config.dns.ttl)
            src.replace(O.forwarder(current, svc.hostname, ctx.id))

    def undo(self, ctx: MigrationContext, undo: Undo) -> None:
        restore_objects(ctx, undo)


class Drain(Step):
    name = "drain"
    description = "wait for the DNS TTL and in-flight requests"

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        time.sleep(ctx.config.dns.ttl + ctx.drain_seconds)


class DeleteOld(Step):
    name = "delete_old"
    description = "delete the old Deployment (and the objects a migration had copied there)"
    reversible = False

    def describe(self, plan: MigrationPlan) -> str:
        return (f"delete the old Deployment in {plan.source_cluster} (and the ConfigMaps, "
                "Secrets and PodDisruptionBudgets a migration had copied there)")

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        """Not for undoing (this step is final): the names of what the old copy used, so that
        a resumed step still knows them once the Deployment is gone."""
        dep = ctx.source.get("Deployment", ctx.service.namespace, ctx.service.deployment_name)
        cms, secrets = O.references(dep) if dep else (set(), set())
        budgets = O.budgets_for(dep, ctx.source.list("PodDisruptionBudget",
                                                     ctx.service.namespace)) if dep else []
        return {"ConfigMap": sorted(cms), "Secret": sorted(secrets),
                "PodDisruptionBudget": budgets}

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        src, ns = ctx.source, ctx.service.namespace
        src.delete("Deployment", ns, ctx.service.deployment_name)
        for kind in ("ConfigMap", "Secret", "PodDisruptionBudget"):
            for name in undo.get(kind, ()):
                if O.is_owned(src.get(kind, ns, name)):  # an earlier visit's copy; found ones stay
                    src.delete(kind, ns, name)


# --- intra-cluster move ----------------------------------------------------------------------

class Check(Step):
    name = "check"
    description = "check the target node"

    def describe(self, plan: MigrationPlan) -> str:
        return f"check node {plan.target}"

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        svc, node = ctx.service, ctx.plan.target.node
        dep = ctx.target.get("Deployment", svc.namespace, svc.deployment_name)
        if dep is None or node is None:
            raise OperationalError(f"Deployment {svc.namespace}/{svc.deployment_name} vanished "
                                   f"from {ctx.target.name}")
        check_node(ctx.target, node, dep["spec"]["template"]["spec"])


class Patch(Step):
    name = "patch"
    description = "move the Deployment to the node (rolling update, surge 1, unavailable 0)"
    commits = True

    def describe(self, plan: MigrationPlan) -> str:
        return (f"move the Deployment to {plan.target.node} "
                "(rolling update, surge 1, unavailable 0)")

    def capture_undo(self, ctx: MigrationContext) -> Undo:
        return capture_objects(ctx.target, ctx.service.namespace,
                               [("Deployment", ctx.service.deployment_name)])

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        svc = ctx.service
        ctx.clusters[undo["cluster"]].patch("Deployment", svc.namespace, svc.deployment_name, {
            "spec": {"strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"spec": {"nodeSelector": {
                         O.HOSTNAME_LABEL: ctx.plan.target.node}}}}})

    def undo(self, ctx: MigrationContext, undo: Undo) -> None:
        cluster, svc = restore_objects(ctx, undo), ctx.service
        ctx.wait(f"{svc.key} restored", lambda: rolled_out(
            cluster.get("Deployment", svc.namespace, svc.deployment_name)))


class Rollout(Step):
    name = "rollout"
    description = "wait for the rollout; the new pod Ready on the node"

    def describe(self, plan: MigrationPlan) -> str:
        return f"wait for the rollout; the new pod Ready on {plan.target.node}"

    def do(self, ctx: MigrationContext, undo: Undo) -> None:
        cluster, svc, node = ctx.target, ctx.service, ctx.plan.target.node

        def moved() -> bool:
            dep = cluster.get("Deployment", svc.namespace, svc.deployment_name)
            if dep is None or not rolled_out(dep):
                return False
            pods = running_pods(cluster, dep)
            return bool(pods) and all(p["spec"].get("nodeName") == node and is_ready(p)
                                      for p in pods)

        ctx.wait(f"{svc.key} Ready on {cluster.name}/{node}", moved)


INTER: tuple[Step, ...] = (Copy(), WaitReady(), Route(), Dns(), Forward(), Drain(), DeleteOld())
INTRA: tuple[Step, ...] = (Check(), Patch(), Rollout())
STEPS: dict[str, Step] = {s.name: s for s in (*INTER, *INTRA)}
assert tuple(s.name for s in INTER) == INTER_STEPS and tuple(s.name for s in INTRA) == INTRA_STEPS
DESCRIPTIONS = {name: s.description for name, s in STEPS.items()}


def plan_dict(plan: MigrationPlan) -> dict[str, Any]:
    """The plan as JSON with what each step will do: what `migrate --dry-run` prints."""
    d = plan.to_dict()
    d["steps"] = [{"name": s, "description": STEPS[s].describe(plan)} for s in plan.steps]
    return d


# --- reading the clusters and the ingress ----------------------------------------------------
