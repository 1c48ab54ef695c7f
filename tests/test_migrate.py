"""`greenwise-mc migrate` on the lab's three real clusters, under load, with faults."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.config import load_continuum
from orchestrator.kube.clusters import Clusters
from orchestrator.migration.dns import CloudDnsProvider, Rfc2136Provider
from orchestrator.migration.dns.registry import claim, release
from orchestrator.migration.objects import OWNER_LABEL
from orchestrator.migration.planner import locate
from orchestrator.migration.steps import INTER_STEPS
from tests.lab import loadgen
from tests.lab.clouddns_fake import start_clouddns_fake
from tests.lab.lab import Lab
from tests.lab.workloads import namespace, wait_for

pytestmark = pytest.mark.lab
ML_IMAGE = "greenwise/ml-service:lab"


@dataclass
class Deployed:
    ns: str
    name: str
    hostname: str
    config: Path
    lab: Lab

    @property
    def key(self) -> str:
        return f"{self.ns}/{self.name}"

    def cfg(self) -> Any:
        return load_continuum(self.config)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
        crash_after: str | None = None) -> subprocess.CompletedProcess[str]:
    """`greenwise-mc ARGS`; `crash_after`: killed right after that migration step is done."""
    entry = ["tests.crash_after", crash_after] if crash_after else ["orchestrator"]
    return subprocess.run([sys.executable, "-m", *entry, *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def manifests(ns: str, name: str, hostname: str, node: str, port: int,
              node_selector: dict[str, str] | None = None,
              settings: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The service's objects; `settings`: its container's environment (e.g. WORK_ROUNDS)."""
    labels = {"app": name}
    selector = {"kubernetes.io/hostname": node, **(node_selector or {})}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-settings",
                                                               "namespace": ns},
         "data": {"MODEL": "resnet-18"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                  # scraped by the cluster's Prometheus (TorchServe-named metrics)
                  "template": {"metadata": {"labels": labels, "annotations": {
                      "prometheus.io/scrape": "true", "prometheus.io/port": "8080"}}, "spec": {
                      "nodeSelector": selector, "terminationGracePeriodSeconds": 15,
                      "containers": [{
                          "name": "ml", "image": ML_IMAGE,
                          "ports": [{"name": "http", "containerPort": 8080}],
                          "envFrom": [{"configMapRef": {"name": f"{name}-settings"}}],
                          "env": [{"name": k, "value": v} for k, v in (settings or {}).items()],
                          # keeps serving while Endpoints and Traefik drop the pod
                          "lifecycle": {"preStop": {"exec": {"command": ["sleep", "3"]}}}}]}}}},
        # The Service port is the ingress port: an ExternalName forwarder then reaches the
        # other cluster's ingress on it (in production both are 80).
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": port,
                                                 "targetPort": 8080}]}},
        {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"entryPoints": ["web"], "routes": [{
             "kind": "Rule", "match": f"Host(`{hostname}`)",
             "services": [{"name": name, "port": port}]}]}},
    ]


def deploy(lab: Lab, tmp_path: Path, node: str = "edge0",
           node_selector: dict[str, str] | None = None, settings: dict[str, str] | None = None,
           **overrides: Any) -> Deployed:
    """The ML stand-in on edge/<node>, its route in edge, DNS at edge's ingress, a config
    (`overrides`: top-level entries of it; `settings`: the pod's environment, e.g. WORK_ROUNDS)."""
    doc = yaml.safe_load(lab.continuum_file.read_text())
    ns, name = f"t{uuid.uuid4().hex[:6]}", "resnet"
    hostname = f"{ns}.{doc['dns']['zone'].rstrip('.')}"
    edge = next(c for c in doc["clusters"] if c["name"] == "edge")
    port = int(edge["ingress"].rsplit(":", 1)[1])
    doc["services"] = [{"namespace": ns, "name": name, "hostname": hostname}]
    doc["state_dir"] = str(tmp_path / "state")
    doc.update(overrides)
    config = tmp_path / "continuum.yaml"
    config.write_text(yaml.safe_dump(doc))
    d = Deployed(ns, name, hostname, config, lab)
    cluster = Clusters(d.cfg())["edge"]
    namespace(lab.kube("edge"), ns)
    for obj in manifests(ns, name, hostname, node, port, node_selector, settings):
        cluster.create(obj)
    dns = provider(d)
    dns.replace(hostname, "A", (edge["ingress"].rsplit(":", 1)[0],), 2)
    claim(dns, hostname, d.cfg().dns.owner_id, d.key, 2)  # the name is greenwise-mc's
    wait_for("the service to answer through DNS", lambda: serves(d), timeout=60)
    return d


