"""The lab's fake kubelet: one process per cluster serving all of that cluster's nodes.

It registers the Node objects, keeps them Ready (a lease renewed every 10 s, the Ready condition
re-posted every 30 s) and runs every pod bound to one of its nodes as real local processes:

- a pod gets a distinct loopback IP on its node's /24 (127.<c>.<node+1>.2-254) and each
  container one process, started with the pod's env plus POD_NAME, POD_NAMESPACE, POD_IP,
  NODE_NAME, CLUSTER and NODE_SPEED (the node's relative CPU speed);
- how a container maps to a process: an image starting with `greenwise/ml-service`, or any
  container without `command`, runs the ML stand-in (tests/lab/mlservice.py) on POD_IP at its
  first containerPort (8080 if none) with the port named `metrics` as metrics port; a container
  with `command` runs command + args locally ($(VAR) expanded from its env);
- the pod is Running at once and Ready when every declared TCP containerPort accepts
  connections (or its readinessProbe.httpGet answers 2xx/3xx); a container that exits is
  restarted with back-off (restartPolicy Always) and the pod is not Ready meanwhile;
- a pod whose containers all use the image `greenwise.io/idle` (any tag) starts no process: it
  is Running and Ready at once with a pod IP, ends at once when deleted (no preStop), and
  reports synthetic load on its node's /metrics (below) as its annotations say
  (`greenwise.io/idle-rps`, `-latency-ms` at node speed 1, `-cpu` busy cores, `-users`,
  `-hostname`; see IdleLoad), so that hundreds of services fit on a small machine;
- on deletion it runs each preStop hook (exec: a local command; httpGet: a request to the pod),
  sends SIGTERM, waits out terminationGracePeriodSeconds (or the deletion's grace), SIGKILLs
  what is left and deletes the pod with grace 0;
- metrics, as Kepler, node_exporter and cAdvisor would report them (this machine has no RAPL):
  each node serves /metrics on <InternalIP>:10250, sampled every second from the CPU time
  (user and system, from /proc) of its pods' processes:
  - power from the simulator's model, watts = idle + (max - idle) * curve(utilisation), where
    utilisation = CPU seconds per second / cores and curve is the host's power_curve (linear
    unless given): kepler_node_platform_joules_total (Kepler <= 0.7). Each container gets its
    CPU share of the node's dynamic energy and a share of its idle energy by process count
    (one per container, against the host's BASE_PROCESSES for everything else, as the
    simulator's Eq. 2): kepler_container_joules_total{mode="dynamic"|"idle"} with Kepler's
    labels container_namespace, pod_name, container_name;
  - node_exporter's node_cpu_seconds_total{cpu, mode}: one series per mode (user, system,
    idle, and iowait/irq/nice/softirq/steal at 0) for each of the node's cores, the pods' CPU
    time spread evenly over them and the rest of each second idle;
  - cAdvisor's container_cpu_usage_seconds_total{namespace, pod, container, image}: per
    container, plus the pod's own cgroup (container="", the sum) as cAdvisor has it;
  - for idle-image pods, as their ML server and load generator would: TorchServe's
    ts_inference_requests_total and ts_inference_latency_microseconds{namespace, pod}, and
    loadgen_users{hostname, namespace, pod} (each pod its share of the users); their CPU time
    is the `-cpu` cores they claim, so node CPU, power and Kepler follow from it as above.
  The scrape target adds `node` and `cluster` (tests/lab/kubesd.py).

    python -m tests.lab.kubelet --config STATE/clusters/edge/kubelet.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.config import HostProfile
from orchestrator.performance import curve_fraction
from tests.lab.cluster import K8S_VERSION, LABEL_PREFIX, HostSpec, Kube, KubeError
from tests.lab.metrics_http import serve_metrics

log = logging.getLogger("lab.kubelet")
MLSERVICE = Path(__file__).resolve().with_name("mlservice.py")
LEASE_EVERY = 10.0
STATUS_EVERY = 30.0
SAMPLE_EVERY = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Processes of everything else on a host: the idle power is shared by process count (Eq. 2),
# with the same default as the simulator's hosts (continuum.yaml's hosts keep it).
BASE_PROCESSES: int = HostProfile.model_fields["base_processes"].default
# node_exporter's CPU modes; the lab's pods only ever spend user and system time.
CPU_MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
IDLE_IMAGE = "greenwise.io/idle"
IDLE_ANNOTATION = "greenwise.io/idle-"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class CpuTimes:
    """User and system CPU seconds."""

    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __add__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user + other.user, self.system + other.system)

    def since(self, earlier: CpuTimes) -> CpuTimes:
        return CpuTimes(max(0.0, self.user - earlier.user),
                        max(0.0, self.system - earlier.system))

    def at_least(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(max(self.user, other.user), max(self.system, other.system))


@dataclass(frozen=True)
class IdleLoad:
    """What an idle-image pod reports: annotation greenwise.io/idle-<field, - for _>."""

    rps: float = 10.0  # requests per second it serves
    latency_ms: float = 20.0  # mean latency on a node of speed 1 (divided by the node's speed)
    cpu: float = 0.05  # busy cores
    users: float = 2.0  # its share of the service's users
    hostname: str = ""  # the service's public name, the users' label (none reported if empty)

    @classmethod
    def of(cls, annotations: dict[str, str]) -> IdleLoad:
        given: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            value = annotations.get(IDLE_ANNOTATION + name.replace("_", "-"))
            if value is None:
                continue
            try:
                given[name] = type(default)(value)
            except ValueError:
                log.warning("annotation %s%s=%r is not a %s; using %r", IDLE_ANNOTATION, name,
                            value, type(default).__name__, default)
        return cls(**given)


def api_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def is_idle_image(image: str) -> bool:
    return image.split("@", 1)[0].rsplit(":", 1)[0] == IDLE_IMAGE


@dataclass
class NodeInfo:
    host: HostSpec
    ip: str
    labels: dict[str, str]
    annotations: dict[str, str]
    next_ip: int = 2
    joules: float = 0.0
    cpu: CpuTimes = CpuTimes()  # busy seconds of its pods, all cores together
    idle_seconds: float = 0.0  # all cores together


@dataclass
class Container:
    name: str
    cmd: list[str]
    env: dict[str, str]
    ports: list[int]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: str = ""
    next_start: float = 0.0
    cpu_prev: CpuTimes = CpuTimes()  # CPU seconds of earlier (restarted) processes
    cpu_last: CpuTimes = CpuTimes()  # of the current process at the last sample
    cpu_seen: CpuTimes = CpuTimes()  # cpu_prev + cpu_last when the node last sampled
    joules_dynamic: float = 0.0
    joules_idle: float = 0.0
    idle_cores: float | None = None  # an idle-image container: busy cores it claims, no process
    since: float = field(default_factory=time.monotonic)

    def cpu_total(self) -> CpuTimes:
        if self.idle_cores is not None:
            return CpuTimes(user=self.idle_cores * (time.monotonic() - self.since))
        if self.proc is not None:
            self.cpu_last = self.cpu_last.at_least(process_cpu_times(self.proc.pid))
        return self.cpu_prev + self.cpu_last


@dataclass
class Pod:
    uid: str
    namespace: str
    name: str
    node: str
    ip: str
    spec: dict[str, Any]
    containers: list[Container]
    ready: bool = False
    posted: bool | None = None  # the Ready state the API has from us (None: to post again)
    terminating: bool = False
    started_at: str = field(default_factory=now)
    load: IdleLoad | None = None  # an idle-image pod: no process, synthetic metrics
    since: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"


class Kubelet:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cluster: str = cfg["cluster"]
        self.tier: str = cfg["tier"]
        self.kube = Kube(cfg["server"], Path(cfg["token_file"]).read_text().strip(),
                         cfg["ca_file"])
        self.pod_dir = Path(cfg["pod_dir"])
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, NodeInfo] = {}
        for h in cfg["hosts"]:
            host = HostSpec(**h["spec"])
            self.nodes[host.name] = NodeInfo(host, h["ip"], h["labels"], h["annotations"])
        self.pods: dict[str, Pod] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    # -- nodes --------------------------------------------------------------------------------

    def node_status(self, n: NodeInfo) -> dict[str, Any]:
        t = now()
        cap = {"cpu": str(n.host.cores), "memory": "32Gi", "pods": "110",
               "ephemeral-storage": "100Gi"}

        def cond(kind: str, status: str, reason: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason, "message": reason,
                    "lastHeartbeatTime": t, "lastTransitionTime": self.started}

        return {
            "capacity": cap, "allocatable": cap,
            "addresses": [{"type": "InternalIP", "address": n.ip},
                          {"type": "Hostname", "address": n.host.name}],
            "conditions": [cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                           cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                           cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                           cond("Ready", "True", "KubeletReady")],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": n.host.name, "systemUUID": n.host.name,
                         "bootID": self.started, "kernelVersion": os.uname().release,
                         "osImage": "greenwise-mc lab", "containerRuntimeVersion": "lab://1",
                         "kubeletVersion": K8S_VERSION, "kubeProxyVersion": K8S_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64"},
        }

    def register_nodes(self) -> None:
        self.started = now()
        for n in self.nodes.values():
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": n.host.name, "labels": n.labels,
                                 "annotations": n.annotations},
                    "spec": {}, "status": self.node_status(n)}
            try:
                self.kube.create("/api/v1/nodes", body)
            except KubeError as e:
                if e.status != 409:
                    raise
                self.kube.patch(f"/api/v1/nodes/{n.host.name}",
                                {"metadata": {"labels": n.labels, "annotations": n.annotations}})
            self.kube.patch(f"/api/v1/nodes/{n.host.name}/status",
                            {"status": self.node_status(n)})
            self.renew_lease(n)

    def renew_lease(self, n: NodeInfo) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n.host.name}"
        spec = {"holderIdentity": n.host.name, "leaseDurationSeconds": 40,
                "renewTime": micro_now()}
        try:
            self.kube.patch(path, {"spec": spec})
        except KubeError as e:
            if e.status != 404:
                raise
            self.kube.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                             {"metadata": {"name": n.host.name}, "spec": spec})

    def heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_EVERY):
            try:
                for n in self.nodes.values():
                    self.renew_lease(n)
                if time.monotonic() - last_status >= STATUS_EVERY:
                    last_status = time.monotonic()
                    for n in self.nodes.values():
                        self.kube.patch(f"/api/v1/nodes/{n.host.name}/status",
                                        {"status": self.node_status(n)})
            except (KubeError, httpx.HTTPError) as e:
                log.warning("heartbeat failed: %s", e)
            with self.lock:
                pods = list(self.pods.values())
            for pod in pods:
                self.sync_status(pod)

    # -- pods ---------------------------------------------------------------------------------

    def watch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                listing = self.kube.get("/api/v1/pods")
                seen = set()
                for obj in listing.get("items", []):
                    seen.add(obj["metadata"]["uid"])
                    self.on_event("ADDED", obj)
                with self.lock:
                    gone = [p for uid, p in self.pods.items() if uid not in seen]
                for p in gone:
                    self.forget(p)
                rv = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    for ev in self.kube.watch("/api/v1/pods", rv):
                        if ev["type"] == "ERROR":
                            raise KubeError(ev["object"].get("code", 500),
                                            ev["object"].get("message", "watch error"))
                        rv = ev["object"]["metadata"]["resourceVersion"]
                        if ev["type"] != "BOOKMARK":
                            self.on_event(ev["type"], ev["object"])
            except (KubeError, httpx.HTTPError, json.JSONDecodeError) as e:
                log.info("pod watch restarts: %s", e)
                time.sleep(0.5)

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta, spec = obj["metadata"], obj.get("spec", {})
        if spec.get("nodeName") not in self.nodes:
            return
        uid = meta["uid"]
        with self.lock:
            pod = self.pods.get(uid)
        if kind == "DELETED":
            if pod is not None:
                self.forget(pod)
            return
        if meta.get("deletionTimestamp"):
            if pod is None:
                self.delete_now(meta["namespace"], meta["name"], uid)
            elif not pod.terminating:
                pod.terminating = True
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                threading.Thread(target=self.terminate, args=(pod, float(grace)),
                                 daemon=True).start()
            return
        if pod is not None:
            if api_ready(obj) != pod.posted:
                pod.posted = None  # changed by someone else: the next sync posts ours
            return
        if obj.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            pod = self.admit(obj)
            threading.Thread(target=self.run_pod, args=(pod,), daemon=True).start()

    def alloc_ip(self, node: NodeInfo) -> str:
        with self.lock:
            used = {p.ip for p in self.pods.values()}
            prefix = node.ip.rsplit(".", 1)[0]
            for _ in range(253):
                ip = f"{prefix}.{node.next_ip}"
                node.next_ip = node.next_ip + 1 if node.next_ip < 254 else 2
                if ip not in used:
                    return ip
        raise RuntimeError(f"node {node.host.name} has no free pod address")

    def admit(self, obj: dict[str, Any]) -> Pod:
        meta, spec = obj["metadata"], obj["spec"]
        node = self.nodes[spec["nodeName"]]
        ip = self.alloc_ip(node)
        base_env = {"POD_NAME": meta["name"], "POD_NAMESPACE": meta["namespace"], "POD_IP": ip,
                    "NODE_NAME": node.host.name, "CLUSTER": self.cluster,
                    "NODE_SPEED": str(node.host.speed), "HOST_IP": node.ip}
        specs = spec.get("containers", [])
        idle = bool(specs) and all(is_idle_image(c.get("image", "")) for c in specs)
        load = IdleLoad.of(meta.get("annotations") or {}) if idle else None
        containers = []
        for c in specs:
            env = {**base_env, **self.container_env(c, obj, ip)}
            ports = [int(p["containerPort"]) for p in c.get("ports", [])
                     if p.get("protocol", "TCP") == "TCP"]
            containers.append(Container(
                name=c["name"], cmd=[] if idle else self.container_cmd(c, env, ports), env=env,
                ports=ports, log=self.pod_dir / f"{meta['namespace']}_{meta['name']}_"
                                                f"{c['name']}.log",
                idle_cores=load.cpu / len(specs) if load else None))
        pod = Pod(meta["uid"], meta["namespace"], meta["name"], node.host.name, ip, spec,
                  containers, load=load)
        with self.lock:
            self.pods[pod.uid] = pod
        log.info("pod %s/%s on %s gets %s", pod.namespace, pod.name, pod.node, ip)
        return pod

    @staticmethod
    def container_env(c: dict[str, Any], obj: dict[str, Any], ip: str) -> dict[str, str]:
        fields = {"metadata.name": obj["metadata"]["name"],
                  "metadata.namespace": obj["metadata"]["namespace"],
                  "spec.nodeName": obj["spec"]["nodeName"], "status.podIP": ip}
        env: dict[str, str] = {}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = _expand(str(e["value"]), env)
            elif "fieldRef" in e.get("valueFrom", {}):
                env[e["name"]] = fields.get(e["valueFrom"]["fieldRef"]["fieldPath"], "")
        return env

    @staticmethod
    def container_cmd(c: dict[str, Any], env: dict[str, str], ports: list[int]) -> list[str]:
        image = c.get("image", "")
        if image.startswith("greenwise/ml-service") or not c.get("command"):
            named = {p.get("name"): int(p["containerPort"]) for p in c.get("ports", [])}
            port = ports[0] if ports else 8080
            metrics = named.get("metrics", 0)
            if metrics == port:
                metrics = 0
            return [sys.executable, str(MLSERVICE), "--host", env["POD_IP"], "--port", str(port),
                    "--metrics-port", str(metrics)]
        return [_expand(a, env) for a in [*c["command"], *c.get("args", [])]]

    def start_container(self, pod: Pod, c: Container) -> None:
        c.cpu_total()
        c.cpu_prev, c.cpu_last = c.cpu_prev + c.cpu_last, CpuTimes()
        with open(c.log, "ab") as out:
            # Same process group as the kubelet: stopping the kubelet's group stops its pods.
            c.proc = subprocess.Popen(c.cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.pod_dir,
                                      env={"PATH": os.environ.get("PATH", ""), **c.env})
        c.started_at = now()
        log.info("pod %s/%s container %s pid %d", pod.namespace, pod.name, c.name, c.proc.pid)

    def run_pod(self, pod: Pod) -> None:
        """Start the containers, then keep the pod's Ready state in step with its processes."""
        try:
            if pod.load is not None:  # the idle image: Running and Ready at once, no process
                for c in pod.containers:
                    c.started_at = pod.started_at
                pod.ready = True
                self.sync_status(pod)  # and from the heartbeat on
                return
            for c in pod.containers:
                self.start_container(pod, c)
            self.sync_status(pod)
            while not pod.terminating and not self.stopping.is_set():
                with pod.lock:
                    if pod.terminating:
                        break
                    for c in pod.containers:
                        self.restart_if_exited(pod, c)
                    phase = self.finished(pod)
                if phase:
                    pod.ready = False
                    self.post_status(pod, phase)
                    return
                pod.ready = all(c.proc is not None and c.proc.poll() is None for c in
                                pod.containers) and self.probe(pod)
                self.sync_status(pod)
                time.sleep(0.05 if not pod.ready else 0.5)
        except (KubeError, httpx.HTTPError) as e:
            log.warning("pod %s/%s: %s", pod.namespace, pod.name, e)

    def restart_if_exited(self, pod: Pod, c: Container) -> None:
        if c.proc is None or c.proc.poll() is None:
            return
        policy = pod.spec.get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and c.proc.returncode == 0):
            return
        if c.next_start == 0.0:
            backoff = min(10.0, 2.0 ** min(c.restarts, 4))
            c.next_start = time.monotonic() + backoff
            log.info("%s/%s container %s exited %s; restart in %.0fs", pod.namespace, pod.name,
                     c.name, c.proc.returncode, backoff)
        elif time.monotonic() >= c.next_start:
            c.next_start = 0.0
            c.restarts += 1
            self.start_container(pod, c)

    @staticmethod
    def finished(pod: Pod) -> str | None:
        """Succeeded/Failed once every container exited for good (restartPolicy Never/OnFailure)."""
        policy = pod.spec.get("restartPolicy", "Always")
        codes = [c.proc.poll() if c.proc is not None else None for c in pod.containers]
        if policy == "Always" or any(rc is None for rc in codes):
            return None
        if all(rc == 0 for rc in codes):
            return "Succeeded"
        return "Failed" if policy == "Never" else None

    def probe(self, pod: Pod) -> bool:
        for spec_c, c in zip(pod.spec.get("containers", []), pod.containers, strict=True):
            get = spec_c.get("readinessProbe", {}).get("httpGet")
            if get:
                port = get.get("port", c.ports[0] if c.ports else 8080)
                if not isinstance(port, int):
                    port = next((int(p["containerPort"]) for p in spec_c.get("ports", [])
                                 if p.get("name") == port), 8080)
                try:
                    r = httpx.get(f"http://{pod.ip}:{port}{get.get('path', '/')}", timeout=1.0,
                                  trust_env=False)
                    if not 200 <= r.status_code < 400:
                        return False
                except httpx.HTTPError:
                    return False
                continue
            for port in c.ports:
                try:
                    with socket.create_connection((pod.ip, port), timeout=0.5):
                        pass
                except OSError:
                    return False
        return True

    def sync_status(self, pod: Pod) -> None:
        """Post the pod's Ready state when the API does not have it, as a kubelet's status
        manager does: also after a failed post (the API server not answering) and after the
        node controller marked the pods of a node that missed its heartbeats NotReady."""
        if pod.posted == pod.ready or pod.terminating:
            return
        try:
            self.post_status(pod)
            pod.posted = pod.ready
        except (KubeError, httpx.HTTPError) as e:
            log.warning("pod %s/%s: status not posted, again later: %s", pod.namespace,
                        pod.name, e)

    def post_status(self, pod: Pod, phase: str = "Running") -> None:
        t = now()
        ready = "True" if pod.ready else "False"
        statuses = []
        for c in pod.containers:
            running = c.idle_cores is not None or (c.proc is not None and c.proc.poll() is None)
            state: dict[str, Any] = {"running": {"startedAt": c.started_at}}
            if not running and phase != "Running" and c.proc is not None:
                state = {"terminated": {"exitCode": c.proc.returncode, "startedAt": c.started_at,
                                        "finishedAt": t,
                                        "reason": "Completed" if c.proc.returncode == 0
                                        else "Error"}}
            elif not running:
                state = {"waiting": {"reason": "CrashLoopBackOff"}}
            statuses.append({"name": c.name, "ready": pod.ready and running,
                             "restartCount": c.restarts, "started": running,
                             "image": next((s.get("image", "") for s in pod.spec["containers"]
                                            if s["name"] == c.name), ""),
                             "imageID": "lab://local",
                             "containerID": f"lab://{c.proc.pid if c.proc else 0}",
                             "state": state})
        status = {
            "phase": phase, "hostIP": self.nodes[pod.node].ip, "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}], "startTime": pod.started_at,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": pod.started_at},
                {"type": "Ready", "status": ready, "lastTransitionTime": t},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": t},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": pod.started_at},
            ],
            "containerStatuses": statuses,
        }
        try:
            self.kube.patch(pod.path + "/status", {"status": status})
        except KubeError as e:
            if e.status != 404:
                raise

    def terminate(self, pod: Pod, grace: float) -> None:
        """preStop hooks, SIGTERM, wait out the grace period, SIGKILL, delete with grace 0."""
        deadline = time.monotonic() + grace
        log.info("pod %s/%s terminating (grace %.0fs)", pod.namespace, pod.name, grace)
        with pod.lock:
            hooks = [threading.Thread(target=self.pre_stop, args=(pod, spec_c, c, deadline),
                                      daemon=True)
                     for spec_c, c in zip(pod.spec["containers"], pod.containers, strict=True)
                     if spec_c.get("lifecycle", {}).get("preStop") and c.idle_cores is None]
            for h in hooks:
                h.start()
            for h in hooks:
                h.join(max(0.0, deadline - time.monotonic()))
            # Like the kubelet: a hook that overran still leaves the process 2 s after SIGTERM.
            deadline = max(deadline, time.monotonic() + 2.0) if hooks else deadline
            self.stop_containers(pod, deadline)
        self.delete_now(pod.namespace, pod.name, pod.uid)

    def pre_stop(self, pod: Pod, spec_c: dict[str, Any], c: Container, deadline: float) -> None:
        hook = spec_c["lifecycle"]["preStop"]
        timeout = max(0.0, deadline - time.monotonic())
        try:
            if "exec" in hook:
                cmd = [_expand(a, c.env) for a in hook["exec"]["command"]]
                subprocess.run(cmd, env={"PATH": os.environ.get("PATH", ""), **c.env},
                               timeout=timeout, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=self.pod_dir)
            elif "httpGet" in hook:
                get = hook["httpGet"]
                port = get.get("port", c.ports[0] if c.ports else 8080)
                httpx.get(f"http://{pod.ip}:{port}{get.get('path', '/')}", timeout=timeout,
                          trust_env=False)
            elif "sleep" in hook:
                time.sleep(min(timeout, float(hook["sleep"].get("seconds", 0))))
        except (subprocess.SubprocessError, OSError, httpx.HTTPError) as e:
            log.info("preStop of %s/%s %s: %s", pod.namespace, pod.name, c.name, e)

    @staticmethod
    def stop_containers(pod: Pod, deadline: float) -> None:
        procs = [c.proc for c in pod.containers if c.proc is not None and c.proc.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def delete_now(self, namespace: str, name: str, uid: str) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}
        try:
            self.kube.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        except KubeError as e:
            if e.status not in (404, 409):
                log.warning("delete %s/%s: %s", namespace, name, e)

    def forget(self, pod: Pod) -> None:
        pod.terminating = True
        self.stop_containers(pod, time.monotonic() + 2.0)
        with self.lock:
            self.pods.pop(pod.uid, None)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            pods = list(self.pods.values())
        for pod in pods:
            self.stop_containers(pod, time.monotonic() + 3.0)

    # -- power model and node metrics ----------------------------------------------------------

    def power_loop(self) -> None:
        last = time.monotonic()
        while not self.stopping.wait(SAMPLE_EVERY):
            t = time.monotonic()
            dt_s, last = t - last, t
            with self.lock:
                pods = list(self.pods.values())
            for n in self.nodes.values():
                self.sample_node(n, [c for p in pods if p.node == n.host.name
                                     for c in p.containers], dt_s)

    @staticmethod
    def sample_node(n: NodeInfo, containers: list[Container], dt_s: float) -> None:
        """Advance a node's counters by `dt_s` seconds from its containers' CPU time."""
        deltas = []
        for c in containers:
            total = c.cpu_total()
            deltas.append((c, total.since(c.cpu_seen)))
            c.cpu_seen = total.at_least(c.cpu_seen)
        busy = sum((d for _, d in deltas), CpuTimes())
        used = busy.total
        n.cpu += busy
        n.idle_seconds += max(0.0, dt_s * n.host.cores - used)
        watts = node_watts(n.host, min(1.0, used / dt_s / n.host.cores))
        dynamic_j = max(0.0, watts - n.host.idle_watts) * dt_s
        idle_j = n.host.idle_watts * dt_s / (BASE_PROCESSES + len(containers))
        for c, delta in deltas:
            c.joules_dynamic += dynamic_j * delta.total / used if used > 0 else 0.0
            c.joules_idle += idle_j
        n.joules += watts * dt_s

    def node_metrics(self, n: NodeInfo) -> bytes:
        with self.lock:
            pods = [p for p in self.pods.values() if p.node == n.host.name]
        return render_node_metrics(n, pods)

    def serve_node_metrics(self, port: int) -> None:
        for n in self.nodes.values():
            def render(path: str, node: NodeInfo = n) -> tuple[int, bytes]:
                return (200, self.node_metrics(node)) if path == "/metrics" else \
                    (404, b"not found\n")
            serve_metrics((n.ip, port), render)

    def serve(self, metrics_port: int | None = None) -> None:
        self.register_nodes()
        if metrics_port:
            self.serve_node_metrics(metrics_port)
        threading.Thread(target=self.power_loop, daemon=True).start()
        threading.Thread(target=self.heartbeat_loop, daemon=True).start()
        threading.Thread(target=self.watch_loop, daemon=True).start()
        log.info("kubelet for %s serving nodes %s", self.cluster, ", ".join(self.nodes))
        self.stopping.wait()


