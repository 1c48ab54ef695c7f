"""The global Prometheus sees all three clusters, each series labelled with its `cluster`."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.lab.cluster import Kube
from tests.lab.lab import Lab
from tests.lab.prom import query
from tests.lab.workloads import ml_service, namespace, ready_pod_on, wait_for

pytestmark = pytest.mark.lab


def clusters_with(url: str, promql: str) -> set[str]:
    try:
        return {s["metric"].get("cluster", "") for s in query(url, promql)}
    except (httpx.HTTPError, RuntimeError):
        return set()


def test_global_prometheus_has_every_cluster(lab: Lab) -> None:
    url = lab.info()["prometheus"]
    want = {"edge", "fog", "cloud"}
    # Each cluster Prometheus scrapes its Traefik; the global one federates them.
    wait_for("Traefik series from all clusters",
             lambda: want <= clusters_with(url, "traefik_config_reloads_total"), timeout=90,
             every=1)
    seen = clusters_with(url, 'up{job="prometheus"}')
    assert want <= seen
    # The fake kubelet's power model, per node, under Kepler's name.
    nodes = wait_for("node power series", lambda: {
        (s["metric"]["cluster"], s["metric"]["node"])
        for s in query(url, "kepler_node_platform_joules_total > 0")} >= {
        ("edge", "edge0"), ("edge", "edge1"), ("edge", "edge2"), ("fog", "fog0"),
        ("cloud", "cloud")}, timeout=90, every=1)
    assert nodes
    # node_exporter's CPU seconds, one set of modes per core of each node.
    cores = {("edge", "edge0"): 4, ("edge", "edge1"): 4, ("edge", "edge2"): 4, ("fog", "fog0"): 8,
             ("cloud", "cloud"): 12}
    wait_for("node CPU series", lambda: {
        (s["metric"]["cluster"], s["metric"]["node"]): int(float(s["value"][1]))
        for s in query(url, 'count by (cluster, node) (node_cpu_seconds_total{mode="idle"})')
    } == cores, timeout=90, every=1)


def test_pod_metrics_reach_the_global_prometheus(lab: Lab) -> None:
    kube = lab.kube("edge")
    ns = f"metrics{uuid.uuid4().hex[:6]}"  # its own: the test can run again on the same lab
    namespace(kube, ns)
    ml_service(kube, ns, "ml", node="edge2", host=f"{ns}.continuum.test")
    try:
        check_pod_metrics(lab, kube, ns)
    finally:
        kube.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/ml")


def check_pod_metrics(lab: Lab, kube: Kube, ns: str) -> None:
    pod = wait_for("ml Ready", lambda: ready_pod_on(kube, ns, "ml", "edge2"))
    for _ in range(5):
        httpx.get(f"http://{pod['status']['podIP']}:8080/predictions/resnet-18",
                  trust_env=False).raise_for_status()
    url = lab.info()["prometheus"]
    promql = f'ts_inference_requests_total{{namespace="{ns}"}}'
    series = wait_for("TorchServe counters via federation",
                      lambda: [s for s in query(url, promql) if float(s["value"][1]) >= 5],
                      timeout=90, every=1)
    labels = series[0]["metric"]
    assert (labels["cluster"], labels["node"], labels["pod"]) == (
        "edge", "edge2", pod["metadata"]["name"])
    # The CPU the requests cost shows up as the pod's energy on edge2 (and its idle share).
    energy = wait_for("container energy", lambda: len(r := query(
        url, f'kepler_container_joules_total{{pod_name="{pod["metadata"]["name"]}"}} > 0')) == 2
        and r, timeout=90, every=1)
    assert {(s["metric"]["cluster"], s["metric"]["node"]) for s in energy} == {("edge", "edge2")}
    assert {s["metric"]["mode"] for s in energy} == {"dynamic", "idle"}
    # ... and as its cAdvisor CPU seconds, by namespace, pod and container.
    cpu = wait_for("container CPU", lambda: query(
        url, f'container_cpu_usage_seconds_total{{namespace="{ns}",container="ml"}} > 0'),
        timeout=90, every=1)
    labels = cpu[0]["metric"]
    assert (labels["cluster"], labels["node"], labels["pod"]) == (
        "edge", "edge2", pod["metadata"]["name"])