def provider(d: Deployed) -> Rfc2136Provider:
    c = d.cfg().dns
    return Rfc2136Provider(c.server, c.port, c.zone, c.tsig_key_file)


def serves(d: Deployed) -> dict[str, Any] | None:
    """The answer to one request sent the way users send it: resolve through bind9, ingress."""
    cfg = d.cfg()
    record = provider(d).get(d.hostname)
    if record is None:
        return None
    port = cfg.clusters[0].ingress_port
    try:
        r = httpx.get(f"http://{record.values[0]}:{port}/predictions/resnet-18",
                      headers={"Host": d.hostname}, timeout=5, trust_env=False)
        return dict(r.json()) if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def load(d: Deployed, rate: float = 100, duration: float = 60,
         users: int | None = None) -> loadgen.LoadHandle:
    """Bounded load through bind9 and an ingress, scraped by the lab's global Prometheus.

    users=None: open loop at `rate`; users=N: N users who wait for each answer and think
    0.1-0.5 s (the paper's Locust users), `rate` still a cap.
    """
    cfg = d.cfg()
    return loadgen.start(d.hostname, cfg.clusters[0].ingress, cfg.dns.server, cfg.dns.port,
                         rate=rate, duration=duration, users=users,
                         register=d.lab.loadgen_targets)


def in_cluster_load(d: Deployed, cluster: str, name: str, rate: float = 20,
                    duration: float = 60) -> loadgen.LoadHandle:
    """A client inside `cluster`, as a pod of the service's namespace: it resolves `name`
    (`resnet`, `resnet.<ns>`, ... `.svc.cluster.local`) through that cluster's DNS with a pod's
    search path and calls the Service port there: the ClusterIP (through the lab's proxy) while
    the service runs there, the ingress the forwarder's CNAME leads to once it moved."""
    dns_host, dns_port = d.lab.info()["clusters"][cluster]["cluster_dns"].rsplit(":", 1)
    port = d.cfg().clusters[0].ingress_port  # the Service port is the ingress port (manifests)
    return loadgen.start(name, f"127.0.0.1:{port}", dns_host, int(dns_port), rate=rate,
                         duration=duration, search=[f"{d.ns}.svc.cluster.local",
                                                    "svc.cluster.local", "cluster.local"])


def inventory(d: Deployed) -> dict[str, dict[str, Any]]:
    """Every object of the service in every cluster: kind/name -> (resourceVersion, owner)."""
    out = {}
    for c in Clusters(d.cfg()):
        for kind in ("Deployment", "Service", "ConfigMap", "IngressRoute"):
            for o in c.list(kind, d.ns):
                m = o["metadata"]
                out[f"{c.name}:{kind}/{m['name']}"] = {
                    "rv": m["resourceVersion"], "owner": (m.get("labels") or {}).get(OWNER_LABEL),
                    "type": o.get("spec", {}).get("type"),
                    "replicas": o.get("spec", {}).get("replicas")}
    return out