def node_watts(host: HostSpec, utilization: float) -> float:
    """The simulator's host power (orchestrator.performance): idle + (max - idle) * curve."""
    return host.idle_watts + (host.max_watts - host.idle_watts) * curve_fraction(
        host.power_curve, utilization)


def render_node_metrics(n: NodeInfo, pods: list[Pod]) -> bytes:
    """A node's /metrics: Kepler (<= 0.7), node_exporter and cAdvisor names, as documented."""
    lines = [
        "# HELP kepler_node_platform_joules_total Energy of the node (lab power model).",
        "# TYPE kepler_node_platform_joules_total counter",
        f"kepler_node_platform_joules_total {n.joules:.3f}",
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
        "# TYPE node_cpu_seconds_total counter",
    ]
    cores = n.host.cores
    per_mode = {"idle": n.idle_seconds, "user": n.cpu.user, "system": n.cpu.system}
    for cpu in range(cores):
        lines += [f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}} '
                  f"{per_mode.get(mode, 0.0) / cores:.3f}" for mode in CPU_MODES]
    joules = [
        "# HELP kepler_container_joules_total Energy of the container (lab power model).",
        "# TYPE kepler_container_joules_total counter",
    ]
    cpu_lines = [
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.",
        "# TYPE container_cpu_usage_seconds_total counter",
    ]
    for pod in pods:
        at = f'namespace="{pod.namespace}",pod="{pod.name}"'
        images = {c.get("name"): c.get("image", "") for c in pod.spec.get("containers", [])}
        for c in pod.containers:
            kepler = (f'container_namespace="{pod.namespace}",pod_name="{pod.name}",'
                      f'container_name="{c.name}"')
            joules += [f'kepler_container_joules_total{{{kepler},mode="dynamic"}} '
                       f"{c.joules_dynamic:.3f}",
                       f'kepler_container_joules_total{{{kepler},mode="idle"}} '
                       f"{c.joules_idle:.3f}"]
            cpu_lines.append(f'container_cpu_usage_seconds_total{{{at},container="{c.name}",'
                             f'image="{images.get(c.name, "")}"}} {c.cpu_seen.total:.3f}')
        # The pod's cgroup, as cAdvisor reports it too (consumers filter container="").
        cpu_lines.append(f'container_cpu_usage_seconds_total{{{at},container="",image=""}} '
                         f"{sum(c.cpu_seen.total for c in pod.containers):.3f}")
    return ("\n".join([*lines, *joules, *cpu_lines, *idle_metrics(n, pods)]) + "\n").encode()


