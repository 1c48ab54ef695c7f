"""The fake kubelet runs pods as local processes and ends them like a kubelet would."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab import Lab
from tests.lab.workloads import is_ready, namespace, wait_for

pytestmark = pytest.mark.lab


def shell_pod(name: str, script: str, prestop: str | None, grace: int) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox",
                                 "command": ["sh", "-c", script]}
    if prestop:
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sh", "-c", prestop]}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]}}


def pid_of(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("lab://"))


def gone(kube: Any, path: str) -> bool:
    try:
        kube.get(path)
    except Exception as e:
        return getattr(e, "status", None) == 404
    return False


def test_prestop_then_sigterm_then_delete(lab: Lab, tmp_path: Path) -> None:
    kube = lab.kube("fog")
    namespace(kube, "kubelet")
    trace = tmp_path / "trace"
    script = (f'trap "echo term >> {trace}; exit 0" TERM; echo "started $POD_IP" >> {trace}; '
              "while :; do sleep 0.1; done")
    kube.create("/api/v1/namespaces/kubelet/pods",
                shell_pod("hooks", script, f"echo prestop >> {trace}", grace=20))
    path = "/api/v1/namespaces/kubelet/pods/hooks"
    pod = wait_for("pod Ready", lambda: (p := kube.get(path)) and is_ready(p) and p)
    assert pod["spec"]["nodeName"] == "fog0"  # scheduled by the real scheduler
    wait_for("container started", lambda: trace.exists())
    kube.delete(path)
    wait_for("pod deleted", lambda: gone(kube, path), timeout=30)
    lines = trace.read_text().split("\n")
    assert lines[0] == f"started {pod['status']['podIP']}"
    assert lines[1:3] == ["prestop", "term"]
    assert not Path(f"/proc/{pid_of(pod)}").exists()


def test_sigterm_ignored_until_grace_then_killed(lab: Lab) -> None:
    kube = lab.kube("cloud")
    namespace(kube, "kubelet")
    kube.create("/api/v1/namespaces/kubelet/pods",
                shell_pod("stubborn", 'trap "" TERM; while :; do sleep 0.1; done', None, grace=2))
    path = "/api/v1/namespaces/kubelet/pods/stubborn"
    pod = wait_for("pod Ready", lambda: (p := kube.get(path)) and is_ready(p) and p)
    pid = pid_of(pod)
    assert os.path.exists(f"/proc/{pid}")
    kube.delete(path)
    wait_for("pod deleted after its grace period", lambda: gone(kube, path), timeout=30)
    assert not Path(f"/proc/{pid}").exists()


def test_job_pod_runs_to_completion(lab: Lab, tmp_path: Path) -> None:
    kube = lab.kube("edge")
    namespace(kube, "kubelet")
    out = tmp_path / "job-ran"
    kube.create("/apis/batch/v1/namespaces/kubelet/jobs", {
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox",
                            "command": ["sh", "-c", f"echo $(NODE_NAME) > {out}"]}]}}}})
    job = wait_for("Job succeeded", lambda: (j := kube.get(
        "/apis/batch/v1/namespaces/kubelet/jobs/once")).get("status", {}).get("succeeded") and j,
        timeout=60)
    assert job["status"]["succeeded"] == 1
    assert out.read_text().strip() in {"edge0", "edge1", "edge2"}