def assert_single_and_serving(d: Deployed, expect_cluster: str,
                              pristine: bool | None = None) -> None:
    """Runs in exactly one place and serves there; `pristine` (default: back on edge, i.e.
    rolled back) also that nothing a migration made is left anywhere."""
    cfg = d.cfg()
    where = locate(Clusters(cfg), cfg.services[0])
    assert where.cluster == expect_cluster
    deployments = [k for k in inventory(d) if ":Deployment/" in k]
    assert deployments == [f"{expect_cluster}:Deployment/{d.name}"]  # exactly one place
    record = provider(d).get(d.hostname)
    ingress = cfg.cluster(expect_cluster).ingress_host
    assert record is not None and record.values == (ingress,)
    answer = wait_for("the service to answer", lambda: serves(d), timeout=30)
    assert answer["cluster"] == expect_cluster
    owned = {k: v for k, v in inventory(d).items() if v["owner"]}
    if expect_cluster == "edge" if pristine is None else pristine:
        assert owned == {}
        assert Clusters(cfg)["cloud"].namespace_labels(d.ns) is None


def teardown(d: Deployed) -> None:
    for c in Clusters(d.cfg(), retry_seconds=2):
        for kind in ("Deployment", "Service", "ConfigMap", "IngressRoute"):
            for o in c.list(kind, d.ns):
                c.delete(kind, d.ns, o["metadata"]["name"])
    provider(d).delete(d.hostname)
    release(provider(d), d.hostname)


def test_intra_cluster_move_under_load_loses_nothing(service: Deployed) -> None:
    handle = load(service, rate=100, duration=120)
    time.sleep(2)
    r = cli("migrate", service.key, "--to", "edge/edge1", "--config", str(service.config),
            "-o", "json")
    time.sleep(2)
    handle.stop()
    report = handle.result()
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["state"] == "done"
    assert report.sent > 200 and report.failed == 0, report.failures
    assert set(report.by_node) == {"edge0", "edge1"}
    assert locate(Clusters(service.cfg()), service.cfg().services[0]).nodes == ["edge1"]


def test_inter_cluster_migration_under_load_loses_nothing(service: Deployed) -> None:
    handle = load(service, rate=100, duration=180)
    time.sleep(2)
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(service.config), "-o",
            "json")
    done_at = time.time()
    time.sleep(2)
    handle.stop()
    report = handle.result()
    assert r.returncode == 0, r.stderr
    steps = [s["name"] for s in yaml.safe_load(r.stdout)["steps"]]
    assert steps == list(INTER_STEPS)
    assert report.failed == 0, report.failures
    assert set(report.by_cluster) == {"edge", "cloud"}
    # once the command returns (DNS TTL + drain waited, old copy deleted) only the target
    # answers
    late = [x for x in report.samples
            if report.started_at + x.t > done_at and not (x.backend or "").startswith("cloud/")]
    assert late == []
    assert_single_and_serving(service, "cloud")
    inv = inventory(service)
    assert inv[f"edge:Service/{service.name}"]["type"] == "ExternalName"
    assert f"cloud:IngressRoute/{service.name}" in inv
    assert f"cloud:ConfigMap/{service.name}-settings" in inv


def test_dry_run_changes_nothing(service: Deployed) -> None:
    before, record = inventory(service), provider(service).get(service.hostname)
    for to in ("cloud", "edge/edge2", "fog/fog0"):
        r = cli("migrate", service.key, "--to", to, "--dry-run", "--config",
                str(service.config), "-o", "yaml")
        assert r.returncode == 0, r.stderr
        plan = yaml.safe_load(r.stdout)
        assert plan["dry_run"] and plan["plan"]["steps"]
        assert {"power_w", "latency_ms"} <= set(plan["predicted"])
    assert inventory(service) == before
    assert provider(service).get(service.hostname) == record
    assert not (service.config.parent / "state" / "journal.sqlite").exists() or sqlite3.connect(
        service.config.parent / "state" / "journal.sqlite").execute(
        "SELECT COUNT(*) FROM migrations").fetchone()[0] == 0


