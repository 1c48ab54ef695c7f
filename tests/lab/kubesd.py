"""Kubernetes pod/node discovery for Debian's Prometheus, which is built without kubernetes_sd.

Debian's prometheus 2.42 rejects `kubernetes_sd_configs` ("field kubernetes_sd_configs not found
in type config.ScrapeConfig"), so this process lists pods (and optionally nodes) from the
apiserver about every second and writes a `file_sd_configs` target file that Prometheus watches
with inotify. The targets get the labels a kubernetes_sd pod job with the usual relabelling would
give: `pod`, `namespace`, `node`, `cluster`.

It runs Prometheus as its child in the same process group, so stopping the Proc (SIGTERM to the
group) stops both, and it exits when Prometheus does.

    python -m tests.lab.kubesd --api-server https://127.0.0.1:P --token-file T --ca-file C \
        --cluster edge --pods-file pods.json [--nodes-file nodes.json --node-port 10250] \
        -- prometheus --config.file=...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SCRAPE = "prometheus.io/scrape"
PORT = "prometheus.io/port"
PATH = "prometheus.io/path"


def pod_targets(pods: list[dict[str, Any]], cluster: str) -> list[dict[str, Any]]:
    """file_sd groups for pods annotated prometheus.io/scrape=true that are running with an IP."""
    groups = []
    for pod in pods:
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
        ann = meta.get("annotations") or {}
        ip = status.get("podIP")
        if ann.get(SCRAPE) != "true" or not ip or status.get("phase") != "Running":
            continue
        if meta.get("deletionTimestamp"):
            continue  # terminating: it is going away
        port = ann.get(PORT) or _first_port(spec)
        if not port:
            continue
        labels = {"pod": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                  "node": spec.get("nodeName", ""), "cluster": cluster,
                  "__metrics_path__": ann.get(PATH) or "/metrics"}
        groups.append({"targets": [f"{ip}:{port}"], "labels": labels})
    return sorted(groups, key=lambda g: g["targets"][0])


def node_targets(nodes: list[dict[str, Any]], cluster: str, port: int) -> list[dict[str, Any]]:
    groups = []
    for node in nodes:
        addresses = node.get("status", {}).get("addresses") or []
        ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), None)
        if ip:
            groups.append({"targets": [f"{ip}:{port}"],
                           "labels": {"node": node["metadata"]["name"], "cluster": cluster}})
    return sorted(groups, key=lambda g: g["targets"][0])


def _first_port(spec: dict[str, Any]) -> str | None:
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                return str(p["containerPort"])
    return None


def write_if_changed(path: Path, groups: list[dict[str, Any]]) -> None:
    text = json.dumps(groups, indent=1)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic, so Prometheus never reads half a file


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: ... -- prometheus ARGS")
    split = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("--api-server", required=True)
    p.add_argument("--token-file", required=True, type=Path)
    p.add_argument("--ca-file", required=True, type=Path)
    p.add_argument("--cluster", required=True)
    p.add_argument("--pods-file", required=True, type=Path)
    p.add_argument("--nodes-file", type=Path)
    p.add_argument("--node-port", type=int)
    p.add_argument("--interval", type=float, default=1.0)
    a = p.parse_args(argv[:split])
    token = a.token_file.read_text().strip()
    verify = str(a.ca_file) if a.api_server.startswith("https:") else True
    client = httpx.Client(base_url=a.api_server, verify=verify, timeout=5.0,
                          headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    write_if_changed(a.pods_file, [])
    if a.nodes_file:
        write_if_changed(a.nodes_file, [])
    # Same process group as us: the Proc's killpg reaches Prometheus too.
    child = subprocess.Popen(argv[split + 1:])
    stopping = False

    def on_term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        while child.poll() is None and not stopping:
            try:
                pods = client.get("/api/v1/pods").raise_for_status().json()["items"]
                write_if_changed(a.pods_file, pod_targets(pods, a.cluster))
                if a.nodes_file and a.node_port:
                    nodes = client.get("/api/v1/nodes").raise_for_status().json()["items"]
                    write_if_changed(a.nodes_file, node_targets(nodes, a.cluster, a.node_port))
            except (httpx.HTTPError, ValueError, KeyError) as e:
                # The apiserver may be restarting: keep the last targets, say why, try again.
                print(f"kubesd: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            time.sleep(a.interval)
    finally:
        # Never leave Prometheus behind, whatever ended this loop.
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
