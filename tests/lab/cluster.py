"""One lab cluster's control plane: a real kube-apiserver, controller-manager and scheduler.

The three clusters (edge, fog, cloud) share one etcd under per-cluster prefixes, one CA and one
serving certificate for 127.0.0.1. Each apiserver authenticates a random bearer token (the
`system:masters` admin used by kubeconfigs, the controllers, Traefik and Prometheus) and runs
with GREENWISE_LAB_ALLOW_LOOPBACK_ENDPOINTS=1, which the lab's loopback-endpoints patch reads so
that Endpoints may hold the 127.x addresses of pod processes.

Addresses: with lab slot `s` (1 unless another lab holds it), cluster number `c` (1 edge,
2 fog, 3 cloud) uses 127.<10s+c>.0.0/16: its Traefik listens on 127.<10s+c>.0.1, node `n`
has InternalIP 127.<10s+c>.<n+1>.1, and that node's pods get 127.<10s+c>.<n+1>.2-254.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.lab.procs import Proc, free_port, spawn

K8S_VERSION = "v1.20.2"
LOOPBACK_ENV = "GREENWISE_LAB_ALLOW_LOOPBACK_ENDPOINTS"
LABEL_PREFIX = "greenwise.io"
# A `greenwise-mc power-model fit` output: its hosts get the fitted idle/max watts and curve.
POWER_MODELS_ENV = "GREENWISE_LAB_POWER_MODELS"
LINEAR: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 1.0))


@dataclass(frozen=True)
class HostSpec:
    """A lab node; power and latency figures are the GreenWise paper's Tables 3 and 4."""

    name: str
    cores: int
    idle_watts: float
    max_watts: float
    network_latency_ms: float
    zone: str
    speed: float  # relative CPU speed: the ML stand-in divides its work by it
    # Dynamic power as a fraction of (max - idle) by CPU utilization, piecewise linear, as the
    # simulator's HostProfile.power_curve (default: linear).
    power_curve: tuple[tuple[float, float], ...] = LINEAR

    def profile(self) -> dict[str, Any]:
        """The host entry of continuum.yaml (speed: the lab's relative CPU speed of the node)."""
        entry = {"name": self.name, "cores": self.cores, "idle_watts": self.idle_watts,
                 "max_watts": self.max_watts, "network_latency_ms": self.network_latency_ms,
                 "speed": self.speed}
        if tuple(map(tuple, self.power_curve)) != LINEAR:
            entry["power_curve"] = [list(p) for p in self.power_curve]
        return entry


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    tier: str
    number: int  # 1, 2, 3: picks the cluster's 127.x.0.0/16
    hosts: tuple[HostSpec, ...]


DEFAULT_CLUSTERS: tuple[ClusterSpec, ...] = (
    ClusterSpec("edge", "edge", 1, (
        HostSpec("edge0", 4, 19.0, 58.5, 14, "edge-a", 1.0),
        HostSpec("edge1", 4, 36.6, 69.7, 5, "edge-b", 1.0),
        HostSpec("edge2", 4, 21.4, 102.0, 3, "edge-c", 1.2),
    )),
    ClusterSpec("fog", "fog", 2, (
        HostSpec("fog0", 8, 60.0, 150.0, 10, "fog-a", 1.5),
    )),
    ClusterSpec("cloud", "cloud", 3, (
        HostSpec("cloud", 12, 162.0, 280.0, 30.9, "cloud-a", 2.5),
    )),
)


def with_power_models(clusters: tuple[ClusterSpec, ...],
                      path: str | None) -> tuple[ClusterSpec, ...]:
    """Hosts named in a `greenwise-mc power-model fit` file (host -> idle_watts, max_watts,
    power_curve, ...) take its model; the others keep theirs."""
    if not path:
        return clusters
    models = yaml.safe_load(Path(path).read_text()) or {}

    def fitted(h: HostSpec) -> HostSpec:
        m = models.get(h.name)
        if m is None:
            return h
        return replace(h, idle_watts=float(m["idle_watts"]), max_watts=float(m["max_watts"]),
                       power_curve=tuple((float(u), float(f)) for u, f in m["power_curve"]))

    return tuple(replace(c, hosts=tuple(fitted(h) for h in c.hosts)) for c in clusters)


CLUSTERS = with_power_models(DEFAULT_CLUSTERS, os.environ.get(POWER_MODELS_ENV))


def cluster_net(slot: int, spec: ClusterSpec) -> str:
    """The first two octets of the cluster's 127.x.0.0/16."""
    return f"127.{10 * slot + spec.number}"


