"""Per-cluster Prometheus and the global federating one, on real Prometheus 2.42 processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from prometheus_api_client import PrometheusConnect

from tests.lab import loadgen
from tests.lab.kubesd import node_targets, pod_targets
from tests.lab.netfixtures import running, start_backend
from tests.lab.prom import (
    KubeSD,
    cluster_config,
    global_config,
    start_cluster_prometheus,
    start_global_prometheus,
    wait_for_series,
)


def test_global_prometheus_sees_both_clusters_with_their_label(tmp_path: Path) -> None:
    with running([]) as procs:
        urls: dict[str, str] = {}
        for i, cluster in enumerate(("edge", "fog"), start=51):
            backend, port = start_backend(tmp_path, f"127.0.0.{i}", cluster, f"{cluster}-n1",
                                          f"{cluster}-pod")
            procs.append(backend)
            proc, urls[cluster] = start_cluster_prometheus(
                cluster, tmp_path / cluster, static_targets=[f"127.0.0.{i}:{port}"])
            procs.append(proc)
        proc, global_url = start_global_prometheus(tmp_path / "global", urls,
                                                   loadgen_targets=tmp_path / "loadgen")
        procs.append(proc)

        # Each cluster Prometheus labels what it scrapes with its own cluster only.
        for cluster, url in urls.items():
            series = wait_for_series(url, "lab_backend_up", timeout=60)
            assert {s["metric"]["cluster"] for s in series} == {cluster}

        # Federation lags a scrape interval or two behind the clusters: wait for both.
        wait_for_series(global_url, "count(count by (cluster) (lab_backend_up)) >= 2", timeout=60)

        prom = PrometheusConnect(url=global_url, disable_ssl=True)
        series = prom.custom_query("lab_backend_up")
        by_cluster = {s["metric"]["cluster"]: s["metric"] for s in series}
        assert set(by_cluster) == {"edge", "fog"}
        for cluster, metric in by_cluster.items():
            # honor_labels kept the original job/instance/pod, not job="federate-...".
            assert metric["job"] == "static"
            assert metric["pod"] == f"{cluster}-pod"
        # Each Prometheus scrapes itself on its own schedule: wait for all three, then look.
        wait_for_series(global_url, 'count(count by (cluster) (up{job="prometheus"})) >= 3',
                        timeout=60)
        ups = prom.custom_query('up{job="prometheus"}')
        assert {s["metric"]["cluster"] for s in ups} >= {"edge", "fog", "global"}
        federate = prom.custom_query('up{job=~"federate-.*"}')
        assert sorted((s["metric"]["job"], s["value"][1]) for s in federate) == [
            ("federate-edge", "1"), ("federate-fog", "1")]

        # The global Prometheus scrapes registered load generators itself, as cluster "global":
        # a load generator's metrics, registered the way tests.lab.loadgen does (file_sd).
        backend, port = start_backend(tmp_path, "127.0.0.1", "users", "-", "loadgen-pod")
        procs.append(backend)
        registration = loadgen._Registration(tmp_path / "loadgen", port)
        [users] = wait_for_series(global_url, 'lab_backend_up{job="loadgen"}', timeout=60)
        assert (users["metric"]["cluster"], users["metric"]["pod"]) == ("global", "loadgen-pod")
        registration.close()  # the run ended: the target goes, its series go stale
        wait_for_series(global_url, 'absent(lab_backend_up{job="loadgen"})', timeout=60)


def test_generated_configs_pass_promtool(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    kube = KubeSD("https://127.0.0.1:6443", tmp_path / "token", tmp_path / "ca.crt",
                  node_metrics_port=10250)
    configs = {
        "cluster.yml": cluster_config("edge", tmp_path, "127.0.0.1:9090", ["127.0.0.2:8000"], kube,
                                      "3s"),
        "global.yml": global_config("127.0.0.1:9091", {"edge": "http://127.0.0.1:9090"}, "3s",
                                    tmp_path / "loadgen"),
    }
    for name, config in configs.items():
        path = tmp_path / name
        path.write_text(json.dumps(config))
        done = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def pod(name: str, ip: str | None, phase: str = "Running", scrape: str | None = "true",
        port: str | None = "9100", deleting: bool = False) -> dict[str, object]:
    annotations = {}
    if scrape is not None:
        annotations["prometheus.io/scrape"] = scrape
    if port is not None:
        annotations["prometheus.io/port"] = port
    meta: dict[str, object] = {"name": name, "namespace": "ml", "annotations": annotations}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "edge-1", "containers": [
        {"ports": [{"containerPort": 8080}]}]}, "status": {"phase": phase, "podIP": ip}}


def test_kubesd_turns_annotated_running_pods_into_targets() -> None:
    pods = [pod("a", "127.0.1.2"), pod("b", "127.0.1.3", port=None),
            pod("pending", None, phase="Pending"), pod("plain", "127.0.1.4", scrape=None),
            pod("off", "127.0.1.5", scrape="false"), pod("going", "127.0.1.6", deleting=True)]
    assert pod_targets(pods, "edge") == [
        {"targets": ["127.0.1.2:9100"], "labels": {"pod": "a", "namespace": "ml",
                                                   "node": "edge-1", "cluster": "edge",
                                                   "__metrics_path__": "/metrics"}},
        {"targets": ["127.0.1.3:8080"], "labels": {"pod": "b", "namespace": "ml",
                                                   "node": "edge-1", "cluster": "edge",
                                                   "__metrics_path__": "/metrics"}},
    ]
    nodes = [{"metadata": {"name": "edge-1"},
              "status": {"addresses": [{"type": "Hostname", "address": "edge-1"},
                                       {"type": "InternalIP", "address": "127.0.1.1"}]}}]
    assert node_targets(nodes, "edge", 10250) == [
        {"targets": ["127.0.1.1:10250"], "labels": {"node": "edge-1", "cluster": "edge"}}]
