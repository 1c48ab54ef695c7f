"""The Kubernetes objects a migration copies, creates and restores, as plain dicts."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

OWNER_LABEL = "greenwise.io/migration"  # set on everything a migration creates
HOSTNAME_LABEL = "kubernetes.io/hostname"
_DROP_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                  "selfLink", "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds")
_DROP_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",
                     "deployment.kubernetes.io/revision")
_CLUSTER_IP_FIELDS = ("clusterIP", "clusterIPs", "healthCheckNodePort", "ipFamilies",
                      "ipFamilyPolicy")

Obj = dict[str, Any]


def portable(obj: Obj, kind: str, api_version: str, owner: str | None = None) -> Obj:
    """A copy without the fields that belong to the cluster it was read from."""
    out = copy.deepcopy(obj)
    out["kind"], out["apiVersion"] = kind, api_version
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for k in _DROP_METADATA:
        meta.pop(k, None)
    annotations = meta.get("annotations") or {}
    for k in _DROP_ANNOTATIONS:
        annotations.pop(k, None)
    if not annotations:
        meta.pop("annotations", None)
    if owner:
        meta.setdefault("labels", {})[OWNER_LABEL] = owner
    spec = out.get("spec") or {}
    if kind == "Service":
        for k in _CLUSTER_IP_FIELDS:
            spec.pop(k, None)
        for p in spec.get("ports") or []:
            p.pop("nodePort", None)
    if kind == "Deployment":
        pod = spec.get("template", {}).get("spec", {})
        pod.pop("nodeName", None)
        selector = pod.get("nodeSelector") or {}
        selector.pop(HOSTNAME_LABEL, None)  # the source's node means nothing in the target
        if not selector:
            pod.pop("nodeSelector", None)
    return out


def pin_to_node(deployment: Obj, node: str | None) -> Obj:
    if node:
        pod = deployment["spec"]["template"]["spec"]
        pod.setdefault("nodeSelector", {})[HOSTNAME_LABEL] = node
    return deployment


def references(deployment: Obj) -> tuple[set[str], set[str]]:
    """(ConfigMaps, Secrets) the pod template refers to."""
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    cms: set[str] = set()
    secrets: set[str] = {s["name"] for s in pod.get("imagePullSecrets") or [] if s.get("name")}
    for v in pod.get("volumes") or []:
        if v.get("configMap"):
            cms.add(v["configMap"]["name"])
        if v.get("secret"):
            secrets.add(v["secret"]["secretName"])
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("configMap"):
                cms.add(src["configMap"]["name"])
            if src.get("secret"):
                secrets.add(src["secret"]["name"])
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for ef in c.get("envFrom") or []:
            if ef.get("configMapRef"):
                cms.add(ef["configMapRef"]["name"])
            if ef.get("secretRef"):
                secrets.add(ef["secretRef"]["name"])
        for e in c.get("env") or []:
            ref = e.get("valueFrom") or {}
            if ref.get("configMapKeyRef"):
                cms.add(ref["configMapKeyRef"]["name"])
            if ref.get("secretKeyRef"):
                secrets.add(ref["secretKeyRef"]["name"])
    return cms, secrets


def budgets_for(deployment: Obj, budgets: list[Obj]) -> list[str]:
    """The PodDisruptionBudgets (of its namespace) that select the Deployment's pods: their
    matchLabels all on the pod template (a budget with matchExpressions is matched by its
    matchLabels alone)."""
    labels = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get(
        "labels") or {}
    out = []
    for b in budgets:
        match = (b.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        if match and all(labels.get(k) == v for k, v in match.items()):
            out.append(b["metadata"]["name"])
    return sorted(out)


def route_rule(hostname: str, namespace: str, service: str, domains: list[str]) -> str:
    """The hosts a migrated service answers to in its new cluster: the public hostname and the
    names in-cluster clients of the clusters it left call (`svc`, `svc.ns`, `svc.ns.svc`,
    `svc.ns.svc.<domain>`), which their DNS sends here through their forwarders."""
    names = [hostname.rstrip("."), service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
             *dict.fromkeys(f"{service}.{namespace}.svc.{d}" for d in domains)]
    return " || ".join(f"Host(`{n}`)" for n in names)


def ingress_route(namespace: str, service: str, rule: str, port: int, owner: str) -> Obj:
    """Traefik IngressRoute sending the hosts of `rule` to the service (see traefik/)."""
    return {
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": service, "namespace": namespace, "labels": {OWNER_LABEL: owner}},
        "spec": {"entryPoints": ["web"],
                 "routes": [{"kind": "Rule", "match": rule,
                             "services": [{"name": service, "port": port}]}]},
    }


def routes(route: Obj | None, rule: str, service: str) -> bool:
    """Whether an existing IngressRoute already sends the hosts of `rule` to the service."""
    if route is None:
        return False
    return any(r.get("match") == rule and any(s.get("name") == service
                                              for s in r.get("services") or [])
               for r in route.get("spec", {}).get("routes") or [])


def forwarder(service: Obj, hostname: str, owner: str) -> Obj:
    """The source's Service turned into an ExternalName for the service's public hostname
    (the live-migration paper's forwarder): cluster DNS answers the old in-cluster names with
    a CNAME to it, and the ingress proxies there, so clients still calling the source reach
    wherever DNS says the service runs (ports kept: the ingress port)."""
    out = portable(service, "Service", "v1")
    out["metadata"]["resourceVersion"] = service["metadata"]["resourceVersion"]
    out["metadata"].setdefault("labels", {})[OWNER_LABEL] = owner
    spec = out["spec"]
    for k in ("selector", "sessionAffinity", "sessionAffinityConfig", "externalTrafficPolicy",
              "publishNotReadyAddresses"):
        spec.pop(k, None)
    spec["type"] = "ExternalName"
    spec["externalName"] = hostname.rstrip(".")
    spec["ports"] = [{k: v for k, v in p.items() if k in ("name", "port", "protocol")}
                     for p in spec.get("ports") or []]
    return out


def is_forwarder(service: Obj | None) -> bool:
    return bool(service) and service.get("spec", {}).get("type") == "ExternalName"


def restorable(prior: Obj, current: Obj | None) -> Obj:
    """`prior` ready to PUT over `current` (or to POST when it is gone)."""
    kind = prior["kind"]
    out = portable(prior, kind, prior["apiVersion"])
    if current is not None:
        out["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if kind == "Service" and prior["spec"].get("type") != "ExternalName" and \
                current["spec"].get("type") != "ExternalName":
            out["spec"]["clusterIP"] = current["spec"].get("clusterIP")
    return out


def secret_digest(secret: Obj) -> str:
    """What a Secret holds (type and data), as a digest: all the journal keeps of a Secret."""
    content = {"type": secret.get("type"), "data": secret.get("data") or {},
               "stringData": secret.get("stringData") or {}}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def label_owner(obj: Obj, owner: str | None) -> Obj:
    """Mark `obj` as created by migration `owner`, or (None) as not a migration's."""
    labels = obj["metadata"].setdefault("labels", {})
    if owner:
        labels[OWNER_LABEL] = owner
    else:
        labels.pop(OWNER_LABEL, None)
    return obj


def is_owned(obj: Obj | None) -> bool:
    """Created by a migration (any): greenwise-mc may replace or delete it."""
    return bool(obj) and OWNER_LABEL in ((obj.get("metadata") or {}).get("labels") or {})
