"""The idle image (`greenwise.io/idle`): pods Running and Ready at once with no process, and
synthetic per-pod metrics under the names the monitoring catalog reads."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.lab.cluster import HostSpec, KubeError
from tests.lab.kubelet import (
    Container,
    IdleLoad,
    Kubelet,
    NodeInfo,
    Pod,
    is_idle_image,
    render_node_metrics,
)
from tests.lab.lab import NODE_METRICS_PORT, REPO, Lab
from tests.lab.workloads import is_ready, namespace, wait_for

HOST = HostSpec("edge0", 4, 19.0, 58.5, 14, "edge-a", 2.0)


def idle_pod(load: IdleLoad, since: float) -> Pod:
    spec = {"containers": [{"name": "ml", "image": "greenwise.io/idle:lab"}]}
    container = Container("ml", [], {}, [], Path("/dev/null"), idle_cores=load.cpu, since=since)
    return Pod("u1", "ns1", "svc-abc-xyz", "edge0", "127.0.0.2", spec, [container], ready=True,
               load=load, since=since)


def test_idle_image_names() -> None:
    assert is_idle_image("greenwise.io/idle")
    assert is_idle_image("greenwise.io/idle:lab")
    assert is_idle_image("greenwise.io/idle@sha256:00")
    assert not is_idle_image("greenwise.io/idler:lab")
    assert not is_idle_image("greenwise/ml-service:lab")


def test_load_from_annotations_with_defaults_for_bad_values() -> None:
    load = IdleLoad.of({"greenwise.io/idle-rps": "40", "greenwise.io/idle-latency-ms": "12.5",
                        "greenwise.io/idle-cpu": "lots", "greenwise.io/idle-hostname": "a.test",
                        "other": "x"})
    assert load == IdleLoad(rps=40.0, latency_ms=12.5, cpu=IdleLoad().cpu, hostname="a.test")


def test_metrics_grow_at_the_claimed_rates() -> None:
    load = IdleLoad(rps=10.0, latency_ms=20.0, cpu=0.5, users=3.0, hostname="a.test")
    pod = idle_pod(load, time.monotonic() - 100.0)
    node = NodeInfo(HOST, "127.0.1.1", {}, {})
    Kubelet.sample_node(node, pod.containers, 100.0)
    text = render_node_metrics(node, [pod]).decode()
    series = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    at = 'namespace="ns1",pod="svc-abc-xyz"'
    served = series[f"ts_inference_requests_total{{{at}}}"]
    assert served == pytest.approx(1000.0, rel=0.01)  # 10 per s for 100 s
    # 20 ms each on a node of speed 1; this one is twice as fast
    assert series[f"ts_inference_latency_microseconds{{{at}}}"] == pytest.approx(
        served * 10_000, rel=1e-6)
    assert series[f'loadgen_users{{hostname="a.test",{at}}}'] == 3.0
    # the claimed cores are its CPU time, so the node's CPU and power follow
    cpu = series[f'container_cpu_usage_seconds_total{{{at},container="ml",image="greenwise.io/'
                 'idle:lab"}']
    assert cpu == pytest.approx(50.0, rel=0.01)
    assert series['node_cpu_seconds_total{cpu="0",mode="user"}'] == pytest.approx(cpu / 4)
    assert series["kepler_node_platform_joules_total"] > HOST.idle_watts * 100


def test_no_users_series_without_a_hostname() -> None:
    pod = idle_pod(IdleLoad(), time.monotonic())
    assert "loadgen_users" not in render_node_metrics(NodeInfo(HOST, "127.0.1.1", {}, {}),
                                                      [pod]).decode()


@pytest.mark.lab
def test_idle_pods_are_ready_at_once_without_a_process(lab: Lab) -> None:
    kubelet = next(p for p in lab.procs() if p.name == "edge-kubelet")
    # A lab brought up from another checkout runs that checkout's kubelet: a wrong setup, not
    # a reason to pass without testing.
    assert kubelet.cwd == str(REPO), (f"the lab's kubelet runs {kubelet.cwd}'s code, not this "
                                      "checkout's: bring the lab up from this checkout")
    kube = lab.kube("edge")
    ns = f"idle-{uuid.uuid4().hex[:6]}"
    namespace(kube, ns)
    try:
        labels = {"app": "idle"}
        kube.create(f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "metadata": {"name": "idle"},
            "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels,
                             "annotations": {"greenwise.io/idle-rps": "50",
                                             "greenwise.io/idle-hostname": f"{ns}.test"}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": "edge1"},
                         "containers": [{"name": "ml", "image": "greenwise.io/idle:lab",
                                         "lifecycle": {"preStop": {"exec": {
                                             "command": ["sleep", "30"]}}}}]}}}})
        path = f"/api/v1/namespaces/{ns}/pods"
        pods = wait_for("3 idle pods Ready", lambda: (
            items := kube.get(path, labelSelector="app=idle")["items"]) and len(items) == 3
            and all(is_ready(p) for p in items) and items, timeout=60)
        assert len({p["status"]["podIP"] for p in pods}) == 3
        assert {s["containerID"] for p in pods for s in p["status"]["containerStatuses"]} == \
            {"lab://0"}  # no process
        node = kube.get("/api/v1/nodes/edge1")
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        text = httpx.get(f"http://{ip}:{NODE_METRICS_PORT}/metrics", trust_env=False).text
        for p in pods:
            at = f'namespace="{ns}",pod="{p["metadata"]["name"]}"'
            assert f"ts_inference_requests_total{{{at}}}" in text
            assert f'loadgen_users{{hostname="{ns}.test",{at}}}' in text
        kube.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/idle", {"spec": {"replicas": 0}})
        # no preStop for a pod without a process: gone long before the hook's 30 s
        wait_for("the idle pods deleted", lambda: not kube.get(path)["items"], timeout=20)
    finally:
        with contextlib.suppress(KubeError):
            kube.delete(f"/api/v1/namespaces/{ns}")