@pytest.mark.parametrize("step", INTER_STEPS)
def test_crash_after_each_step_then_resume(service: Deployed, step: str) -> None:
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(service.config),
            crash_after=step)
    assert r.returncode == -signal.SIGKILL, r.stderr
    r = cli("migrate", "--resume", "--config", str(service.config), "-o", "json")
    assert r.returncode == 0, r.stderr
    [resumed] = yaml.safe_load(r.stdout)["resumed"]
    committed = INTER_STEPS.index(step) >= INTER_STEPS.index("dns")
    assert resumed["state"] == ("done" if committed else "rolled_back")
    assert_single_and_serving(service, "cloud" if committed else "edge")


def test_target_never_ready_rolls_back(lab: Lab, tmp_path: Path) -> None:
    # the pods select an edge-only label: in the cloud they stay Pending
    d = deploy(lab, tmp_path, node_selector={"greenwise.io/tier": "edge"})
    try:
        before = inventory(d)
        r = cli("migrate", d.key, "--to", "cloud", "--timeout", "8", "--config", str(d.config))
        assert r.returncode == 1 and "rolled back" in r.stderr, r.stderr
        assert inventory(d) == before  # source untouched, copies gone
        assert_single_and_serving(d, "edge")
    finally:
        teardown(d)


def test_wrong_tsig_key_rolls_back_with_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    d = deploy(lab, tmp_path)
    try:
        other = tmp_path / "other.key"
        other.write_text(subprocess.run(["tsig-keygen", "-a", "hmac-sha256", "greenwise-mc"],
                                        capture_output=True, text=True, check=True).stdout)
        doc = yaml.safe_load(d.config.read_text())
        doc["dns"]["tsig_key_file"] = str(other)
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(doc))
        before = inventory(d)
        r = cli("migrate", d.key, "--to", "cloud", "--config", str(bad))
        assert r.returncode == 1 and "TSIG" in r.stderr and "rolled back" in r.stderr, r.stderr
        secret = other.read_text().split('secret "')[1].split('"')[0]
        assert secret not in r.stderr + r.stdout
        assert inventory(d) == before
        assert_single_and_serving(d, "edge")
    finally:
        teardown(d)