def ingress_address(slot: int, spec: ClusterSpec) -> str:
    return f"{cluster_net(slot, spec)}.0.1"


def node_ip(slot: int, spec: ClusterSpec, host_index: int) -> str:
    return f"{cluster_net(slot, spec)}.{host_index + 1}.1"


# ---------------------------------------------------------------------------------------------
# PKI and secrets


@dataclass
class Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(pki_dir: Path) -> Pki:
    """A self-signed CA, a serving certificate for 127.0.0.1/localhost and a service-account key."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    p = Pki(pki_dir / "ca.crt", pki_dir / "apiserver.crt", pki_dir / "apiserver.key",
            pki_dir / "sa.key", pki_dir / "sa.pub")
    ca_key = pki_dir / "ca.key"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(p.ca_cert), "-days", "3650",
             "-subj", "/CN=greenwise-lab-ca")
    csr = pki_dir / "apiserver.csr"
    _openssl("req", *ec, "-keyout", str(p.serving_key), "-out", str(csr),
             "-subj", "/CN=kube-apiserver")
    ext = pki_dir / "apiserver.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
                   "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(p.ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(p.serving_cert), "-days", "3650",
             "-extfile", str(ext))
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(p.sa_key))
    _openssl("pkey", "-in", str(p.sa_key), "-pubout", "-out", str(p.sa_pub))
    for key in (ca_key, p.serving_key, p.sa_key):
        key.chmod(0o600)
    return p


def write_secret(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------------------------------------
# A minimal Kubernetes REST client (JSON dicts in and out; watch as an iterator)


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Kube:
    def __init__(self, server: str, token: str, ca_file: Path | str, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self._client = httpx.Client(base_url=self.server, verify=tls(ca_file), timeout=timeout,
                                    headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    @classmethod
    def from_kubeconfig(cls, path: Path | str, context: str | None = None) -> Kube:
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = context or cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        ca = Path(path).with_suffix(".ca.crt")
        if not ca.exists():
            import base64
            ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return cls(cluster["server"], user["token"], ca)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, Any] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        data = json.dumps(body) if body is not None else None
        r = self._client.request(method, path, content=data, params=params,
                                 headers={"Content-Type": content_type})
        if r.status_code >= 400:
            try:
                msg = r.json().get("message", r.text)
            except ValueError:
                msg = r.text
            raise KubeError(r.status_code, f"{method} {path}: {msg}")
        return r.json() if r.content else {}

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any],
              kind: str = "merge") -> dict[str, Any]:
        ctype = {"merge": "application/merge-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[kind]
        return self.request("PATCH", path, body, content_type=ctype)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("DELETE", path, body)

    def watch(self, path: str, resource_version: str,
              timeout_seconds: int = 240) -> Iterator[dict[str, Any]]:
        """Yield watch events ({type, object}); ends when the server closes the stream."""
        params = {"watch": "1", "resourceVersion": resource_version,
                  "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "true"}
        with self._client.stream("GET", path, params=params,
                                 timeout=httpx.Timeout(10.0, read=timeout_seconds + 30)) as r:
            if r.status_code >= 400:
                r.read()
                raise KubeError(r.status_code, f"watch {path}: {r.text}")
            for line in r.iter_lines():
                if line:
                    yield json.loads(line)


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Etcd:
    proc: Proc
    url: str


def start_etcd(work: Path) -> Etcd:
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    cmd = ["etcd", "--name=lab", f"--data-dir={work / 'etcd'}",
           f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
           f"--listen-peer-urls=http://127.0.0.1:{peer}",
           f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
           f"--initial-cluster=lab=http://127.0.0.1:{peer}",
           "--listen-metrics-urls=", "--log-level=warn", "--quota-backend-bytes=2147483648"]
    proc = spawn("etcd", cmd, work / "logs")
    wait_http(f"{url}/health", proc, timeout=20)
    return Etcd(proc, url)


def tls(ca_file: Path | str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def wait_http(url: str, proc: Proc | None, timeout: float, verify: ssl.SSLContext | bool = False,
              headers: dict[str, str] | None = None) -> None:
    """Poll url until it answers 200; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting; see {proc.log}")
        try:
            r = httpx.get(url, verify=verify, headers=headers, timeout=2.0, trust_env=False)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last})")


