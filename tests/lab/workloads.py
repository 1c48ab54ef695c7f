"""Small helpers for tests that run workloads on the lab: manifests, apply, wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.lab.cluster import Kube, KubeError

T = TypeVar("T")
ML_IMAGE = "greenwise/ml-service:lab"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0,
             every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; the timeout is a bound, not a measure."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def namespace(kube: Kube, name: str) -> None:
    try:
        kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    except KubeError as e:
        if e.status != 409:
            raise


def ml_service(kube: Kube, ns: str, name: str, node: str, host: str, prestop_s: int = 3,
               grace_s: int = 15) -> None:
    """The ML stand-in as Deployment (pinned to `node`), Service and IngressRoute Host(host)."""
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": "8080"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": grace_s,
                    "containers": [{
                        "name": "ml", "image": ML_IMAGE,
                        "ports": [{"name": "http", "containerPort": 8080}],
                        # Keeps serving while Traefik and Endpoints drop the pod.
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep",
                                                                       str(prestop_s)]}}},
                    }],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
               "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}
    route = {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
             "metadata": {"name": name, "namespace": ns},
             "spec": {"entryPoints": ["web"],
                      "routes": [{"kind": "Rule", "match": f"Host(`{host}`)",
                                  "services": [{"name": name, "port": 80}]}]}}
    kube.create(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment)
    kube.create(f"/api/v1/namespaces/{ns}/services", service)
    kube.create(f"/apis/traefik.io/v1alpha1/namespaces/{ns}/ingressroutes", route)


def pods(kube: Kube, ns: str, app: str) -> list[dict[str, Any]]:
    return list(kube.get(f"/api/v1/namespaces/{ns}/pods",
                         labelSelector=f"app={app}").get("items", []))


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def ready_pod_on(kube: Kube, ns: str, app: str, node: str) -> dict[str, Any] | None:
    """The single pod of `app` if it is Ready on `node` and no other pod of it is left."""
    items = pods(kube, ns, app)
    if len(items) == 1 and items[0]["spec"].get("nodeName") == node and is_ready(items[0]):
        return items[0]
    return None


def endpoint_ips(kube: Kube, ns: str, name: str) -> set[str]:
    try:
        ep = kube.get(f"/api/v1/namespaces/{ns}/endpoints/{name}")
    except KubeError as e:
        if e.status == 404:
            return set()
        raise
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