def test_target_apiserver_stopped_mid_migration(lab: Lab, tmp_path: Path) -> None:
    d = deploy(lab, tmp_path, api_timeout_s=2.0, api_retry_s=4.0)
    apiserver = next(p for p in lab.procs() if p.name == "cloud-apiserver")
    journal = d.config.parent / "state" / "journal.sqlite"
    # Its steps ride an outage out for --timeout seconds, then give up (the rollback too).
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "migrate", d.key, "--to",
                             "cloud", "--timeout", "10", "--config", str(d.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def copied() -> bool:
            if not journal.exists():
                return False
            row = sqlite3.connect(journal).execute(
                "SELECT COUNT(*) FROM steps WHERE name='copy' AND state='done'").fetchone()
            return bool(row[0])
        wait_for("the copy step", copied, timeout=60, every=0.05)
        os.kill(apiserver.pid, signal.SIGSTOP)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "resume" in err, err
        # the source was never touched: it still serves from edge
        assert serves(d)["cluster"] == "edge"
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    r = cli("migrate", "--resume", "--config", str(d.config), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["resumed"][0]["state"] == "rolled_back"
    try:
        assert_single_and_serving(d, "edge")
    finally:
        teardown(d)


@pytest.mark.parametrize("args, message", [
    (["nope/svc", "--to", "cloud"], "unknown service"),
    (["{key}", "--to", "moon"], "unknown cluster 'moon'"),
    (["{key}", "--to", "edge/edge9"], "node edge/edge9 does not exist"),
    (["{key}", "--to", "edge/edge0"], "already runs on edge/edge0"),
    (["{key}", "--to", "edge"], "give a node"),
])
def test_bad_input_is_refused_and_changes_nothing(service: Deployed, args: list[str],
                                                  message: str) -> None:
    before = inventory(service)
    args = [a.replace("{key}", service.key) for a in args]
    r = cli("migrate", *args, "--config", str(service.config))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert inventory(service) == before


def test_missing_tsig_key_and_malformed_kubeconfig_are_bad_input(service: Deployed,
                                                                 tmp_path: Path) -> None:
    doc = yaml.safe_load(service.config.read_text())
    doc["dns"]["tsig_key_file"] = str(tmp_path / "missing.key")
    f = tmp_path / "nokey.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(f))
    assert r.returncode == 2 and "missing.key" in r.stderr, r.stderr
    doc = yaml.safe_load(service.config.read_text())
    broken = tmp_path / "broken.kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    doc["clusters"][2]["kubeconfig"] = str(broken)
    f.write_text(yaml.safe_dump(doc))
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(f))
    assert r.returncode == 2 and "malformed" in r.stderr, r.stderr


def test_unreachable_cluster_is_an_operational_error(service: Deployed, tmp_path: Path) -> None:
    doc = yaml.safe_load(service.config.read_text())
    kc = yaml.safe_load(Path(doc["clusters"][2]["kubeconfig"]).read_text())
    kc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(kc))
    doc["clusters"][2]["kubeconfig"] = str(dead)
    doc["api_retry_s"] = 1.0
    f = tmp_path / "dead.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(f))
    assert r.returncode == 1 and "unreachable" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_clusters_and_status(service: Deployed) -> None:
    r = cli("clusters", "--config", str(service.config), "-o", "json")
    assert r.returncode == 0, r.stderr
    cl = {c["name"]: c for c in yaml.safe_load(r.stdout)["clusters"]}
    assert set(cl) == {"edge", "fog", "cloud"} and all(c["reachable"] for c in cl.values())
    assert {n["name"] for n in cl["edge"]["nodes"]} == {"edge0", "edge1", "edge2"}
    assert cl["edge"]["version"].startswith("v1.20")
    r = cli("status", "--config", str(service.config), "-o", "json")
    assert r.returncode == 0, r.stderr
    [s] = yaml.safe_load(r.stdout)["services"]
    assert s["cluster"] == "edge" and s["nodes"] == ["edge0"] and s["ready"] == 1


def test_inter_cluster_migration_with_google_cloud_dns(service: Deployed, tmp_path: Path) -> None:
    """The same migration with the Cloud DNS provider, against the local REST-contract server."""
    zone = service.cfg().dns.zone
    proc, endpoint = start_clouddns_fake(tmp_path, "greenwise-lab", {"continuum": zone})
    try:
        doc = yaml.safe_load(service.config.read_text())
        doc["dns"] = {"provider": "google-cloud-dns", "project": "greenwise-lab",
                      "managed_zone": "continuum", "zone": zone, "api_endpoint": endpoint,
                      "ttl": 2}
        config = tmp_path / "clouddns.yaml"
        config.write_text(yaml.safe_dump(doc))
        gdns = CloudDnsProvider("greenwise-lab", "continuum", zone, api_endpoint=endpoint)
        edge, cloud = (load_continuum(config).cluster(c) for c in ("edge", "cloud"))
        gdns.replace(service.hostname, "A", (edge.ingress_host,), 2)
        claim(gdns, service.hostname, "greenwise-mc", service.key, 2)
        r = cli("migrate", service.key, "--to", "cloud", "--config", str(config), "-o", "json")
        assert r.returncode == 0, r.stderr
        record = gdns.get(service.hostname)
        assert record is not None and record.values == (cloud.ingress_host,)
        answer = httpx.get(f"http://{cloud.ingress}/predictions/resnet-18", trust_env=False,
                           headers={"Host": service.hostname}, timeout=5).json()
        assert answer["cluster"] == "cloud"
    finally:
        proc.stop()