def idle_metrics(n: NodeInfo, pods: list[Pod]) -> list[str]:
    """What the idle-image pods' ML servers and load generators would report: counters that
    grow at their annotated rates since they started (TorchServe's names, loadgen's users)."""
    idle = [p for p in pods if p.load is not None]
    if not idle:
        return []
    requests = ["# HELP ts_inference_requests_total Total number of inference requests.",
                "# TYPE ts_inference_requests_total counter"]
    latency = ["# HELP ts_inference_latency_microseconds Cumulative inference duration in us",
               "# TYPE ts_inference_latency_microseconds counter"]
    users = ["# HELP loadgen_users Virtual users running (open loop: requests in flight).",
             "# TYPE loadgen_users gauge"]
    for pod in idle:
        assert pod.load is not None
        at = f'namespace="{pod.namespace}",pod="{pod.name}"'
        served = pod.load.rps * (time.monotonic() - pod.since)
        requests.append(f"ts_inference_requests_total{{{at}}} {served:.3f}")
        latency.append(f"ts_inference_latency_microseconds{{{at}}} "
                       f"{served * pod.load.latency_ms * 1000 / n.host.speed:.1f}")
        if pod.load.hostname:
            users.append(f'loadgen_users{{hostname="{pod.load.hostname}",{at}}} '
                         f"{pod.load.users:g}")
    return [*requests, *latency, *(users if len(users) > 2 else [])]