@dataclass
class Cluster:
    """A running cluster's control plane (what the Lab records about it)."""

    spec: ClusterSpec
    slot: int
    work: Path
    api_port: int
    token_file: Path
    ca_file: Path
    kubeconfig: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def kube(self) -> Kube:
        return Kube(self.server, self.token(), self.ca_file)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.name
        d["procs"] = [p.name for p in self.procs]
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def start_apiserver(spec: ClusterSpec, slot: int, state: Path, bin_dir: Path, pki: Pki,
                    etcd_url: str) -> Cluster:
    """Start kube-apiserver for `spec` (not waiting for it: see wait_apiserver)."""
    work = state / "clusters" / spec.name
    work.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    token_file = write_secret(state / "secrets" / f"{spec.name}.token", token + "\n")
    auth = write_secret(work / "tokens.csv", f'{token},lab-admin,lab-admin,"system:masters"\n')
    port = free_port()
    cmd = [str(bin_dir / "kube-apiserver"),
           f"--etcd-servers={etcd_url}", f"--etcd-prefix=/registry-{spec.name}",
           "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
           "--insecure-port=0",
           f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
           f"--client-ca-file={pki.ca_cert}", f"--token-auth-file={auth}",
           "--authorization-mode=Node,RBAC", "--anonymous-auth=false",
           f"--service-account-key-file={pki.sa_pub}",
           f"--service-account-signing-key-file={pki.sa_key}",
           "--service-account-issuer=https://kubernetes.default.svc",
           # Keeps every address the cluster hands out in loopback.
           f"--service-cluster-ip-range=127.{100 + 10 * slot + spec.number}.0.0/24",
           "--service-node-port-range=30000-32767",
           "--disable-admission-plugins=ServiceAccount",
           "--enable-priority-and-fairness=false", "--profiling=false",
           "--allow-privileged=true", "--event-ttl=30m", "--v=1"]
    # GOGC trades a little CPU for a much smaller heap: three apiservers share 2 cores anyway.
    proc = spawn(f"{spec.name}-apiserver", cmd, work,
                 env={LOOPBACK_ENV: "1", "GOGC": "50"})
    kubeconfig = state / "kubeconfigs" / f"{spec.name}.yaml"
    c = Cluster(spec, slot, work, port, token_file, pki.ca_cert, kubeconfig, [proc])
    write_kubeconfig(kubeconfig, [c])
    return c


def wait_apiserver(c: Cluster, timeout: float = 60.0) -> None:
    wait_http(f"{c.server}/readyz", c.procs[0], timeout, verify=tls(c.ca_file),
              headers={"Authorization": f"Bearer {c.token()}"})


def start_controllers(c: Cluster, bin_dir: Path, pki: Pki) -> list[Proc]:
    """kube-controller-manager and kube-scheduler; call after the apiserver is ready."""
    common = [f"--kubeconfig={c.kubeconfig}", "--leader-elect=false", "--port=0",
              "--secure-port=0", "--kube-api-qps=100", "--kube-api-burst=200", "--v=1"]
    cm = [str(bin_dir / "kube-controller-manager"), *common,
          "--controllers=*,-bootstrapsigner,-tokencleaner,-csrsigning,-nodeipam",
          "--use-service-account-credentials=false",
          f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca_cert}",
          "--node-monitor-grace-period=40s", "--pod-eviction-timeout=5m"]
    sched = [str(bin_dir / "kube-scheduler"), *common]
    procs = [spawn(f"{c.spec.name}-controller-manager", cm, c.work, env={"GOGC": "50"}),
             spawn(f"{c.spec.name}-scheduler", sched, c.work, env={"GOGC": "50"})]
    c.procs += procs
    return procs


def write_kubeconfig(path: Path, clusters: list[Cluster], current: str | None = None) -> Path:
    """A kubeconfig with one cluster/user/context per cluster, all named after the cluster."""
    import base64
    ca = base64.b64encode(clusters[0].ca_file.read_bytes()).decode()
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": c.spec.name, "cluster": {"server": c.server,
                                                        "certificate-authority-data": ca}}
                     for c in clusters],
        "users": [{"name": c.spec.name, "user": {"token": c.token()}} for c in clusters],
        "contexts": [{"name": c.spec.name,
                      "context": {"cluster": c.spec.name, "user": c.spec.name,
                                  "namespace": "default"}} for c in clusters],
        "current-context": current or clusters[0].spec.name,
    }
    write_secret(path, yaml.safe_dump(cfg, sort_keys=False))
    return path


def apply_crds(kube: Kube, crd_file: Path, timeout: float = 30.0) -> list[str]:
    """Create the CustomResourceDefinitions in crd_file and wait until they are Established."""
    names = []
    for doc in yaml.safe_load_all(crd_file.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        try:
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        except KubeError as e:
            if e.status != 409:
                raise
        names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = crd.get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout}s")
            time.sleep(0.1)
    return names
