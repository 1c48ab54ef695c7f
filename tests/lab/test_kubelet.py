"""The fake kubelet runs pods as local processes and ends them like a kubelet would."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
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


def node_metrics(kube: Any, node: str) -> dict[str, float]:
    """The node's /metrics (the fake kubelet's, on its InternalIP), series -> value."""
    addresses = kube.get(f"/api/v1/nodes/{node}")["status"]["addresses"]
    ip = next(a["address"] for a in addresses if a["type"] == "InternalIP")
    text = httpx.get(f"http://{ip}:10250/metrics", trust_env=False, timeout=5).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def test_node_metrics_measure_the_pods_cpu(lab: Lab) -> None:
    kube = lab.kube("edge")
    namespace(kube, "kubelet")
    burn = ("import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"
            "time.sleep(3600)")
    pod = shell_pod("burner", "", None, grace=1)
    pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "edge1"}
    pod["spec"]["containers"][0].update(image="python", command=["python3", "-c", burn])
    kube.create("/api/v1/namespaces/kubelet/pods", pod)
    path = "/api/v1/namespaces/kubelet/pods/burner"
    try:
        pod = wait_for("pod Ready", lambda: (p := kube.get(path)) and is_ready(p) and p)
        cpu = 'container_cpu_usage_seconds_total{namespace="kubelet",pod="burner",'
        # cAdvisor's name: the container's CPU seconds, as /proc has them for its process. The
        # node samples every second: wait for the whole 1.5 s burned (the process then sleeps),
        # else a sample taken mid-burn is compared with /proc read later.
        m = wait_for("the burned CPU seconds", lambda: (m := node_metrics(kube, "edge1")).get(
            cpu + 'container="main",image="python"}', 0) >= 1.5 and m, timeout=60)
        measured = proc_cpu_seconds(pid_of(pod))
        assert m[cpu + 'container="main",image="python"}'] == pytest.approx(measured, abs=0.1)
        assert m[cpu + 'container="",image=""}'] == m[cpu + 'container="main",image="python"}']
        # node_exporter's name: one series per mode and core (edge1 has 4); the pods' busy
        # time (this one's at least) in user + system, the rest idle: 4 core-seconds a second.
        cores = {k.split('cpu="')[1].split('"')[0] for k in m if k.startswith("node_cpu_")}
        assert cores == {"0", "1", "2", "3"}
        busy = sum(v for k, v in m.items()
                   if k.startswith("node_cpu_") and ('"user"' in k or '"system"' in k))
        assert busy >= m[cpu + 'container="main",image="python"}'] - 0.01
        t0, total0 = time.monotonic(), sum(v for k, v in m.items() if k.startswith("node_cpu_"))
        time.sleep(3)
        m2 = node_metrics(kube, "edge1")
        seconds = (sum(v for k, v in m2.items() if k.startswith("node_cpu_")) - total0) / 4
        assert abs(seconds - (time.monotonic() - t0)) <= 1.2  # sampled every second
        # Kepler's: its dynamic share of the node's energy, and an idle share.
        joules = ('kepler_container_joules_total{container_namespace="kubelet",'
                  'pod_name="burner",container_name="main",mode="%s"}')
        assert m2[joules % "dynamic"] > 0 and m2[joules % "idle"] > 0
    finally:
        kube.delete(path)
        wait_for("pod deleted", lambda: gone(kube, path), timeout=30)