def process_cpu_times(pid: int) -> CpuTimes:
    """User and system CPU time of a process and its waited-for children (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    except (OSError, IndexError, ValueError):
        return CpuTimes()
    return CpuTimes((utime + cutime) / CLK_TCK, (stime + cstime) / CLK_TCK)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion; $$(VAR) stays literal."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="the lab's fake kubelet")
    p.add_argument("--config", required=True, type=Path)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = json.loads(a.config.read_text())
    kubelet = Kubelet(cfg)

    def on_signal(*_: Any) -> None:
        kubelet.shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kubelet.serve(cfg.get("metrics_port"))


def host_labels(cluster: str, tier: str, host: HostSpec) -> dict[str, str]:
    return {"kubernetes.io/hostname": host.name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "lab",
            "topology.kubernetes.io/region": cluster, "topology.kubernetes.io/zone": host.zone,
            f"{LABEL_PREFIX}/tier": tier, f"{LABEL_PREFIX}/cluster": cluster,
            f"{LABEL_PREFIX}/speed": str(host.speed), f"{LABEL_PREFIX}/cores": str(host.cores)}


def host_annotations(host: HostSpec) -> dict[str, str]:
    return {f"{LABEL_PREFIX}/idle-watts": str(host.idle_watts),
            f"{LABEL_PREFIX}/max-watts": str(host.max_watts),
            f"{LABEL_PREFIX}/network-latency-ms": str(host.network_latency_ms)}


if __name__ == "__main__":
    main()
