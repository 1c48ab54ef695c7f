"""Prometheus for the lab: one per cluster, plus a global one that federates them all.

Every series a cluster Prometheus stores carries `cluster="<name>"` (set as a target label, and
as an external label for federation and alerts). The global Prometheus scrapes each cluster's
/federate with `honor_labels: true`, so the series keep their own `cluster`, `job` and
`instance` labels. Configurations are written as JSON, which is valid YAML, to need no YAML
library. Everything listens on 127.0.0.1 with a free port, data lives in the work directory.

The global Prometheus can also scrape load generators itself (job `loadgen`): every file_sd
target file `*.json` in a directory (tests/lab/loadgen.py `register=`), with
`cluster="global"` as the series it scrapes of its own have (users are nobody's cluster).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.lab.procs import Proc, free_port, spawn

RETENTION = "2h"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class KubeSD:
    """How a cluster Prometheus reaches its kube-apiserver for service discovery.

    Pods annotated `prometheus.io/scrape: "true"` are scraped on `prometheus.io/port` (else
    their first container port) at `prometheus.io/path` (else /metrics).
    """

    api_server: str  # e.g. https://127.0.0.1:6443
    bearer_token_file: Path
    ca_file: Path
    # Also scrape each node's address on this port (e.g. a fake kubelet's /metrics), if set.
    node_metrics_port: int | None = None
    node_metrics_path: str = "/metrics"


def _kube_jobs(work: Path, kubernetes: KubeSD) -> list[dict[str, Any]]:
    # Debian's Prometheus has no kubernetes_sd: tests.lab.kubesd writes these files instead,
    # with the labels (pod, namespace, node, cluster, __metrics_path__) already set.
    jobs: list[dict[str, Any]] = [
        {"job_name": "kubernetes-pods",
         "file_sd_configs": [{"files": [str(work / "sd-pods.json")], "refresh_interval": "5s"}]},
    ]
    if kubernetes.node_metrics_port is not None:
        jobs.append({
            "job_name": "kubernetes-nodes", "metrics_path": kubernetes.node_metrics_path,
            "file_sd_configs": [{"files": [str(work / "sd-nodes.json")], "refresh_interval": "5s"}],
        })
    return jobs


def _kubesd_cmd(cluster: str, work: Path, kube: KubeSD) -> list[str]:
    cmd = [sys.executable, "-m", "tests.lab.kubesd", "--api-server", kube.api_server,
           "--token-file", str(kube.bearer_token_file), "--ca-file", str(kube.ca_file),
           "--cluster", cluster, "--pods-file", str(work / "sd-pods.json")]
    if kube.node_metrics_port is not None:
        cmd += ["--nodes-file", str(work / "sd-nodes.json"),
                "--node-port", str(kube.node_metrics_port)]
    return [*cmd, "--"]


def cluster_config(cluster: str, work: Path, self_address: str,
                   static_targets: list[str] | None, kubernetes: KubeSD | None,
                   scrape_interval: str) -> dict[str, Any]:
    labels = {"cluster": cluster}
    jobs: list[dict[str, Any]] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [self_address],
                                                       "labels": labels}]},
    ]
    if static_targets:
        jobs.append({"job_name": "static",
                     "static_configs": [{"targets": list(static_targets), "labels": labels}]})
    if kubernetes is not None:
        jobs += _kube_jobs(work, kubernetes)
    return {"global": _global(scrape_interval, labels), "scrape_configs": jobs}


def global_config(self_address: str, clusters: dict[str, str], scrape_interval: str,
                  loadgen_targets: Path | None = None) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [self_address],
                                                       "labels": {"cluster": "global"}}]},
    ]
    if loadgen_targets is not None:
        jobs.append({
            "job_name": "loadgen",
            "file_sd_configs": [{"files": [str(Path(loadgen_targets).resolve() / "*.json")],
                                 "refresh_interval": "5s"}],
            "relabel_configs": [{"target_label": "cluster", "replacement": "global"}],
        })
    for name, url in sorted(clusters.items()):
        jobs.append({
            "job_name": f"federate-{name}",
            "honor_labels": True,
            "metrics_path": "/federate",
            # Every series; the empty-name matcher alone would be rejected.
            "params": {"match[]": ['{__name__=~".+"}']},
            # The target label only fills in series that somehow lack `cluster`.
            "static_configs": [{"targets": [_hostport(url)], "labels": {"cluster": name}}],
        })
    return {"global": _global(scrape_interval, {"prometheus": "global"}),
            "scrape_configs": jobs}


def _global(scrape_interval: str, external_labels: dict[str, str]) -> dict[str, Any]:
    # scrape_timeout defaults to 10s, which must not exceed a shorter interval.
    return {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval, "external_labels": external_labels}


def _hostport(url: str) -> str:
    hostport = url.split("://", 1)[-1].rstrip("/")
    if not hostport.startswith("127."):
        raise ValueError(f"federation target {url} is not on 127.0.0.0/8")
    return hostport


def _start(name: str, work: Path, config: dict[str, Any], port: int, timeout: float,
           wrapper: list[str] | None = None) -> tuple[Proc, str]:
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "prometheus.yml"
    conf.write_text(json.dumps(config, indent=2))
    cmd = ["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={work / 'data'}",
           f"--storage.tsdb.retention.time={RETENTION}",
           f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"]
    # The wrapper (kubesd) runs Prometheus as its child; it needs the repository on sys.path.
    proc = spawn(name, (wrapper or []) + cmd, work, cwd=REPO if wrapper else None)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def wait_ready(url: str, proc: Proc | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting; see {proc.log}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def start_cluster_prometheus(cluster: str, work_dir: Path, static_targets: list[str] | None = None,
                             kubernetes: KubeSD | None = None, scrape_interval: str = "3s",
                             timeout: float = 30.0) -> tuple[Proc, str]:
    """Start a Prometheus for one cluster; returns (proc, base URL). Ready, maybe without data."""
    port = free_port()
    work = Path(work_dir).resolve()
    config = cluster_config(cluster, work, f"127.0.0.1:{port}", static_targets, kubernetes,
                            scrape_interval)
    wrapper = _kubesd_cmd(cluster, work, kubernetes) if kubernetes is not None else None
    return _start(f"prometheus-{cluster}", work, config, port, timeout, wrapper)


def start_global_prometheus(work_dir: Path, clusters: dict[str, str], scrape_interval: str = "3s",
                            timeout: float = 30.0,
                            loadgen_targets: Path | None = None) -> tuple[Proc, str]:
    """Start the federating Prometheus over `clusters` ({name: base URL}); it also scrapes the
    load generators registered in `loadgen_targets` (a directory, created), if given."""
    port = free_port()
    if loadgen_targets is not None:
        Path(loadgen_targets).mkdir(parents=True, exist_ok=True)
    config = global_config(f"127.0.0.1:{port}", clusters, scrape_interval, loadgen_targets)
    return _start("prometheus-global", Path(work_dir).resolve(), config, port, timeout)


def reload(url: str, work_dir: Path, config: dict[str, Any]) -> None:
    """Rewrite the configuration in `work_dir` and ask the Prometheus at `url` to reload it."""
    (Path(work_dir).resolve() / "prometheus.yml").write_text(json.dumps(config, indent=2))
    httpx.post(f"{url}/-/reload", timeout=10.0, trust_env=False).raise_for_status()


def query(url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=timeout,
                  trust_env=False)
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body.get('error')}")
    return list(body["data"]["result"])


def wait_for_series(url: str, query_: str, timeout: float) -> list[dict[str, Any]]:
    """Poll an instant query until it returns at least one series (data, not readiness)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = query(url, query_)
            if result:
                return result
        except (httpx.HTTPError, RuntimeError) as e:
            last_error = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"no series for {query_!r} at {url} after {timeout}s"
                               + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(0.25)
